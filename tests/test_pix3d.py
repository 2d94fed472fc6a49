"""Pix3D loaders: official pix3d.json and Mesh R-CNN's split files, written by fixtures_realdata."""

import json
import logging
import math
import os

import numpy as np
import pytest
import scipy.io
import torch
from fixtures_realdata import PIX3D_SPLIT_MEMBERS, write_pix3d
from PIL import Image

from meshrecon.data import DatasetCatalog, MetadataCatalog
from meshrecon.data.datasets.pix3d import (
    PIX3D_CLASSES,
    load_pix3d_json,
    load_pix3d_split,
    pix3d_voxel_to_model_frame,
    register_all,
    register_pix3d,
)

RECORD_KEYS = {"file_name", "height", "width", "image_id", "annotations"}
ANNO_KEYS = {"bbox", "category_id", "segmentation", "mesh", "voxel", "K", "R", "t", "iscrowd"}


@pytest.fixture
def pix3d(tmp_path):
    return write_pix3d(tmp_path)


@pytest.fixture
def clean_catalog():
    before = set(DatasetCatalog.list())
    yield
    for name in set(DatasetCatalog.list()) - before:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _rot_y(deg):
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]


def _by_image(records):
    return {os.path.relpath(r["file_name"], r["file_name"].split("img")[0]): r for r in records}


def test_pix3d_json_records_match_hand_computed_values(pix3d):
    records = load_pix3d_json(os.path.join(pix3d["dir"], "pix3d.json"), pix3d["dir"])
    assert len(records) == 4  # six entries minus the two known-bad images
    for r in records:
        assert set(r) == RECORD_KEYS
        assert os.path.isabs(r["file_name"]) and os.path.isfile(r["file_name"])
        assert len(r["annotations"]) == 1 and set(r["annotations"][0]) == ANNO_KEYS
        json.dumps(r)  # plain Python values only

    chair = next(r for r in records if r["file_name"].endswith("img/chair/0001.png"))
    assert (chair["width"], chair["height"], chair["image_id"]) == (40, 30, 0)
    a = chair["annotations"][0]
    # img_size [40, 30], focal 35 mm on a 32 mm sensor: f = 35 * 40 / 32 = 43.75 px
    assert a["K"] == pytest.approx([43.75, 43.75, 20.0, 15.0])
    assert a["bbox"] == [5.0, 4.0, 30.0, 25.0]  # already XYXY in pix3d.json
    assert a["category_id"] == 2 == PIX3D_CLASSES.index("chair")
    assert np.allclose(a["R"], _rot_y(30.0)) and a["t"] == [0.0, 0.0, 2.5]
    assert a["mesh"] == os.path.join(pix3d["dir"], "model/chair/IKEA_A/model.obj")
    assert a["voxel"] == os.path.join(pix3d["dir"], "model/chair/IKEA_A/voxel.mat")
    assert a["segmentation"] == os.path.join(pix3d["dir"], "mask/chair/0001.png")
    assert a["iscrowd"] == 0

    table = next(r for r in records if r["file_name"].endswith("img/table/0002.jpg"))
    assert (table["width"], table["height"], table["image_id"]) == (32, 48, 1)
    assert table["annotations"][0]["K"] == pytest.approx([50.0, 50.0, 16.0, 24.0])
    assert table["annotations"][0]["category_id"] == 6
    ids = {os.path.basename(r["file_name"]): r["annotations"][0]["category_id"] for r in records}
    assert ids["0003.png"] == 5 and ids["0004.png"] == 0  # sofa, bed


def test_masks_are_one_channel_and_image_sized(pix3d):
    for r in load_pix3d_json(os.path.join(pix3d["dir"], "pix3d.json"), pix3d["dir"]):
        with Image.open(r["annotations"][0]["segmentation"]) as mask:
            assert mask.mode == "L" and mask.size == (r["width"], r["height"])
            assert set(np.unique(np.asarray(mask)).tolist()) == {0, 255}


def test_known_bad_images_are_skipped_and_counted(pix3d, caplog):
    with caplog.at_level(logging.WARNING, logger="meshrecon.data.datasets.pix3d"):
        records = load_pix3d_json(os.path.join(pix3d["dir"], "pix3d.json"), pix3d["dir"])
    names = {os.path.basename(r["file_name"]) for r in records}
    assert "1749.jpg" not in names and "0045.png" not in names
    assert "skipped 2 image(s) of Pix3D's known-bad list" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="meshrecon.data.datasets.pix3d"):
        test = load_pix3d_split(os.path.join(pix3d["dir"], "pix3d_s2_test.json"), pix3d["dir"])
    assert [r["image_id"] for r in test] == [101, 103]
    assert "skipped 2 image(s)" in caplog.text


def test_split_file_converts_boxes_K_and_categories(pix3d):
    records = load_pix3d_split(os.path.join(pix3d["dir"], "pix3d_s1_train.json"), pix3d["dir"])
    # members 0, 1, 4 -> ids 100, 101, (104 is img/table/1749.jpg: skipped); sorted by id
    assert [r["image_id"] for r in records] == [100, 101]
    r = records[1]
    assert set(r) == RECORD_KEYS and (r["width"], r["height"]) == (32, 48)
    a = r["annotations"][0]
    assert set(a) == ANNO_KEYS
    # XYWH [2, 10, 26, 30] -> XYXY [2, 10, 28, 40]
    assert a["bbox"] == [2.0, 10.0, 28.0, 40.0]
    # K = [f, W/2, H/2] = [50 * 32 / 32, 16, 24] -> [f, f, cx, cy]
    assert a["K"] == pytest.approx([50.0, 50.0, 16.0, 24.0])
    assert a["category_id"] == PIX3D_CLASSES.index("table") == 6
    assert np.allclose(a["R"], _rot_y(-45.0)) and a["t"] == [0.1, 0.0, 3.0]
    assert a["mesh"] == os.path.join(pix3d["dir"], "model/table/T_B/model.obj")
    assert os.path.isfile(a["segmentation"]) and os.path.isfile(a["voxel"])


def test_both_loaders_agree_on_every_split_image(pix3d):
    full = load_pix3d_json(os.path.join(pix3d["dir"], "pix3d.json"), pix3d["dir"])
    by_file = {r["file_name"]: r for r in full}
    for file in PIX3D_SPLIT_MEMBERS:
        for r in load_pix3d_split(os.path.join(pix3d["dir"], file), pix3d["dir"]):
            ref = by_file[r["file_name"]]
            assert (r["height"], r["width"]) == (ref["height"], ref["width"])
            a, b = r["annotations"][0], ref["annotations"][0]
            for key in ("bbox", "K", "R", "t"):
                assert np.allclose(a[key], b[key]), key
            for key in ("category_id", "segmentation", "mesh", "voxel"):
                assert a[key] == b[key], key


def test_split_categories_are_mapped_by_name(pix3d, tmp_path):
    data = pix3d["splits"]["pix3d_s1_test.json"]
    # Renumber the categories (ids 20..28 in reverse name order): names decide the class.
    remap = {c["id"]: 28 - k for k, c in enumerate(data["categories"])}
    data["categories"] = [{"id": remap[c["id"]], "name": c["name"]} for c in data["categories"]]
    for a in data["annotations"]:
        a["category_id"] = remap[a["category_id"]]
    path = tmp_path / "renumbered.json"
    path.write_text(json.dumps(data))
    records = load_pix3d_split(str(path), pix3d["dir"])
    got = {os.path.basename(r["file_name"]): r["annotations"][0]["category_id"] for r in records}
    assert got == {"0003.png": PIX3D_CLASSES.index("sofa"), "0004.png": PIX3D_CLASSES.index("bed")}

    data["annotations"][0]["category_id"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="category_id 99"):
        load_pix3d_split(str(path), pix3d["dir"])


@pytest.mark.parametrize(
    "bad", ["../../etc/passwd", "mask/../../outside.png", "/etc/passwd", "..\\..\\x.png"]
)
def test_paths_escaping_the_dataset_are_refused_named_and_counted(pix3d, bad, caplog):
    json_file = os.path.join(pix3d["dir"], "pix3d.json")
    entries = pix3d["entries"]
    entries[2]["mask"] = bad
    with open(json_file, "w") as f:
        json.dump(entries, f)
    with caplog.at_level(logging.WARNING, logger="meshrecon.data.datasets.pix3d"):
        records = load_pix3d_json(json_file, pix3d["dir"])
    # The image whose mask path leaves the folder is skipped; the others load.
    names = sorted(os.path.basename(r["file_name"]) for r in records)
    assert names == ["0001.png", "0002.jpg", "0004.png"]
    msg = caplog.text
    assert "skipped 1 image(s) whose annotation paths leave the dataset folder" in msg
    assert "entry 2" in msg and "img/sofa/0003.png" in msg and repr(bad) in msg
    assert "'mask'" in msg and pix3d["dir"] in msg

    split_file = os.path.join(pix3d["dir"], "pix3d_s2_train.json")
    data = pix3d["splits"]["pix3d_s2_train.json"]
    data["annotations"][0]["model"] = bad
    with open(split_file, "w") as f:
        json.dump(data, f)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="meshrecon.data.datasets.pix3d"):
        records = load_pix3d_split(split_file, pix3d["dir"])
    image_of_anno = data["annotations"][0]["image_id"]
    assert image_of_anno not in [r["image_id"] for r in records]
    assert "skipped 1 image(s)" in caplog.text and "'model'" in caplog.text
    assert "annotations[0]" in caplog.text and repr(bad) in caplog.text


def test_symlink_leading_out_of_the_dataset_is_refused(pix3d, tmp_path, caplog):
    # The json names a path inside the folder, but the file there is a link to a secret
    # elsewhere: the link's target decides.
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not yours")
    mask = os.path.join(pix3d["dir"], "mask/sofa/0003.png")
    os.remove(mask)
    os.symlink(secret, mask)
    # A folder linked out of the root is refused the same way.
    outside = tmp_path / "outside_models"
    os.rename(os.path.join(pix3d["dir"], "model/bed"), outside)
    os.symlink(outside, os.path.join(pix3d["dir"], "model/bed"))
    json_file = os.path.join(pix3d["dir"], "pix3d.json")
    with caplog.at_level(logging.WARNING, logger="meshrecon.data.datasets.pix3d"):
        records = load_pix3d_json(json_file, pix3d["dir"])
    names = sorted(os.path.basename(r["file_name"]) for r in records)
    assert names == ["0001.png", "0002.jpg"]
    assert "skipped 2 image(s) whose annotation paths leave the dataset folder" in caplog.text
    assert f"is a symlink to {secret}" in caplog.text

    # A link inside the folder to another place inside it is fine, and so is a linked root.
    os.remove(mask)
    os.symlink(os.path.join(pix3d["dir"], "mask/chair/0001.png"), mask)
    linked_root = tmp_path / "linked_pix3d"
    os.symlink(pix3d["dir"], linked_root)
    records = load_pix3d_json(json_file, str(linked_root))
    assert len(records) == 3

    # Nothing left to load: the error names the refusal.
    entries = [dict(e, img="/etc/passwd") for e in pix3d["entries"]]
    with open(json_file, "w") as f:
        json.dump(entries, f)
    with pytest.raises(ValueError, match="none of its images could be loaded.*is absolute"):
        load_pix3d_json(json_file, pix3d["dir"])


def test_missing_files(pix3d, caplog, clean_catalog):
    root = pix3d["dir"]
    json_file = os.path.join(root, "pix3d.json")
    os.remove(os.path.join(root, "img/sofa/0003.png"))
    with caplog.at_level(logging.WARNING, logger="meshrecon.data.datasets.pix3d"):
        records = load_pix3d_json(json_file, root)
    assert len(records) == 3
    assert "missing" in caplog.text and os.path.join(root, "img/sofa/0003.png") in caplog.text

    for rel in ("img/chair/0001.png", "img/table/0002.jpg", "img/bed/0004.png"):
        os.remove(os.path.join(root, rel))
    with pytest.raises(FileNotFoundError, match="0001.png"):
        load_pix3d_json(json_file, root)

    missing_json = os.path.join(root, "pix3d_s9_train.json")
    with pytest.raises(FileNotFoundError, match="pix3d_s9_train.json"):
        load_pix3d_split(missing_json, root)
    with pytest.raises(FileNotFoundError, match="pix3d_s9_train.json"):
        register_pix3d("pix3d_missing_test", missing_json, root)
    with pytest.raises(FileNotFoundError, match="no_such_root"):
        register_pix3d("pix3d_missing_test", json_file, os.path.join(root, "no_such_root"))


def test_malformed_entry_names_the_key(pix3d):
    json_file = os.path.join(pix3d["dir"], "pix3d.json")
    entries = pix3d["entries"]
    focal = entries[1].pop("focal_length")
    with open(json_file, "w") as f:
        json.dump(entries, f)
    with pytest.raises(KeyError, match="entry 1.*focal_length"):
        load_pix3d_json(json_file, pix3d["dir"])

    entries[1]["focal_length"] = focal
    entries[3]["img_size"] = [24]
    with open(json_file, "w") as f:
        json.dump(entries, f)
    with pytest.raises(ValueError, match=r"entry 3.*'img_size' must be \[width, height\]"):
        load_pix3d_json(json_file, pix3d["dir"])


def test_register_all(pix3d, tmp_path, clean_catalog):
    names = register_all(str(tmp_path))
    assert sorted(names) == sorted(
        ["pix3d_s1_train", "pix3d_s1_test", "pix3d_s2_train", "pix3d_s2_test", "pix3d_full"]
    )
    meta = MetadataCatalog.get("pix3d_s2_test")
    assert meta.thing_classes == list(PIX3D_CLASSES) and meta.evaluator_type == "pix3d"
    assert meta.image_root == pix3d["dir"]
    assert [r["image_id"] for r in DatasetCatalog.get("pix3d_s2_test")] == [101, 103]
    assert len(DatasetCatalog.get("pix3d_full")) == 4
    assert register_all(str(tmp_path / "nowhere")) == []


def test_voxel_to_model_frame_follows_meshrcnn(pix3d):
    rng = np.random.default_rng(0)
    grid = rng.integers(0, 2, (5, 5, 5), dtype=np.uint8)
    out = pix3d_voxel_to_model_frame(grid)
    assert np.array_equal(out, np.rot90(grid, k=3, axes=(1, 2)))
    assert torch.equal(pix3d_voxel_to_model_frame(torch.from_numpy(grid)), torch.from_numpy(out))

    # One voxel: left-most x=0, most outward y=D-1, z=2 up -> model y=2 up, model z=0 (least
    # inward, i.e. most outward).
    single = np.zeros((4, 4, 4), dtype=np.uint8)
    single[0, 3, 2] = 1
    assert np.argwhere(pix3d_voxel_to_model_frame(single)).tolist() == [[0, 2, 0]]

    mat = scipy.io.loadmat(os.path.join(pix3d["dir"], "model/chair/IKEA_A/voxel.mat"))["voxel"]
    assert mat.shape == (4, 4, 4) and pix3d_voxel_to_model_frame(mat).sum() == mat.sum()
    with pytest.raises(ValueError, match="shape"):
        pix3d_voxel_to_model_frame(np.zeros((4, 4, 3)))
