"""meshrecon.apps.viewer3d: the shipped three.js (pinned, licensed, every import linked), the
files and HTML that write_viewer writes, its errors, and the viewer in headless Chromium."""

from __future__ import annotations

import ast
import base64
import glob
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_browser import (
    NO_WEBGL_ARGS,
    changed,
    check_viewer,
    foreground,
    open_page,
    pixels,
    redraw,
    wait_ready,
)

from meshrecon.apps.viewer3d import (
    THREE_VERSION,
    ViewerGroup,
    ViewerItem,
    three_module_graph,
    write_viewer,
)
from meshrecon.apps.viewer3d import writer as W

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "meshrecon.apps.viewer3d"


# ----------------------------------------------------------------------------- three.js


def test_three_is_pinned_and_licensed():
    core = (W.THREE_DIR / "build" / "three.core.js").read_text()
    revision = re.search(r"const REVISION = '(\d+)';", core).group(1)
    assert THREE_VERSION == f"0.{revision}.0"
    licence = (W.THREE_DIR / "LICENSE").read_text()
    assert "MIT License" in licence and "three.js authors" in licence
    readme = (W.THREE_DIR / "README.md").read_text()
    assert f"three@{THREE_VERSION}" in readme


def test_module_graph_links_every_import_and_ships_nothing_else():
    order, imports = three_module_graph()
    assert set(W.THREE_ENTRIES) <= set(order)
    for k, module in enumerate(order):
        source = (W.THREE_DIR / module).read_text()
        for spec, target in imports[module].items():
            assert order.index(target) < k, (module, target)  # dependencies first
            # viewer.js rewrites exactly this text; a miss would leave a dead import.
            assert f"from '{spec}'" in source
    assert imports["examples/jsm/loaders/GLTFLoader.js"]["three"] == "build/three.module.js"
    assert imports["build/three.module.js"] == {"./three.core.js": "build/three.core.js"}
    shipped = {
        p.relative_to(W.THREE_DIR).as_posix()
        for p in W.THREE_DIR.rglob("*")
        if p.is_file() and p.suffix == ".js"
    }
    assert shipped == set(order)


def test_module_graph_rejects_an_unshipped_import(tmp_path, monkeypatch):
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "three.module.js").write_text("import { A } from './nowhere.js';\n")
    monkeypatch.setattr(W, "THREE_DIR", tmp_path)
    monkeypatch.setattr(W, "THREE_ENTRIES", ("build/three.module.js",))
    three_module_graph.cache_clear()
    try:
        with pytest.raises(ValueError, match="build/nowhere.js is not shipped"):
            three_module_graph()
        (tmp_path / "build" / "three.module.js").write_text('import { A } from "three";\n')
        three_module_graph.cache_clear()
        with pytest.raises(ValueError, match="double quotes"):
            three_module_graph()
    finally:
        three_module_graph.cache_clear()


def test_setup_ships_the_static_files():
    tree = ast.parse((REPO / "setup.py").read_text())
    package_data = next(
        ast.literal_eval(k.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for k in node.keywords
        if k.arg == "package_data"
    )
    root = REPO / PACKAGE.replace(".", "/")
    matched = set()
    for pattern in package_data[PACKAGE]:
        matched |= {Path(p).as_posix() for p in glob.glob(pattern, root_dir=root, recursive=True)}
    files = {p.relative_to(root).as_posix() for p in (root / "static").rglob("*") if p.is_file()}
    assert files and files <= matched, files - matched
    # And none is ignored by git (three.js's build/ folder fell under the "build/" pattern once).
    if shutil.which("git") and (REPO / ".git").exists():
        ignored = subprocess.run(
            ["git", "check-ignore", "--no-index", *(f"{root / f}" for f in sorted(files))],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.split()
        assert not ignored, ignored


# ----------------------------------------------------------------------------- writer


def _write_models(folder: Path) -> dict[str, Path]:
    from meshrecon.io import save_mesh, save_pointcloud_ply
    from meshrecon.ops import ico_sphere
    from meshrecon.render import save_image

    sphere = ico_sphere(2)
    v, f = sphere.verts_packed() * 0.5 + torch.tensor([0.0, 0.0, 2.0]), sphere.faces_packed()
    files = {
        "gt": folder / "gt.glb",
        "pred": folder / "models" / "pred.glb",
        "cloud": folder / "models" / "cloud.ply",
        "input": folder / "input.png",
    }
    files["pred"].parent.mkdir(parents=True, exist_ok=True)
    save_mesh(files["gt"], v, f)
    # An elongated copy, turned so that it looks different from each side.
    save_mesh(files["pred"], v * torch.tensor([1.5, 0.5, 0.8]) + torch.tensor([0, 0, 0.4]), f)
    g = torch.Generator().manual_seed(0)
    save_pointcloud_ply(files["cloud"], torch.randn(400, 3, generator=g) * 0.3 + 2.0 * W_Z)
    picture = np.zeros((48, 64, 3), np.uint8)
    picture[12:36, 16:48] = (200, 80, 40)
    save_image(str(files["input"]), picture)
    return files


W_Z = torch.tensor([0.0, 0.0, 1.0])
NAN = float("nan")


def _groups(files, root: Path) -> list[ViewerGroup]:
    rel = {k: p.relative_to(root).as_posix() for k, p in files.items()}
    row = [
        ViewerItem("input", rel["input"]),
        ViewerItem("ground truth", rel["gt"], (0.55, 0.62, 0.72), links={"GLB": rel["gt"]}),
        ViewerItem("<Method A>", rel["pred"], (0.9, 0.5, 0.2)),
        ViewerItem("points", rel["cloud"], (0.3, 0.3, 0.9)),
        ViewerItem("method C", note="no prediction"),
    ]
    return [
        ViewerGroup("sample 0", row, target=(0.0, 0.0, 2.0), fov=35.0),
        ViewerGroup("sample 1", row[:3], aspect=4 / 3),
    ]


def _page(folder: Path, fragment: str) -> Path:
    page = folder / "index.html"
    page.write_text(
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>viewer</title></head>'
        f'<body>{fragment}<details id="pictures" open><summary>pictures</summary>'
        '<img src="input.png" alt="input"></details></body></html>'
    )
    return page


def test_write_viewer_files_and_fragment(tmp_path):
    files = _write_models(tmp_path)
    fragment = write_viewer(tmp_path, _groups(files, tmp_path), name="demo", fallback_id="x1")
    viewer = tmp_path / "viewer"
    assert sorted(p.name for p in viewer.iterdir()) == [
        "THREE-LICENSE.txt",
        "demo-data.js",
        "three-bundle.js",
        "viewer.css",
        "viewer.js",
    ]
    # The data file holds each model's bytes, in the order of the fragment's canvases.
    text = (viewer / "demo-data.js").read_text()
    data = json.loads(text[text.index("= {") + 2 : text.rindex(";")])
    items = data["groups"][0]["items"]
    assert items[0] is None and items[4] is None  # the picture and the note
    assert base64.b64decode(items[2]["data"]) == files["pred"].read_bytes()
    assert items[3]["format"] == "ply" and items[2]["color"] == [0.9, 0.5, 0.2]
    assert data["groups"][0]["target"] == [0.0, 0.0, 2.0] and data["groups"][1]["target"] is None
    assert re.findall(r'data-item="(\d)"', fragment) == ["1", "2", "3", "1", "2"]
    assert "&lt;Method A&gt;" in fragment and "<Method A>" not in fragment
    assert 'href="gt.glb" download' in fragment and 'src="input.png"' in fragment
    assert 'data-fallback="x1"' in fragment and "hidden>" in fragment
    assert "--mrv-aspect:1.33333" in fragment
    # The bundle holds three.js's sources unmodified.
    bundle = (viewer / "three-bundle.js").read_text()
    lib = json.loads(bundle[bundle.index("= {") + 2 : bundle.rindex(";")])
    assert lib["version"] == THREE_VERSION
    module = "examples/jsm/controls/OrbitControls.js"
    assert lib["modules"][module] == (W.THREE_DIR / module).read_text()
    # Written again: the same bytes, files not rewritten.
    stamp = (viewer / "three-bundle.js").stat().st_mtime_ns
    assert write_viewer(tmp_path, _groups(files, tmp_path), name="demo", fallback_id="x1") == (
        fragment
    )
    assert (viewer / "three-bundle.js").stat().st_mtime_ns == stamp


def test_large_model_is_linked_not_put_into_the_page(tmp_path):
    files = _write_models(tmp_path)
    size = files["pred"].stat().st_size
    group = ViewerGroup(
        "s", [ViewerItem("big", "models/pred.glb", links={"GLB": "models/pred.glb"})]
    )
    fragment = write_viewer(tmp_path, [group], max_item_bytes=size - 1)
    assert "<canvas" not in fragment and "too large to show here" in fragment
    assert 'href="models/pred.glb"' in fragment


@pytest.mark.parametrize(
    "kwargs, groups, match",
    [
        ({"name": "a b"}, None, "name must be"),
        ({}, [], "groups is empty"),
        ({"fallback_id": "1x"}, None, "fallback_id"),
        ({}, [ViewerGroup("g", [])], "no items"),
        ({}, [ViewerGroup("g", [ViewerItem("x", "/etc/passwd")])], "must be relative"),
        ({}, [ViewerGroup("g", [ViewerItem("x", "../gt.glb")])], "leaves the folder"),
        ({}, [ViewerGroup("g", [ViewerItem("x", "absent.glb")])], "'absent.glb' is not a file"),
        ({}, [ViewerGroup("g", [ViewerItem("x", "gt.glb", (1.0, 2.0, 0.0))])], "color must be"),
        ({}, [ViewerGroup("g", [ViewerItem("x", "gt.glb", (1.0, 0.0))])], "3 finite numbers"),
        ({}, [ViewerGroup("g", [ViewerItem("x", "gt.glb")], fov=180)], "fov must be"),
        ({}, [ViewerGroup("g", [ViewerItem("x", "gt.glb")], target=(0, 0, NAN))], "finite"),
        ({}, [ViewerGroup("g", [ViewerItem("x", "gt.glb", links={"OBJ": "no.obj"})])], "link"),
    ],
)
def test_write_viewer_rejects_bad_input(tmp_path, kwargs, groups, match):
    files = _write_models(tmp_path)
    if groups is None:
        groups = _groups(files, tmp_path)
    with pytest.raises(ValueError, match=match):
        write_viewer(tmp_path, groups, **kwargs)


def test_write_viewer_names_an_unsupported_file(tmp_path):
    _write_models(tmp_path)
    (tmp_path / "mesh.obj").write_text("v 0 0 0\n")
    group = ViewerGroup("g", [ViewerItem("n", "input.png"), ViewerItem("m", "mesh.obj")])
    with pytest.raises(ValueError, match=r"group 0 \('g'\), item 1 \('m'\): unsupported .*'.obj'"):
        write_viewer(tmp_path, [group])


# ----------------------------------------------------------------------------- browser


def test_viewer_in_headless_chromium(tmp_path):
    files = _write_models(tmp_path)
    page_path = _page(
        tmp_path, write_viewer(tmp_path, _groups(files, tmp_path), fallback_id="pictures")
    )
    with open_page(page_path.as_uri()) as (page, log):
        root = page.query_selector(".mrv")
        result = check_viewer(page, root)
        assert page.evaluate("document.getElementById('pictures').open") is False
        # Pictures as the views' own: the input picture loaded, the note shown.
        assert page.evaluate("document.querySelector('.mrv img').naturalWidth") == 64
        assert "no prediction" in root.inner_text()
        # Wireframe and points change every view of a mesh and leave the point cloud alone.
        views = result["rows"][0]
        shaded = [pixels(c) for c in views]
        redraw(page, root, lambda: page.check("input[value=wireframe]"))
        wire = [pixels(c) for c in views]
        redraw(page, root, lambda: page.check("input[value=points]"))
        points = [pixels(c) for c in views]
        for k in (0, 1):  # the meshes
            assert changed(shaded[k], wire[k]) > 0.01 and changed(wire[k], points[k]) > 0.01
            assert foreground(wire[k]) < foreground(shaded[k])
        assert changed(shaded[2], points[2]) == 0.0
        # Zoom (wheel on one view zooms every view of the row), then reset.
        redraw(page, root, lambda: page.check("input[value=shaded]"))
        box = views[1].bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        redraw(page, root, lambda: page.mouse.wheel(0, -300))
        for k in (0, 1):
            assert foreground(pixels(views[k])) > foreground(shaded[k]) + 0.02
        redraw(page, root, lambda: page.click(".mrv-reset"))
        assert changed(pixels(views[0]), result["before"][0][0]) < 0.01
    assert not log.errors, log.errors
    assert not log.failed and not log.external, (log.failed, log.external)


def test_viewer_without_webgl_keeps_the_pictures(tmp_path):
    files = _write_models(tmp_path)
    page_path = _page(
        tmp_path, write_viewer(tmp_path, _groups(files, tmp_path), fallback_id="pictures")
    )
    with open_page(page_path.as_uri(), args=NO_WEBGL_ARGS) as (page, log):
        root = page.query_selector(".mrv")
        page.wait_for_function("r => r.dataset.state === 'failed'", arg=root)
        assert "WebGL 2" in root.get_attribute("data-error")
        assert not root.is_visible()
        assert page.evaluate("document.getElementById('pictures').open") is True
        assert page.is_visible("details#pictures img")
        assert "3D viewer unavailable" in page.inner_text(".mrv-unavailable")
    assert not log.errors, log.errors


def test_viewer_with_two_fragments_on_one_page(tmp_path):
    files = _write_models(tmp_path)
    groups = _groups(files, tmp_path)
    first = write_viewer(tmp_path, groups[:1], name="one")
    second = write_viewer(tmp_path, groups[1:], name="two")
    page_path = _page(tmp_path, first + second)
    with open_page(page_path.as_uri()) as (page, log):
        roots = page.query_selector_all(".mrv")
        assert len(roots) == 2
        for root in roots:
            wait_ready(page, root)
        # One three.js for the page: the bundle is loaded once.
        assert (
            page.evaluate("document.querySelectorAll('script[src$=\"three-bundle.js\"]').length")
            == 1
        )
    assert not log.errors, log.errors
    assert os.path.isfile(tmp_path / "viewer" / "one-data.js")


def test_readme_viewer_example_runs_and_shows(tmp_path, monkeypatch):
    """The README's viewer example, run as written in an empty folder, makes a page whose
    viewer draws the sphere."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("<!-- viewer-example -->", 1)[1].split("```python\n", 1)[1]
    code = block.split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md (viewer example)", "exec"), {})
    with open_page((tmp_path / "out" / "index.html").as_uri()) as (page, log):
        root = page.query_selector(".mrv")
        wait_ready(page, root)
        assert foreground(pixels(root.query_selector("canvas"))) > 0.05
    assert not log.errors, log.errors
