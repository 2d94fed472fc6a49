"""The benchmark's report: one table per task, training curves, gallery; HTML and Markdown.

``report.html`` is static and works offline: plain HTML with its CSS inline, every picture
embedded as a PNG data URI (the same PNGs are in the folder) and the meshes linked relatively
for download. The gallery's meshes and point clouds can be turned in the page
(:mod:`meshrecon.apps.viewer3d`: its scripts and data in ``viewer/``); the pictures stay as
the fallback. ``report.md`` holds the same tables; ``report.json`` every number.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from meshrecon.apps.viewer3d import write_viewer

from .gallery import GalleryRow, viewer_groups
from .methods import TASKS, MethodSpec, Task, get_method
from .per_category import per_category_tables
from .quality import curves_payload, plot_validation_curves, validation_curves
from .runner import RunRecord, load_curve
from .yardstick import yardstick_paragraph

__all__ = [
    "NOT_APPLICABLE",
    "format_cell",
    "format_seconds",
    "plot_curves",
    "table_records",
    "task_table",
    "write_report",
]

NOT_APPLICABLE = "—"


def format_seconds(seconds: float | None) -> str:
    """``"42 s"``, ``"12 min 5 s"``, ``"1 h 02 min"``."""
    if seconds is None or not math.isfinite(seconds):
        return NOT_APPLICABLE
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def format_params(n: int | None) -> str:
    if n is None:
        return NOT_APPLICABLE
    if n >= 1e6:
        return f"{n / 1e6:.2f} M"
    if n >= 1e3:
        return f"{n / 1e3:.1f} k"
    return str(n)


def format_cell(value: float | None, digits: int) -> str:
    """A metric as text: the number, ``—`` when not applicable, ``nan`` when missing."""
    if value is None:
        return NOT_APPLICABLE
    if not math.isfinite(value):
        return "nan"
    return f"{value:.{digits}f}"


def status_text(record: RunRecord) -> str:
    if record.status == "trained":
        text = f"trained ({record.max_iter} it)"
    elif record.status == "reused":
        text = f"reused (trained in {format_seconds(record.train_s)})"
    elif record.status == "evaluated":
        return "evaluated (no training)"
    else:
        return record.status
    # With a validation split: was the curve flat at the end, and which model was tested.
    val = record.validation or {}
    if val.get("text"):
        text += f"; {val['text']}"
    if str(val.get("evaluated") or "").startswith("best"):
        text += f"; tested: {val['evaluated']} model"
    return text


def table_records(
    task: Task, records: Sequence[RunRecord], methods: Sequence[MethodSpec]
) -> list[RunRecord]:
    """The finished runs of a task in table order: upper bounds (``kind="oracle"``) last."""
    done = [r for r in records if r.ok and get_method(r.name, tuple(methods)).task == task.key]
    oracle = [r for r in done if get_method(r.name, tuple(methods)).kind == "oracle"]
    return [r for r in done if r not in oracle] + oracle


def task_table(
    task: Task, records: Sequence[RunRecord], methods: Sequence[MethodSpec]
) -> tuple[list[str], list[list[str]], dict[tuple[int, int], bool]]:
    """``(headers, rows, best)`` of one task's finished methods (:func:`table_records` order);
    ``best[(row, col)]`` marks the best value of each metric column among the methods and
    baselines (an upper bound is never marked)."""
    done = table_records(task, records, methods)
    headers = ["Method", *(c.header for c in task.columns), "Params", "Wall time", "Run"]
    rows: list[list[str]] = []
    best: dict[tuple[int, int], bool] = {}
    for j, col in enumerate(task.columns):
        values = [
            (i, r.row.get(col.key))
            for i, r in enumerate(done)
            if isinstance(r.row.get(col.key), float)
            and math.isfinite(r.row[col.key])
            and get_method(r.name, tuple(methods)).kind != "oracle"
        ]
        if len(values) > 1 and len({v for _, v in values}) > 1:
            pick = max if col.higher_is_better else min
            top = pick(v for _, v in values)
            for i, v in values:
                if v == top:
                    best[(i, j + 1)] = True
    for r in done:
        spec = get_method(r.name, tuple(methods))
        rows.append(
            [
                spec.title,
                *(format_cell(r.row.get(c.key), c.digits) for c in task.columns),
                format_params(r.params),
                format_seconds(r.train_s if r.status == "reused" else r.wall_s),
                status_text(r),
            ]
        )
    return headers, rows, best


def markdown_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], best=None, shaded=()
) -> str:
    """A Markdown table; ``best`` cells in bold, ``shaded`` rows (upper bounds) in italics."""
    best = best or {}
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for i, row in enumerate(rows):
        cells = [f"**{c}**" if best.get((i, j)) else c for j, c in enumerate(row)]
        if i in shaded:
            cells = [f"*{c}*" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(
    task: Task, records: Sequence[RunRecord], methods: Sequence[MethodSpec], path: str
) -> str | None:
    """Plot the training loss of each trained method of a task; return the path or None."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = []
    for r in records:
        spec = get_method(r.name, tuple(methods))
        if spec.task != task.key or not r.ok or not spec.train:
            continue
        its, vals = load_curve(r.output_dir)
        if its:
            curves.append((spec.title, its, vals))
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.4), dpi=100)
    for title, its, vals in curves:
        ax.plot(its, vals, marker="o" if len(its) < 5 else None, label=title)
    if all(v > 0 for _, _, vals in curves for v in vals):
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("total training loss")
    ax.set_title(task.title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def compose_gallery_png(rows: Sequence[GalleryRow], report_dir: str, path: str) -> str | None:
    """One PNG of a task's gallery (a labelled grid), e.g. for the README."""
    from PIL import Image, ImageDraw

    if not rows:
        return None
    images = [
        [Image.open(os.path.join(report_dir, c.image)).convert("RGB") for c in r.cells]
        for r in rows
    ]
    labels = [c.label for c in rows[0].cells]
    widths = [max(row[k].width for row in images) for k in range(len(labels))]
    heights = [max(im.height for im in row) for row in images]
    pad, head = 6, 18
    canvas = Image.new(
        "RGB",
        (sum(widths) + pad * (len(widths) + 1), sum(heights) + head + pad * (len(rows) + 1)),
        "white",
    )
    draw = ImageDraw.Draw(canvas)
    x = pad
    for k, label in enumerate(labels):
        draw.text((x, 3), label, fill=(0, 0, 0))
        x += widths[k] + pad
    y = head + pad
    for row, h in zip(images, heights):
        x = pad
        for k, im in enumerate(row):
            canvas.paste(im, (x, y))
            x += widths[k] + pad
        y += h + pad
    os.makedirs(os.path.dirname(path), exist_ok=True)
    canvas.save(path)
    return path


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;
color:#222;max-width:1400px}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:0.8em 0}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right;font-size:0.9em}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
td.best{font-weight:bold;background:#eef8ee}
tr.oracle td{background:#ececec;color:#555;font-style:italic}
.gallery-sample h4{margin:0.9em 0 0.3em;font-size:0.85em;color:#444;overflow-wrap:anywhere}
.gallery-cells{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start}
.gallery-cells figure{margin:0;max-width:100%}
.gallery-cells figcaption{font-size:0.8em;font-weight:600}
.gallery-cells img{display:block;max-width:100%;height:auto;border:1px solid #ddd}
details.pictures>summary{cursor:pointer;margin:0.6em 0}
.dl a{margin:0 3px;font-size:0.8em}.note{color:#a33;font-size:0.8em}
.muted{color:#666;font-size:0.9em}
"""


def _img_tag(report_dir: str, rel_path: str, alt: str, embed: bool) -> str:
    if embed:
        with open(os.path.join(report_dir, rel_path), "rb") as f:
            src = "data:image/png;base64," + base64.b64encode(f.read()).decode()
    else:
        src = rel_path.replace(os.sep, "/")
    return f'<img src="{src}" alt="{html.escape(alt)}">'


def _html_table(headers, rows, best, shaded=()) -> str:
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers) + "</tr>"]
    for i, row in enumerate(rows):
        cells = []
        for j, c in enumerate(row):
            cls = ' class="best"' if best.get((i, j)) else ""
            cells.append(f"<td{cls}>{html.escape(c)}</td>")
        tr = '<tr class="oracle">' if i in shaded else "<tr>"
        out.append(tr + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _per_category_section(task: Task, done: Sequence[RunRecord], methods) -> tuple:
    """``(markdown, html, json)`` of a task's per-category tables, behind a fold."""
    per_method, payload = {}, {}
    for r in done:
        spec = get_method(r.name, tuple(methods))
        if spec.read_per_category is None:
            continue
        try:
            pc = spec.read_per_category(r.results)
        except (KeyError, TypeError, ValueError):
            continue
        if pc:
            per_method[spec.title] = pc
            payload[r.name] = pc
    cols = {c.key: c for c in task.columns}
    tables = per_category_tables(
        [k for k in task.per_category if k in cols],
        {k: c.header for k, c in cols.items()},
        {k: c.digits for k, c in cols.items()},
        per_method,
    )
    if not tables:
        return [], [], payload
    summary = (
        "Per-category results (each table: one metric; the last two rows are the mean over "
        "categories and the mean over instances)"
    )
    md = ["<details>", f"<summary>{summary}</summary>", ""]
    body = [f"<details><summary>{html.escape(summary)}</summary>"]
    for title, headers, rows in tables:
        md += [f"**{title}**", "", markdown_table(headers, rows), ""]
        body += [f"<h4>{html.escape(title)}</h4>", _html_table(headers, rows, {})]
    md += ["</details>", ""]
    body.append("</details>")
    return md, body, payload


def _html_gallery(
    rows: Sequence[GalleryRow], report_dir: str, embed: bool, element_id: str = ""
) -> str:
    """The pictures: one block per sample, its name above, labelled pictures that wrap to the
    page's width (no column wider than the screen), in a ``<details>`` that the 3D viewer
    folds."""
    if not rows:
        return ""
    ident = f' id="{html.escape(element_id)}"' if element_id else ""
    out = [
        f'<details class="pictures"{ident} open><summary>Pictures: the input camera, then the '
        "camera turned about the object; meshes for download under each picture</summary>"
    ]
    for row in rows:
        out.append(
            f'<div class="gallery-sample"><h4>{html.escape(row.sample)}</h4>'
            '<div class="gallery-cells">'
        )
        for c in row.cells:
            parts = [f"<figcaption>{html.escape(c.label)}</figcaption>"]
            parts.append(_img_tag(report_dir, c.image, f"{row.sample}: {c.label}", embed))
            if c.downloads:
                links = " ".join(
                    f'<a href="{html.escape(p.replace(os.sep, "/"))}" download>{fmt}</a>'
                    for fmt, p in c.downloads.items()
                )
                parts.append(f'<div class="dl">{links}</div>')
            if c.note:
                parts.append(f'<div class="note">{html.escape(c.note)}</div>')
            out.append("<figure>" + "".join(parts) + "</figure>")
        out.append("</div></div>")
    out.append("</details>")
    return "\n".join(out)


def _html_viewer(rows: Sequence[GalleryRow], report_dir: str, key: str, fallback_id: str) -> str:
    """The 3D viewer of a task's gallery (its files under ``viewer/``)."""
    name = "gallery-" + re.sub(r"[^A-Za-z0-9_-]", "-", key)
    return write_viewer(report_dir, viewer_groups(rows), name=name, fallback_id=fallback_id)


# Said instead of an empty plot when no run has a validation curve.
NO_VALIDATION = (
    "No run has a validation curve: --preset full records them (or add DATASETS.VAL, "
    "TEST.EVAL_PERIOD and TEST.BEST_METRIC to --opts)."
)
QUALITY_TITLE = "Quality per CPU-minute"


def _quality_section(
    records: Sequence[RunRecord],
    methods: Sequence[MethodSpec],
    report_dir: str,
    fig_dir: str,
    embed: bool,
) -> tuple[list[str], list[str], dict[str, Any]]:
    """The report's section plotting each method's validation metric against training time:
    ``(markdown lines, html parts, report.json entry)``."""
    curves = validation_curves(records, methods)
    md = [f"## {QUALITY_TITLE}", ""]
    body = [f"<h2>{QUALITY_TITLE}</h2>"]
    drawn = plot_validation_curves(curves, os.path.join(fig_dir, "validation_curves.png"))
    if drawn is None:
        md += [NO_VALIDATION, ""]
        body.append(f'<p class="muted">{html.escape(NO_VALIDATION)}</p>')
        return md, body, {"curves": {}}
    rel = os.path.join("figures", "validation_curves.png")
    text = (
        "Each method's validation metric (the one that keeps its best checkpoint) against its "
        "training's wall-clock time with the report's threads, validation excluded; one panel "
        "per metric. ★ the validation kept as model_best.pth, ✖ where the plateau rule stopped "
        "training."
    )
    md += [text, "", f"![validation metric against training time]({rel})", ""]
    body += [f"<p>{html.escape(text)}</p>", _img_tag(report_dir, rel, "quality", embed)]
    return md, body, {**curves_payload(curves), "figure": rel}


def write_report(
    report_dir: str,
    records: Sequence[RunRecord],
    methods: Sequence[MethodSpec],
    galleries: Mapping[str, Sequence[GalleryRow]],
    info: Mapping[str, Any],
    embed_images: bool = True,
    tasks: Mapping[str, Task] = TASKS,
    viewer: bool = True,
) -> dict[str, str]:
    """Write ``report.html``, ``report.md``, ``report.json`` and the figures; return paths and
    the Markdown text under ``"markdown"``. ``viewer``: add the interactive 3D viewer to each
    gallery (its files go to ``viewer/``)."""
    fig_dir = os.path.join(report_dir, "figures")
    os.makedirs(fig_dir, exist_ok=True)
    tasks_run = [
        t
        for t in tasks.values()
        if any(get_method(r.name, tuple(methods)).task == t.key for r in records)
    ]
    md = [f"# {info.get('title', 'meshrecon benchmark')}", ""]
    md += [f"- {k}: {v}" for k, v in info.get("facts", {}).items()] + [""]
    body = [f"<h1>{html.escape(info.get('title', 'meshrecon benchmark'))}</h1>", "<ul>"]
    body += [
        f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>"
        for k, v in info.get("facts", {}).items()
    ]
    body.append("</ul>")
    payload: dict[str, Any] = {"info": dict(info), "tasks": {}}
    for task in tasks_run:
        headers, rows, best = task_table(task, records, methods)
        done = table_records(task, records, methods)
        shaded = {
            i for i, r in enumerate(done) if get_method(r.name, tuple(methods)).kind == "oracle"
        }
        not_run = [
            r for r in records if get_method(r.name, tuple(methods)).task == task.key and not r.ok
        ]
        md += [f"## {task.title}", "", task.description, ""]
        body += [f"<h2>{html.escape(task.title)}</h2>", f"<p>{html.escape(task.description)}</p>"]
        paragraph, pc_json = "", {}
        if rows:
            md += [markdown_table(headers, rows, best, shaded), ""]
            body.append(_html_table(headers, rows, best, shaded))
            paragraph = yardstick_paragraph(
                task, [(get_method(r.name, tuple(methods)), r.row) for r in done]
            )
            if paragraph:
                md += [paragraph, ""]
                body.append(f"<p>{html.escape(paragraph)}</p>")
            pc_md, pc_html, pc_json = _per_category_section(task, done, methods)
            md += pc_md
            body += pc_html
        for r in not_run:
            title = get_method(r.name, tuple(methods)).title
            first = r.reason.strip().splitlines()[0] if r.reason.strip() else ""
            md.append(f"- **{title}** {r.status}: {first}")
            body.append(
                f'<p class="note"><b>{html.escape(title)}</b> {r.status}: {html.escape(first)}</p>'
            )
        if not_run:
            md.append("")
        curve = plot_curves(task, records, methods, os.path.join(fig_dir, f"curves_{task.key}.png"))
        if curve:
            rel = os.path.relpath(curve, report_dir)
            md += [f"![training curves]({rel})", ""]
            body.append(
                f"<h3>Training curves</h3>{_img_tag(report_dir, rel, 'curves', embed_images)}"
            )
        grows = galleries.get(task.key) or []
        if grows:
            grid = compose_gallery_png(
                grows, report_dir, os.path.join(fig_dir, f"gallery_{task.key}.png")
            )
            if grid:
                md += [f"![gallery]({os.path.relpath(grid, report_dir)})", ""]
            pictures_id = "pictures-" + re.sub(r"[^A-Za-z0-9_-]", "-", task.key)
            body.append("<h3>Gallery</h3>")
            if viewer:
                body.append(_html_viewer(grows, report_dir, task.key, pictures_id))
            body.append(_html_gallery(grows, report_dir, embed_images, pictures_id))
        payload["tasks"][task.key] = {
            "title": task.title,
            "dataset": task.dataset,
            "headers": headers,
            "rows": rows,
            "upper_bound_rows": sorted(shaded),
            "yardstick": paragraph,
            "per_category": pc_json,
            "methods": {
                r.name: {
                    "status": r.status,
                    "reason": r.reason,
                    "metrics": r.row,
                    "params": r.params,
                    "wall_s": r.wall_s,
                    "train_s": r.train_s,
                    "output_dir": r.output_dir,
                    "validation": dict(r.validation),
                }
                for r in records
                if get_method(r.name, tuple(methods)).task == task.key
            },
            "gallery": [
                {"sample": g.sample, "cells": [c.__dict__ for c in g.cells]} for g in grows
            ],
        }
    md_part, html_part, payload["validation"] = _quality_section(
        records, methods, report_dir, fig_dir, embed_images
    )
    md += md_part
    body += html_part
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(info.get('title', 'meshrecon benchmark'))}</title>"
        f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
    paths = {
        "html": os.path.join(report_dir, "report.html"),
        "markdown_file": os.path.join(report_dir, "report.md"),
        "json": os.path.join(report_dir, "report.json"),
    }
    with open(paths["html"], "w") as f:
        f.write(page)
    text = "\n".join(md)
    with open(paths["markdown_file"], "w") as f:
        f.write(text + "\n")
    with open(paths["json"], "w") as f:
        json.dump(payload, f, indent=1, default=str)
    paths["markdown"] = text
    return paths
