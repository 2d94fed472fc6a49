"""Write the 3D viewer into a folder: its scripts, its data, and the HTML fragment that shows it.

A page opened from ``file://`` may not import ES modules from files nor ``fetch()`` them (the
origin is opaque, so both fail the CORS check), yet three.js (from r160 on) ships as ES modules
only. Classic ``<script src>`` tags do load from ``file://``, and a module may import a
``blob:`` URL made in the page. So:

- ``viewer/three-bundle.js`` (classic script) holds the source text of the pinned three.js
  modules the viewer needs, unmodified, with their import graph computed here;
  ``viewer/viewer.js`` turns each into a ``blob:`` URL (dependencies first, each import
  specifier replaced by its dependency's URL) and imports them.
- ``viewer/<name>-data.js`` (classic script) holds the meshes (GLB) and point clouds (PLY) as
  base64; three.js's loaders parse the bytes without a request.
- The fragment is plain HTML: the rows of views (their labels, pictures, download links) are
  there without JavaScript; the script draws into the canvases once WebGL 2 and three.js are
  up, and until then (or when they are not) the page's static pictures stay in view.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

__all__ = ["THREE_VERSION", "ViewerGroup", "ViewerItem", "three_module_graph", "write_viewer"]

THREE_VERSION = "0.187.0"
"""The three.js release shipped in ``static/three`` (npm package ``three``, pinned)."""

STATIC_DIR = Path(__file__).resolve().with_name("static")
THREE_DIR = STATIC_DIR / "three"
# The modules the viewer imports; their own imports are followed from here.
THREE_ENTRIES = (
    "build/three.module.js",
    "examples/jsm/loaders/GLTFLoader.js",
    "examples/jsm/loaders/PLYLoader.js",
    "examples/jsm/controls/OrbitControls.js",
)
MESH_EXTENSIONS = (".glb",)
POINT_EXTENSIONS = (".ply",)
PICTURE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".webp")
DEFAULT_MAX_ITEM_BYTES = 16 * 2**20
"""A model file larger than this is not put into the page (its cell says so and links it)."""

_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")
# A static import or re-export with a ``from`` clause; three.js's builds write one per module
# start (``import {...} from 'three';``) or, for re-exports, ``export {...} from '...';``.
_FROM_RE = re.compile(r"^(?:import|export)\b[^;'\"]*?\bfrom\s*(['\"])([^'\"]+)\1", re.M)
_BARE_IMPORT_RE = re.compile(r"^import\s*['\"]", re.M)
_BARE_SPECIFIERS = {"three": "build/three.module.js"}


@dataclass
class ViewerItem:
    """One view of a row: a picture (``.png``, ``.jpg``), a mesh (``.glb``) or a point cloud or
    mesh (``.ply``), or only a note when ``path`` is empty.

    ``path`` and the ``links`` (format -> file, shown as download links) are relative to the
    folder given to :func:`write_viewer`; ``color`` is the sRGB colour (0..1) of a model without
    vertex colours.
    """

    label: str
    path: str = ""
    color: tuple[float, float, float] | None = None
    note: str = ""
    links: dict[str, str] = field(default_factory=dict)


@dataclass
class ViewerGroup:
    """A row of views with linked cameras (turning one turns all).

    The geometry is in one frame; the first camera sits at ``position`` looking at ``target``
    with up +Y, e.g. a camera frame in PyTorch3D's convention (+X left, +Y up, +Z into the
    scene) with the camera at the origin. ``target`` None: the centre of the row's models'
    bounding box. ``fov``: vertical field of view in degrees; ``aspect``: width / height of each
    view.
    """

    title: str
    items: list[ViewerItem]
    target: tuple[float, float, float] | None = None
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    fov: float = 40.0
    aspect: float = 1.0


# ----------------------------------------------------------------------------- three.js


@lru_cache(maxsize=1)
def three_module_graph() -> tuple[tuple[str, ...], dict[str, dict[str, str]]]:
    """The shipped three.js modules the viewer needs and how they import each other.

    Returns:
        ``(order, imports)``: module paths relative to ``static/three``, every module after
        the modules it imports; ``imports[module][specifier]`` is the module a specifier
        names.

    Raises:
        ValueError: a module imports a file that is not shipped, uses a form of import the
            page's linker does not rewrite, or the imports form a cycle.
    """
    imports: dict[str, dict[str, str]] = {}
    order: list[str] = []
    visiting: set[str] = set()

    def visit(module: str) -> None:
        if module in imports:
            return
        if module in visiting:
            raise ValueError(f"three.js modules import each other in a cycle at {module}")
        path = THREE_DIR / module
        if not path.is_file():
            raise ValueError(f"three.js module {module} is not shipped in {THREE_DIR}")
        text = path.read_text(encoding="utf-8")
        if _BARE_IMPORT_RE.search(text):
            raise ValueError(f"{module}: a side-effect import ('import \"x\"') is not linked")
        visiting.add(module)
        specs: dict[str, str] = {}
        for quote, spec in _FROM_RE.findall(text):
            if quote != "'":
                raise ValueError(f"{module}: import of {spec!r} in double quotes is not linked")
            if spec in _BARE_SPECIFIERS:
                target = _BARE_SPECIFIERS[spec]
            elif spec.startswith(("./", "../")):
                target = posixpath.normpath(posixpath.join(posixpath.dirname(module), spec))
            else:
                raise ValueError(f"{module}: import of {spec!r} names no shipped module")
            visit(target)
            specs[spec] = target
        visiting.discard(module)
        imports[module] = specs
        order.append(module)

    for entry in THREE_ENTRIES:
        visit(entry)
    return tuple(order), imports


def _write_if_changed(path: str, data: bytes) -> None:
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return
    except FileNotFoundError:
        pass
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write_library(viewer_dir: str) -> None:
    """``three-bundle.js``, three.js's licence, ``viewer.js`` and ``viewer.css``."""
    order, imports = three_module_graph()
    lib = {
        "version": THREE_VERSION,
        "order": list(order),
        "imports": imports,
        "entries": list(THREE_ENTRIES),
        "modules": {m: (THREE_DIR / m).read_text(encoding="utf-8") for m in order},
    }
    head = (
        f"/* three.js {THREE_VERSION} (npm package three, MIT licence: THREE-LICENSE.txt beside "
        "this file), its module sources unmodified, for viewer.js to link through blob: URLs "
        "(a page opened from file:// can neither import modules from files nor fetch them). "
        "Written by meshrecon. */\n"
    )
    body = "window.MESHRECON_THREE = " + json.dumps(lib, ensure_ascii=True) + ";\n"
    _write_if_changed(os.path.join(viewer_dir, "three-bundle.js"), (head + body).encode())
    _write_if_changed(
        os.path.join(viewer_dir, "THREE-LICENSE.txt"), (THREE_DIR / "LICENSE").read_bytes()
    )
    for name in ("viewer.js", "viewer.css"):
        _write_if_changed(os.path.join(viewer_dir, name), (STATIC_DIR / name).read_bytes())


# ----------------------------------------------------------------------------- checks


def _relative_file(folder: str, rel: str, where: str) -> str:
    """``rel`` as a POSIX path inside ``folder`` that names a file; ValueError otherwise."""
    posix = rel.replace(os.sep, "/")
    if not posix or posixpath.isabs(posix) or os.path.isabs(rel):
        raise ValueError(f"{where}: path {rel!r} must be relative to the folder")
    if ".." in posix.split("/"):
        raise ValueError(f"{where}: path {rel!r} leaves the folder")
    if not os.path.isfile(os.path.join(folder, *posix.split("/"))):
        raise ValueError(f"{where}: {rel!r} is not a file in {folder}")
    return posix


def _check_vector(value, n: int, where: str) -> list[float]:
    out = [float(v) for v in value]
    if len(out) != n or not all(math.isfinite(v) for v in out):
        raise ValueError(f"{where}: expected {n} finite numbers, got {value!r}")
    return out


# ----------------------------------------------------------------------------- the fragment


def write_viewer(
    folder: str | os.PathLike,
    groups: Sequence[ViewerGroup],
    name: str = "viewer",
    fallback_id: str | None = None,
    max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES,
) -> str:
    """Write the viewer's files into ``folder/viewer/`` and return its HTML fragment.

    Put the fragment into a page saved in ``folder`` (paths in it are relative to it). Several
    viewers may share a page when their ``name`` differs; they share the scripts and one WebGL
    context.

    Args:
        folder: the page's folder; every item's ``path`` and ``links`` are relative to it.
        groups: the rows of views.
        name: the viewer's name (letters, digits, ``_``, ``-``): its data file is
            ``viewer/<name>-data.js`` and its element id ``mrv-<name>``.
        fallback_id: id of the page's element holding static pictures of the same objects:
            collapsed (a ``<details>``) or hidden once the viewer draws; left in view when it
            cannot (no WebGL 2, scripts off, files missing).
        max_item_bytes: model files above this size are linked, not put into the page.

    Returns:
        The HTML fragment (a stylesheet link, the viewer's element, two script tags).

    Raises:
        ValueError: a bad ``name``, no groups, a path that is absolute, leaves ``folder`` or
            names no file, an unsupported file type, or a bad colour or camera value; the
            message names the group and item.
    """
    folder = os.fspath(folder)
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"name must be letters, digits, '_' or '-', got {name!r}")
    if not groups:
        raise ValueError("groups is empty: nothing to show")
    if fallback_id is not None and not re.fullmatch(r"[A-Za-z][\w:.-]*", fallback_id):
        raise ValueError(f"fallback_id is not a valid element id: {fallback_id!r}")
    data_groups = []
    sections = []
    for g_index, group in enumerate(groups):
        where_g = f"viewer group {g_index} ({group.title!r})"
        if not group.items:
            raise ValueError(f"{where_g}: no items")
        if not 0.0 < float(group.fov) < 180.0:
            raise ValueError(f"{where_g}: fov must be in (0, 180) degrees, got {group.fov}")
        if not (math.isfinite(group.aspect) and group.aspect > 0):
            raise ValueError(f"{where_g}: aspect must be positive, got {group.aspect}")
        camera = {
            "fov": float(group.fov),
            "aspect": float(group.aspect),
            "position": _check_vector(group.position, 3, f"{where_g}: position"),
            "target": None
            if group.target is None
            else _check_vector(group.target, 3, f"{where_g}: target"),
        }
        data_items: list[dict | None] = []
        cells = []
        for i_index, item in enumerate(group.items):
            where = f"{where_g}, item {i_index} ({item.label!r})"
            data, cell = _item(folder, item, i_index, where, max_item_bytes)
            data_items.append(data)
            cells.append(cell)
        data_groups.append({**camera, "items": data_items})
        sections.append(
            f'<section class="mrv-group" data-group="{g_index}">'
            f"<h4>{html.escape(group.title)}</h4>"
            f'<div class="mrv-grid" style="--mrv-aspect:{float(group.aspect):.6g}">'
            + "".join(cells)
            + "</div></section>"
        )

    viewer_dir = os.path.join(folder, "viewer")
    os.makedirs(viewer_dir, exist_ok=True)
    _write_library(viewer_dir)
    payload = json.dumps({"groups": data_groups}, ensure_ascii=True)
    _write_if_changed(
        os.path.join(viewer_dir, f"{name}-data.js"),
        (
            "window.MESHRECON_VIEWER_DATA = window.MESHRECON_VIEWER_DATA || {};\n"
            f"window.MESHRECON_VIEWER_DATA[{json.dumps(name)}] = {payload};\n"
        ).encode(),
    )
    radio = f"mrv-{name}-mode"
    modes = "".join(
        f'<label><input type="radio" name="{radio}" value="{m}"{check}> {m}</label> '
        for m, check in (("shaded", " checked"), ("wireframe", ""), ("points", ""))
    )
    fallback = f' data-fallback="{html.escape(fallback_id)}"' if fallback_id else ""
    return (
        '<link rel="stylesheet" href="viewer/viewer.css">\n'
        f'<div class="mrv" id="mrv-{name}" data-viewer="{name}"{fallback} hidden>\n'
        f'<div class="mrv-bar"><span class="mrv-modes">show as {modes}</span>'
        '<button type="button" class="mrv-reset">reset views</button> '
        '<span class="mrv-help">drag: turn · wheel: zoom · right-drag or shift-drag: pan · '
        "the views of a row turn together</span></div>\n" + "\n".join(sections) + "\n</div>\n"
        f'<script src="viewer/{name}-data.js"></script>\n'
        '<script src="viewer/viewer.js"></script>\n'
    )


def _item(
    folder: str, item: ViewerItem, index: int, where: str, max_bytes: int
) -> tuple[dict | None, str]:
    """The item's data for the script (None: nothing to draw) and its cell's HTML."""
    parts = [f"<figcaption>{html.escape(item.label)}</figcaption>"]
    data = None
    note = item.note
    if item.path:
        rel = _relative_file(folder, item.path, where)
        ext = posixpath.splitext(rel)[1].lower()
        if ext in PICTURE_EXTENSIONS:
            parts.append(f'<img src="{html.escape(rel)}" alt="{html.escape(item.label)}">')
        elif ext in MESH_EXTENSIONS + POINT_EXTENSIONS:
            color = None
            if item.color is not None:
                color = _check_vector(item.color, 3, f"{where}: color")
                if not all(0.0 <= c <= 1.0 for c in color):
                    raise ValueError(f"{where}: color must be in 0..1, got {item.color!r}")
            size = os.path.getsize(os.path.join(folder, *rel.split("/")))
            if size > max_bytes:
                extra = f"{size / 2**20:.1f} MB: too large to show here; download it"
                note = f"{note}; {extra}" if note else extra
            else:
                with open(os.path.join(folder, *rel.split("/")), "rb") as f:
                    encoded = base64.b64encode(f.read()).decode("ascii")
                data = {"format": ext[1:], "data": encoded, "color": color}
                parts.append(
                    f'<canvas data-item="{index}" role="img" '
                    f'aria-label="{html.escape(item.label)}: 3D view"></canvas>'
                )
        else:
            raise ValueError(
                f"{where}: unsupported file type {ext or rel!r}; expected one of "
                + ", ".join(MESH_EXTENSIONS + POINT_EXTENSIONS + PICTURE_EXTENSIONS)
            )
    if item.links:
        links = " ".join(
            f'<a href="{html.escape(_relative_file(folder, p, f"{where}: link {fmt!r}"))}" '
            f"download>{html.escape(fmt)}</a>"
            for fmt, p in item.links.items()
        )
        parts.append(f'<div class="mrv-links">{links}</div>')
    if note:
        parts.append(f'<div class="mrv-note">{html.escape(note)}</div>')
    return data, '<figure class="mrv-cell">' + "".join(parts) + "</figure>"
