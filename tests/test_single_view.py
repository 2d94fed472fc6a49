"""SingleViewReconstructor with Mesh R-CNN's ShapeNet heads and the mean-shape baseline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from meshrecon.config import get_cfg
from meshrecon.data.shape_statistics import compute_mean_shape
from meshrecon.data.shape_targets import voxelize_in_frustum
from meshrecon.modeling import build_model
from meshrecon.modeling.heads.mean_shape import MeanShapeHead
from meshrecon.modeling.heads.shapenet_geometry import voxel_to_world
from meshrecon.modeling.heads.sphere_init import Pixel2MeshHead, SphereInitHead
from meshrecon.modeling.heads.voxmesh import VoxelHead, VoxMeshHead
from meshrecon.modeling.meta_arch.single_view import SingleViewReconstructor, ViewBatch
from meshrecon.ops import ico_sphere, sample_points_from_meshes
from meshrecon.render.cameras import (
    blender_projection_matrix,
    camera_to_opengl_points,
    r2n2_camera,
)
from meshrecon.structures import Meshes

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "tests" / "data" / "golden" / "meshrcnn" / "manifests"
CONFIGS = ROOT / "meshrecon" / "model_zoo" / "configs"
SIZE = 64
K64 = torch.tensor([2.1875 * SIZE / 2, 2.1875 * SIZE / 2, SIZE / 2, SIZE / 2])
MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]


def _shapenet_cfg(name: str):
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / "shapenet" / f"{name}_R50.yaml"))
    return cfg


@pytest.mark.parametrize("name", ["voxmesh", "sphereinit", "pixel2mesh"])
def test_state_dict_matches_meshrcnn_manifest(name):
    torch.manual_seed(0)
    model = build_model(_shapenet_cfg(name))
    want = json.loads((MANIFESTS / f"shapenet_{name}_R50.json").read_text())
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert list(got) == list(want)
    assert got == want
    assert torch.equal(model.K, blender_projection_matrix())


@pytest.mark.parametrize("name", ["voxmesh", "sphereinit", "pixel2mesh", "psgn"])
def test_synthetic_configs_build(name):
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / "synthetic" / f"{name}.yaml"))
    model = build_model(cfg)
    assert isinstance(model, SingleViewReconstructor)
    assert model.backbone.output_shape()["res5"].channels == 512


def _views(n: int, with_targets: bool = True) -> tuple[list[dict], Meshes]:
    """n 64x64 inputs: a sphere of radius 0.3 at depth 1.4, shifted a little per view."""
    gt = []
    inputs = []
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        sphere = ico_sphere(2)
        verts = sphere.verts_packed() * 0.3 + torch.tensor([0.05 * i, 0.0, 1.4])
        mesh = Meshes(verts=[verts], faces=[sphere.faces_packed()])
        gt.append(mesh)
        item = {"image": torch.rand(3, SIZE, SIZE, generator=g) * 255, "K": K64.clone()}
        if with_targets:
            pts, nrm = sample_points_from_meshes(mesh, 500, return_normals=True)
            dense = sample_points_from_meshes(mesh, 4000)[0]
            # A solid ball: surface samples pulled towards the centre.
            centre = verts.mean(0)
            solid = torch.cat([centre + (dense - centre) * s for s in (0.25, 0.5, 0.75, 1.0)])
            item.update(
                points=pts[0],
                normals=nrm[0],
                mesh=(verts, sphere.faces_packed()),
                voxels=voxelize_in_frustum(solid, K64, (SIZE, SIZE), 16).float(),
            )
        inputs.append(item)
    return inputs, gt


class TinyBackbone(torch.nn.Module):
    """Two stride-2 conv stages: {"c1": (N, 8, H/2, W/2), "c2": (N, 16, H/4, W/4)}."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.c2 = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)

    def forward(self, x):
        a = torch.relu(self.c1(x))
        return {"c1": a, "c2": torch.relu(self.c2(a))}


def _tiny_model(kind: str) -> SingleViewReconstructor:
    torch.manual_seed(0)
    backbone = TinyBackbone()
    head_args = dict(
        input_channels=8 + 16,
        num_stages=2,
        num_graph_convs=2,
        graph_conv_dim=16,
        gt_num_samples=300,
        pred_num_samples=300,
    )
    voxel_head = None
    if kind == "voxmesh":
        voxel_head = VoxelHead(input_channels=16, conv_dim=16, num_conv=1, voxel_size=16)
        mesh_head = VoxMeshHead(cubify_thresh=0.2, cubify_align="center", **head_args)
    elif kind == "sphereinit":
        mesh_head = SphereInitHead(ico_sphere_level=2, **head_args)
    else:
        mesh_head = Pixel2MeshHead(ico_sphere_level=1, **head_args)
    return SingleViewReconstructor(
        backbone=backbone,
        voxel_head=voxel_head,
        mesh_head=mesh_head,
        pixel_mean=MEAN,
        pixel_std=STD,
    )


def _loss(model, inputs, seed=0) -> float:
    torch.manual_seed(seed)
    with torch.no_grad():
        return float(sum(model(inputs).values()))


@pytest.mark.parametrize("kind", ["voxmesh", "sphereinit", "pixel2mesh"])
def test_training_steps_lower_the_loss(kind):
    model = _tiny_model(kind)
    model.train()
    inputs, _ = _views(2)
    before = _loss(model, inputs)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(10):
        torch.manual_seed(step)
        losses = model(inputs)
        assert all(k.startswith("loss_") for k in losses)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    after = _loss(model, inputs)
    assert after < 0.8 * before, (before, after)


def test_inference_outputs_camera_frame_meshes_and_voxels():
    model = _tiny_model("voxmesh").eval()
    inputs, _ = _views(2, with_targets=False)
    with torch.no_grad():
        outs = model(inputs)
    assert len(outs) == 2
    for out in outs:
        verts, faces = out["mesh"]
        assert verts.shape[1] == 3 and faces.shape[1] == 3
        assert out["voxels"].shape == (16, 16, 16)
        assert 0 <= float(out["voxels"].min()) and float(out["voxels"].max()) <= 1
        # Cubified frustum voxels lie in front of the camera, within the grid's depth range.
        assert float(verts[:, 2].min()) > 0.5


def test_sphere_init_sizes_and_pixel2mesh_plus_subdivision():
    views = ViewBatch(image_size=(SIZE, SIZE), K=K64[None].repeat(2, 1))
    feats = [torch.randn(2, c, s, s) for c, s in ((8, 16), (8, 8))]
    p2m = Pixel2MeshHead(input_channels=16, graph_conv_dim=8, num_graph_convs=1).eval()
    sizes = [
        m.verts_packed().shape[0] // 2 for m in p2m.refine(feats, views, p2m.initial_meshes(views))
    ]
    assert sizes == [162, 642, 2562]
    sphere = SphereInitHead(
        input_channels=16, graph_conv_dim=8, num_graph_convs=1, ico_sphere_level=1
    )
    init = sphere.initial_meshes(views)
    # Mesh R-CNN's unit sphere centred on the camera, in our frame.
    assert torch.allclose(init.verts_packed().norm(dim=1), torch.ones(84), atol=1e-5)


def test_projection_of_r2n2_views_is_meshrcnn_matrix():
    K, _, _ = r2n2_camera(30.0, 25.0, 1.4, image_size=137)
    views = ViewBatch(image_size=(137, 137), K=K[None].float())
    head = SphereInitHead(input_channels=8, graph_conv_dim=8, num_graph_convs=1)
    P = head.projection_matrices(views)[0]
    torch.testing.assert_close(P, blender_projection_matrix(), atol=1e-5, rtol=0)


def test_cubify_matches_meshrcnn_voxel_to_world_on_r2n2_views():
    """VoxMesh's frustum->camera map equals Mesh R-CNN's voxel_to_world for R2N2 renders."""
    K, _, _ = r2n2_camera(0.0, 25.0, 1.4, image_size=137)
    views = ViewBatch(image_size=(137, 137), K=K[None].float())
    head = VoxMeshHead(input_channels=8, graph_conv_dim=8, num_graph_convs=1)
    scores = torch.full((1, 1, 8, 8, 8), -5.0)
    scores[0, 0, 2:5, 3:6, 1:4] = 5.0
    ours = head.cubify(scores, views)
    from meshrecon.ops import cubify

    theirs = voxel_to_world(cubify(scores[:, 0].sigmoid(), 0.2))
    torch.testing.assert_close(
        camera_to_opengl_points(ours.verts_packed()), theirs.verts_packed(), atol=1e-4, rtol=1e-4
    )
    assert torch.equal(ours.faces_packed(), theirs.faces_packed())


def test_cubify_places_vertices_in_the_scores_dtype():
    """In float64 the cubified mesh is placed in float64 (as Mesh R-CNN casts cubify's float32
    grid before voxel_to_world); only Mesh R-CNN's seven-digit Blender constants separate the
    two (about 1e-7 relative)."""
    K, _, _ = r2n2_camera(0.0, 25.0, 1.4, image_size=137)
    views = ViewBatch(image_size=(137, 137), K=K[None].double())
    head = VoxMeshHead(input_channels=8, graph_conv_dim=8, num_graph_convs=1)
    scores = torch.full((1, 1, 8, 8, 8), -5.0, dtype=torch.float64)
    scores[0, 0, 2:5, 3:6, 1:4] = 5.0
    ours = head.cubify(scores, views)
    assert ours.verts_packed().dtype == torch.float64
    from meshrecon.ops import cubify

    grid = cubify(scores[:, 0].sigmoid(), 0.2)
    grid = Meshes(verts=[v.double() for v in grid.verts_list()], faces=grid.faces_list())
    theirs = voxel_to_world(grid).verts_packed()
    err = (camera_to_opengl_points(ours.verts_packed()) - theirs).abs().max() / theirs.abs().max()
    assert err < 3e-7


def test_voxel_size_mismatch_names_both_keys():
    cfg = _shapenet_cfg("voxmesh")
    cfg.INPUT.SHAPENET.VOXEL_SIZE = 32
    with pytest.raises(ValueError, match="INPUT.SHAPENET.VOXEL_SIZE"):
        build_model(cfg)


def test_mean_shape_from_records_and_placement(tmp_path):
    from meshrecon.io import save_mesh

    records = []
    for i, half in enumerate((0.2, 0.3, 0.3)):
        box = Meshes(
            verts=[
                torch.tensor([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]).float()
                * half
            ],
            faces=[
                torch.tensor(
                    [
                        [0, 1, 3],
                        [0, 3, 2],
                        [4, 6, 7],
                        [4, 7, 5],
                        [0, 4, 5],
                        [0, 5, 1],
                        [2, 3, 7],
                        [2, 7, 6],
                        [0, 2, 6],
                        [0, 6, 4],
                        [1, 5, 7],
                        [1, 7, 3],
                    ]
                )
            ],
        )
        path = tmp_path / f"box{i}.obj"
        save_mesh(str(path), box.verts_packed(), box.faces_packed())
        records += [{"mesh": str(path), "model_id": str(i)}] * 2
    verts, faces = compute_mean_shape(records, voxel_size=20, bounds=(-0.5, 0.5))
    extent = verts.max(0).values - verts.min(0).values
    # Majority (2 of 3) is the 0.3 box: side 0.6, within a voxel (0.05).
    assert torch.allclose(extent, torch.full((3,), 0.6), atol=0.051)
    head = MeanShapeHead(mean_verts=verts, mean_faces=faces).eval()
    R = torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    t = torch.tensor([[0.0, 0.0, 2.0]])
    views = ViewBatch(image_size=(SIZE, SIZE), K=K64[None], R=R, t=t)
    out = head([torch.zeros(1, 1, 1, 1)], views)[0]["mesh"]
    torch.testing.assert_close(out[0], verts @ R[0].T + t[0])


def test_demo_writes_the_prediction(tmp_path):
    from PIL import Image

    from meshrecon.apps.demo.single_view import run_single_view_demo

    path = tmp_path / "view.png"
    Image.new("RGBA", (SIZE, SIZE), (200, 30, 30, 255)).save(path)
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "SingleViewReconstructor"
    cfg.INPUT.FORMAT = "RGB"
    written = run_single_view_demo(
        cfg,
        str(path),
        str(tmp_path / "out"),
        K=K64.tolist(),
        model=_tiny_model("sphereinit"),
        input_size=SIZE,  # the tiny model's input size
    )
    assert {"mesh", "mesh_glb", "mesh_ply", "views", "overlay"} <= set(written)
    assert Path(written["mesh"]).stat().st_size > 0
    with Image.open(written["views"]) as views:  # input camera + 3 turned viewpoints
        assert views.size == (4 * SIZE, SIZE)
