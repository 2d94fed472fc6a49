"""tools/demo.py end to end with a tiny random Mesh R-CNN checkpoint."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from test_meshrcnn_roi_heads import _cfg

from meshrecon.io.mesh_io import load_obj
from meshrecon.modeling import build_model

REPO = Path(__file__).resolve().parents[1]


def _load_demo():
    spec = importlib.util.spec_from_file_location("demo", REPO / "tools" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_writes_objs_and_overlays(tmp_path):
    torch.manual_seed(0)
    cfg = _cfg("meshrcnn")
    cfg.DATASETS.TEST = ("synthetic_pix3d_test",)
    cfg.INPUT.MIN_SIZE_TEST = 64
    cfg.INPUT.MAX_SIZE_TEST = 96
    model = build_model(cfg)
    weights = tmp_path / "model.pth"
    torch.save({"model": model.state_dict()}, weights)
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(cfg.dump())
    image = tmp_path / "scene.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "out"
    demo = _load_demo()
    argv = ["--config-file", str(cfg_file), "--input", str(image), "--output", str(out)]
    argv += ["--threshold", "0.0", "MODEL.WEIGHTS", str(weights)]
    assert demo.main(argv) == 0
    objs = sorted(out.glob("scene_*.obj"))
    assert len(objs) == 3  # TEST.DETECTIONS_PER_IMAGE of the tiny config
    verts = load_obj(objs[0])[0]
    assert verts.shape[0] > 0 and bool((verts[:, 2] > 0).all())  # in front of the camera
    det = np.asarray(Image.open(out / "scene_det.png"))
    overlay = np.asarray(Image.open(out / "scene_meshes.png"))
    assert det.shape == overlay.shape == (64, 96, 3)
    assert (overlay != np.asarray(Image.open(image))).any()  # something was drawn


def test_demo_single_view_model_writes_its_mesh(tmp_path):
    from meshrecon.model_zoo import get_config_file

    image = tmp_path / "object.png"
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (137, 137, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "out"
    config = get_config_file("synthetic/sphereinit.yaml")
    demo = _load_demo()
    argv = ["--config-file", config, "--input", str(image), "--output", str(out)]
    assert demo.main([*argv, "--allow-random-weights"]) == 0
    verts, faces, _ = load_obj(out / "object_mesh.obj")
    # Sphere-Init refines an ico-sphere: its topology survives the (random) refinement.
    assert verts.shape[1] == 3 and faces.verts_idx.shape[0] > 0 and torch.isfinite(verts).all()
    # Rendered from the input camera and three turned viewpoints, side by side; the mesh covers
    # part of every panel (not all background).
    views = np.asarray(Image.open(out / "object_views.png"))
    assert views.shape == (137, 4 * 137, 3)
    first = views[:, :137].astype(int)
    original = np.asarray(Image.open(image)).astype(int)
    assert (np.abs(first - original).sum(-1) > 30).mean() > 0.01  # the mesh is drawn over it
    for k in range(1, 4):
        panel = views[:, 137 * k : 137 * (k + 1)]
        assert (panel.sum(-1) < 3 * 250).mean() > 0.01  # something besides white
