"""The README's Python blocks, run as written.

Each block marked ``<!-- test-python: NAME -->`` is executed unchanged in a fresh folder. What
it would download or find from an earlier training is put in place first, with random
weights: the released Mesh R-CNN checkpoint goes into a temporary download cache (where a real
download would land), the VoxMesh run into ``output/`` of the folder.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from meshrecon import model_zoo
from meshrecon.io import load_mesh
from meshrecon.modeling import build_model

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"<!-- test-python: ([\w-]+) -->\s*```python\n(.*?)```", re.S)


def readme_blocks() -> dict[str, str]:
    """The README's marked Python blocks, by name."""
    return dict(_BLOCK.findall(README.read_text(encoding="utf-8")))


def _run_block(name: str) -> dict:
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(readme_blocks()[name], f"README.md ({name})", "exec"), namespace)
    return namespace


def test_every_marked_block_is_tested():
    assert set(readme_blocks()) == {"detector", "single-view"}


def test_single_view_block(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    cfg = model_zoo.get_config("synthetic/voxmesh.yaml")
    model = build_model(cfg).eval()
    run = tmp_path / "output" / "synthetic_voxmesh"
    run.mkdir(parents=True)
    torch.save({"model": model.state_dict()}, run / "model_final.pth")

    ns = _run_block("single-view")
    outputs = ns["outputs"]
    assert set(outputs) == {"voxels", "mesh"} and outputs["voxels"].shape == (24, 24, 24)
    verts, faces = load_mesh(tmp_path / "present.obj")
    assert verts.shape[0] > 0 and faces.shape[0] > 0
    # The saved weights were loaded and the 128-pixel picture went in at the training views'
    # 137 pixels: the model itself, given it so, predicts the same voxels.
    rgb = np.ascontiguousarray(ns["image_bgr"][:, :, ::-1]).astype(np.float32)
    image = torch.from_numpy(rgb).permute(2, 0, 1)
    assert image.shape == (3, 128, 128)
    image = torch.nn.functional.interpolate(image[None], size=(137, 137), mode="bilinear")[0]
    with torch.no_grad():
        direct = model([{"image": image, "height": 128, "width": 128}])[0]
    torch.testing.assert_close(outputs["voxels"], direct["voxels"])


def test_predictor_gives_single_view_models_the_views_size(monkeypatch):
    """Detectors get Detectron2's shorter-side resize; a single-view model its views' size
    (137) on the longer side, whatever the picture's size and shape."""
    from meshrecon.engine import DefaultPredictor

    seen = []
    for config, size, expected in (
        ("synthetic/voxmesh.yaml", (400, 300), (137, 103)),
        ("synthetic/voxmesh.yaml", (60, 90), (91, 137)),
        ("synthetic/meshrcnn_R18_FPN.yaml", (120, 160), (240, 320)),
    ):
        cfg = model_zoo.get_config(config)
        predictor = DefaultPredictor(cfg)
        monkeypatch.setattr(
            predictor, "model", lambda b: seen.append(tuple(b[0]["image"].shape[1:])) or [{}]
        )
        assert predictor(np.zeros((*size, 3), dtype=np.uint8)) == {}
        assert seen[-1] == expected, config


@pytest.mark.slow
def test_detector_block(tmp_path, monkeypatch):
    """The released Mesh R-CNN weights are stood in for by random ones whose classifier names
    one class with certainty, so that detections pass the block's score filter."""
    from meshrecon.checkpoint.catalog import cache_path_for_url, resolve_url

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MESHRECON_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    cfg = model_zoo.get_config("pix3d/meshrcnn_R50_FPN.yaml")
    cfg.MODEL.WEIGHTS = ""
    state = build_model(cfg).state_dict()
    bias = state["roi_heads.box_predictor.cls_score.bias"]
    bias.fill_(-10.0)
    bias[0] = 10.0
    url = model_zoo.get_checkpoint_url("pix3d/meshrcnn_R50_FPN.yaml")
    path = Path(cache_path_for_url(resolve_url(url)))
    path.parent.mkdir(parents=True)
    torch.save({"model": state}, path)

    ns = _run_block("detector")
    instances = ns["instances"]
    assert len(instances) > 0 and bool((instances.scores > 0.5).all())
    objs = sorted(tmp_path.glob("object_*.obj"))
    assert len(objs) == len(instances)
    verts, faces = load_mesh(objs[0])
    assert verts.shape[0] > 0 and faces.shape[0] > 0
