"""Paths from data and configs stay inside their folder: the policy and every loader using it.

Each test writes the attack into a dataset fixture (a ``..`` id, an absolute path, a symlink
planted inside the dataset that leads out) next to a decoy file outside the dataset that the
loader must never point at; the record is skipped, named and counted.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
import torch
from fixtures_depthdata import (
    KITTI_P_RECT_02,
    KITTI_P_RECT_03,
    write_kitti_calib,
    write_kitti_frame,
)
from fixtures_realdata import write_meshrcnn_shapenet, write_r2n2
from PIL import Image

from meshrecon.data.datasets import kitti
from meshrecon.data.datasets.shapenet import load_meshrcnn_shapenet, load_r2n2
from meshrecon.model_zoo import get_config_file
from meshrecon.utils.path_policy import (
    DatasetRoot,
    UnsafePathError,
    resolve_dataset_path,
    resolve_under,
    url_cache_path,
)

CHAIR, PLANE = "03001627", "02691156"


def _paths_in(records) -> list[str]:
    out = []
    for r in records:
        for key in ("file_name", "mesh", "voxel", "samples"):
            if r.get(key):
                out.append(r[key])
        if isinstance(r.get("depth"), dict):
            out.append(r["depth"]["path"])
    return out


def _all_inside(paths, root) -> bool:
    real = os.path.realpath(root)
    return all(os.path.realpath(p).startswith(real + os.sep) for p in paths)


# ----------------------------------------------------------------------------- the policy


@pytest.mark.parametrize(
    "rel, reason",
    [
        ("../secret.txt", "climbs out"),
        ("a/../../secret.txt", "climbs out"),
        ("a/b/../c.txt", "climbs out"),  # even when it would stay inside: no '..' at all
        ("..\\secret.txt", "climbs out"),
        ("/etc/passwd", "is absolute"),
        ("\\\\server\\share\\x", "is absolute"),
        ("C:/x.png", "is absolute"),
        ("c:x.png", "is absolute"),
        ("img/x\x00.png", "control character"),
        ("img/x\n.png", "control character"),
        ("", "not a non-empty"),
        (".", "names no file"),
    ],
)
def test_dataset_path_text_refusals(tmp_path, rel, reason):
    with pytest.raises(UnsafePathError, match=reason) as err:
        resolve_dataset_path(str(tmp_path), rel, "ann.json record 7")
    msg = str(err.value)
    assert msg.startswith("ann.json record 7: path ") and repr(rel) in msg and str(tmp_path) in msg


def test_dataset_path_symlinks(tmp_path):
    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    (root / "img" / "a.png").write_bytes(b"x")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.png").write_bytes(b"k")
    os.symlink(secret, root / "linked_dir")
    os.symlink(secret / "key.png", root / "img" / "linked_file.png")
    os.symlink(root / "img" / "a.png", root / "img" / "inner_link.png")
    os.symlink(tmp_path / "nowhere.png", root / "img" / "dangling.png")
    droot = DatasetRoot(str(root))
    assert droot.join("img/a.png") == str(root / "img" / "a.png")
    assert droot.join("./img//a.png") == str(root / "img" / "a.png")
    assert droot.join("img\\a.png") == str(root / "img" / "a.png")
    assert droot.join("img/inner_link.png") == str(root / "img" / "inner_link.png")
    with pytest.raises(UnsafePathError, match=f"leads through a symlink to {secret}"):
        droot.join("linked_dir/key.png")
    with pytest.raises(UnsafePathError, match=f"is a symlink to {secret / 'key.png'}"):
        droot.join("img/linked_file.png")
    with pytest.raises(UnsafePathError, match="is a symlink to"):
        droot.join("img/dangling.png")
    # The root itself may be a link: only links below it count.
    os.symlink(root, tmp_path / "root_link")
    assert DatasetRoot(str(tmp_path / "root_link")).join("img/a.png") == str(
        tmp_path / "root_link" / "img" / "a.png"
    )
    # ``under`` is checked with the path, and the path alone must be relative.
    assert droot.join("a.png", under="img") == str(root / "img" / "a.png")
    with pytest.raises(UnsafePathError, match="is absolute"):
        droot.join("/a.png", under="img")
    with pytest.raises(UnsafePathError, match="climbs out"):
        droot.join("a.png", under="../x")


def test_url_cache_path_keeps_the_layout(tmp_path):
    cache = str(tmp_path)
    assert url_cache_path("https://h.example/a/b/model.pth", cache) == str(
        tmp_path / "a" / "b" / "model.pth"
    )
    # Query and host are not part of the path; percent escapes stay as written.
    assert url_cache_path("https://h.example:8080/m%20final.pth?x=1", cache) == str(
        tmp_path / "m%20final.pth"
    )
    for bad in ("https://h.example/", "https://h.example", "file:///etc/passwd", "h.example/x"):
        with pytest.raises(UnsafePathError, match="Refusing weights URL"):
            url_cache_path(bad, cache)


# ----------------------------------------------------------------------------- ShapeNet


def _decoy_model(tmp_path) -> str:
    """A complete preprocessed model *outside* the dataset that an attack would point at."""
    written = write_meshrcnn_shapenet(tmp_path / "elsewhere", {"train": {CHAIR: {"evil": [0]}}})
    return os.path.join(written["dir"], CHAIR, "evil")


def test_meshrcnn_split_id_climbing_out_is_skipped_named_and_counted(tmp_path, caplog):
    decoy = _decoy_model(tmp_path)
    written = write_meshrcnn_shapenet(tmp_path / "data", {"train": {CHAIR: {"c0": [0, 1]}}})
    data_dir, split_file = written["dir"], written["split_file"]
    # "../../../elsewhere/..." from ShapeNetV1processed/<synset>/ reaches the decoy model.
    climb = os.path.relpath(decoy, os.path.join(data_dir, CHAIR))
    assert os.path.isfile(os.path.join(data_dir, CHAIR, climb, "metadata.pt"))
    with open(split_file, "w") as f:
        json.dump({"train": {CHAIR: {"c0": [0, 1], climb: [0]}}}, f)
    summary_path = os.path.join(data_dir, "summary.json")
    with open(summary_path, "w") as f:
        json.dump({CHAIR: {"c0": 24, climb: 24}}, f)
    with caplog.at_level(logging.WARNING, logger="meshrecon.data.datasets.shapenet"):
        records = load_meshrcnn_shapenet(data_dir, split_file, "train")
    assert {r["model_id"] for r in records} == {"c0"} and len(records) == 2
    assert _all_inside(_paths_in(records), data_dir)
    assert "skipped 1 model(s) (path leaves the dataset folder)" in caplog.text
    assert climb in caplog.text and split_file in caplog.text and "climbs out" in caplog.text


def test_meshrcnn_image_names_and_symlinked_model_are_refused(tmp_path, caplog):
    decoy = _decoy_model(tmp_path)
    splits = {"train": {CHAIR: {"c0": [0], "c1": [0], "c2": [0]}}}
    written = write_meshrcnn_shapenet(tmp_path / "data", splits)
    data_dir, split_file = written["dir"], written["split_file"]
    # c1: metadata.pt names an image outside the model's folder.
    meta_path = os.path.join(data_dir, CHAIR, "c1", "metadata.pt")
    meta = torch.load(meta_path, weights_only=True)
    meta["image_list"][0] = "../../../../../elsewhere/secret.png"
    torch.save(meta, meta_path)
    # c2: the model folder is a link to the decoy outside the dataset.
    c2 = os.path.join(data_dir, CHAIR, "c2")
    os.rename(c2, c2 + "_gone")
    os.symlink(decoy, c2)
    with caplog.at_level(logging.WARNING, logger="meshrecon.data.datasets.shapenet"):
        records = load_meshrcnn_shapenet(data_dir, split_file, "train")
    assert {r["model_id"] for r in records} == {"c0"}
    assert _all_inside(_paths_in(records), data_dir)
    assert "skipped 2 model(s) (path leaves the dataset folder)" in caplog.text
    assert "image_list[0]" in caplog.text


def test_r2n2_symlinked_model_and_climbing_image_name_are_refused(tmp_path, caplog):
    outside = tmp_path / "elsewhere"
    write_r2n2(outside, {CHAIR: ["evil"]}, num_views=2)
    written = write_r2n2(tmp_path / "data", {CHAIR: ["c0", "c1", "c2"]}, num_views=2)
    shapenet = written["dir"]
    render = os.path.join(shapenet, "ShapeNetRendering", CHAIR)
    # c1's rendering folder is a link out of ShapeNetRendering.
    os.rename(os.path.join(render, "c1"), os.path.join(tmp_path, "c1_moved"))
    os.symlink(
        outside / "shapenet" / "ShapeNetRendering" / CHAIR / "evil", os.path.join(render, "c1")
    )
    # c2's renderings.txt names an image outside its folder.
    with open(os.path.join(render, "c2", "rendering", "renderings.txt"), "w") as f:
        f.write("00.png\n../../../../../../elsewhere/x.png\n")
    with caplog.at_level(logging.WARNING, logger="meshrecon.data.datasets.shapenet"):
        records = load_r2n2(shapenet, "all")
    assert {r["model_id"] for r in records} == {"c0"}
    assert _all_inside(_paths_in(records), shapenet)
    assert "skipped 2 model(s) (path leaves the dataset folder)" in caplog.text
    # The warning names the first skipped model (c1, the link) and counts both.
    assert f"{CHAIR}/c1" in caplog.text and "symlink" in caplog.text

    # A linked ShapeNetRendering folder (a layout folder on another disk) is fine.
    moved = tmp_path / "other_disk_rendering"
    os.rename(os.path.join(shapenet, "ShapeNetRendering"), moved)
    os.symlink(moved, os.path.join(shapenet, "ShapeNetRendering"))
    assert {r["model_id"] for r in load_r2n2(shapenet, "all")} == {"c0"}


# ----------------------------------------------------------------------------- KITTI

SIZE = (69, 21)
P2 = KITTI_P_RECT_02 * np.array([[1 / 18], [1 / 18], [1.0]])
P3 = KITTI_P_RECT_03 * np.array([[1 / 18], [1 / 18], [1.0]])
D1 = "2011_09_26/2011_09_26_drive_0002_sync"


def _kitti(tmp_path):
    root = str(tmp_path / "kitti")
    write_kitti_calib(os.path.join(root, "2011_09_26"), size=SIZE, P_rect_02=P2, P_rect_03=P3)
    write_kitti_frame(root, D1, 69, SIZE, np.random.default_rng(0).uniform(2, 40, (50, 3)))
    # A decoy drive outside the KITTI root, complete with calibration and scan.
    decoy = str(tmp_path / "decoy")
    write_kitti_calib(os.path.join(decoy, "2011_09_26"), size=SIZE, P_rect_02=P2, P_rect_03=P3)
    write_kitti_frame(decoy, D1, 69, SIZE, np.random.default_rng(1).uniform(2, 40, (50, 3)))
    return root


def _split(path, lines):
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


def test_kitti_gt_path_climbing_out_is_refused_named_and_counted(tmp_path, caplog):
    root = _kitti(tmp_path)
    gt_rel = "2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000069.png"
    os.makedirs(os.path.dirname(os.path.join(root, gt_rel)))
    Image.fromarray(np.zeros((21, 69), dtype=np.uint16)).save(os.path.join(root, gt_rel))
    secret = tmp_path / "secret.png"
    Image.fromarray(np.zeros((21, 69), dtype=np.uint16)).save(secret)
    split = _split(
        tmp_path / "bts.txt",
        [
            f"{D1}/image_02/data/0000000069.png {gt_rel} 721.5",
            f"{D1}/image_02/data/0000000069.png ../secret.png 721.5",
            f"{D1}/image_02/data/0000000069.png {secret} 721.5",
        ],
    )
    with caplog.at_level(logging.WARNING, logger="meshrecon.data.datasets.kitti"):
        records = kitti.load_kitti_eigen(root, split, gt="annotated")
    assert len(records) == 1 and _all_inside(_paths_in(records), root)
    assert "skipped 2 of 3 frame(s) whose paths leave the dataset folder" in caplog.text
    assert "bts.txt:2 (ground-truth path)" in caplog.text and "'../secret.png'" in caplog.text


def test_kitti_drive_folder_climbing_out_is_refused(tmp_path, caplog):
    root = _kitti(tmp_path)
    split = _split(tmp_path / "m2.txt", [f"{D1} 69 l", "../decoy/2011_09_26 69 l"])
    with pytest.raises(ValueError, match="m2.txt:2"):  # not a <date>/<drive> line at all
        kitti.load_kitti_eigen(root, split)
    split = _split(tmp_path / "m2.txt", [f"{D1} 69 l", "../decoy 69 l", "../.. 69 l"])
    with caplog.at_level(logging.WARNING, logger="meshrecon.data.datasets.kitti"):
        records = kitti.load_kitti_eigen(root, split)
    assert len(records) == 1 and _all_inside(_paths_in(records), root)
    assert "skipped 2 of 3 frame(s) whose paths leave the dataset folder" in caplog.text
    # A drive folder linked out of the root is refused too.
    os.symlink(tmp_path / "decoy" / "2011_09_26" / "2011_09_26_drive_0002_sync",
               os.path.join(root, "2011_09_26", "2011_09_26_drive_0009_sync"))  # fmt: skip
    split = _split(
        tmp_path / "m3.txt", [f"{D1} 69 l", "2011_09_26/2011_09_26_drive_0009_sync 69 l"]
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="meshrecon.data.datasets.kitti"):
        records = kitti.load_kitti_eigen(root, split)
    assert len(records) == 1 and "symlink" in caplog.text and "m3.txt:2" in caplog.text


# ----------------------------------------------------------------------------- model zoo


@pytest.mark.parametrize(
    "name", ["../../x", "../model_zoo.py", "/etc/passwd", "pix3d/../../../setup.py", "..\\x.yaml"]
)
def test_get_config_file_stays_in_the_zoo(name):
    with pytest.raises(UnsafePathError, match="model zoo's config folder") as err:
        get_config_file(name)
    assert repr(name) in str(err.value)


def test_resolve_under_refuses_a_symlink_planted_in_the_folder(tmp_path):
    zoo = tmp_path / "configs"
    zoo.mkdir()
    (tmp_path / "private.yaml").write_text("x: 1\n")
    os.symlink(tmp_path / "private.yaml", zoo / "a.yaml")
    with pytest.raises(UnsafePathError, match="symlink"):
        resolve_under(str(zoo), "a.yaml", "config 'a.yaml'", "model zoo's config folder")


# ----------------------------------------------------------------------------- glTF references


def _gltf(path, uri):
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    faces = np.array([0, 1, 2], np.uint16)
    doc = {
        "asset": {"version": "2.0"},
        "buffers": [{"uri": uri, "byteLength": 44}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": 36},
            {"buffer": 0, "byteOffset": 36, "byteLength": 6},
        ],
        "accessors": [
            {
                "bufferView": 0,
                "componentType": 5126,
                "count": 3,
                "type": "VEC3",
                "max": [1, 1, 0],
                "min": [0, 0, 0],
            },
            {"bufferView": 1, "componentType": 5123, "count": 3, "type": "SCALAR"},
        ],  # fmt: skip
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
        "nodes": [{"mesh": 0}],
        "scenes": [{"nodes": [0]}],
        "scene": 0,
    }
    path.write_text(json.dumps(doc))
    return verts.tobytes() + faces.tobytes() + b"\0\0"


def test_gltf_buffer_outside_the_mesh_folder_is_refused(tmp_path):
    from meshrecon.io import load_mesh

    folder = tmp_path / "model"
    folder.mkdir()
    payload = _gltf(folder / "ok.gltf", "buf.bin")
    (folder / "buf.bin").write_bytes(payload)
    verts, faces = load_mesh(folder / "ok.gltf")
    assert verts.shape == (3, 3) and faces.tolist() == [[0, 1, 2]]

    (tmp_path / "secret.bin").write_bytes(payload)
    os.symlink(tmp_path / "secret.bin", folder / "link.bin")
    for uri, reason in [
        ("../secret.bin", "climbs out"),
        ("%2e%2e/secret.bin", "climbs out"),
        (str(tmp_path / "secret.bin"), "is absolute"),
        ("link.bin", "is a symlink"),
        ("http://127.0.0.1:9/secret.bin", "remote resource"),
    ]:
        _gltf(folder / "bad.gltf", uri)
        with pytest.raises(UnsafePathError, match=reason) as err:
            load_mesh(folder / "bad.gltf")
        assert "bad.gltf buffers[0]" in str(err.value)
