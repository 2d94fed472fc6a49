"""Tests for meshrecon.ops.mesh_face_areas_normals against a loop and Meshes."""

import pytest
import torch

from meshrecon.ops import mesh_face_areas_normals
from meshrecon.structures import Meshes


def test_matches_loop_and_meshes_with_gradients():
    g = torch.Generator().manual_seed(0)
    verts = torch.randn(7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    faces = torch.tensor([[0, 1, 2], [2, 3, 4], [4, 5, 6], [1, 1, 3]])  # the last is degenerate
    areas, normals = mesh_face_areas_normals(verts, faces)
    for f, (a, n) in enumerate(zip(areas, normals)):
        p0, p1, p2 = verts[faces[f]].detach()
        cross = torch.linalg.cross(p1 - p0, p2 - p0, dim=0)
        assert torch.isclose(a, cross.norm() / 2)
        assert torch.allclose(n, cross / max(cross.norm(), 1e-6))
    assert areas[3] == 0 and not normals[3].any()  # zero, not NaN
    meshes = Meshes([verts.detach()], [faces])
    assert torch.equal(areas.detach(), meshes.faces_areas_packed())
    assert torch.equal(normals.detach(), meshes.faces_normals_packed())
    torch.autograd.gradcheck(lambda v: mesh_face_areas_normals(v, faces[:3]), (verts,))
    empty_a, empty_n = mesh_face_areas_normals(verts, torch.zeros(0, 3).long())
    assert empty_a.shape == (0,) and empty_n.shape == (0, 3)


def test_invalid_inputs():
    v, f = torch.rand(3, 3), torch.tensor([[0, 1, 2]])
    cases = [
        ((v[:, :2], f), "verts"),
        ((v.long(), f), "floating"),
        ((v, f[:, :2]), "faces"),
        ((v, f.float()), "integer"),
        ((v, f + 1), "index vertices"),
    ]
    for args, msg in cases:
        with pytest.raises(ValueError, match=msg):
            mesh_face_areas_normals(*args)
