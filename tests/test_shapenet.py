"""ShapeNet loaders: R2N2's release and Mesh R-CNN's preprocessing, written by fixtures_realdata."""

import json
import logging
import math
import os
import random

import pytest
import torch
from fixtures_realdata import (
    BLENDER_INTRINSIC,
    meshrcnn_extrinsic,
    meshrcnn_project_pixels,
    write_meshrcnn_shapenet,
    write_r2n2,
)

from meshrecon.data import DatasetCatalog, MetadataCatalog
from meshrecon.data.datasets.shapenet import (
    R2N2_CLASSES,
    SHAPENET_SYNSETS,
    SYNSET_TO_MESHRCNN_NAME,
    SYNSET_TO_R2N2_NAME,
    group_views_by_model,
    load_meshrcnn_shapenet,
    load_r2n2,
    r2n2_split_model_ids,
    register_all,
)

VIEW_KEYS = {
    "file_name", "height", "width", "image_id", "synset_id", "model_id", "category",
    "category_id", "view_index", "K", "R", "t", "azimuth", "elevation", "distance", "mesh",
    "samples", "voxel", "depth",
}  # fmt: skip
PLANE, CHAIR, BOAT = "02691156", "03001627", "04530566"
F_137 = 2.1875 * 137 / 2  # Blender's 35 mm lens / 32 mm sensor at 137 px: 149.84375


@pytest.fixture
def clean_catalog():
    before = set(DatasetCatalog.list())
    yield
    for name in set(DatasetCatalog.list()) - before:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _points():
    return torch.tensor([[0.0, 0.0, 0.0], [0.3, -0.2, 0.1], [-0.25, 0.3, -0.35], [0.4, 0.4, 0.4]])


def _check_camera(record, extrinsic):
    """The record's K, R, t agree with Mesh R-CNN's 4x4 pipeline, in 3D and in pixels."""
    K = torch.tensor(record["K"], dtype=torch.float64)
    R = torch.tensor(record["R"], dtype=torch.float64)
    t = torch.tensor(record["t"], dtype=torch.float64)
    assert K.tolist() == pytest.approx([F_137, F_137, 68.5, 68.5], abs=1e-4)
    pts = _points().to(torch.float64)
    cam = pts @ R.T + t
    # OpenGL camera (x right, y up, looking down -z) is diag(-1, 1, -1) times ours.
    gl = pts @ extrinsic[:3, :3].T.to(torch.float64) + extrinsic[:3, 3].to(torch.float64)
    assert torch.allclose(cam, gl * torch.tensor([-1.0, 1.0, -1.0], dtype=torch.float64), atol=1e-5)
    assert (cam[:, 2] > 0).all()  # in front of the camera
    uv = torch.stack([K[2] - K[0] * cam[:, 0] / cam[:, 2], K[3] - K[1] * cam[:, 1] / cam[:, 2]], 1)
    ref = meshrcnn_project_pixels(pts, BLENDER_INTRINSIC, extrinsic, 137)
    assert torch.allclose(uv, ref, atol=1e-3)
    # The model's origin is what R2N2 cameras look at: the image centre.
    assert uv[0].tolist() == pytest.approx([68.5, 68.5], abs=1e-3)


def test_category_tables():
    assert len(SHAPENET_SYNSETS) == 13 == len(set(SHAPENET_SYNSETS)) == len(R2N2_CLASSES)
    assert SYNSET_TO_R2N2_NAME[PLANE] == "airplane" and SYNSET_TO_MESHRCNN_NAME[PLANE] == "plane"
    assert SYNSET_TO_R2N2_NAME["03211117"] == "display"
    assert SYNSET_TO_MESHRCNN_NAME["03211117"] == "monitor"
    assert SYNSET_TO_MESHRCNN_NAME["04090263"] == "firearm"
    assert SYNSET_TO_MESHRCNN_NAME["04401088"] == "cellphone"
    assert SYNSET_TO_R2N2_NAME[BOAT] == "watercraft" and R2N2_CLASSES[4] == "chair"
    assert list(SHAPENET_SYNSETS) == sorted(SHAPENET_SYNSETS)


@pytest.mark.parametrize("n, n_train", [(10, 8), (3, 2), (7, 5), (1, 0), (5, 4)])
def test_r2n2_split_proportions(n, n_train):
    ids = [f"m{i:03d}" for i in range(n)]
    random.Random(n).shuffle(ids)
    train, test = r2n2_split_model_ids(ids, "train"), r2n2_split_model_ids(ids, "test")
    # R2N2: sorted ids, [int(0.8 n):] for test
    assert train == sorted(ids)[:n_train] and test == sorted(ids)[n_train:]
    with pytest.raises(ValueError, match="'val'"):
        r2n2_split_model_ids(ids, "val")


def test_r2n2_records_round_trip(tmp_path):
    written = write_r2n2(tmp_path, {CHAIR: ["c1", "c0"], BOAT: ["b0"]}, num_views=24)
    records = load_r2n2(written["dir"], "all")
    assert len(records) == 3 * 24
    for r in records:
        assert set(r) == VIEW_KEYS
        json.dumps(r)
    r = next(r for r in records if r["image_id"] == f"{CHAIR}/c1/05")
    az, el, inplane, ratio, fov = written["views"][(CHAIR, "c1")][5]
    assert (r["synset_id"], r["model_id"], r["view_index"]) == (CHAIR, "c1", 5)
    assert (r["category"], r["category_id"]) == ("chair", 4)
    assert (r["height"], r["width"]) == (137, 137)
    assert r["file_name"] == os.path.join(
        written["dir"], "ShapeNetRendering", CHAIR, "c1", "rendering", "05.png"
    )
    assert os.path.isfile(r["file_name"])
    assert r["azimuth"] == pytest.approx(az) and r["elevation"] == pytest.approx(el)
    assert r["distance"] == pytest.approx(ratio * 1.75)
    assert r["voxel"] == os.path.join(written["dir"], "ShapeNetVox32", CHAIR, "c1", "model.binvox")
    assert r["mesh"] == os.path.join(written["dir"], "ShapeNetCore.v1", CHAIR, "c1", "model.obj")
    assert r["samples"] is None and r["depth"] is None
    _check_camera(r, meshrcnn_extrinsic(az, el, ratio * 1.75))

    boat = [r for r in records if r["synset_id"] == BOAT]
    assert [r["view_index"] for r in boat] == list(range(24))
    assert {r["category_id"] for r in boat} == {12}


def test_r2n2_split_counts_and_missing_pieces(tmp_path, caplog):
    chairs = [f"c{i:02d}" for i in range(10)]
    boats = ["b2", "b0", "b1"]
    written = write_r2n2(
        tmp_path, {CHAIR: chairs, BOAT: boats}, num_views=2, with_meshes=False,
        without_voxels=("c03",),
    )  # fmt: skip
    train, test = load_r2n2(written["dir"], "train"), load_r2n2(written["dir"], "test")
    models = {s: {(r["synset_id"], r["model_id"]) for r in recs} for s, recs in
              (("train", train), ("test", test))}  # fmt: skip
    assert sorted(m for s, m in models["train"] if s == CHAIR) == chairs[:8]
    assert sorted(m for s, m in models["test"] if s == CHAIR) == chairs[8:]
    assert sorted(m for s, m in models["train"] if s == BOAT) == ["b0", "b1"]
    assert sorted(m for s, m in models["test"] if s == BOAT) == ["b2"]
    assert len(train) == 10 * 2 and len(test) == 3 * 2
    assert all(r["mesh"] is None for r in train + test)
    assert {r["voxel"] is None for r in train if r["model_id"] == "c03"} == {True}

    # A model listed in ShapeNetVox32 without renderings keeps its place in the split (R2N2
    # lists models from the voxels) but is skipped and counted; so is corrupt metadata.
    rendering = os.path.join(written["dir"], "ShapeNetRendering", CHAIR)
    os.rename(os.path.join(rendering, "c01"), os.path.join(tmp_path, "c01_moved"))
    meta = os.path.join(rendering, "c02", "rendering", "rendering_metadata.txt")
    with open(meta, "w") as f:
        f.write("10.0 25.0 0 0.8 25\n10.0 25.0 0.8\n")
    with caplog.at_level(logging.WARNING, logger="meshrecon.data.datasets.shapenet"):
        train = load_r2n2(written["dir"], "train")
    got = sorted({r["model_id"] for r in train if r["synset_id"] == CHAIR})
    assert got == [c for c in chairs[:8] if c not in ("c01", "c02")]
    assert "skipped 1 model(s) (no renderings)" in caplog.text
    assert "rendering_metadata.txt line 2" in caplog.text


def test_r2n2_missing_folder_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="ShapeNetRendering"):
        load_r2n2(str(tmp_path), "train")


def _meshrcnn_splits():
    views = list(range(24))
    return {
        "train": {CHAIR: {"c0": views, "c1": [0, 1, 2]}, PLANE: {"p0": [3, 7]}},
        # c1 divides its views between splits, as eight real models do.
        "val": {CHAIR: {"c1": [5]}},
        "test": {PLANE: {"p1": views}, CHAIR: {"c1": [6, 30]}},
    }


def test_meshrcnn_records_round_trip(tmp_path):
    written = write_meshrcnn_shapenet(tmp_path, _meshrcnn_splits(), num_views=24)
    train = load_meshrcnn_shapenet(written["dir"], written["split_file"], "train")
    assert len(train) == 24 + 3 + 2
    for r in train:
        assert set(r) == VIEW_KEYS
        json.dumps(r)
    r = next(r for r in train if r["image_id"] == f"{PLANE}/p0/07")
    az, el, _, ratio, _ = written["views"][(PLANE, "p0")][7]
    model_dir = os.path.join(written["dir"], PLANE, "p0")
    assert r["file_name"] == os.path.join(model_dir, "images", "07.png")
    assert os.path.isfile(r["file_name"])
    assert (r["category"], r["category_id"], r["view_index"]) == ("airplane", 0, 7)
    assert r["mesh"] == os.path.join(model_dir, "mesh.pt")
    assert r["samples"] == os.path.join(model_dir, "samples.pt")
    assert r["voxel"] == os.path.join(model_dir, "voxels.pt")
    # The viewpoint is recovered from the stored (float32) extrinsics.
    assert r["azimuth"] == pytest.approx(az, abs=1e-3)
    assert r["elevation"] == pytest.approx(el, abs=1e-3)
    assert r["distance"] == pytest.approx(1.75 * ratio, abs=1e-5)
    metadata = torch.load(os.path.join(model_dir, "metadata.pt"), weights_only=True)
    _check_camera(r, metadata["extrinsics"][7])

    val = load_meshrcnn_shapenet(written["dir"], written["split_file"], "val")
    assert [r["image_id"] for r in val] == [f"{CHAIR}/c1/05"]
    test = load_meshrcnn_shapenet(written["dir"], written["split_file"], "test")
    # view 30 does not exist (summary.json says 24 images): dropped, as Mesh R-CNN does
    assert sorted(r["image_id"] for r in test if r["synset_id"] == CHAIR) == [f"{CHAIR}/c1/06"]
    assert len(test) == 24 + 1
    with pytest.raises(KeyError, match="'trainval'"):
        load_meshrcnn_shapenet(written["dir"], written["split_file"], "trainval")


def test_meshrcnn_models_missing_from_summary_are_skipped(tmp_path, caplog):
    written = write_meshrcnn_shapenet(tmp_path, _meshrcnn_splits(), num_views=24)
    summary_path = os.path.join(written["dir"], "summary.json")
    with open(summary_path) as f:
        summary = json.load(f)
    del summary[PLANE]["p0"]
    with open(summary_path, "w") as f:
        json.dump(summary, f)
    os.remove(os.path.join(written["dir"], CHAIR, "c1", "metadata.pt"))
    with caplog.at_level(logging.WARNING, logger="meshrecon.data.datasets.shapenet"):
        train = load_meshrcnn_shapenet(written["dir"], written["split_file"], "train")
    assert {r["model_id"] for r in train} == {"c0"}
    assert "not in summary.json" in caplog.text and "corrupt metadata.pt" in caplog.text
    os.remove(summary_path)
    with pytest.raises(FileNotFoundError, match="summary.json"):
        load_meshrcnn_shapenet(written["dir"], written["split_file"], "train")


def test_group_views_by_model(tmp_path):
    written = write_r2n2(tmp_path, {CHAIR: ["c0", "c1"], PLANE: ["p0"]}, num_views=4)
    records = load_r2n2(written["dir"], "all")
    random.Random(0).shuffle(records)
    models = group_views_by_model(records)
    assert len(models) == 3
    for m in models:
        assert set(m) == {
            "synset_id", "model_id", "category", "category_id", "mesh", "samples", "voxel",
            "views",
        }  # fmt: skip
        assert [v["view_index"] for v in m["views"]] == [0, 1, 2, 3]
        assert {(v["synset_id"], v["model_id"]) for v in m["views"]} == {
            (m["synset_id"], m["model_id"])
        }
    # models keep the order of their first view
    first = []
    for r in records:
        if (r["synset_id"], r["model_id"]) not in first:
            first.append((r["synset_id"], r["model_id"]))
    assert [(m["synset_id"], m["model_id"]) for m in models] == first

    bad = [dict(r) for r in records]
    bad[0]["mesh"] = "/elsewhere.obj"
    with pytest.raises(ValueError, match="disagree on 'mesh'"):
        group_views_by_model(bad)
    with pytest.raises(ValueError, match="repeats view indices"):
        group_views_by_model(records + records[:1])


def test_register_all(tmp_path, clean_catalog):
    assert register_all(str(tmp_path)) == []
    write_r2n2(tmp_path, {CHAIR: ["c0", "c1", "c2", "c3", "c4"]}, num_views=2)
    write_meshrcnn_shapenet(tmp_path, _meshrcnn_splits(), num_views=24)
    names = register_all(str(tmp_path))
    assert sorted(names) == [
        "shapenet_meshrcnn_test", "shapenet_meshrcnn_train", "shapenet_meshrcnn_val",
        "shapenet_r2n2_test", "shapenet_r2n2_train",
    ]  # fmt: skip
    for name in names:
        meta = MetadataCatalog.get(name)
        assert meta.evaluator_type == "shapenet" and meta.thing_classes == list(R2N2_CLASSES)
        assert meta.synset_to_name[BOAT] == "watercraft"
    assert len(DatasetCatalog.get("shapenet_r2n2_train")) == 4 * 2
    assert len(DatasetCatalog.get("shapenet_r2n2_test")) == 1 * 2
    assert len(DatasetCatalog.get("shapenet_meshrcnn_val")) == 1


def test_viewpoint_recovery_covers_all_azimuths(tmp_path):
    # Azimuths on every side of the model, including ones atan2 returns as negative.
    splits = {"train": {CHAIR: {"c0": list(range(24))}}}
    written = write_meshrcnn_shapenet(tmp_path, splits, num_views=24, seed=3)
    for r in load_meshrcnn_shapenet(written["dir"], written["split_file"], "train"):
        az = written["views"][(CHAIR, "c0")][r["view_index"]][0]
        assert 0.0 <= r["azimuth"] < 360.0
        diff = (r["azimuth"] - az + 180.0) % 360.0 - 180.0
        assert abs(diff) < 1e-3 and math.isfinite(r["elevation"])
