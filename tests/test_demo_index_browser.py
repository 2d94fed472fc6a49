"""The demo's index.html in headless Chromium: loads offline without console errors, and every
image's 3D view draws its mesh."""

from __future__ import annotations

import numpy as np
from fixtures_browser import foreground, open_page, pixels, wait_ready
from PIL import Image

from meshrecon.cli import demo
from meshrecon.model_zoo import get_config_file


def test_demo_index_page_in_headless_chromium(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rgba = np.zeros((90, 110, 4), np.uint8)
    rgba[15:75, 30:80] = (200, 60, 40, 255)
    Image.fromarray(rgba).save(photos / "one.png")
    rgb = np.full((80, 80, 3), (40, 90, 200), np.uint8)
    Image.fromarray(rgb).save(photos / "two.jpg")
    out = tmp_path / "out"
    config = get_config_file("synthetic/sphereinit.yaml")
    argv = ["--config-file", config, "--input", str(photos), "--output", str(out)]
    assert demo.main([*argv, "--allow-random-weights"]) == 0
    assert (out / "viewer" / "three-bundle.js").is_file()  # three.js copied beside the page
    with open_page((out / "index.html").as_uri()) as (page, log):
        root = page.query_selector(".mrv")
        wait_ready(page, root)
        canvases = root.query_selector_all("canvas")
        assert len(canvases) == 2  # one 3D view per image
        for k, canvas in enumerate(canvases):
            canvas.scroll_into_view_if_needed()
            assert foreground(pixels(canvas)) > 0.01, f"image {k}: only background"
        assert not log.errors, log.errors
        assert not log.failed and not log.external, (log.failed, log.external)
