"""meshrecon demo on photos and folders: any PIL image, the object crop, colours from the photo,
skipped files, the frictions of issue 22 (threshold, focal length, framing, help)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from meshrecon.apps.demo.colors import NEUTRAL_GREY, sample_vertex_colors
from meshrecon.apps.demo.inputs import OBJECT_FRACTION, crop_object, load_demo_image
from meshrecon.cli import demo
from meshrecon.io.appearance import load_mesh_with_appearance
from meshrecon.model_zoo import get_config_file

RED, BLUE, WHITE = (220, 20, 20), (20, 20, 220), (255, 255, 255)


def _photo_folder(folder):
    """A JPEG turned by EXIF, an RGBA PNG, a grayscale PNG, a 16-bit PNG and a text file."""
    folder.mkdir()
    # 60 wide x 40 high as stored; orientation 6 says "turn 90 degrees clockwise to view".
    stored = np.full((40, 60, 3), 90, np.uint8)
    stored[:10, :15] = RED  # top-left as stored: top-right once upright
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(folder / "a_photo.jpg", exif=exif, quality=95)
    rgba = np.zeros((100, 120, 4), np.uint8)
    rgba[..., :3] = (30, 160, 30)  # transparent green around the object
    rgba[20:70, 30:60] = (*RED, 255)  # the object: 30 wide, 50 high
    Image.fromarray(rgba).save(folder / "b_object.png")
    gray = np.tile(np.linspace(0, 255, 80, dtype=np.uint8), (64, 1))
    Image.fromarray(gray).save(folder / "c_gray.png")
    deep = np.tile(np.linspace(0, 65535, 70).astype(np.uint16), (50, 1))
    Image.fromarray(deep).save(folder / "d_deep.png")
    (folder / "e_notes.txt").write_text("not a picture\n")
    return folder


def test_demo_on_a_folder_of_photos(tmp_path, capsys):
    photos = _photo_folder(tmp_path / "photos")
    out = tmp_path / "out"
    config = get_config_file("synthetic/sphereinit.yaml")
    argv = ["--config-file", config, "--input", str(photos), "--output", str(out)]
    assert demo.main([*argv, "--allow-random-weights"]) == 0
    captured = capsys.readouterr()
    for stem in ("a_photo", "b_object", "c_gray", "d_deep"):
        for suffix in ("_mesh.obj", "_mesh.glb", "_mesh.ply", "_overlay.png", "_input.png"):
            assert (out / f"{stem}{suffix}").stat().st_size > 0, stem + suffix
    assert not list(out.glob("e_notes*"))
    # The non-image: one line naming it, no traceback; the run says what it did and skipped.
    (line,) = [x for x in captured.err.splitlines() if "e_notes.txt" in x]
    assert "not an image" in line and "Traceback" not in captured.err
    assert "4 image(s) done, 1 skipped: e_notes.txt (not an image)" in captured.out
    page = (out / "index.html").read_text()
    assert all(f"{s}_mesh.glb" in page for s in ("a_photo", "b_object", "c_gray", "d_deep"))
    assert "e_notes.txt" in page and "Skipped" in page
    # EXIF orientation applied: upright, the photo is 40 wide and 60 high, red at top-right.
    overlay = np.asarray(Image.open(out / "a_photo_overlay.png"))
    assert overlay.shape == (60, 40, 3)
    upright = load_demo_image(str(photos / "a_photo.jpg")).rgb
    assert upright.shape == (60, 40, 3)
    assert upright[3, 36, 0] > 180 and upright[3, 3, 0] < 130  # red top-right, grey top-left
    # The RGBA image is cropped around its alpha: object centred, 2/3 of the side, on white.
    seen = np.asarray(Image.open(out / "b_object_input.png")).astype(int)
    obj = np.abs(seen - RED).sum(-1) < 60
    ys, xs = np.nonzero(obj)
    assert (ys.max() - ys.min() + 1) == pytest.approx(137 * OBJECT_FRACTION, abs=3)
    assert (xs.min() + xs.max()) / 2 == pytest.approx(68, abs=1.5)
    assert (ys.min() + ys.max()) / 2 == pytest.approx(68, abs=1.5)
    assert (seen[0, 0] == WHITE).all() and (seen[68, 5] == WHITE).all()  # not the green
    # The 16-bit gradient is scaled to 8 bits, not clipped to white.
    deep = load_demo_image(str(photos / "d_deep.png"))
    assert deep.mode.startswith("I") and deep.rgb[0, 0, 0] == 0 and deep.rgb[0, -1, 0] == 255
    assert 100 < deep.rgb[0, 35, 0] < 155
    # The mesh header states the convention.
    assert "+X left, +Y up, +Z forward" in (out / "b_object_mesh.obj").read_text()[:400]


def test_crop_box_from_alpha():
    rgb = np.zeros((100, 120, 3), np.uint8)
    mask = np.zeros((100, 120), bool)
    mask[20:70, 30:60] = True  # box x 30..59, y 20..69: 50 high
    crop_rgb, crop = crop_object(rgb, mask, 137, WHITE)
    side = round(50 / OBJECT_FRACTION)
    assert (crop.side, crop.size) == (side, 137)
    assert (crop.x0, crop.y0) == (round(45 - side / 2), round(45 - side / 2))
    assert crop_rgb.shape == (137, 137, 3)
    # The crop's camera maps back to the image: the crop's centre is the box's centre.
    fx, fy, cx, cy = crop.K_to_image([100.0, 100.0, 68.0, 68.0])
    assert fx == pytest.approx(100 * side / 137)
    assert cx == pytest.approx((68.5) * side / 137 + crop.x0 - 0.5)


def test_vertex_colors_come_from_the_image_half_red_half_blue():
    from meshrecon.ops import ico_sphere

    sphere = ico_sphere(3)
    verts = sphere.verts_packed() * 0.5 + torch.tensor([0.0, 0.0, 3.0])
    faces = sphere.faces_packed()
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, :32], image[:, 32:] = RED, BLUE
    colors, seen = sample_vertex_colors(verts, faces, image, [60.0, 60.0, 31.5, 31.5])
    front = verts[:, 2] < 2.9
    back = verts[:, 2] > 3.05
    # +X is the camera's left: those vertices project onto the image's left (red) half.
    left, right = front & (verts[:, 0] > 0.1), front & (verts[:, 0] < -0.1)
    assert left.sum() > 10 and right.sum() > 10
    assert torch.allclose(colors[left], torch.tensor(RED) / 255.0, atol=1e-5)
    assert torch.allclose(colors[right], torch.tensor(BLUE) / 255.0, atol=1e-5)
    assert bool(seen[front].all()) and not bool(seen[back].any())
    assert torch.allclose(colors[back], torch.tensor(NEUTRAL_GREY))
    # Off the image: grey.
    far = verts + torch.tensor([5.0, 0.0, 0.0])
    colors, seen = sample_vertex_colors(far, faces, image, [60.0, 60.0, 31.5, 31.5])
    assert not bool(seen.any())


class _SphereModel(torch.nn.Module):
    """A 'single-view model' predicting a sphere 1 unit in front of the training camera."""

    def forward(self, inputs):
        from meshrecon.ops import ico_sphere

        self.seen = inputs
        s = ico_sphere(3)
        return [
            {"mesh": (s.verts_packed() * 0.2 + torch.tensor([0.0, 0.0, 1.0]), s.faces_packed())}
        ]


def test_demo_colours_follow_the_crop_camera_back_to_the_photo(tmp_path):
    from meshrecon.apps.demo.single_view import run_single_view_demo
    from meshrecon.config import get_cfg

    # An object off-centre in the photo: left half red, right half blue.
    rgba = np.zeros((200, 300, 4), np.uint8)
    rgba[40:160, 150:270] = (*RED, 255)
    rgba[40:160, 210:270, :3] = BLUE
    Image.fromarray(rgba).save(tmp_path / "obj.png")
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "SingleViewReconstructor"
    cfg.INPUT.FORMAT = "RGB"
    model = _SphereModel()
    written = run_single_view_demo(
        cfg, str(tmp_path / "obj.png"), str(tmp_path / "out"), model=model
    )
    assert written["mask"] == "alpha channel"
    for key in ("mesh", "mesh_ply", "mesh_glb"):
        verts, _, app = load_mesh_with_appearance(written[key])
        front = verts[:, 2] < 0.95
        left, right = front & (verts[:, 0] > 0.05), front & (verts[:, 0] < -0.05)
        red, blue = torch.tensor(RED) / 255.0, torch.tensor(BLUE) / 255.0
        assert torch.allclose(app.vertex_colors[left], red, atol=2 / 255), key
        assert torch.allclose(app.vertex_colors[right], blue, atol=2 / 255), key
        assert torch.allclose(
            app.vertex_colors[verts[:, 2] > 1.05], torch.tensor(NEUTRAL_GREY), atol=1 / 255
        )
    # --no-color: no colours in the files.
    written = run_single_view_demo(
        cfg, str(tmp_path / "obj.png"), str(tmp_path / "plain"), model=model, color=False
    )
    assert load_mesh_with_appearance(written["mesh_glb"])[2].kind == "none"
    # The overlay draws the sphere over the object's place in the photo, not elsewhere.
    overlay = np.asarray(Image.open(written["overlay"])).astype(int)
    photo = np.asarray(Image.open(tmp_path / "obj.png").convert("RGB")).astype(int)
    drawn = np.abs(overlay - photo).sum(-1) > 30
    ys, xs = np.nonzero(drawn)
    assert abs((xs.min() + xs.max()) / 2 - 210) < 4 and abs((ys.min() + ys.max()) / 2 - 100) < 4


def test_turned_views_frame_the_mesh():
    from meshrecon.apps.demo.single_view import blender_K, frame_views
    from meshrecon.ops import ico_sphere

    s = ico_sphere(2)
    # Far larger than the view at its place: the turned views must still show all of it.
    verts = s.verts_packed() * torch.tensor([1.5, 0.8, 0.5]) + torch.tensor([0.0, 0.0, 1.2])
    image = np.full((64, 64, 3), 255, np.uint8)
    views = frame_views(verts, s.faces_packed(), None, torch.tensor(blender_K(64)), image)
    assert views.shape == (64, 4 * 64, 3)
    for k in (1, 2, 3):
        panel = views[:, 64 * k : 64 * (k + 1)].astype(int)
        fg = np.abs(panel - 255).sum(-1) > 30
        edges = np.concatenate([fg[0], fg[-1], fg[:, 0], fg[:, -1]])
        assert not edges.any(), f"view {k} is cut off"
        assert fg.mean() > 0.1, f"view {k}: too small"


def test_threshold_below_the_configs_lowers_it(tmp_path, capsys):
    from test_meshrcnn_roi_heads import _cfg

    from meshrecon.modeling import build_model

    torch.manual_seed(0)
    cfg = _cfg("meshrcnn")
    cfg.DATASETS.TEST = ("synthetic_pix3d_test",)
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 64, 96
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.99  # above every random score
    weights = tmp_path / "model.pth"
    torch.save({"model": build_model(cfg).state_dict()}, weights)
    (tmp_path / "cfg.yaml").write_text(cfg.dump())
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 96, 3), np.uint8)).save(
        tmp_path / "scene.png"
    )
    argv = ["--config-file", str(tmp_path / "cfg.yaml"), "--input", str(tmp_path / "scene.png")]
    argv += ["--output", str(tmp_path / "out"), "--threshold", "0.0"]
    # Config overrides right after --input's list go to the config, not to the inputs.
    assert demo.main([*argv[:4], *argv[4:], "MODEL.WEIGHTS", str(weights)]) == 0
    captured = capsys.readouterr()
    assert "below MODEL.ROI_HEADS.SCORE_THRESH_TEST (0.99)" in captured.err
    assert len(list((tmp_path / "out").glob("scene_*.obj"))) == 3
    assert len(list((tmp_path / "out").glob("scene_*.glb"))) == 4  # and the scene
    assert "scene_scene.glb" in (tmp_path / "out" / "index.html").read_text()


@pytest.mark.parametrize(
    "flag", [["--focal-length", "500"], ["--depth", "2"], ["--threshold", "0.3"]]
)
def test_single_view_models_refuse_camera_flags(tmp_path, capsys, flag):
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    config = get_config_file("synthetic/voxmesh.yaml")
    argv = ["--config-file", config, "--input", str(tmp_path / "a.png"), "--output", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_:
        demo.main([*argv, *flag, "--allow-random-weights"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert flag[0] in err and ("fixed camera" in err or "--detector-config" in err)


def test_help_names_every_model_and_every_file(capsys):
    with pytest.raises(SystemExit):
        demo.main(["--help"])
    text = capsys.readouterr().out
    for name in ("Mesh R-CNN", "VoxMesh", "Pixel2Mesh", "Sphere-Init", "PSGN"):
        assert name in text
    for name in ("_mesh.obj", ".glb", "_overlay.png", "_views.png", "_det.png", "index.html"):
        assert name in text


def test_detector_gives_the_single_view_crop(tmp_path, monkeypatch):
    """--detector-config: the top detection's mask is what the crop is cut around."""
    from meshrecon.apps.demo.single_view import run_single_view_demo
    from meshrecon.config import get_cfg

    Image.new("RGB", (120, 100), (40, 40, 40)).save(tmp_path / "photo.jpg")
    box = np.zeros((100, 120), bool)
    box[10:40, 70:100] = True
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "SingleViewReconstructor"
    cfg.INPUT.FORMAT = "RGB"
    model = _SphereModel()
    written = run_single_view_demo(
        cfg,
        str(tmp_path / "photo.jpg"),
        str(tmp_path / "out"),
        model=model,
        detector=lambda rgb: box,
    )
    assert written["mask"] == "detector"
    seen = np.asarray(Image.open(written["input"])).astype(int)
    dark = np.abs(seen - 40).sum(-1) < 30
    ys, xs = np.nonzero(dark)
    assert (ys.max() - ys.min() + 1) == pytest.approx(137 * OBJECT_FRACTION, abs=3)
    assert (seen[0, 0] == WHITE).all()


def test_hidden_vertices_stay_grey():
    from meshrecon.ops import ico_sphere

    s = ico_sphere(2)
    front = s.verts_packed() * 0.5 + torch.tensor([0.0, 0.0, 2.0])
    behind = s.verts_packed() * 0.3 + torch.tensor([0.0, 0.0, 4.0])  # hidden by the front one
    verts = torch.cat([front, behind])
    faces = torch.cat([s.faces_packed(), s.faces_packed() + front.shape[0]])
    image = np.full((64, 64, 3), 200, np.uint8)
    K = [60.0, 60.0, 31.5, 31.5]
    _, seen = sample_vertex_colors(verts, faces, image, K)
    assert bool(seen[: front.shape[0]].any()) and not bool(seen[front.shape[0] :].any())
    _, seen = sample_vertex_colors(verts, faces, image, K, occlusion=False)
    assert bool(seen[front.shape[0] :].any())  # facing the camera, only hidden
