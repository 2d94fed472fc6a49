import math

import pytest
import torch

from meshrecon.ops import PIXEL2MESH_AXES, PIXEL2MESH_CENTER, SubdivideMeshes, ellipsoid
from meshrecon.structures import Meshes


def assert_closed_outward(verts: torch.Tensor, faces: torch.Tensor, center: torch.Tensor):
    directed = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    fwd = sorted(map(tuple, directed.tolist()))
    # Each directed edge once, and its reverse once: closed, manifold, consistently wound.
    assert len(set(fwd)) == len(fwd)
    assert fwd == sorted(map(tuple, directed.flip(1).tolist()))
    tri = verts.double()[faces] - center.double()
    normal = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    # The ellipsoid is convex around its centre: outward normals point away from it.
    assert ((normal * tri.mean(1)).sum(1) > 0).all()


@pytest.mark.parametrize("level,nv,nf", [(0, 156, 308), (1, 618, 1232), (2, 2466, 4928)])
def test_pixel2mesh_counts_and_topology(level, nv, nf):
    mesh = ellipsoid(level)
    v, f = mesh.verts_list()[0], mesh.faces_list()[0]
    assert v.shape == (nv, 3) and f.shape == (nf, 3)
    assert v.dtype == torch.float32 and f.dtype == torch.int64
    assert_closed_outward(v, f, torch.tensor(PIXEL2MESH_CENTER))
    # Genus 0: V - E + F = 2.
    edges = {
        tuple(sorted(e)) for t in f.tolist() for e in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0]))
    }
    assert nv - len(edges) + nf == 2


@pytest.mark.parametrize("level", [0, 1])
def test_on_surface_and_volume(level):
    axes, center = (0.3, 0.5, 0.7), (0.1, -0.2, 1.5)
    v = ellipsoid(level, axes=axes, center=center).verts_list()[0].double()
    f = ellipsoid(level, axes=axes, center=center).faces_list()[0]
    a, c = torch.tensor(axes, dtype=torch.float64), torch.tensor(center, dtype=torch.float64)
    torch.testing.assert_close(
        ((v - c) / a).pow(2).sum(1),
        torch.ones(v.shape[0], dtype=torch.float64),
        rtol=1e-6,
        atol=1e-6,
    )
    tri = v[f] - c
    volume = float(torch.linalg.det(tri).sum() / 6)
    exact = 4 / 3 * math.pi * 0.3 * 0.5 * 0.7
    # An inscribed polyhedron: slightly smaller, closer with each level.
    assert 0.9 * exact < volume < exact


def test_default_placement():
    v = ellipsoid().verts_list()[0]
    lo, hi = v.min(0).values, v.max(0).values
    torch.testing.assert_close((lo + hi) / 2, torch.tensor(PIXEL2MESH_CENTER), atol=1e-6, rtol=0)
    # Poles on the y axis reach the full semi-axis; the rings come close on x and z.
    assert hi[1] - PIXEL2MESH_CENTER[1] == pytest.approx(PIXEL2MESH_AXES[1])
    assert ((hi - lo) / 2 <= torch.tensor(PIXEL2MESH_AXES) + 1e-6).all()
    assert ((hi - lo) / 2 >= 0.95 * torch.tensor(PIXEL2MESH_AXES)).all()
    # In front of the camera (+Z forward).
    assert bool((v[:, 2] > 0).all())


def test_levels_follow_subdivide_meshes():
    base = ellipsoid(0, axes=(1, 1, 1), center=(0, 0, 0))
    sub = SubdivideMeshes()(base)
    one = ellipsoid(1, axes=(1, 1, 1), center=(0, 0, 0))
    assert torch.equal(one.faces_list()[0], sub.faces_list()[0])
    v = sub.verts_list()[0]
    torch.testing.assert_close(one.verts_list()[0], v / v.norm(dim=1, keepdim=True))


@pytest.mark.parametrize("rings,segments", [(1, 3), (2, 5), (4, 7)])
def test_other_resolutions(rings, segments):
    mesh = ellipsoid(axes=(1, 2, 3), center=(0, 0, 0), rings=rings, segments=segments)
    v, f = mesh.verts_list()[0], mesh.faces_list()[0]
    assert v.shape[0] == 2 + rings * segments and f.shape[0] == 2 * rings * segments
    assert_closed_outward(v, f, torch.zeros(3))


def test_returns_meshes_on_device():
    mesh = ellipsoid(device="cpu")
    assert isinstance(mesh, Meshes) and mesh.verts_packed().device.type == "cpu"


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"level": -1}, "level"),
        ({"axes": (1, 1)}, "axes"),
        ({"axes": (1, 0, 1)}, "axes"),
        ({"center": (0, 0)}, "center"),
        ({"rings": 0}, "rings"),
        ({"segments": 2}, "segments"),
    ],
)
def test_invalid_inputs(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ellipsoid(**kwargs)
