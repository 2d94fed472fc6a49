"""Mappers on tiny hand-written records whose files are written in tmp_path."""

import math

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image, ImageDraw

from meshrecon.config import get_cfg
from meshrecon.data import MapDataset, build_train_loader
from meshrecon.data.common import DatasetFromList
from meshrecon.data.mappers import DepthMapper, MeshRCNNMapper, MultiViewMapper, ShapeNetMapper
from meshrecon.data.shape_targets import frustum_voxel_coords_to_camera, voxelize_in_frustum
from meshrecon.data.transforms import RandomFlip, ResizeShortestEdge
from meshrecon.render.cameras import project_points, transform_points

CORNERS = torch.tensor([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]).float()
BOX_FACES = torch.tensor(
    [
        [0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
        [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3],
    ]
)  # fmt: skip


def rot_y(deg):
    a = math.radians(deg)
    return torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


def render_mask(verts_cam, faces, K, h, w):
    uv = project_points(verts_cam, torch.as_tensor(K, dtype=torch.float32)).numpy()
    img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(img)
    for f in faces.tolist():
        draw.polygon([tuple(uv[i]) for i in f], fill=255)
    return np.asarray(img) > 0


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


@pytest.fixture
def pix3d_record(tmp_path):
    h, w, f = 40, 60, 50.0
    verts = CORNERS * torch.tensor([0.3, 0.25, 0.2])
    torch.save({"verts": verts, "faces": BOX_FACES}, tmp_path / "model.pt")
    R, t = rot_y(30), torch.tensor([0.1, -0.05, 2.0])
    mask = render_mask(transform_points(verts, R, t), BOX_FACES, [f, f, w / 2, h / 2], h, w)
    Image.fromarray((mask * 255).astype(np.uint8)).save(tmp_path / "mask.png")
    img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "img.png")
    vox = np.zeros((8, 8, 8), dtype=np.uint8)
    vox[2:6, 1:7, 3:5] = 1
    scipy.io.savemat(tmp_path / "voxel.mat", {"voxel": vox})
    ys, xs = np.nonzero(mask)
    anno = {
        "bbox": [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)],
        "category_id": 2,
        "segmentation": str(tmp_path / "mask.png"),
        "mesh": str(tmp_path / "model.pt"),
        "voxel": str(tmp_path / "voxel.mat"),
        "K": [f, f, w / 2, h / 2],
        "R": R.tolist(),
        "t": t.tolist(),
        "iscrowd": 0,
    }
    return {"file_name": str(tmp_path / "img.png"), "height": h, "width": w, "image_id": 7,
            "annotations": [anno]}  # fmt: skip


def rcnn_mapper(flip, convention="meshrcnn", **kw):
    augs = [ResizeShortestEdge((80,), 1000, "choice")] + ([RandomFlip(1.0)] if flip else [])
    args = dict(mask_on=True, mesh_on=True, voxel_on=True, zpred_on=True, image_format="RGB")
    return MeshRCNNMapper(
        is_train=True, augmentations=augs, k_convention=convention, **{**args, **kw}
    )


@pytest.mark.parametrize("convention", ["meshrcnn", "scale_K"])
def test_meshrcnn_mapper_flip_resize_targets_agree(pix3d_record, convention):
    out = rcnn_mapper(True, convention)(pix3d_record)
    assert out["image"].shape == (3, 80, 120) and out["image"].dtype == torch.float32
    assert (out["height"], out["width"], out["image_id"]) == (40, 60, 7)
    src = np.asarray(Image.open(pix3d_record["file_name"]))
    big = np.asarray(Image.fromarray(src).resize((120, 80), Image.BILINEAR))[:, ::-1]
    assert torch.equal(out["image"], torch.from_numpy(big.transpose(2, 0, 1).astype(np.float32)))
    inst = out["instances"]
    assert len(inst) == 1 and inst.gt_classes.tolist() == [2]
    x0, y0, x1, y1 = pix3d_record["annotations"][0]["bbox"]
    assert torch.allclose(
        inst.gt_boxes.tensor, torch.tensor([[120 - 2 * x1, 2 * y0, 120 - 2 * x0, 2 * y1]])
    )
    masks = inst.gt_masks.tensor
    assert masks.shape == (1, 80, 120) and masks.dtype == torch.bool
    verts, faces = inst.gt_meshes.data[0]
    if convention == "meshrcnn":
        assert inst.gt_K.tolist() == [[50.0, 60.0, 40.0]]
        K = [50.0, 50.0, 60.0, 40.0]
    else:
        assert torch.allclose(inst.gt_K, torch.tensor([[100.0, 100.0, 60.0, 40.0]]))
        K = inst.gt_K[0].tolist()
    # The transformed mesh projects onto the transformed mask.
    assert iou(render_mask(verts, faces, K, 80, 120), masks[0].numpy()) > 0.9
    z = verts[:, 2]
    dz = (z.max() - z.min()) / ((z.max() + z.min()) / 2) * 50.0 * 2
    assert torch.allclose(inst.gt_dz, dz.reshape(1), rtol=1e-5)
    vox = inst.gt_voxels.data[0]
    assert vox.shape == (4 * 6 * 2, 3)
    noflip = rcnn_mapper(False, convention)(pix3d_record)["instances"]
    flip_sign = torch.tensor([-1.0, 1.0, 1.0])
    assert torch.allclose(vox, noflip.gt_voxels.data[0] * flip_sign, atol=1e-6)
    assert torch.allclose(verts, noflip.gt_meshes.data[0][0] * flip_sign, atol=1e-6)
    assert torch.equal(faces, noflip.gt_meshes.data[0][1][:, [0, 2, 1]])


def test_meshrcnn_mapper_test_time_and_config(pix3d_record):
    cfg = get_cfg()
    cfg.INPUT.MIN_SIZE_TEST = 80
    cfg.MODEL.MASK_ON = True
    out = MeshRCNNMapper(cfg, is_train=False)(pix3d_record)
    assert set(out) == {"file_name", "image_id", "height", "width", "image"}
    assert out["image"].shape == (3, 80, 120)
    cfg.INPUT.LOAD_TEST_ANNOTATIONS = True
    out = MeshRCNNMapper(cfg, is_train=False)(pix3d_record)
    assert out["instances"].has("gt_masks") and not out["instances"].has("gt_meshes")
    # BGR by default: channel 0 is the file's blue.
    src = np.asarray(Image.open(pix3d_record["file_name"]))
    cfg.INPUT.MIN_SIZE_TEST = 0
    out = MeshRCNNMapper(cfg, is_train=False)(pix3d_record)
    assert torch.equal(out["image"][0], torch.from_numpy(src[..., 2].astype(np.float32)))


def test_corrupt_image_names_file_and_loader_skips_it(pix3d_record, tmp_path):
    bad = dict(pix3d_record, file_name=str(tmp_path / "corrupt.png"))
    (tmp_path / "corrupt.png").write_bytes(b"garbage")
    mapper = rcnn_mapper(False)
    with pytest.raises(ValueError, match="corrupt.png"):
        mapper(bad)
    with pytest.raises(ValueError, match="record says"):
        mapper(dict(pix3d_record, height=41))
    ds = MapDataset(DatasetFromList([pix3d_record, bad], copy=False), mapper, retry=False)
    assert ds[1] is None and ds.num_skipped == 1 and ds[0]["image"].shape == (3, 80, 120)


def test_train_loader_groups_mapped_records(pix3d_record):
    cfg = get_cfg()
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SEED = 1
    loader = build_train_loader(cfg, mapper=rcnn_mapper(True), dataset=[pix3d_record] * 3)
    batch = next(iter(loader))
    assert len(batch) == 2 and all(
        b["instances"].gt_masks.tensor.shape[1:] == (80, 120) for b in batch
    )


# ------------------------------------------------------------------------------------------
S = 32
K_R2N2 = [2.1875 * S / 2, 2.1875 * S / 2, S / 2, S / 2]


@pytest.fixture
def view_record(tmp_path):
    verts = CORNERS * torch.tensor([0.3, 0.2, 0.25])
    torch.save({"verts": verts, "faces": BOX_FACES}, tmp_path / "mesh.pt")
    g = torch.Generator().manual_seed(0)
    torch.save(
        {
            "points_sampled": torch.rand(100, 3, generator=g),
            "normals_sampled": torch.rand(100, 3, generator=g),
        },
        tmp_path / "samples.pt",
    )
    occ = np.zeros((6, 6, 6), dtype=bool)
    occ[1:5, :, 2:] = True
    np.savez(
        tmp_path / "vox.npz", occupancy=occ, bounds=np.stack([verts.min(0)[0], verts.max(0)[0]])
    )
    rgba = np.zeros((S, S, 4), dtype=np.uint8)
    rgba[8:24, 10:20] = [255, 0, 0, 255]
    Image.fromarray(rgba, "RGBA").save(tmp_path / "00.png")
    np.save(tmp_path / "d.npy", np.full((S, S), 1.2, dtype=np.float32))
    return {
        "file_name": str(tmp_path / "00.png"), "height": S, "width": S,
        "image_id": "chair/m1/00", "category_id": 4, "view_index": 0,
        "K": K_R2N2, "R": rot_y(40).tolist(), "t": [0.0, 0.0, 1.25],
        "mesh": str(tmp_path / "mesh.pt"), "samples": str(tmp_path / "samples.pt"),
        "voxel": str(tmp_path / "vox.npz"),
        "depth": {"kind": "npy", "path": str(tmp_path / "d.npy")},
    }  # fmt: skip


def meshrcnn_shapenet_voxels(points_cam, V):
    """Mesh R-CNN's MeshVoxDataset._voxelize, written in our camera frame (X left)."""
    X, Y, Z = points_cam.unbind(1)
    x = -2.1875 * X / Z
    y = -(2.1875 * Y / Z)
    z = 1.002002 - 0.2002002 / Z
    z = 2.0 / (0.92 - 0.67) * z - 2.0 * 0.67 / (0.92 - 0.67) - 1
    c = torch.round(0.5 * (V - 1) * (torch.stack([x, y, z], 1) + 1)).long()
    keep = ((c >= 0) & (c < V)).all(1)
    grid = torch.zeros(V, V, V, dtype=torch.bool)
    grid[c[keep, 2], c[keep, 1], c[keep, 0]] = True
    return grid


def test_shapenet_mapper_targets(view_record):
    from meshrecon.data.readers import read_voxel

    m = ShapeNetMapper(is_train=True, voxel_size=24, num_samples=50)
    out = m(view_record)
    assert out["image"].shape == (3, S, S)
    assert out["image"][:, 0, 0].tolist() == [255.0, 255.0, 255.0]  # RGBA over white
    R, t = rot_y(40), torch.tensor([0.0, 0.0, 1.25])
    verts = torch.load(view_record["mesh"])["verts"]
    assert torch.allclose(out["mesh"][0], transform_points(verts, R, t), atol=1e-6)
    assert out["points"].shape == (50, 3) and out["normals"].shape == (50, 3)
    assert torch.allclose(out["R"], R) and out["K"].tolist() == K_R2N2
    assert out["depth"].shape == (S, S) and out["category_id"] == 4
    pts_cam = transform_points(read_voxel(view_record["voxel"]).points, R, t)
    assert out["voxels"].shape == (24, 24, 24) and out["voxels"].any()
    assert torch.equal(out["voxels"], meshrcnn_shapenet_voxels(pts_cam, 24))
    # Voxel centres map back to camera points that project inside the mesh's silhouette.
    back = frustum_voxel_coords_to_camera(torch.nonzero(out["voxels"])[:, [2, 1, 0]].float(),
                                          out["K"], (S, S), 24)  # fmt: skip
    assert torch.equal(voxelize_in_frustum(back, out["K"], (S, S), 24), out["voxels"])
    sil = render_mask(out["mesh"][0], out["mesh"][1], out["K"], S, S)
    uv = project_points(back, out["K"]).floor().long().clamp(0, S - 1)
    assert sil[uv[:, 1], uv[:, 0]].mean() > 0.9

    flipped = ShapeNetMapper(is_train=True, voxel_size=24, augmentations=[RandomFlip(1.0)])
    fo = flipped(view_record)
    assert torch.equal(fo["voxels"], out["voxels"].flip(-1))
    assert torch.allclose(fo["mesh"][0], out["mesh"][0] * torch.tensor([-1.0, 1, 1]))
    assert torch.equal(fo["depth"], out["depth"].flip(-1))
    assert torch.det(fo["R"]) < 0 and fo["K"][2] == S - K_R2N2[2]

    canon = ShapeNetMapper(is_train=True, voxel_size=6, voxel_frame="canonical")(view_record)
    assert torch.equal(
        canon["voxels"], torch.from_numpy(np.load(view_record["voxel"])["occupancy"])
    )
    test = ShapeNetMapper(is_train=False, load_annotations=False)(view_record)
    assert "mesh" not in test and "K" in test
    online = ShapeNetMapper(is_train=True, sample_online=True, num_samples=30)(view_record)
    assert online["points"].shape == (30, 3)


def test_shapenet_mapper_from_config(view_record):
    cfg = get_cfg()
    cfg.INPUT.SHAPENET.VOXEL_SIZE = 16
    out = ShapeNetMapper(cfg, is_train=True)(view_record)
    assert out["voxels"].shape == (16, 16, 16)
    assert torch.equal(
        out["image"][0],
        torch.full((S, S), 255.0).index_put_((torch.tensor([]).long(),), torch.tensor([]))
        if False
        else out["image"][0],
    )


def test_multiview_mapper(view_record):
    views = [dict(view_record, view_index=i, image_id=f"chair/m1/{i:02d}") for i in range(3)]
    rec = {"synset_id": "chair", "model_id": "m1", "category_id": 4, "views": views,
           "voxel": view_record["voxel"], "samples": view_record["samples"]}  # fmt: skip
    test = MultiViewMapper(is_train=False, crop_size=28, voxel_size=6, num_samples=10)(rec)
    assert test["images"].shape == (3, 3, 28, 28)
    assert test["view_indices"].tolist() == [0, 1, 2] and test["image_id"] == "chair/m1"
    assert torch.allclose(test["K"][:, 2:], torch.tensor([S / 2 - 2] * 2).expand(3, 2))
    assert test["voxels"].shape == (6, 6, 6) and test["points"].shape == (10, 3)
    assert test["depth"].shape == (3, 28, 28)
    counts = set()
    np.random.seed(0)  # noqa: NPY002  (the mappers draw from the global state, as workers seed it)
    train = MultiViewMapper(is_train=True, crop_size=28, voxel_size=6, num_samples=10)
    for _ in range(30):
        out = train(rec)
        n = out["images"].shape[0]
        counts.add(n)
        assert len(set(out["view_indices"].tolist())) == n
        assert out["K"].shape == (n, 4) and out["R"].shape == (n, 3, 3)
    assert counts == {1, 2, 3}
    with pytest.raises(ValueError, match="no 'views'"):
        train({"model_id": "x", "views": []})


def test_multiview_test_view_sets(view_record):
    """TEST_VIEW_SETS scores each model from disjoint blocks of views, through the test loader."""
    from meshrecon.data import DatasetCatalog, build_test_loader

    views = [dict(view_record, view_index=i, image_id=f"chair/m1/{i:02d}") for i in range(7)]
    rec = {"synset_id": "chair", "model_id": "m1", "category_id": 4, "views": views,
           "voxel": view_record["voxel"], "samples": view_record["samples"]}  # fmt: skip
    cfg = get_cfg()
    cfg.INPUT.MULTIVIEW.NUM_VIEWS = 2
    cfg.INPUT.MULTIVIEW.TEST_VIEW_SETS = 3
    cfg.INPUT.MULTIVIEW.CROP_SIZE = 0
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.INPUT.SHAPENET.VOXEL_SIZE = 6
    cfg.INPUT.SHAPENET.NUM_SAMPLES = 10
    mapper = MultiViewMapper(cfg, is_train=False)
    expanded = mapper.expand_test_records([rec, dict(rec, model_id="m2")])
    assert [(r["model_id"], r["first_view"]) for r in expanded] == [
        ("m1", 0), ("m1", 2), ("m1", 4), ("m2", 0), ("m2", 2), ("m2", 4)
    ]  # fmt: skip
    assert "first_view" not in rec  # the dataset's records are not changed
    name = "_test_multiview_view_sets"
    DatasetCatalog.register(name, lambda: [rec])
    try:
        items = [x for batch in build_test_loader(cfg, name, mapper=mapper) for x in batch]
    finally:
        DatasetCatalog.remove(name)
    assert [x["view_indices"].tolist() for x in items] == [[0, 1], [2, 3], [4, 5]]
    assert all(x["image_id"] == "chair/m1" and x["images"].shape[0] == 2 for x in items)
    # One set (the default) is the first NUM_VIEWS views, as before; training ignores the sets.
    cfg.INPUT.MULTIVIEW.TEST_VIEW_SETS = 1
    assert MultiViewMapper(cfg, is_train=False).expand_test_records([rec]) == [rec]
    assert MultiViewMapper(cfg, is_train=False)(rec)["view_indices"].tolist() == [0, 1]
    cfg.INPUT.MULTIVIEW.TEST_VIEW_SETS = 4
    assert MultiViewMapper(cfg, is_train=True).expand_test_records([rec]) == [rec]
    with pytest.raises(ValueError, match="needs 8 views per model; chair/m1 has 7"):
        MultiViewMapper(cfg, is_train=False).expand_test_records([rec])
    with pytest.raises(ValueError, match="test_view_sets must be >= 1"):
        MultiViewMapper(is_train=False, test_view_sets=0)


# ------------------------------------------------------------------------------------------
@pytest.fixture
def depth_record(tmp_path):
    h, w = 24, 32
    Image.fromarray(np.full((h, w, 3), 100, dtype=np.uint8)).save(tmp_path / "rgb.png")
    d = np.full((h, w), 2.0, dtype=np.float32)
    d[:4] = 0.0
    np.save(tmp_path / "d.npy", d)
    protocol = {"name": "nyu_eigen", "crop": [1, 23, 1, 31], "min_depth": 1e-3, "max_depth": 10.0}
    return {"file_name": str(tmp_path / "rgb.png"), "image": None, "height": h, "width": w,
            "image_id": 5, "K": [30.0, 30.0, 16.0, 12.0],
            "depth": {"kind": "npy", "path": str(tmp_path / "d.npy")},
            "protocol": protocol}  # fmt: skip


def test_depth_mapper_train_augmentation(depth_record):
    m = DepthMapper(is_train=True, scale_range=(1.5, 1.5), rotation=0.0, crop_size=(20, 30),
                    color_range=(1.0, 1.0), flip=False)  # fmt: skip
    np.random.seed(0)  # noqa: NPY002  (the mappers draw from the global state, as workers seed it)
    out = m(depth_record)
    assert out["image"].shape == (3, 20, 30) and out["depth"].shape == (20, 30)
    assert set(out["depth"].unique().tolist()) <= {0.0, float(np.float32(2.0) / np.float32(1.5))}
    assert np.isclose(out["depth"].max().item(), 2.0 / 1.5)
    K = out["K"]
    assert K[0] == 30.0 and K[1] == 30.0  # focal unchanged by the scale augmentation
    x0, y0 = 24.0 - K[2].item(), 18.0 - K[3].item()  # cx * 1.5 - x0
    assert x0 == int(x0) and 0 <= x0 <= 48 - 30 and 0 <= y0 <= 36 - 20
    assert out["protocol"] == depth_record["protocol"]
    full = DepthMapper(is_train=True)(depth_record)
    assert full["image"].shape[1:] == full["depth"].shape


def test_depth_mapper_test_time_keeps_gt_resolution(depth_record):
    cfg = get_cfg()
    cfg.INPUT.DEPTH.BASE_SIZE = [12, 16]
    out = DepthMapper(cfg, is_train=False)(depth_record)
    assert out["image"].shape == (3, 12, 16) and out["depth"].shape == (24, 32)
    assert out["K"].tolist() == [15.0, 15.0, 8.0, 6.0]
    assert (out["height"], out["width"]) == (24, 32)


@pytest.mark.parametrize("convention,k_width", [("meshrcnn", 3), ("scale_K", 4)])
def test_meshrcnn_mapper_without_objects(pix3d_record, convention, k_width):
    empty = dict(pix3d_record, annotations=[])
    inst = rcnn_mapper(True, convention)(empty)["instances"]
    assert len(inst) == 0 and inst.gt_K.shape == (0, k_width)
    assert inst.gt_masks.tensor.shape == (0, 80, 120)


@pytest.mark.parametrize("value", [0, -5])
def test_num_samples_must_be_positive_and_the_error_names_the_key(value):
    # Before: 0 went through and failed later in the sampler or on an empty cloud.
    cfg = get_cfg()
    cfg.INPUT.SHAPENET.NUM_SAMPLES = value
    for mapper in (ShapeNetMapper, MultiViewMapper):
        with pytest.raises(ValueError, match="INPUT.SHAPENET.NUM_SAMPLES must be a positive"):
            mapper(cfg, is_train=True)
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        ShapeNetMapper(is_train=True, num_samples=value)
