"""Per-category results, as the papers report them: one table per metric, a row per category,
a column per method, and both means (over categories, and over instances).

The readers take a method's evaluator results (``results.json``), where the evaluators already
keep every protocol per category (``<section>_per_category``: ``{"<category>/<metric>": v}``,
``<section>_category_mean`` and the instance means in ``<section>``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "multiview_per_category",
    "per_category_tables",
    "shape_per_category",
]

# {column key: {"categories": {name: value}, "category_mean": value, "instance_mean": value}}
PerCategory = dict[str, dict[str, Any]]


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _protocol(results: Mapping[str, Any], base: str, at: str, metric: str) -> dict[str, Any]:
    """One metric of one ShapeNetEvaluator-style section (``base`` + suffix + ``at``)."""
    per = results.get(f"{base}_per_category{at}")
    if not isinstance(per, Mapping):
        return {}
    cats = {k[: -len(metric) - 1]: _num(v) for k, v in per.items() if k.endswith("/" + metric)}
    return {
        "categories": cats,
        "category_mean": _num((results.get(f"{base}_category_mean{at}") or {}).get(metric)),
        "instance_mean": _num((results.get(f"{base}{at}") or {}).get(metric)),
    }


def shape_per_category(normals: bool = True):
    """Per-category reader of the single-view task (ShapeNetEvaluator results)."""

    def read(results: Mapping[str, Any]) -> PerCategory:
        out: PerCategory = {}
        for key, base, metric in (
            ("Chamfer-L2", "shapenet", "Chamfer-L2"),
            ("AbsNormalConsistency", "shapenet", "AbsNormalConsistency"),
            ("F1@0.3", "shapenet", f"F1@{0.3:f}"),
            ("F@1%", "shapenet_fscore", "F-score@1%"),
            ("Chamfer-L1", "shapenet_onet", "Chamfer-L1"),
            ("IoU-32", "shapenet_onet", "IoU"),
        ):
            if not normals and key in ("AbsNormalConsistency", "IoU-32"):
                continue
            if key == "IoU-32" and (results.get("shapenet_onet") or {}).get("NumIoU") == 0:
                continue
            table = _protocol(results, base, "", metric)
            if table:
                out[key] = table
        return out

    return read


def multiview_per_category(results: Mapping[str, Any]) -> PerCategory:
    """Per-category reader of the multi-view task: voxel IoU and the all-views mesh metrics
    (R2N2Evaluator's ``voxel`` / ``mesh...@k``, OptimizeMVSEvaluator's ``multiview...``)."""
    out: PerCategory = {}
    voxel = results.get("voxel")
    if isinstance(voxel, Mapping):
        counts = sorted(int(m.group(1)) for k in voxel if (m := re.fullmatch(r"IoU@(\d+)", k)))
        if counts:
            k = counts[-1]
            prefix = f"IoU@{k}-"
            out["IoU@5"] = {
                "categories": {
                    name[len(prefix) :]: _num(v)
                    for name, v in voxel.items()
                    if name.startswith(prefix)
                },
                "category_mean": _num(voxel.get(f"mIoU@{k}")),
                "instance_mean": _num(voxel.get(f"IoU@{k}")),
            }
    counts = sorted(int(k[5:]) for k in results if re.fullmatch(r"mesh@\d+", k))
    base, at = ("mesh", f"@{counts[-1]}") if counts else ("multiview", "")
    for key, suffix, metric in (
        ("Chamfer-L2@all", "", "Chamfer-L2"),
        ("F1@0.3@all", "", f"F1@{0.3:f}"),
        ("F@1%@all", "_fscore", "F-score@1%"),
        ("Chamfer-L1@all", "_onet", "Chamfer-L1"),
    ):
        table = _protocol(results, base + suffix, at, metric)
        if table:
            out[key] = table
    return out


def per_category_tables(
    column_keys: Sequence[str],
    headers: Mapping[str, str],
    digits: Mapping[str, int],
    per_method: Mapping[str, Mapping[str, Any]],
) -> list[tuple[str, list[str], list[list[str]]]]:
    """Tables of a task's per-category results.

    Args:
        column_keys: the metrics to show, in order.
        headers, digits: each metric's header and decimals.
        per_method: method title -> its per-category reader's output.

    Returns:
        ``[(metric header, table headers, rows)]``: rows are the categories (sorted), then
        "mean over categories" and "mean over instances"; a method without a metric has "—".
    """

    def fmt(v: float | None, decimals: int) -> str:
        if v is None:
            return "—"
        return f"{v:.{decimals}f}" if math.isfinite(v) else "nan"

    out = []
    for key in column_keys:
        methods = [(t, pc[key]) for t, pc in per_method.items() if key in pc]
        if not methods:
            continue
        cats = sorted({c for _, m in methods for c in m.get("categories", {})})
        rows = []
        for c in cats:
            rows.append([c] + [fmt(m["categories"].get(c), digits[key]) for _, m in methods])
        for label, mean in (
            ("mean over categories", "category_mean"),
            ("mean over instances", "instance_mean"),
        ):
            rows.append([label] + [fmt(m.get(mean), digits[key]) for _, m in methods])
        out.append((headers[key], ["category", *(t for t, _ in methods)], rows))
    return out
