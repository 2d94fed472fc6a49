"""Degenerate annotations: caught by the mappers, skipped, named and counted; never a false alarm.

Written as the mistake: each record here is valid but for one degenerate value (a zero rotation,
a zero translation, an absurd focal length, coincident mesh vertices...). Before the mapper
checks such a record passed the mapper and a Mesh R-CNN training failed at iteration 0 inside
its mesh loss ("meshes contain NaN or infinite vertex coordinates"), naming no sample.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image, ImageDraw

from meshrecon.config import get_cfg
from meshrecon.data import DatasetCatalog, DatasetFromList, MapDataset, MetadataCatalog
from meshrecon.data.datasets.shapenet import group_views_by_model
from meshrecon.data.mappers import DepthMapper, MeshRCNNMapper, MultiViewMapper, ShapeNetMapper
from meshrecon.data.multiview_depth_mapper import MultiViewDepthMapper
from meshrecon.render.cameras import project_points, transform_points

H, W, F = 64, 96, 60.0
CORNERS = torch.tensor([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]).float()
BOX_FACES = torch.tensor(
    [
        [0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
        [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3],
    ]
)  # fmt: skip
NAN = float("nan")


def rot_y(deg: float) -> torch.Tensor:
    a = math.radians(deg)
    return torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])


@contextlib.contextmanager
def captured_warnings(name: str):
    """WARNING messages logged to ``name`` (meshrecon's loggers stop propagating to the root
    logger once a trainer has set them up, so caplog would miss them)."""
    messages: list[str] = []

    class _Handler(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    handler = _Handler(logging.WARNING)
    logging.getLogger(name).addHandler(handler)
    try:
        yield messages
    finally:
        logging.getLogger(name).removeHandler(handler)


# ---------------------------------------------------------------------------- Pix3D-style
def write_pix3d_records(root, n: int) -> list[dict]:
    """``n`` valid detection records: a box mesh in front of the camera, its mask and voxels."""
    verts = CORNERS * torch.tensor([0.3, 0.25, 0.2])
    torch.save({"verts": verts, "faces": BOX_FACES}, root / "model.pt")
    vox = np.zeros((8, 8, 8), dtype=np.uint8)
    vox[2:6, 1:7, 3:5] = 1
    scipy.io.savemat(root / "voxel.mat", {"voxel": vox})
    K = [F, F, W / 2, H / 2]
    records = []
    for i in range(n):
        R, t = rot_y(20 + 25 * i), torch.tensor([0.3 * (i % 3 - 1), 0.1 * (i % 2), 2.5])
        uv = project_points(transform_points(verts, R, t), torch.tensor(K)).numpy()
        img = Image.new("L", (W, H), 0)
        draw = ImageDraw.Draw(img)
        for f in BOX_FACES.tolist():
            draw.polygon([tuple(uv[j]) for j in f], fill=255)
        mask = np.asarray(img) > 0
        Image.fromarray((mask * 255).astype(np.uint8)).save(root / f"mask{i}.png")
        rgb = np.random.default_rng(i).integers(0, 60, (H, W, 3), dtype=np.uint8)
        rgb[mask] += 150
        Image.fromarray(rgb).save(root / f"img{i}.png")
        ys, xs = np.nonzero(mask)
        anno = {
            "bbox": [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)],
            "category_id": 2,
            "segmentation": str(root / f"mask{i}.png"),
            "mesh": str(root / "model.pt"),
            "voxel": str(root / "voxel.mat"),
            "K": K,
            "R": R.tolist(),
            "t": t.tolist(),
            "iscrowd": 0,
        }
        records.append(
            {
                "file_name": str(root / f"img{i}.png"),
                "height": H,
                "width": W,
                "image_id": i,
                "annotations": [anno],
            }  # fmt: skip
        )
    return records


def _mesh_file(root, name: str, verts: torch.Tensor) -> str:
    path = str(root / f"{name}.pt")
    torch.save({"verts": verts, "faces": BOX_FACES}, path)
    return path


def degenerate_pix3d_records(root, base: dict) -> dict[str, tuple[dict, str]]:
    """{kind: (a copy of ``base`` with one degenerate value, expected message)}."""
    nan_verts = CORNERS * 0.2
    nan_verts[3, 1] = NAN
    nan_voxels = str(root / "nan_voxels.pt")
    torch.save({"voxel_coords": torch.tensor([[0.0, 0.0, 0.0], [NAN, 0.1, 0.1]])}, nan_voxels)
    changes = {
        "zero_R": ({"R": [[0.0] * 3] * 3}, "R is not a rotation"),
        "reflection_R": ({"R": [[-1.0, 0, 0], [0, 1, 0], [0, 0, 1]]}, r"det -1"),
        "nan_R": ({"R": [[NAN] * 3] * 3}, "R has non-finite entries"),
        "scaled_R": ({"R": (2 * rot_y(30)).tolist()}, "R is not a rotation"),
        "zero_t": ({"t": [0.0, 0.0, 0.0]}, "t is zero"),
        "inf_t": ({"t": [0.0, math.inf, 2.5]}, "t has non-finite entries"),
        "behind_camera": ({"t": [0.0, 0.0, -2.5]}, "not in front of the camera"),
        "absurd_focal": ({"K": [1e12, 1e12, W / 2, H / 2]}, "focal length fx = 1e\\+12 px"),
        "zero_focal": ({"K": [0.0, 0.0, W / 2, H / 2]}, "focal length fx = 0 px is absurd"),
        "negative_focal": ({"K": [-60.0, -60.0, W / 2, H / 2]}, "is absurd"),
        "nan_principal_point": ({"K": [F, F, NAN, H / 2]}, "K must be 4 finite numbers"),
        "coincident_verts": (
            {"mesh": _mesh_file(root, "coincident", torch.full((8, 3), 0.1))},
            "all 8 mesh vertices coincide",
        ),
        "nan_verts": ({"mesh": _mesh_file(root, "nan", nan_verts)}, "non-finite coordinates"),
        "huge_verts": ({"mesh": _mesh_file(root, "huge", CORNERS * 1e18)}, "beyond 1e\\+06"),
        "zero_area_faces": (
            {"mesh": _mesh_file(root, "line", torch.linspace(-0.2, 0.2, 8)[:, None].expand(8, 3))},
            "all 12 faces of the mesh have zero area",
        ),
        "nan_voxels": ({"voxel": nan_voxels}, "voxels have non-finite coordinates"),
    }
    out = {}
    for kind, (anno_changes, message) in changes.items():
        record = copy.deepcopy(base)
        record["image_id"] = f"bad_{kind}"
        record["annotations"][0].update(anno_changes)
        out[kind] = (record, message)
    return out


def rcnn_mapper(**kw) -> MeshRCNNMapper:
    on = dict(mask_on=True, mesh_on=True, voxel_on=True, zpred_on=True, image_format="RGB")
    return MeshRCNNMapper(is_train=True, augmentations=[], **{**on, **kw})


def test_meshrcnn_mapper_refuses_each_degenerate_kind_naming_the_record(tmp_path):
    good = write_pix3d_records(tmp_path, 1)[0]
    for convention in ("meshrcnn", "scale_K"):
        assert len(rcnn_mapper(k_convention=convention)(good)["instances"]) == 1
    for kind, (record, message) in degenerate_pix3d_records(tmp_path, good).items():
        for convention in ("meshrcnn", "scale_K"):
            with pytest.raises(ValueError, match=message) as err:
                rcnn_mapper(k_convention=convention)(record)
            assert "img0.png" in str(err.value), kind  # names the image of the record


def test_camera_checks_need_only_what_the_heads_use(tmp_path):
    """A box-and-mask model reads K but neither R, t nor the mesh."""
    good = write_pix3d_records(tmp_path, 1)[0]
    bad = degenerate_pix3d_records(tmp_path, good)
    boxes_only = rcnn_mapper(mesh_on=False, voxel_on=False, zpred_on=False)
    for kind in ("zero_R", "zero_t", "nan_verts", "nan_voxels"):
        assert len(boxes_only(bad[kind][0])["instances"]) == 1
    with pytest.raises(ValueError, match="absurd"):
        boxes_only(bad["absurd_focal"][0])


# ------------------------------------------------------------------------- ShapeNet-style
S = 32
K_R2N2 = [2.1875 * S / 2, 2.1875 * S / 2, S / 2, S / 2]


def write_view_record(root) -> dict:
    verts = CORNERS * torch.tensor([0.3, 0.2, 0.25])
    torch.save({"verts": verts, "faces": BOX_FACES}, root / "mesh.pt")
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(100, 3, generator=g) * 0.4 - 0.2
    torch.save({"points_sampled": pts, "normals_sampled": torch.rand(100, 3, generator=g)},
               root / "samples.pt")  # fmt: skip
    occ = np.zeros((6, 6, 6), dtype=bool)
    occ[1:5, :, 2:] = True
    bounds = np.stack([verts.min(0)[0], verts.max(0)[0]])
    np.savez(root / "vox.npz", occupancy=occ, bounds=bounds)
    np.savez(root / "empty.npz", occupancy=np.zeros_like(occ), bounds=bounds)
    rgba = np.zeros((S, S, 4), dtype=np.uint8)
    rgba[8:24, 10:20] = [255, 0, 0, 255]
    Image.fromarray(rgba, "RGBA").save(root / "00.png")
    depth = np.zeros((S, S), dtype=np.float32)
    depth[8:24, 10:20] = 1.2
    np.save(root / "d.npy", depth)
    np.save(root / "d0.npy", np.zeros((S, S), dtype=np.float32))
    return {
        "file_name": str(root / "00.png"), "height": S, "width": S,
        "image_id": "chair/m1/00", "category_id": 4, "view_index": 0,
        "synset_id": "chair", "model_id": "m1",
        "K": K_R2N2, "R": rot_y(40).tolist(), "t": [0.0, 0.0, 1.25],
        "mesh": str(root / "mesh.pt"), "samples": str(root / "samples.pt"),
        "voxel": str(root / "vox.npz"),
        "depth": {"kind": "npy", "path": str(root / "d.npy")},
    }  # fmt: skip


def test_shape_mappers_refuse_degenerate_views_and_models(tmp_path):
    view = write_view_record(tmp_path)
    nan_samples = str(tmp_path / "nan_samples.pt")
    torch.save({"points_sampled": torch.full((10, 3), NAN), "normals_sampled": torch.ones(10, 3)},
               nan_samples)  # fmt: skip
    single = ShapeNetMapper(is_train=True, voxel_size=24, num_samples=50)
    out = single(view)
    assert out["voxels"].any() and torch.isfinite(out["points"]).all()
    cases = {
        "zero R": ({"R": [[0.0] * 3] * 3}, "R is not a rotation"),
        "zero t": ({"t": [0.0, 0.0, 0.0]}, "t is zero"),
        "absurd focal": ({"K": [1e-3, 1e-3, S / 2, S / 2]}, "focal length fx = 0.001 px"),
        "NaN samples": ({"samples": nan_samples}, "surface points have non-finite"),
        # Seen from 100 units away the model leaves the frustum's depth range: no voxel.
        "empty frustum voxels": ({"t": [0.0, 0.0, 100.0]}, "voxel target is empty"),
        "no valid depth": (
            {"depth": {"kind": "npy", "path": str(tmp_path / "d0.npy")}},
            "depth map has no valid pixel",
        ),
    }
    for name, (changes, message) in cases.items():
        with pytest.raises(ValueError, match=message) as err:
            single({**view, **changes})
        assert "chair/m1/00" in str(err.value), name

    model = group_views_by_model([view, {**view, "view_index": 1, "image_id": "chair/m1/01"}])[0]
    multi = MultiViewMapper(is_train=True, crop_size=0, num_samples=50, voxel_size=6)
    assert multi(model)["voxels"].any()
    reflected = copy.deepcopy(model)
    reflected["views"][1]["R"] = [[-1.0, 0, 0], [0, 1, 0], [0, 0, 1]]
    with pytest.raises(ValueError, match="view chair/m1/01 of chair/m1: R is not a rotation"):
        MultiViewMapper(is_train=False, crop_size=0, num_samples=50, voxel_size=6)(reflected)
    with pytest.raises(ValueError, match="model chair/m1: the voxel target is empty"):
        multi({**model, "voxel": str(tmp_path / "empty.npz")})
    coincident = _mesh_file(tmp_path, "coincident", torch.full((8, 3), 0.1))
    no_depth = copy.deepcopy(model)
    for v in no_depth["views"]:
        v.pop("depth")
    with pytest.raises(ValueError, match="model chair/m1: all 8 mesh vertices coincide"):
        MultiViewDepthMapper(is_train=True, crop_size=0, num_samples=50, voxel_size=6)(
            {**no_depth, "mesh": coincident}
        )


def test_depth_mapper_refuses_an_absurd_focal_and_an_empty_depth_map(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    depth = np.full((12, 16), 2.0, dtype=np.float32)
    depth[0, 0] = NAN  # one missing measurement is normal: read as 0 (invalid)
    np.save(tmp_path / "d.npy", depth)
    np.save(tmp_path / "d0.npy", np.full((12, 16), NAN, dtype=np.float32))
    record = {
        "file_name": str(tmp_path / "rgb.png"), "height": 12, "width": 16, "image_id": "frame7",
        "K": [13.0, 13.0, 8.0, 6.0], "depth": {"kind": "npy", "path": str(tmp_path / "d.npy")},
    }  # fmt: skip
    mapper = DepthMapper(is_train=True, scale_range=(1.0, 1.0), rotation=0, flip=False)
    assert float(mapper(record)["depth"][0, 0]) == 0.0
    with pytest.raises(ValueError, match="depth record frame7: focal length fx = inf|K must be"):
        mapper({**record, "K": [math.inf, 13.0, 8.0, 6.0]})
    with pytest.raises(ValueError, match="depth record frame7: focal length fy = -13 px"):
        mapper({**record, "K": [13.0, -13.0, 8.0, 6.0]})
    empty = {**record, "depth": {"kind": "npy", "path": str(tmp_path / "d0.npy")}}
    with pytest.raises(ValueError, match="depth record frame7: the depth map has no valid pixel"):
        mapper(empty)


def test_map_dataset_names_the_skipped_record_and_counts_it(tmp_path):
    good = write_pix3d_records(tmp_path, 1)[0]
    bad, _ = degenerate_pix3d_records(tmp_path, good)["coincident_verts"]
    ds = MapDataset(DatasetFromList([good, bad], copy=False), rcnn_mapper(), retry=False)
    with captured_warnings("meshrecon.data.common") as messages:
        assert ds[0] is not None and ds[1] is None
    assert ds.num_skipped == 1
    assert len(messages) == 1 and "image_id 'bad_coincident_verts'" in messages[0]
    assert "1 skipped so far" in messages[0] and "mesh vertices coincide" in messages[0]


# ------------------------------------------------------------------- training on a fixture
def tiny_meshrcnn_cfg(dataset: str, output_dir: str, max_iter: int):
    """The Pix3D Mesh R-CNN structure (R50-FPN) at 1/16 width: a few seconds per step."""
    cfg = get_cfg()
    cfg.merge_from_file("configs/pix3d/Base-MeshRCNN-FPN.yaml")
    opts = {
        "MODEL.WEIGHTS": "", "MODEL.DEVICE": "cpu",
        "MODEL.RESNETS.WIDTH_PER_GROUP": 4, "MODEL.RESNETS.STEM_OUT_CHANNELS": 8,
        "MODEL.RESNETS.RES2_OUT_CHANNELS": 16, "MODEL.FPN.OUT_CHANNELS": 16,
        "MODEL.ROI_BOX_HEAD.FC_DIM": 32, "MODEL.ROI_MASK_HEAD.CONV_DIM": 8,
        "MODEL.ROI_Z_HEAD.FC_DIM": 16, "MODEL.ROI_VOXEL_HEAD.CONV_DIM": 8,
        "MODEL.ROI_VOXEL_HEAD.NUM_CONV": 1, "MODEL.ROI_VOXEL_HEAD.POOLER_RESOLUTION": 6,
        "MODEL.ROI_VOXEL_HEAD.NUM_DEPTH": 12, "MODEL.ROI_VOXEL_HEAD.CLS_AGNOSTIC_VOXEL": True,
        "MODEL.ROI_VOXEL_HEAD.CUBIFY_THRESH": 0.2, "MODEL.ROI_MESH_HEAD.NUM_STAGES": 1,
        "MODEL.ROI_MESH_HEAD.NUM_GRAPH_CONVS": 1, "MODEL.ROI_MESH_HEAD.GRAPH_CONV_DIM": 8,
        "MODEL.ROI_MESH_HEAD.GT_NUM_SAMPLES": 100, "MODEL.ROI_MESH_HEAD.PRED_NUM_SAMPLES": 100,
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": 16, "MODEL.ROI_HEADS.NUM_CLASSES": 9,
        "MODEL.RPN.POST_NMS_TOPK_TRAIN": 50, "MODEL.VOXEL_ON": True, "MODEL.MESH_ON": True,
        "MODEL.ZPRED_ON": True, "INPUT.MIN_SIZE_TRAIN": (H,), "INPUT.MAX_SIZE_TRAIN": W,
        "DATASETS.TRAIN": (dataset,), "DATASETS.TEST": (), "DATALOADER.NUM_WORKERS": 0,
        "SOLVER.IMS_PER_BATCH": 2, "SOLVER.MAX_ITER": max_iter, "SOLVER.WARMUP_ITERS": 0,
        # The base config's LR 0.02 makes this tiny network diverge in one step.
        "SOLVER.BASE_LR": 0.002, "SOLVER.CLIP_GRADIENTS.ENABLED": True,
        "SOLVER.CLIP_GRADIENTS.CLIP_TYPE": "full_model",
        "SOLVER.STEPS": (), "SOLVER.CHECKPOINT_PERIOD": 1000, "SEED": 3,
        "OUTPUT_DIR": output_dir,
    }  # fmt: skip
    for key, value in opts.items():
        cfg.merge_from_list([key, str(value) if isinstance(value, tuple) else value])
    return cfg


def test_training_with_one_degenerate_record_of_each_kind_finishes_and_names_them(tmp_path):
    from meshrecon.engine import DefaultTrainer

    valid = write_pix3d_records(tmp_path, 2)
    every_kind = degenerate_pix3d_records(tmp_path, valid[0])
    # The kinds of the report; the mapper test above covers the others.
    kinds = ("zero_R", "zero_t", "absurd_focal", "coincident_verts", "nan_verts",
             "zero_area_faces", "nan_voxels")  # fmt: skip
    bad = {kind: every_kind[kind][0] for kind in kinds}
    name = "test_degenerate_pix3d_fixture"
    if name in DatasetCatalog:
        DatasetCatalog.remove(name)
    records = valid + list(bad.values())
    DatasetCatalog.register(name, lambda: copy.deepcopy(records))
    MetadataCatalog.get(name).set(evaluator_type="pix3d", thing_classes=[str(i) for i in range(9)])
    # Every index is drawn once in the first epoch (a permutation), plus random replacements.
    max_iter = (len(records) + 1) // 2
    cfg = tiny_meshrcnn_cfg(name, str(tmp_path / "out"), max_iter)
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=False)
    with captured_warnings("meshrecon.data.common") as messages:
        trainer.train()
    assert trainer.iter == max_iter and (tmp_path / "out" / "model_final.pth").exists()
    skips = [m for m in messages if m.startswith("Skipping sample")]
    for kind in bad:
        assert any(f"image_id 'bad_{kind}'" in m for m in skips), (kind, skips)
    assert not any(f"image_id {i}," in m for m in skips for i in range(2))  # no valid one
    count = trainer.storage.history("data/skipped_samples").latest()
    assert count == len(skips) >= len(bad)
    assert f"({len(skips)} skipped so far)" in skips[-1]
    # Every step was finite: nothing reached the losses.
    assert "train/skipped_iterations" not in trainer.storage.histories()
    DatasetCatalog.remove(name)


# ------------------------------------------------------- no false positive on real data
def _mappers(kind: str) -> list:
    if kind == "pix3d":
        out = []
        for convention in ("meshrcnn", "scale_K"):
            cfg = get_cfg()
            cfg.MODEL.MESH_ON = cfg.MODEL.VOXEL_ON = cfg.MODEL.ZPRED_ON = True
            cfg.INPUT.K_CONVENTION = convention
            cfg.INPUT.LOAD_TEST_ANNOTATIONS = True
            # Small images: the checks do not depend on the size, the time does.
            cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TEST = (64,), 64
            out += [MeshRCNNMapper(cfg, is_train=True), MeshRCNNMapper(cfg, is_train=False)]
        return out
    cfg = get_cfg()
    cfg.INPUT.SHAPENET.NUM_SAMPLES = 100
    cfg.INPUT.LOAD_TEST_ANNOTATIONS = True
    if kind == "shapenet":
        return [ShapeNetMapper(cfg, is_train=True), ShapeNetMapper(cfg, is_train=False)]
    if kind == "multiview":
        return [
            MultiViewMapper(cfg, is_train=True),
            MultiViewMapper(cfg, is_train=False),
            MultiViewDepthMapper(cfg, is_train=True),
        ]
    return [DepthMapper(cfg, is_train=True), DepthMapper(cfg, is_train=False)]


def assert_nothing_skipped(records: list[dict], kind: str, first: int = 50) -> None:
    """Map the first records with every mapper of their format: none may be skipped."""
    assert records
    for mapper in _mappers(kind):
        ds = MapDataset(DatasetFromList(records[:first], copy=False), mapper, retry=False)
        with captured_warnings("meshrecon.data.common") as messages:
            outputs = [ds[i] for i in range(len(ds))]
        assert ds.num_skipped == 0 and all(o is not None for o in outputs), messages


def test_no_valid_sample_of_the_format_fixtures_is_skipped(tmp_path):
    from fixtures_depthdata import write_nyu_dataset
    from fixtures_realdata import write_pix3d, write_r2n2

    from meshrecon.data.datasets import nyu
    from meshrecon.data.datasets.pix3d import load_pix3d_json, load_pix3d_split
    from meshrecon.data.datasets.shapenet import load_r2n2

    pix3d = write_pix3d(tmp_path)
    assert_nothing_skipped(
        load_pix3d_json(os.path.join(pix3d["dir"], "pix3d.json"), pix3d["dir"]), "pix3d"
    )
    split = os.path.join(pix3d["dir"], "pix3d_s1_train.json")
    assert_nothing_skipped(load_pix3d_split(split, pix3d["dir"]), "pix3d")
    r2n2 = write_r2n2(tmp_path, {"03001627": ["c0", "c1"], "02691156": ["p0"]}, num_views=4)
    views = load_r2n2(r2n2["dir"], "all")
    assert_nothing_skipped(views, "shapenet")
    assert_nothing_skipped(group_views_by_model(views), "multiview")
    nyu_files = write_nyu_dataset(str(tmp_path / "nyu"))
    records = nyu.load_nyu_depth_v2(nyu_files["mat"], nyu_files["splits"], "train")
    assert_nothing_skipped(records, "depth")
    assert_nothing_skipped(_kitti_records(tmp_path / "kitti"), "depth")


def _kitti_records(root) -> list[dict]:
    """Two KITTI frames (1242 x 375 scaled by 1/18, P with it) with Velodyne scans."""
    from fixtures_depthdata import (
        KITTI_P_RECT_02,
        KITTI_P_RECT_03,
        write_kitti_calib,
        write_kitti_frame,
    )

    from meshrecon.data.datasets import kitti

    size, folder = (69, 21), "2011_09_26/2011_09_26_drive_0002_sync"
    scale = np.array([[1 / 18], [1 / 18], [1.0]])
    P2, P3 = KITTI_P_RECT_02 * scale, KITTI_P_RECT_03 * scale
    write_kitti_calib(os.path.join(root, "2011_09_26"), size=size, P_rect_02=P2, P_rect_03=P3)
    rng = np.random.default_rng(0)
    for frame in (5, 6):
        scan = np.stack([rng.uniform(2, 40, 500), rng.uniform(-8, 8, 500),
                         rng.uniform(-1.5, 1, 500)], 1)  # fmt: skip
        write_kitti_frame(str(root), folder, frame, size, scan)
    split = os.path.join(root, "split.txt")
    with open(split, "w") as f:
        f.write(f"{folder} 0000000005 l\n{folder} 0000000006 r\n")
    return kitti.load_kitti_eigen(str(root), split)


def test_no_valid_sample_of_the_meshrcnn_shapenet_layout_is_skipped(tmp_path):
    from fixtures_realdata import write_meshrcnn_shapenet

    from meshrecon.data.datasets.shapenet import load_meshrcnn_shapenet

    splits = {"train": {"03001627": {"c0": [0, 1], "c1": [2]}}, "val": {}, "test": {}}
    written = write_meshrcnn_shapenet(tmp_path, splits, num_views=24)
    views = load_meshrcnn_shapenet(written["dir"], written["split_file"], "train")
    # Its voxels are Mesh R-CNN's voxel_coords (frustum voxels), not canonical grids.
    assert_nothing_skipped(views, "shapenet")


def _tiny_synthetic(root, **kwargs):
    from meshrecon.data.datasets.synthetic import SyntheticConfig

    sizes = dict(scale=0.02, pix3d_image_size=(96, 72), nyu_image_size=(64, 48))
    return SyntheticConfig(root=str(root), **{**sizes, **kwargs})


def test_no_valid_sample_of_the_synthetic_pix3d_and_nyu_splits_is_skipped(tmp_path):
    from meshrecon.data.datasets.synthetic import load_synthetic

    config = _tiny_synthetic(tmp_path)
    assert_nothing_skipped(load_synthetic("pix3d", "train", config), "pix3d")
    assert_nothing_skipped(load_synthetic("nyu", "test", config), "depth")


@pytest.mark.slow
def test_no_valid_sample_of_the_synthetic_shapenet_split_is_skipped(tmp_path):
    from meshrecon.data.datasets.synthetic import load_synthetic

    views = load_synthetic("shapenet", "val", _tiny_synthetic(tmp_path, shapenet_views=2))
    assert_nothing_skipped(views, "shapenet")
    assert_nothing_skipped(group_views_by_model(views), "multiview")
