"""Headless Chromium for the tests of HTML pages (the benchmark report, the 3D viewer).

Reusable by any test: ``from fixtures_browser import open_page, check_viewer``. The system's
Chromium (Debian: ``apt-get install chromium``) is driven by playwright (the ``dev`` extra; no
browser download); without either the test is skipped, saying why. WebGL runs in software:
SwiftShader through ANGLE (``--use-angle=swiftshader``), which recent Chromium only allows
with ``--enable-unsafe-swiftshader``.
"""

from __future__ import annotations

import io
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlparse

import numpy as np
import pytest

SOFTWARE_WEBGL_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
NO_WEBGL_ARGS = ["--disable-webgl", "--disable-3d-apis"]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageLog:
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions
    failed: list[str] = field(default_factory=list)  # requests that failed
    external: list[str] = field(default_factory=list)  # requests leaving the machine


@contextmanager
def open_page(url: str, args=SOFTWARE_WEBGL_ARGS, width: int = 1366, height: int = 900):
    """Yield ``(page, log)`` of ``url`` loaded in headless Chromium (skip when absent)."""
    browser_path = chromium_path()
    if browser_path is None:
        pytest.skip("no Chromium found (Debian: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    log = PageLog()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox", *args])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda m: log.errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: log.errors.append(str(e)))
            page.on("requestfailed", lambda r: log.failed.append(r.url))
            page.on(
                "request",
                lambda r: (
                    log.external.append(r.url)
                    if urlparse(r.url).scheme not in ("file", "data", "blob")
                    else None
                ),
            )
            page.goto(url, wait_until="load")
            yield page, log
        finally:
            browser.close()


def pixels(element) -> np.ndarray:
    """(H, W, 3) int array of a screenshot of one element."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(element.screenshot())).convert("RGB")).astype(int)


def foreground(picture: np.ndarray, background=(255, 255, 255)) -> float:
    """Fraction of pixels that differ from the background colour."""
    return float((np.abs(picture - np.asarray(background)).sum(-1) > 30).mean())


def changed(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of pixels that differ between two pictures of the same element."""
    return float((np.abs(a - b).sum(-1) > 30).mean())


def wait_ready(page, root) -> None:
    """Wait until the viewer ``root`` has drawn (it says so in ``data-state``/``data-frames``)."""
    page.wait_for_function(
        "r => r.dataset.state === 'failed'"
        " || (r.dataset.state === 'ready' && +r.dataset.frames > 0)",
        arg=root,
        timeout=60_000,
    )
    state = root.get_attribute("data-state")
    assert state == "ready", f"viewer {state}: {root.get_attribute('data-error')}"


def redraw(page, root, action) -> None:
    """Run ``action`` and wait for the viewer to draw again."""
    frames = int(root.get_attribute("data-frames") or 0)
    action()
    page.wait_for_function("([r, n]) => +r.dataset.frames > n", arg=[root, frames])


def drag(page, element, dx: float = 70, dy: float = 25) -> None:
    box = element.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y + dy, steps=6)
    page.mouse.up()


def check_viewer(page, root) -> dict:
    """The viewer's checks on a loaded page: every canvas shows something, dragging the first
    canvas of the first row changes its picture and that of every linked canvas of its row,
    and leaves the other rows alone. Returns the pictures for more checks."""
    wait_ready(page, root)
    assert root.is_visible()
    rows = [g.query_selector_all("canvas") for g in root.query_selector_all(".mrv-group")]
    rows = [r for r in rows if r]
    assert rows and len(rows[0]) >= 2, "expected a row with at least two 3D views"
    before = [[pixels(c) for c in r] for r in rows]
    for r, pics in enumerate(before):
        for k, pic in enumerate(pics):
            assert foreground(pic) > 0.01, f"row {r}, view {k}: only background"
    page.mouse.move(0, 0)
    redraw(page, root, lambda: drag(page, rows[0][0]))
    after = [[pixels(c) for c in r] for r in rows]
    for k, (a, b) in enumerate(zip(before[0], after[0])):
        assert changed(a, b) > 0.01, f"row 0, view {k}: the picture did not turn"
    for r in range(1, len(rows)):
        for k, (a, b) in enumerate(zip(before[r], after[r])):
            assert changed(a, b) == 0.0, f"row {r}, view {k} turned with row 0"
    return {"rows": rows, "before": before, "after": after}
