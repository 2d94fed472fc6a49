"""The demo's ``index.html``: every image of a run, its files, and a 3D viewer of its meshes.

The viewer is :mod:`meshrecon.apps.viewer3d` (three.js shipped with meshrecon, copied into
``viewer/`` beside the page), so the page works offline, opened from the output folder. Each
image is a row: its pictures and its mesh (turned, zoomed and panned with the mouse), with
download links to the OBJ / PLY / GLB files; the images that were skipped are listed with why.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from meshrecon.apps.viewer3d import ViewerGroup, ViewerItem, write_viewer

__all__ = ["DemoEntry", "write_demo_index"]


@dataclass
class DemoEntry:
    """One image of the run; paths relative to the output folder.

    Attributes:
        image: the input file (as given on the command line).
        pictures: (label, PNG path) shown in the row.
        model: the mesh (``.glb``) or points (``.ply``) shown in 3D, or "" for none.
        links: format -> file, download links under the model.
        notes: lines shown under the row (e.g. where the mask came from).
        fov: vertical field of view (degrees) of the viewer's first camera, which sits at the
            camera's centre (the origin of the mesh files); aspect: width / height of a view.
    """

    image: str
    pictures: list[tuple[str, str]] = field(default_factory=list)
    model: str = ""
    links: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    fov: float = 40.0
    aspect: float = 1.0


def fov_of(K: Sequence[float], height: int) -> float:
    """Vertical field of view (degrees) of ``[fx, fy, cx, cy]`` over ``height`` pixels."""
    return math.degrees(2.0 * math.atan(height / 2.0 / float(K[1])))


_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1200px}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
.pictures img{max-height:220px;margin:.2em;border:1px solid #ddd}
.note{color:#555;font-size:.9em}"""


def write_demo_index(
    folder: str,
    entries: Sequence[DemoEntry],
    skipped: Sequence[tuple[str, str]] = (),
    title: str = "meshrecon demo",
    header: str = "",
) -> str:
    """Write ``folder/index.html`` (and the viewer's files in ``folder/viewer/``).

    Args:
        folder: the demo's output folder.
        entries: the images done.
        skipped: (file, reason) of the images not done.
        title: the page's title; header: a line of text under it (the model, the command).

    Returns:
        The page's path.
    """
    groups, pictures = [], []
    for entry in entries:
        items = [ViewerItem(label, path) for label, path in entry.pictures[:1]]
        if entry.model:
            items.append(
                ViewerItem(
                    "3D: " + os.path.basename(entry.model),
                    entry.model,
                    color=(0.55, 0.62, 0.75),
                    links=entry.links,
                )
            )
        else:
            items.append(ViewerItem("3D", note="no mesh predicted", links=entry.links))
        groups.append(
            ViewerGroup(os.path.basename(entry.image), items, fov=entry.fov, aspect=entry.aspect)
        )
        pics = "".join(
            f'<figure style="display:inline-block"><img src="{html.escape(p)}" '
            f'alt="{html.escape(label)}"><figcaption>{html.escape(label)}</figcaption></figure>'
            for label, p in entry.pictures
        )
        notes = "".join(f'<div class="note">{html.escape(n)}</div>' for n in entry.notes)
        pictures.append(
            f"<h3>{html.escape(entry.image)}</h3><div class='pictures'>{pics}</div>{notes}"
        )
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    if header:
        parts.append(f"<p>{html.escape(header)}</p>")
    parts.append(
        f"<p>{len(entries)} image(s) done, {len(skipped)} skipped. Meshes are in the camera "
        "frame (+X left, +Y up, +Z forward; the files' headers say so); the 3D views start at "
        "the camera's centre.</p>"
    )
    if groups:
        parts.append(write_viewer(folder, groups, name="demo", fallback_id="pictures"))
        parts.append(
            '<details id="pictures" open><summary>pictures of every image</summary>'
            + "".join(pictures)
            + "</details>"
        )
    if skipped:
        rows = "".join(
            f"<tr><td>{html.escape(f)}</td><td>{html.escape(r)}</td></tr>" for f, r in skipped
        )
        parts.append(f"<h2>Skipped</h2><table><tr><th>file</th><th>why</th></tr>{rows}</table>")
    parts.append("</body></html>\n")
    path = os.path.join(folder, "index.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    return path
