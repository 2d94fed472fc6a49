"""tools/demo.py end to end with a tiny random Mesh R-CNN checkpoint."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
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


# ------------------------------------------------------------------ image size bounds


def _noise_image(path, width, height, seed=0):
    # A smooth pattern compresses well: a 3000 x 3000 PNG stays small on disk.
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x * 255 // width), (y * 255 // height), ((x + y) % 256)], -1)
    Image.fromarray(rgb.astype(np.uint8)).save(path)


def test_single_view_demo_on_a_large_image_works_at_model_size(tmp_path):
    from meshrecon.apps.demo.inputs import WORK_SIDE
    from meshrecon.apps.demo.single_view import SINGLE_VIEW_INPUT_SIZE
    from meshrecon.model_zoo import get_config_file

    image = tmp_path / "photo.png"
    _noise_image(image, 3000, 2000)
    out = tmp_path / "out"
    demo = _load_demo()
    config = get_config_file("synthetic/sphereinit.yaml")
    argv = ["--config-file", config, "--input", str(image), "--output", str(out)]
    assert demo.main([*argv, "--allow-random-weights"]) == 0
    # The model saw a square of its input size (the whole image centred in it: no mask), and
    # the pictures have the working size (longer side WORK_SIDE), not the photo's 6 megapixels.
    side = SINGLE_VIEW_INPUT_SIZE
    with Image.open(out / "photo_views.png") as views:
        assert views.size == (4 * side, side)
    with Image.open(out / "photo_input.png") as model_input:
        assert model_input.size == (side, side)
    with Image.open(out / "photo_overlay.png") as overlay:
        assert overlay.size == (WORK_SIDE, round(2000 * WORK_SIDE / 3000))
    verts, faces, _ = load_obj(out / "photo_mesh.obj")
    assert faces.verts_idx.shape[0] > 0 and torch.isfinite(verts).all()


def test_single_view_demo_scales_K_with_the_resize(tmp_path):
    from meshrecon.apps.demo.single_view import fit_image_to_input

    img = np.zeros((300, 600, 3), dtype=np.uint8)
    small, K = fit_image_to_input(img, 150, [600.0, 610.0, 300.0, 150.0])
    assert small.shape == (75, 150, 3)
    assert K == pytest.approx([150.0, 152.5, 75.0, 37.5])
    same, K2 = fit_image_to_input(small, 150, None)
    assert same is small and K2 is None


def test_detector_demo_on_a_large_image_writes_model_size_pictures(tmp_path):
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
    _noise_image(image, 3000, 2000)
    out = tmp_path / "out"
    demo = _load_demo()
    argv = ["--config-file", str(cfg_file), "--input", str(image), "--output", str(out)]
    argv += ["--threshold", "0.0", "MODEL.WEIGHTS", str(weights)]
    assert demo.main(argv) == 0
    # Shorter side 64 (longer 96): the pictures have the model's input size.
    for name in ("scene_det.png", "scene_meshes.png"):
        with Image.open(out / name) as picture:
            assert picture.size == (96, 64)
    assert len(sorted(out.glob("scene_*.obj"))) == 3


def test_demo_refuses_an_image_beyond_the_maximum(tmp_path, monkeypatch, capsys):
    from meshrecon.model_zoo import get_config_file
    from meshrecon.utils import image_limits

    image = tmp_path / "huge.png"
    _noise_image(image, 400, 300)
    monkeypatch.setattr(image_limits, "MAX_IMAGE_PIXELS", 100 * 100)
    demo = _load_demo()
    config = get_config_file("synthetic/sphereinit.yaml")
    argv = ["--config-file", config, "--input", str(image), "--output", str(tmp_path / "out")]
    # Skipped with a one-line error naming the file; nothing done: exit status 1, no output.
    assert demo.main([*argv, "--allow-random-weights"]) == 1
    msg = capsys.readouterr().err
    assert str(image) in msg and "400 x 300" in msg and "MAX_IMAGE_PIXELS" in msg
    assert "Traceback" not in msg
    assert not (tmp_path / "out").exists()


def test_single_view_demo_feeds_the_model_at_input_size_with_K_scaled(tmp_path):
    from meshrecon.apps.demo.single_view import run_single_view_demo
    from meshrecon.config import get_cfg

    class Spy(torch.nn.Module):
        def forward(self, inputs):
            self.seen = inputs
            return [{}]

    image = tmp_path / "photo.jpg"
    _noise_image(image, 3000, 2000)
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "SingleViewReconstructor"
    cfg.INPUT.FORMAT = "RGB"
    spy = Spy()
    run_single_view_demo(
        cfg, str(image), str(tmp_path / "out"), K=[3000.0, 3000.0, 1500.0, 1000.0], model=spy
    )
    (item,) = spy.seen
    assert tuple(item["image"].shape) == (3, 91, 137)
    assert (item["height"], item["width"]) == (91, 137)
    # K follows the file's pixels to the input's: x by 137 / 3000, y by 91 / 2000.
    sx, sy = 137 / 3000, 91 / 2000
    assert item["K"].tolist() == pytest.approx([3000 * sx, 3000 * sy, 1500 * sx, 1000 * sy])
