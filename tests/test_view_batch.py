"""ViewBatch: the structure the single-view heads read, its checks and its contract errors."""

from __future__ import annotations

import pytest
import torch

import meshrecon.modeling.meta_arch.single_view as single_view
from meshrecon.modeling.heads.mean_shape import MeanShapeHead
from meshrecon.modeling.heads.pixel2mesh import Pixel2MeshGResNetHead
from meshrecon.modeling.heads.psgn import PSGNHead
from meshrecon.modeling.heads.voxmesh import VoxelHead, VoxMeshHead
from meshrecon.structures import ViewBatch

N, P, V = 2, 5, 4
K = torch.tensor([[40.0, 40.0, 16.0, 16.0]]).repeat(N, 1)


def _full() -> ViewBatch:
    g = torch.Generator().manual_seed(0)
    points = torch.randn(N, P, 3, generator=g)
    cube = (torch.rand(4, 3, generator=g), torch.tensor([[0, 1, 2], [0, 2, 3]]))
    return ViewBatch(
        image_size=(32, 32),
        K=K.clone(),
        R=torch.eye(3).repeat(N, 1, 1),
        t=torch.randn(N, 3, generator=g),
        points=points,
        normals=torch.nn.functional.normalize(points, dim=-1),
        voxels=(torch.rand(N, V, V, V, generator=g) > 0.5).float(),
        meshes=[cube] * N,
    )


def test_old_import_path_is_the_structure():
    assert single_view.ViewBatch is ViewBatch
    assert "ViewBatch" in single_view.__all__


def test_require_returns_the_fields():
    views = _full()
    assert views.require("voxels", for_="x") is views.voxels
    R, t = views.require("R", "t", for_="x")
    assert R is views.R and t is views.t
    assert len(views) == N and views.device == torch.device("cpu")


def test_require_names_the_missing_input_keys():
    views = ViewBatch(image_size=(32, 32), K=K, points=torch.zeros(N, P, 3))
    with pytest.raises(
        ValueError, match=r"^training the voxel head needs 'voxels' in every input$"
    ):
        views.require("voxels", for_="training the voxel head")
    # Several missing fields are all named; 'meshes' is the input key 'mesh'.
    with pytest.raises(ValueError, match=r"^it needs 'R' and 'mesh' in every input$"):
        views.require("points", "R", "meshes", for_="it")
    with pytest.raises(ValueError, match=r"no field 'voxel'.*'voxels'"):
        views.require("voxel", for_="it")
    with pytest.raises(ValueError, match="at least one field"):
        views.require(for_="it")


def test_to_moves_every_tensor_and_keeps_the_original():
    views = _full()
    moved = views.to("meta")
    tensors = [moved.K, moved.R, moved.t, moved.points, moved.normals, moved.voxels]
    tensors += [x for mesh in moved.meshes for x in mesh]
    assert all(x.device.type == "meta" for x in tensors)
    assert moved.image_size == views.image_size and moved.device.type == "meta"
    assert views.K.device.type == "cpu" and views.meshes[0][0].device.type == "cpu"
    back = views.to(torch.device("cpu"))
    for name in ("K", "R", "t", "points", "normals", "voxels"):
        assert torch.equal(getattr(back, name), getattr(views, name))
    assert ViewBatch(image_size=(8, 8), K=K).to("meta").points is None


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("K", torch.zeros(N, 3), r"K must be \(N, 4\), got \(2, 3\)"),
        ("R", torch.zeros(N + 1, 3, 3), r"R must be \(2, 3, 3\) for the 2 views of K"),
        ("t", torch.zeros(N, 4), r"t must be \(2, 3\)"),
        ("points", torch.zeros(N, P, 2), r"points must be \(2, P, 3\)"),
        ("normals", torch.zeros(N, P + 1, 3), r"normals \(2, 6, 3\) need points of the same"),
        ("voxels", torch.zeros(N, V, V), r"voxels must be \(2, V, V, V\)"),
        ("meshes", [], r"meshes must hold one \(verts, faces\) per view \(2\), got 0"),
        ("image_size", (32,), r"image_size must be \(H, W\)"),
    ],
)
def test_bad_fields_are_named(field, value, message):
    args = {k: getattr(_full(), k) for k in ViewBatch.field_names()}
    args[field] = value
    with pytest.raises(ValueError, match=message):
        ViewBatch(**args)


# ---------------------------------------------------------------- the contract, head by head
def _feats(n=N):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(n, 8, 8, 8, generator=g), torch.randn(n, 16, 4, 4, generator=g)]


def test_voxel_head_training_needs_voxels():
    head = VoxelHead(input_channels=16, conv_dim=8, num_conv=1, voxel_size=V)
    scores = head(_feats()[-1])
    views = ViewBatch(image_size=(32, 32), K=K)
    with pytest.raises(ValueError, match="training the voxel head needs 'voxels' in every input"):
        head.losses(scores, views)
    full = _full()
    loss = head.losses(scores, full)["loss_voxel"]
    want = torch.nn.functional.binary_cross_entropy_with_logits(scores[:, 0], full.voxels)
    torch.testing.assert_close(loss, want)


def test_point_heads_training_need_points():
    psgn = PSGNHead(feature_channels=[8, 16], fc_dims=[16], deconv_dim=8, noise_dim=2).train()
    views = ViewBatch(image_size=(32, 32), K=K)
    with pytest.raises(ValueError, match="training PSGN needs 'points' in every input"):
        psgn(_feats(), views)
    p2m = Pixel2MeshGResNetHead(
        feature_channels=[8, 16], hidden_dim=8, num_blocks=1, num_gconvs=2
    ).train()
    with pytest.raises(ValueError, match="training Pixel2Mesh needs 'points' in every input"):
        p2m(_feats(), views)


def test_refinement_head_training_needs_points_or_meshes():
    head = VoxMeshHead(
        input_channels=24, num_stages=1, num_graph_convs=1, graph_conv_dim=8, cubify_thresh=0.2
    ).train()
    scores = torch.full((N, 1, V, V, V), 5.0)
    views = ViewBatch(image_size=(32, 32), K=K)
    with pytest.raises(ValueError, match="needs 'points' \\(and 'normals'\\) or 'mesh'"):
        head(_feats(), views, voxel_scores=scores)


def test_mean_shape_needs_the_pose():
    verts = torch.rand(4, 3)
    head = MeanShapeHead(mean_verts=verts, mean_faces=torch.tensor([[0, 1, 2]])).eval()
    with pytest.raises(ValueError, match="MeanShapeHead.* needs 'R' and 't' in every input"):
        head(_feats(), ViewBatch(image_size=(32, 32), K=K))
    full = _full()
    out = head(_feats(), full)
    torch.testing.assert_close(out[1]["mesh"][0], verts @ full.R[1].T + full.t[1])
