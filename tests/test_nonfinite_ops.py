"""NaN in, NaN (or a ValueError) out: no op returns a finite answer from non-finite input;
finite but huge coordinates either work or are refused, never an int64 overflow."""

from __future__ import annotations

import pytest
import torch

from meshrecon.ops import (
    GraphConv,
    SubdivideMeshes,
    chamfer_distance,
    cubify,
    earth_movers_distance,
    ico_sphere,
    mesh_edge_loss,
    mesh_laplacian_smoothing,
    mesh_normal_consistency,
    points_to_voxel_coords,
    sample_points_from_meshes,
    vert_align,
    voxel_iou,
    voxelize_meshes,
)
from meshrecon.render import rasterize
from meshrecon.structures import Meshes

NAN = float("nan")
K = torch.tensor([50.0, 50.0, 16.0, 16.0])


def _sphere_with_nan():
    sphere = ico_sphere(1)
    verts = sphere.verts_packed().clone()
    verts[5, 1] = NAN
    return verts, sphere.faces_packed()


def _clouds():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 20, 3, generator=g), torch.rand(2, 20, 3, generator=g)
    y_nan = y.clone()
    y_nan[0, 3, 1] = NAN
    return x, y, y_nan


def _propagates_or_refuses(fn) -> None:
    try:
        out = fn()
    except ValueError as err:
        assert "NaN" in str(err) or "finite" in str(err), err
        return
    if isinstance(out, Meshes):
        out = out.verts_packed()
    if isinstance(out, tuple):
        out = out[0]
    assert not bool(torch.isfinite(out.float()).all()), out


def _nan_cases():
    verts, faces = _sphere_with_nan()
    mesh = Meshes([verts], [faces])
    x, y, y_nan = _clouds()
    return {
        "chamfer (x NaN)": lambda: chamfer_distance(y_nan, x, batch_reduction=None)[0][0],
        "chamfer (y NaN)": lambda: chamfer_distance(x, y_nan, batch_reduction=None)[0][0],
        "chamfer single-directional (y NaN)": lambda: chamfer_distance(
            x, y_nan, single_directional=True, batch_reduction=None
        )[0][0],
        "chamfer single-directional, per point": lambda: chamfer_distance(
            x, y_nan, single_directional=True, point_reduction=None, batch_reduction=None
        )[0][0],
        "chamfer single-directional max": lambda: chamfer_distance(
            x, y_nan, single_directional=True, point_reduction="max", batch_reduction=None
        )[0][0],
        "chamfer normals single-directional (y normals NaN)": lambda: chamfer_distance(
            x, y, x_normals=x, y_normals=y_nan, single_directional=True, batch_reduction=None
        )[1][0],
        "earth_movers_distance": lambda: earth_movers_distance(x, y_nan, batch_reduction=None)[0],
        "sample_points_from_meshes": lambda: sample_points_from_meshes(mesh, 10),
        "mesh_edge_loss": lambda: mesh_edge_loss(mesh),
        "mesh_laplacian_smoothing uniform": lambda: mesh_laplacian_smoothing(mesh),
        "mesh_laplacian_smoothing cot": lambda: mesh_laplacian_smoothing(mesh, method="cot"),
        "mesh_normal_consistency": lambda: mesh_normal_consistency(mesh),
        "cubify": lambda: cubify(torch.full((1, 3, 3, 3), NAN), 0.5),
        "cubify partly NaN": lambda: cubify(
            torch.ones(1, 3, 3, 3).index_fill(1, torch.tensor([1]), NAN), 0.5
        ),
        "voxelize_meshes": lambda: voxelize_meshes(mesh, 6),
        "voxelize_meshes NaN box": lambda: voxelize_meshes(
            Meshes([ico_sphere(1).verts_packed()], [faces]), 6, box=[[NAN] * 3, [1.0] * 3]
        ),
        "voxel_iou pred": lambda: voxel_iou(torch.full((1, 2, 2, 2), NAN), torch.ones(1, 2, 2, 2)),
        "voxel_iou gt": lambda: voxel_iou(torch.ones(1, 2, 2, 2), torch.full((1, 2, 2, 2), NAN)),
        "points_to_voxel_coords": lambda: points_to_voxel_coords(verts, 8),
        "vert_align": lambda: vert_align(torch.rand(1, 4, 8, 8), verts[None]),
        "SubdivideMeshes": lambda: SubdivideMeshes()(mesh),
        "GraphConv": lambda: GraphConv(3, 4)(verts, ico_sphere(1).edges_packed()),
        "rasterize": lambda: rasterize((verts + torch.tensor([0, 0, 3.0]))[None], faces, K, 32),
        "rasterize NaN K": lambda: rasterize(
            (ico_sphere(1).verts_packed() + torch.tensor([0, 0, 3.0]))[None],
            faces,
            torch.tensor([NAN, 50.0, 16.0, 16.0]),
            32,
        ),
    }


@pytest.mark.parametrize("name", list(_nan_cases()))
def test_non_finite_input_never_gives_a_finite_answer(name):
    _propagates_or_refuses(_nan_cases()[name])


def test_nan_never_reaches_a_finite_emd_or_chamfer_in_other_clouds():
    x, y, y_nan = _clouds()
    one_way = chamfer_distance(x, y_nan, single_directional=True, batch_reduction=None)[0]
    clean = chamfer_distance(x, y, single_directional=True, batch_reduction=None)[0]
    assert torch.isnan(one_way[0]) and one_way[1] == clean[1]
    # Padding beyond y_lengths may hold anything: only real points count.
    padded = y.clone()
    padded[1, 15:] = NAN
    lengths = torch.tensor([20, 15])
    out = chamfer_distance(x, padded, y_lengths=lengths, single_directional=True)[0]
    assert torch.isfinite(out)


def test_huge_triangle_covering_the_image_is_drawn():
    # Before: float32 face tables overflowed and the face silently vanished.
    for size in (1e3, 1e18, 1e25, 1e37):
        tri = torch.tensor([[[-size, -size, 3.0], [size, -size, 3.0], [0.0, size, 3.0]]])
        frags = rasterize(tri, torch.tensor([[0, 1, 2]]), K, (32, 32))
        assert bool((frags.pix_to_face == 0).all()), size
        assert frags.zbuf.dtype == torch.float32
        torch.testing.assert_close(frags.zbuf, torch.full((1, 32, 32), 3.0))
    with pytest.raises(ValueError, match="overflow"):
        big = [[[-1e200, -1e200, 3.0], [1e200, -1e200, 3.0], [0.0, 1e200, 3.0]]]
        rasterize(torch.tensor(big, dtype=torch.float64), torch.tensor([[0, 1, 2]]), K, (32, 32))


@pytest.mark.parametrize("scale", [1e18, 1e30])
def test_huge_meshes_voxelize_exactly(scale):
    sphere = ico_sphere(2)
    v, f = sphere.verts_packed(), sphere.faces_packed()
    assert voxelize_meshes(Meshes([v * scale], [f]), 8).all()  # the grid is deep inside
    assert not voxelize_meshes(Meshes([v + scale], [f]), 8).any()  # far outside
    assert not voxelize_meshes(Meshes([v - scale], [f]), 8).any()
    box = [[-scale] * 3, [scale] * 3]
    torch.testing.assert_close(
        voxelize_meshes(Meshes([v * scale], [f]), 8, box=box), voxelize_meshes(Meshes([v], [f]), 8)
    )
