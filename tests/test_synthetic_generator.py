"""Tests of the synthetic datasets: caching, atomicity, determinism, formats and geometry."""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import math
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import io as sio

import meshrecon.data.datasets  # noqa: F401  (registers the splits)
from meshrecon.data import DatasetCatalog, MetadataCatalog
from meshrecon.data.datasets.synthetic import (
    CATEGORIES,
    SPLITS,
    SyntheticConfig,
    configure_synthetic,
    dataset_dir,
    ensure_generated,
    generator,
    get_synthetic_config,
    load_synthetic,
    set_synthetic_config,
    split_spec,
    synthetic_config_from_env,
)
from meshrecon.data.datasets.synthetic import scenes as scenes_module
from meshrecon.io import load_mesh
from meshrecon.render import unproject_depth

# scale 0.02: one model per category, 1-4 images per split; tiny images.
TINY = dict(scale=0.02, shapenet_views=3, pix3d_image_size=(96, 72), nyu_image_size=(64, 48))


def tiny(root, **kwargs) -> SyntheticConfig:
    return SyntheticConfig(root=str(root), **{**TINY, **kwargs})


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Each kind generated once at tiny scale: {(kind, split): (config, records)}."""
    config = tiny(tmp_path_factory.mktemp("synthetic"))
    splits = [("shapenet", "val"), ("pix3d", "train"), ("nyu", "test")]
    return {ks: (config, load_synthetic(*ks, config)) for ks in splits}


def _sha1(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


def _files(folder: str) -> dict[str, str]:
    """Relative path -> sha1 of every file under folder."""
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "**", "*"), recursive=True)):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.sha1(f.read()).hexdigest()
    return out


def _relative(records, folder):
    """Records with the folder prefix stripped from every string (for comparing roots)."""
    if isinstance(records, dict):
        return {k: _relative(v, folder) for k, v in records.items()}
    if isinstance(records, list):
        return [_relative(v, folder) for v in records]
    if isinstance(records, str):
        return records.replace(folder, "<root>")
    return records


# ------------------------------------------------------------------------ geometry references
def _silhouette(verts_cam: np.ndarray, faces: np.ndarray, K, H: int, W: int) -> np.ndarray:
    """Naive reference: pixels whose centre lies in some projected triangle (all Z > 0)."""
    fx, fy, cx, cy = K
    uv = np.stack(
        [cx - fx * verts_cam[:, 0] / verts_cam[:, 2], cy - fy * verts_cam[:, 1] / verts_cam[:, 2]],
        1,
    )
    out = np.zeros((H, W), bool)
    for a, b, c in uv[faces]:
        x0, x1 = (
            max(int(np.floor(min(a[0], b[0], c[0]))), 0),
            min(int(max(a[0], b[0], c[0])), W - 1),
        )
        y0, y1 = (
            max(int(np.floor(min(a[1], b[1], c[1]))), 0),
            min(int(max(a[1], b[1], c[1])), H - 1),
        )
        if x0 > x1 or y0 > y1:
            continue
        px, py = np.meshgrid(np.arange(x0, x1 + 1) + 0.5, np.arange(y0, y1 + 1) + 0.5)
        e0 = (b[0] - a[0]) * (py - a[1]) - (b[1] - a[1]) * (px - a[0])
        e1 = (c[0] - b[0]) * (py - b[1]) - (c[1] - b[1]) * (px - b[0])
        e2 = (a[0] - c[0]) * (py - c[1]) - (a[1] - c[1]) * (px - c[0])
        inside = ((e0 >= 0) & (e1 >= 0) & (e2 >= 0)) | ((e0 <= 0) & (e1 <= 0) & (e2 <= 0))
        out[y0 : y1 + 1, x0 : x1 + 1] |= inside
    return out


def _ray_depth(dirs: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Z of the nearest hit of rays from the origin along dirs (R, 3) with triangles (F, 3, 3)."""
    a, e1, e2 = tri[:, 0], tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    p = np.cross(dirs[:, None], e2[None])  # (R, F, 3)
    det = (e1[None] * p).sum(-1)
    s = -a[None]
    u = (s * p).sum(-1) / det
    q = np.cross(s, e1[None])
    v = (dirs[:, None] * q).sum(-1) / det
    t = (e2[None] * q).sum(-1) / det
    ok = (np.abs(det) > 1e-12) & (u >= -1e-9) & (v >= -1e-9) & (u + v <= 1 + 1e-9) & (t > 0)
    t = np.where(ok, t, np.inf).min(1)
    return t * dirs[:, 2]


def _winding(points: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Generalized winding number of closed surfaces (F, 3, 3) at points (P, 3)."""
    out = np.zeros(len(points))
    for start in range(0, len(points), 64):
        d = tri[None] - points[start : start + 64, None, None]  # (p, F, 3, 3)
        a, b, c = d[:, :, 0], d[:, :, 1], d[:, :, 2]
        la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
        num = (a * np.cross(b, c)).sum(-1)
        den = la * lb * lc + (a * b).sum(-1) * lc + (b * c).sum(-1) * la + (c * a).sum(-1) * lb
        out[start : start + 64] = 2 * np.arctan2(num, den).sum(1) / (4 * math.pi)
    return out


def _voxel_agreement(occ_xyz: np.ndarray, bounds: np.ndarray, tri: np.ndarray, rng) -> float:
    """Share of sampled voxels (half occupied) whose centre's inside-ness matches occupancy."""
    S = occ_xyz.shape[0]
    full, empty = np.argwhere(occ_xyz), np.argwhere(~occ_xyz)
    assert len(full) > 0 and len(empty) > 0
    pick = np.concatenate(
        [full[rng.choice(len(full), 100)], empty[rng.choice(len(empty), 100)]], axis=0
    )
    centres = bounds[0] + (pick + 0.5) * (bounds[1] - bounds[0]) / S
    inside = _winding(centres, tri) > 0.5
    return float((inside == occ_xyz[tuple(pick.T)]).mean())


# ------------------------------------------------------------------------ config and caching
def test_env_config_and_errors():
    env = {
        "MESHRECON_SYNTHETIC_SEED": "7",
        "MESHRECON_SYNTHETIC_SCALE": "0.5",
        "MESHRECON_SYNTHETIC_PIX3D_IMAGE_SIZE": "64x48",
    }
    config = synthetic_config_from_env(env)
    assert (config.seed, config.scale, config.pix3d_image_size) == (7, 0.5, (64, 48))
    with pytest.raises(ValueError, match="MESHRECON_SYNTHETIC_SCALE"):
        synthetic_config_from_env({"MESHRECON_SYNTHETIC_SCALE": "big"})
    with pytest.raises(ValueError, match="320x240"):
        synthetic_config_from_env({"MESHRECON_SYNTHETIC_NYU_IMAGE_SIZE": "64"})
    with pytest.raises(ValueError, match="scale"):
        SyntheticConfig(scale=0)
    with pytest.raises(ValueError, match="train_scale must be > 0, got -1"):
        SyntheticConfig(train_scale=-1)
    assert synthetic_config_from_env({"MESHRECON_SYNTHETIC_TRAIN_SCALE": "3"}).train_scale == 3


def test_train_scale_grows_the_training_splits_only(tmp_path):
    base, more = SyntheticConfig(), SyntheticConfig(train_scale=5)
    for kind, key in (("shapenet", "models_per_category"), ("pix3d", "images"), ("nyu", "images")):
        assert split_spec(kind, "train", more)[key] == 5 * split_spec(kind, "train", base)[key]
        for split in ("val", "test"):
            assert split_spec(kind, split, more) == split_spec(kind, split, base)
            assert dataset_dir(kind, split, more) == dataset_dir(kind, split, base)
    assert dataset_dir("nyu", "train", more) != dataset_dir("nyu", "train", base)
    assert split_spec("pix3d", "train", more)["models_per_category"] == 20
    # With SCALE: multiplied together. The larger split holds the smaller one's items (each item
    # draws from its own stream), so more data adds rooms and does not replace them.
    small = tiny(tmp_path)
    large = dataclasses.replace(small, train_scale=3)
    assert (
        split_spec("nyu", "train", large)["images"]
        == 3 * split_spec("nyu", "train", small)["images"]
    )
    records = {c: load_synthetic("nyu", "train", c) for c in (small, large)}
    digests = {c: [_sha1(r["file_name"]) for r in recs] for c, recs in records.items()}
    assert len(digests[large]) == 3 * len(digests[small])
    assert set(digests[small]) <= set(digests[large])


def test_configure_synthetic_precedence(monkeypatch):
    from meshrecon.config import get_cfg

    previous = get_synthetic_config()
    try:
        monkeypatch.setenv("MESHRECON_SYNTHETIC_SEED", "5")
        cfg = get_cfg()
        cfg.DATASETS.SYNTHETIC.SCALE = 0.25
        config = configure_synthetic(cfg)
        # SCALE set in the config wins; SEED left at its default keeps the environment's.
        assert (config.scale, config.seed) == (0.25, 5)
        assert get_synthetic_config() == config
        meta = MetadataCatalog.get("synthetic_nyu_test")
        assert meta.dataset_root == dataset_dir("nyu", "test", config)
    finally:
        set_synthetic_config(previous)


def test_folder_keyed_by_version_sizes_seed_and_source(tmp_path, monkeypatch):
    base = tiny(tmp_path)
    folder = dataset_dir("pix3d", "test", base)
    assert folder == dataset_dir("pix3d", "test", tiny(tmp_path))
    assert os.path.basename(folder).startswith(f"v{generator.GENERATOR_VERSION}-")
    variants = [
        dataclasses.replace(base, seed=1),
        dataclasses.replace(base, scale=1.0),
        dataclasses.replace(base, pix3d_image_size=(80, 60)),
    ]
    assert len({folder, *(dataset_dir("pix3d", "test", c) for c in variants)}) == 4
    # The number of views only concerns ShapeNet: other kinds keep their folder.
    assert dataset_dir("pix3d", "test", dataclasses.replace(base, shapenet_views=5)) == folder
    assert dataset_dir("shapenet", "val", dataclasses.replace(base, shapenet_views=5)) != (
        dataset_dir("shapenet", "val", base)
    )
    monkeypatch.setattr(generator, "GENERATOR_VERSION", generator.GENERATOR_VERSION + 1)
    assert dataset_dir("pix3d", "test", base) != folder
    monkeypatch.undo()
    monkeypatch.setattr(generator, "_source_digest", lambda: "edited generator code")
    assert dataset_dir("pix3d", "test", base) != folder


def test_unknown_split():
    with pytest.raises(KeyError, match="known"):
        dataset_dir("pix3d", "holdout")


def test_every_kind_has_a_validation_split_disjoint_from_train_and_test(tmp_path):
    # Validation picks checkpoints and stops training, so it must share no model, scene or
    # room with train or test: each split draws from its own streams (kind, split) of the seed.
    assert all(s == ("train", "val", "test") for s in SPLITS.values())
    base = SyntheticConfig()
    assert split_spec("pix3d", "val", base)["images"] == 40
    assert split_spec("nyu", "val", base)["images"] == 40
    config = tiny(tmp_path)
    for kind in ("pix3d", "nyu"):
        images = {}
        for split in ("train", "val", "test"):
            records = load_synthetic(kind, split, config)
            images[split] = {_sha1(r["file_name"]) for r in records}
        assert images["val"].isdisjoint(images["train"]) and images["val"].isdisjoint(
            images["test"]
        ), kind
    meshes = {}
    for split in ("train", "val", "test"):
        folder = dataset_dir("pix3d", split, config)
        paths = sorted(glob.glob(os.path.join(folder, "model", "*", "*", "model.obj")))
        meshes[split] = {_sha1(p) for p in paths}
    assert len(meshes["val"]) == 9
    assert meshes["val"].isdisjoint(meshes["train"] | meshes["test"])


def test_registered_names_and_metadata(tmp_path):
    names = {n for n in DatasetCatalog.list() if not n.endswith("_multiview")}
    for kind, splits in {"shapenet": 3, "pix3d": 3, "nyu": 3}.items():
        assert len([n for n in names if n.startswith(f"synthetic_{kind}_")]) == splits
    # Each ShapeNet-style split also has its grouped, multi-view twin.
    for split in ("train", "val", "test"):
        twin = f"synthetic_shapenet_{split}_multiview"
        assert MetadataCatalog.get(twin).evaluator_type == "multiview"
    assert MetadataCatalog.get("synthetic_pix3d_train").evaluator_type == "pix3d"
    assert MetadataCatalog.get("synthetic_shapenet_val").evaluator_type == "shapenet"
    assert MetadataCatalog.get("synthetic_nyu_train").evaluator_type == "depth"
    assert MetadataCatalog.get("synthetic_nyu_val").evaluator_type == "depth"
    assert MetadataCatalog.get("synthetic_pix3d_val").evaluator_type == "pix3d"
    assert MetadataCatalog.get("synthetic_pix3d_test").thing_classes == list(CATEGORIES)
    previous = set_synthetic_config(tiny(tmp_path))
    try:
        records = DatasetCatalog.get("synthetic_nyu_test")
        meta = MetadataCatalog.get("synthetic_nyu_test")
        assert meta.dataset_root == dataset_dir("nyu", "test")
        assert records[0]["file_name"].startswith(meta.dataset_root)
    finally:
        set_synthetic_config(previous)


# ------------------------------------------------------------------------ generation
def test_crash_leaves_no_trusted_folder(tmp_path, monkeypatch):
    config = tiny(tmp_path)
    calls = []

    def crash(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(scenes_module, "save_depth_png16", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        load_synthetic("nyu", "test", config)
    folder = dataset_dir("nyu", "test", config)
    assert calls and not os.path.exists(folder)
    assert os.listdir(os.path.dirname(folder)) == [os.path.basename(folder) + ".lock"]
    monkeypatch.undo()
    assert len(load_synthetic("nyu", "test", config)) == 1


def test_log_says_when_and_why_a_split_is_generated(tmp_path, caplog):
    """A generation is announced with the dataset, its parameters, the cache key and the
    reason: nothing cached, or how the cached copies differ (the config key to change)."""
    import logging

    logger = generator.logger
    level = logger.level
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.INFO)
    try:
        load_synthetic("nyu", "test", tiny(tmp_path))
        first = caplog.text
        caplog.clear()
        load_synthetic("nyu", "test", tiny(tmp_path))  # cached: nothing announced
        again = caplog.text
        caplog.clear()
        load_synthetic("nyu", "test", tiny(tmp_path, nyu_image_size=(80, 60)))
        other = caplog.text
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(level)
    key = os.path.basename(dataset_dir("nyu", "test", tiny(tmp_path)))
    assert "Generating synthetic_nyu_test (seed 0, images 1, image_size [64, 48])" in first
    assert f"no copy of this split is cached yet (cache key {key})" in first
    assert "Generating" not in again
    assert "Generating synthetic_nyu_test" in other and "image_size [80, 60]" in other
    assert f"{key} has image_size [64, 48] (DATASETS.SYNTHETIC.NYU_IMAGE_SIZE)" in other


def test_killed_generation_is_not_trusted(tmp_path):
    """A process killed (SIGKILL) mid-generation leaves only a temp folder, later discarded."""
    config = tiny(tmp_path)
    script = (
        "import os, signal\n"
        "from meshrecon.data.datasets.synthetic import SyntheticConfig, load_synthetic\n"
        "from meshrecon.data.datasets.synthetic import scenes\n"
        "scenes.save_depth_png16 = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
        f"load_synthetic('nyu', 'test', SyntheticConfig(root={str(tmp_path)!r}, **{TINY!r}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    folder = dataset_dir("nyu", "test", config)
    leftovers = glob.glob(os.path.join(os.path.dirname(folder), ".tmp-*"))
    assert not os.path.exists(folder) and len(leftovers) == 1
    assert os.path.isfile(os.path.join(leftovers[0], "images", "00000.png"))
    assert len(load_synthetic("nyu", "test", config)) == 1
    assert not glob.glob(os.path.join(os.path.dirname(folder), ".tmp-*"))


def test_concurrent_generators_generate_once(tmp_path, monkeypatch):
    calls = []

    def fake_generate(spec, out_dir):
        calls.append(out_dir)
        time.sleep(0.3)
        return [{"file_name": None, "height": 1, "width": 1}], {"metadata": {}}

    monkeypatch.setattr(scenes_module, "generate_split", fake_generate)
    config = tiny(tmp_path)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(ensure_generated("nyu", "test", config)))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and results == [dataset_dir("nyu", "test", config)] * 3


def test_missing_file_fails_with_its_path(tmp_path):
    config = tiny(tmp_path)
    records = load_synthetic("nyu", "test", config)
    os.remove(records[0]["depth"]["path"])
    with pytest.raises(FileNotFoundError, match=records[0]["depth"]["path"]):
        load_synthetic("nyu", "test", config)


def test_same_seed_identical_different_seed_differs(tmp_path, generated):
    config, records = generated[("shapenet", "val")]
    for kind, split in (("shapenet", "val"), ("pix3d", "test"), ("nyu", "test")):
        first = generated.get((kind, split), (config, None))[1] or load_synthetic(
            kind, split, config
        )
        again = dataclasses.replace(config, root=str(tmp_path / "again"))
        second = load_synthetic(kind, split, again)
        a, b = dataset_dir(kind, split, config), dataset_dir(kind, split, again)
        assert _relative(first, a) == _relative(second, b)
        files = _files(a)
        assert files == _files(b) and any(p.endswith(".png") for p in files)
    other = dataclasses.replace(config, root=str(tmp_path / "other"), seed=1)
    records_other = load_synthetic("pix3d", "test", other)
    a, b = dataset_dir("pix3d", "test", config), dataset_dir("pix3d", "test", other)
    assert _relative(records_other, b) != _relative(load_synthetic("pix3d", "test", config), a)
    assert _files(a)["img/00000.png"] != _files(b)["img/00000.png"]


# ------------------------------------------------------------------------ record formats
def _is_matrix(x, rows, cols) -> bool:
    return len(x) == rows and all(len(r) == cols and all(type(v) is float for v in r) for r in x)


def _is_floats(x, n) -> bool:
    return isinstance(x, list) and len(x) == n and all(type(v) is float for v in x)


def test_shapenet_records(generated):
    _, records = generated[("shapenet", "val")]
    assert len(records) == len(CATEGORIES) * 3
    keys = {
        "file_name", "height", "width", "image_id", "synset_id", "model_id", "category",
        "category_id", "view_index", "K", "R", "t", "azimuth", "elevation", "distance", "mesh",
        "samples", "voxel", "depth",
    }  # fmt: skip
    for r in records:
        assert set(r) == keys
        assert r["image_id"] == f"{r['synset_id']}/{r['model_id']}/{r['view_index']:02d}"
        assert CATEGORIES[r["category_id"]] == r["category"] == r["synset_id"]
        assert (r["height"], r["width"]) == (137, 137) and 0 <= r["view_index"] < 3
        assert _is_floats(r["K"], 4) and _is_matrix(r["R"], 3, 3) and _is_floats(r["t"], 3)
        assert 0 <= r["azimuth"] < 360 and 25 <= r["elevation"] < 30
        assert 0.65 * 1.75 <= r["distance"] < 0.95 * 1.75
        assert r["depth"]["kind"] == "png16" and r["depth"]["scale"] == 1000.0
        for path in (r["file_name"], r["mesh"], r["samples"], r["voxel"], r["depth"]["path"]):
            assert os.path.isabs(path) and os.path.isfile(path)
    image = Image.open(records[0]["file_name"])
    assert image.mode == "RGBA" and image.size == (137, 137)
    alpha = np.asarray(image)[..., 3]
    assert alpha[0, 0] == 0 and alpha.max() == 255
    folder = os.path.dirname(records[0]["file_name"])
    meta = np.loadtxt(os.path.join(folder, "rendering_metadata.txt"))
    assert meta.shape == (3, 5) and np.allclose(meta[:, [2, 4]], [0, 25])
    by_view = {r["view_index"]: r for r in records if r["model_id"] == records[0]["model_id"]}
    assert np.allclose(meta[:, 3] * 1.75, [by_view[v]["distance"] for v in range(3)], atol=1e-5)
    samples = torch.load(records[0]["samples"])
    assert samples["points_sampled"].shape == (10000, 3)
    assert torch.allclose(samples["normals_sampled"].norm(dim=1), torch.ones(10000), atol=1e-4)
    voxels = np.load(records[0]["voxel"])
    assert voxels["occupancy_32"].shape == (32,) * 3 and voxels["occupancy_48"].shape == (48,) * 3
    assert (voxels["occupancy"] == voxels["occupancy_32"]).all()


def test_pix3d_records(generated):
    config, records = generated[("pix3d", "train")]
    W, H = config.pix3d_image_size
    ann_keys = {"bbox", "category_id", "segmentation", "mesh", "voxel", "K", "R", "t", "iscrowd"}
    assert len(records) == 4 and len({r["image_id"] for r in records}) == 4
    for r in records:
        assert set(r) == {"file_name", "height", "width", "image_id", "annotations"}
        assert (r["height"], r["width"]) == (H, W) and Image.open(r["file_name"]).size == (W, H)
        assert 1 <= len(r["annotations"]) <= 3
        for a in r["annotations"]:
            assert set(a) == ann_keys and a["iscrowd"] == 0
            assert _is_floats(a["bbox"], 4) and _is_floats(a["K"], 4) and _is_floats(a["t"], 3)
            assert _is_matrix(a["R"], 3, 3)
            assert np.allclose(np.asarray(a["R"]) @ np.asarray(a["R"]).T, np.eye(3), atol=1e-6)
            mask = np.asarray(Image.open(a["segmentation"]))
            assert mask.shape == (H, W) and set(np.unique(mask)) <= {0, 255}
            rows, cols = np.nonzero(mask)
            assert a["bbox"] == [cols.min(), rows.min(), cols.max() + 1.0, rows.max() + 1.0]
            assert sio.loadmat(a["voxel"])["voxel"].dtype == np.uint8
    meta = MetadataCatalog.get("synthetic_pix3d_train")
    assert meta.thing_classes == list(CATEGORIES) and meta.evaluator_type == "pix3d"


def test_nyu_records_and_dense_depth(generated):
    config, records = generated[("nyu", "test")]
    W, H = config.nyu_image_size
    assert W * 3 == H * 4
    keys = {"file_name", "image", "height", "width", "image_id", "K", "depth", "protocol"}
    for r in records:
        assert set(r) == keys and r["image"] is None and _is_floats(r["K"], 4)
        assert r["protocol"] == {
            "name": "synthetic_nyu",
            "crop": None,
            "min_depth": 1e-3,
            "max_depth": 10.0,
            "gt": "rendered",
        }
        fx = r["K"][0]
        assert abs(2 * math.degrees(math.atan(W / 2 / fx)) - 63.3) < 1.0  # Kinect's fov
        depth = np.asarray(Image.open(r["depth"]["path"])) / r["depth"]["scale"]
        assert depth.shape == (H, W) and (depth > 0.1).all() and (depth < 10).all()
        assert Image.open(r["file_name"]).size == (W, H)


# ------------------------------------------------------------------------ geometry
def test_shapenet_geometry(generated):
    """Mesh through R, t, K covers the alpha mask; depth lies on the mesh; voxels = inside."""
    _, records = generated[("shapenet", "val")]
    rng = np.random.default_rng(0)
    for r in records[::2]:
        verts, faces = (x.numpy().astype(np.float64) for x in load_mesh(r["mesh"]))
        faces = faces.astype(np.int64)
        verts_cam = verts @ np.asarray(r["R"]).T + np.asarray(r["t"])
        alpha = np.asarray(Image.open(r["file_name"]))[..., 3] > 0
        sil = _silhouette(verts_cam, faces, r["K"], 137, 137)
        assert (sil & alpha).sum() / (sil | alpha).sum() > 0.95, r["image_id"]
        depth_mm = np.asarray(Image.open(r["depth"]["path"])).astype(np.float64)
        assert ((depth_mm > 0) == alpha).all()
        points, valid = unproject_depth(torch.from_numpy(depth_mm / 1000.0), r["K"])
        pix = np.argwhere(valid.numpy())
        pix = pix[rng.choice(len(pix), 40)]
        p = points.numpy()[pix[:, 0], pix[:, 1]]
        z_ray = _ray_depth(p / np.linalg.norm(p, axis=1, keepdims=True), verts_cam[faces])
        assert np.abs(z_ray - p[:, 2]).max() < 1.5e-3
    for r in records[:: 3 * 3]:  # one view per model
        verts, faces = (x.numpy().astype(np.float64) for x in load_mesh(r["mesh"]))
        tri = verts[faces.astype(np.int64)]
        voxels = np.load(r["voxel"])
        assert str(voxels["align"]) == "corner"
        occ_xyz = np.transpose(voxels["occupancy_32"], (2, 1, 0))
        assert _voxel_agreement(occ_xyz, voxels["bounds"], tri, rng) > 0.97, r["image_id"]


def test_pix3d_geometry(generated):
    """Masks are the visible part of the projected mesh; voxel.mat follows Mesh R-CNN's read."""
    config, records = generated[("pix3d", "train")]
    W, H = config.pix3d_image_size
    rng = np.random.default_rng(0)
    checked_iou = 0
    for r in records:
        sils = []
        for a in r["annotations"]:
            verts, faces = (x.numpy().astype(np.float64) for x in load_mesh(a["mesh"]))
            verts_cam = verts @ np.asarray(a["R"]).T + np.asarray(a["t"])
            sils.append(_silhouette(verts_cam, faces.astype(np.int64), a["K"], H, W))
        for k, a in enumerate(r["annotations"]):
            mask = np.asarray(Image.open(a["segmentation"])) > 0
            assert (mask & sils[k]).sum() >= 0.97 * mask.sum()
            others = np.zeros_like(mask)
            for j, s in enumerate(sils):
                others |= s if j != k else False
            if not (others & sils[k]).any():  # nothing in front of it: the whole silhouette
                assert (mask & sils[k]).sum() / (mask | sils[k]).sum() > 0.9
                checked_iou += 1
    assert checked_iou > 0
    a = records[0]["annotations"][0]
    mat = sio.loadmat(a["voxel"])
    # Mesh R-CNN's reading: rot90(k=3, axes=(1, 2)) turns Pix3D's voxel frame into (x, y, z).
    occ_xyz = np.rot90(mat["voxel"], k=3, axes=(1, 2)) > 0
    verts, faces = (x.numpy().astype(np.float64) for x in load_mesh(a["mesh"]))
    tri = verts[faces.astype(np.int64)]
    assert _voxel_agreement(occ_xyz, mat["bounds"], tri, rng) > 0.97


def test_source_digest_does_not_depend_on_the_import_path(monkeypatch):
    # tools/*.py put "tools/.." on sys.path, so the module's __file__ is not normalized there;
    # the cache keys (datasets, pretrained weights) must be the same as under `python -m`.
    import os

    from meshrecon.data.datasets.synthetic import generator

    normal = generator._source_digest()
    here = os.path.dirname(os.path.abspath(generator.__file__))
    detour = os.path.join(here, "..", os.path.basename(here), os.path.basename(generator.__file__))
    assert os.path.abspath(detour) == os.path.abspath(generator.__file__) and detour != normal
    monkeypatch.setattr(generator, "__file__", detour)
    assert generator._source_digest() == normal
