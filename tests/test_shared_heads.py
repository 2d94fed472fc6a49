"""Shared voxel / mesh-refinement heads: checkpoint names and parity with Mesh R-CNN (ShapeNet)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from meshrecon.modeling.heads import MeshRefinementHead, MeshRefinementStage, VoxelConvHead
from meshrecon.modeling.heads.shapenet_geometry import (
    blender_ndc_to_camera,
    project_verts,
    shapenet_align_fn,
    voxel_to_world,
)
from meshrecon.ops import cubify, ico_sphere
from meshrecon.render.cameras import blender_projection_matrix
from meshrecon.structures import Meshes

GOLDEN = Path(__file__).parent / "data" / "golden" / "meshrcnn"


def _manifest(name: str, prefix: str) -> dict[str, list[int]]:
    entries = json.loads((GOLDEN / "manifests" / f"{name}.json").read_text())
    return {k[len(prefix) :]: v for k, v in entries.items() if k.startswith(prefix)}


def _shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def test_voxel_head_names_match_shapenet_and_pix3d_manifests():
    shapenet = VoxelConvHead(2048, 256, 4, 48, resize_input=True)
    assert _shapes(shapenet) == _manifest("shapenet_voxmesh_R50", "voxel_head.")
    pix3d = VoxelConvHead(256, 256, 4, 24)
    assert _shapes(pix3d) == _manifest("pix3d_meshrcnn_R50_FPN", "roi_heads.voxel_head.")


def test_mesh_head_names_match_shapenet_and_pix3d_manifests():
    shapenet = MeshRefinementHead(3840, 128, 3, 3, offset_name="vert_offset")
    assert _shapes(shapenet) == _manifest("shapenet_voxmesh_R50", "mesh_head.")
    pix3d = MeshRefinementHead(256, 128, 3, 3, offset_name="verts_offset")
    assert _shapes(pix3d) == _manifest("pix3d_meshrcnn_R50_FPN", "roi_heads.mesh_head.")


def test_voxel_head_output_shape_class_specific():
    head = VoxelConvHead(8, 4, 2, 6, num_classes=3)
    out = head(torch.randn(2, 8, 3, 3))
    assert out.shape == (2, 3, 6, 6, 6)
    assert head.predictor.weight.shape == (18, 4, 1, 1)


def test_invalid_arguments_name_the_argument():
    with pytest.raises(ValueError, match="offset_name"):
        MeshRefinementStage(8, 0, 4, 1, offset_name="offset")
    with pytest.raises(ValueError, match="feat_order"):
        MeshRefinementStage(8, 0, 4, 1, feat_order="middle")
    with pytest.raises(ValueError, match="voxel_size"):
        VoxelConvHead(8, 4, 1, 5, resize_input=True)
    with pytest.raises(ValueError, match="num_stages"):
        MeshRefinementHead(8, 4, 1, 0)
    stage = MeshRefinementStage(4, 0, 4, 1)
    mesh = ico_sphere(0)
    with pytest.raises(ValueError, match="align_coords"):
        stage(torch.randn(1, 4, 5, 5), mesh, None, torch.zeros(1, 3, 3))


def test_feat_order_changes_first_gconv_input():
    torch.manual_seed(0)
    mesh = ico_sphere(1).extend(2).scale_verts(0.5)
    feats = torch.randn(2, 4, 6, 6)
    outs = []
    for order in ("prev_first", "prev_last"):
        torch.manual_seed(1)
        head = MeshRefinementHead(4, 5, 2, 2, feat_order=order)
        for p in head.parameters():
            torch.nn.init.normal_(p, std=0.3)
        outs.append(head(feats, mesh)[-1].verts_packed())
    assert not torch.allclose(outs[0], outs[1])


def test_subdivide_between_stages():
    head = MeshRefinementHead(4, 5, 1, 3, subdivide=True)
    out = head(torch.randn(1, 4, 6, 6), ico_sphere(0))
    assert [m.verts_packed().shape[0] for m in out] == [12, 42, 162]


def test_blender_projection_roundtrip():
    torch.manual_seed(0)
    pts = torch.randn(10, 3, dtype=torch.float64) * 0.2
    pts[:, 2] -= 1.0
    P = blender_projection_matrix().to(torch.float64)
    ndc = project_verts(pts, P)
    assert torch.allclose(blender_ndc_to_camera(ndc), pts, atol=1e-9)


def test_shapenet_heads_parity_with_mesh_rcnn():
    golden = torch.load(GOLDEN / "shapenet_heads.pt", weights_only=True)
    feats = [f.double() for f in golden["feats"]]
    voxel_head = VoxelConvHead(128, 32, 4, 16, resize_input=True)
    voxel_head.load_state_dict(golden["voxel_head_state_dict"])
    voxel_head.double()
    mesh_head = MeshRefinementHead(
        240, 32, 3, 3, offset_name="vert_offset", feat_order="prev_last", padding_mode="zeros"
    )
    mesh_head.load_state_dict(golden["mesh_head_state_dict"])
    mesh_head.double()
    with torch.no_grad():
        scores = voxel_head(feats[-1])[:, 0]
        torch.testing.assert_close(scores, golden["voxel_scores"], rtol=0, atol=1e-8)
        cubes = cubify(scores.sigmoid(), 0.2)
        cubes = Meshes(verts=[v.double() for v in cubes.verts_list()], faces=cubes.faces_list())
        init = voxel_to_world(cubes)
        for got_v, got_f, want_v, want_f in zip(
            init.verts_list(), init.faces_list(), golden["init_verts"], golden["init_faces"]
        ):
            torch.testing.assert_close(got_v, want_v, rtol=0, atol=1e-10)
            assert torch.equal(got_f, want_f)
        stages = mesh_head(feats, init, shapenet_align_fn(golden["P"]))
    assert len(stages) == 3
    for k, mesh in enumerate(stages):
        for got, want in zip(mesh.verts_list(), golden["stage_verts"][k]):
            err = (got - want).abs().max().item()
            assert err < 1e-4, f"stage {k}: max vertex error {err}"


# ----------------------------------------------------------------------------- vert_align_linear


def _direct(feats, grid, linear, padding_mode):
    """The order vert_align_linear replaces: sample every channel, then the linear layer."""
    from meshrecon.ops import vert_align

    return linear(vert_align(feats, grid, padding_mode=padding_mode))


@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("num_maps", [1, 3])
def test_vert_align_linear_matches_the_direct_order_forward_and_backward(padding_mode, num_maps):
    from meshrecon.modeling.heads.shared import vert_align_linear

    g = torch.Generator().manual_seed(num_maps)
    sizes = [(3, 5, 6), (4, 3, 3), (2, 7, 4)][:num_maps]
    feats = [torch.randn(2, *s, generator=g, dtype=torch.float64) for s in sizes]
    # Points inside and well outside [-1, 1], where the padding modes differ.
    grid = torch.rand(2, 9, 3, generator=g, dtype=torch.float64) * 3.0 - 1.5
    linear = torch.nn.Linear(sum(s[0] for s in sizes), 5).double()
    results = []
    for fn in (_direct, vert_align_linear):
        f = [x.clone().requires_grad_() for x in feats]
        p = grid.clone().requires_grad_()
        linear.zero_grad()
        out = fn(f if num_maps > 1 else f[0], p, linear, padding_mode)
        out.backward(torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out))
        grads = [x.grad for x in f] + [p.grad, linear.weight.grad, linear.bias.grad]
        results.append((out.detach(), [x.clone() for x in grads]))
    (want, want_grads), (got, got_grads) = results
    assert got.shape == (2, 9, 5)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_vert_align_linear_gradcheck_and_channel_check():
    from meshrecon.modeling.heads.shared import vert_align_linear

    g = torch.Generator().manual_seed(0)
    feats = torch.randn(1, 3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    # Off the cell boundaries, where bilinear sampling is differentiable.
    grid = torch.tensor([[[0.1, -0.3, 0.0], [0.55, 0.7, 0.0]]], dtype=torch.float64) + 0.01
    grid.requires_grad_()
    linear = torch.nn.Linear(3, 2).double()
    assert torch.autograd.gradcheck(
        lambda f, p: vert_align_linear(f, p, linear, "border"), (feats, grid)
    )
    with pytest.raises(ValueError, match="channels"):
        vert_align_linear(feats, grid, torch.nn.Linear(4, 2).double())


def test_refinement_stage_equals_sampling_before_the_bottleneck(monkeypatch):
    import meshrecon.modeling.heads.shared as shared

    torch.manual_seed(0)
    mesh = Meshes(
        verts=[ico_sphere(1).verts_packed() * 0.6, ico_sphere(0).verts_packed() * 0.8],
        faces=[ico_sphere(1).faces_packed(), ico_sphere(0).faces_packed()],
    )
    mesh = Meshes(verts=[v.double() for v in mesh.verts_list()], faces=mesh.faces_list())
    feats = [torch.randn(2, 4, 6, 6, dtype=torch.float64), torch.randn(2, 3, 3, 3).double()]
    stage = MeshRefinementStage(7, 0, 5, 2, padding_mode="zeros").double()
    for p in stage.parameters():
        torch.nn.init.normal_(p, std=0.3)
    outs = []
    for patch in (False, True):
        if patch:
            monkeypatch.setattr(shared, "vert_align_linear", _direct)
        f = [x.clone().requires_grad_() for x in feats]
        stage.zero_grad()
        new_mesh, hidden = stage(f, mesh)
        (new_mesh.verts_packed().sum() + hidden.square().sum()).backward()
        grads = [x.grad for x in f] + [p.grad.clone() for p in stage.parameters()]
        outs.append((new_mesh.verts_packed().detach(), hidden.detach(), grads))
    (v1, h1, g1), (v0, h0, g0) = outs
    torch.testing.assert_close(v1, v0, rtol=0, atol=1e-12)
    torch.testing.assert_close(h1, h0, rtol=0, atol=1e-12)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)
