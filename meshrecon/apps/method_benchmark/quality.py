"""Quality per CPU-minute: each method's validation metric against its training time.

A run trained with a validation split (``DATASETS.VAL``) leaves its curve in
``OUTPUT_DIR/validation.json`` (:class:`meshrecon.engine.validation.ValidationHook`): per
validation the iteration, the metrics, ``wall_time_s`` (seconds since training started) and
``validation_time_s`` (the seconds spent validating so far, included in ``wall_time_s``). The
plot's time axis is their difference, the training's own wall-clock time: validating is a
measurement whose cost depends on how often one asks, not a cost of the method. Each method is
one line in the panel of the metric it followed (``TEST.BEST_METRIC``; without one, its task's
metric, :attr:`MethodSpec.val_metric`), with the validation kept as the best checkpoint marked
by a star and the one where the plateau stopped training by a cross.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .methods import MethodSpec, get_method
from .runner import RunRecord

__all__ = [
    "TIME_AXIS",
    "ValidationCurve",
    "metric_label",
    "plot_validation_curves",
    "read_validation_curve",
    "validation_curves",
]

TIME_AXIS = "training wall-clock time (min), validation excluded"

# Readable names of the metrics the benchmark's methods follow (others are shown as they are).
_LABELS = {
    "shapenet/F1@0.300000": "single view: F1@0.3 (%)",
    "shape/mesh_ap@0.5": "detection: AP^mesh@0.5",
    "shape/box_ap@0.5": "detection: AP^box@0.5",
    "shape/mask_ap@0.5": "detection: AP^mask@0.5",
    "depth/delta1": "depth: δ<1.25",
    "multiview/F1@0.300000": "several views: F1@0.3 (%)",
}


def metric_label(metric: str) -> str:
    """A panel title for a flattened metric name, e.g. ``"voxel/IoU@1"`` -> ``"voxel IoU, 1
    view"``."""
    if metric in _LABELS:
        return _LABELS[metric]
    if metric.startswith("voxel/IoU@"):
        n = metric.split("@", 1)[1]
        return f"several views: voxel IoU, {n} view{'s' if n != '1' else ''}"
    return metric


@dataclass
class ValidationCurve:
    """One method's validation curve, ready to plot.

    Attributes:
        method, title, task: the method's name, report title and task.
        metric, mode: the metric plotted and whether higher ("max") or lower ("min") is better.
        iterations, values: (K,) the validations' iterations and the metric there.
        minutes: (K,) training wall-clock minutes at each validation, validation excluded.
        best: ``{"iteration", "minutes", "value"}`` of the validation kept as
            ``model_best.pth`` (None without one).
        stopped: the same for the validation at which the plateau stopped training (None
            when it ran to its last iteration).
    """

    method: str
    title: str
    task: str
    metric: str
    mode: str
    iterations: list[int]
    values: list[float]
    minutes: list[float]
    best: dict[str, float] | None = None
    stopped: dict[str, float] | None = None


def read_validation_curve(output_dir: str, spec: MethodSpec) -> ValidationCurve | None:
    """The curve in ``output_dir/validation.json`` (None without one, or without a finite value
    of its metric)."""
    from meshrecon.engine.validation import read_validation_file

    saved = read_validation_file(output_dir)
    if not saved:
        return None
    metric = saved.get("metric") or spec.val_metric
    its, vals, mins = [], [], []
    for entry in saved.get("curve", []):
        value = entry.get("metrics", {}).get(metric)
        if value is None:  # not evaluated, or not finite (written as null)
            continue
        train_s = float(entry["wall_time_s"]) - float(entry.get("validation_time_s", 0.0))
        its.append(int(entry["iteration"]))
        vals.append(float(value))
        mins.append(max(0.0, train_s) / 60.0)
    if not its:
        return None

    def point(iteration: Any) -> dict[str, float] | None:
        if iteration is None or int(iteration) not in its:
            return None
        k = its.index(int(iteration))
        return {"iteration": its[k], "minutes": mins[k], "value": vals[k]}

    # The kept checkpoint was chosen by the run's own metric; a fallback metric has no best.
    best = saved.get("best") if saved.get("metric") == metric else None
    return ValidationCurve(
        method=spec.name,
        title=spec.title,
        task=spec.task,
        metric=metric,
        mode=str(saved.get("mode") or "max"),
        iterations=its,
        values=vals,
        minutes=mins,
        best=point(best.get("iteration")) if isinstance(best, dict) else None,
        stopped=point(saved.get("stopped_early_at")),
    )


def validation_curves(
    records: Sequence[RunRecord], methods: Sequence[MethodSpec]
) -> list[ValidationCurve]:
    """The curves of the finished, trained runs that have one, in the records' order."""
    out = []
    for r in records:
        spec = get_method(r.name, tuple(methods))
        if not r.ok or not spec.train or not r.output_dir:
            continue
        curve = read_validation_curve(r.output_dir, spec)
        if curve is not None:
            out.append(curve)
    return out


def plot_validation_curves(
    curves: Sequence[ValidationCurve], path: str
) -> dict[str, dict[str, Any]] | None:
    """Draw one panel per metric, one line per method, into the PNG ``path``.

    Returns what was drawn, read back from the figure's artists: ``{panel title: {"metric",
    "lines": {method title: (minutes, values)}, "best": {title: (minutes, value)}, "stopped":
    {title: (minutes, value)}}}``; None (and no file) when there are no curves.
    """
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics: list[str] = []
    for c in curves:
        if c.metric not in metrics:
            metrics.append(c.metric)
    ncols = min(2, len(metrics))
    nrows = (len(metrics) + ncols - 1) // ncols
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(6.4 * ncols, 3.6 * nrows), dpi=100, squeeze=False
    )
    drawn: dict[str, dict[str, Any]] = {}
    for ax, metric in zip(axes.flat, metrics):
        title = metric_label(metric)
        panel: dict[str, Any] = {"metric": metric, "lines": {}, "best": {}, "stopped": {}}
        for c in (c for c in curves if c.metric == metric):
            (line,) = ax.plot(
                c.minutes, c.values, marker="o", markersize=3, label=c.title, gid="curve"
            )
            panel["lines"][c.title] = (list(line.get_xdata()), list(line.get_ydata()))
            color = line.get_color()
            if c.best is not None:
                (mark,) = ax.plot(
                    [c.best["minutes"]],
                    [c.best["value"]],
                    marker="*",
                    markersize=14,
                    color=color,
                    markeredgecolor="black",
                    linestyle="none",
                    gid="best",
                )
                panel["best"][c.title] = (mark.get_xdata()[0], mark.get_ydata()[0])
            if c.stopped is not None:
                (mark,) = ax.plot(
                    [c.stopped["minutes"]],
                    [c.stopped["value"]],
                    marker="X",
                    markersize=10,
                    color="black",
                    linestyle="none",
                    gid="stopped",
                )
                ax.annotate(
                    f"plateau: stopped at it. {c.stopped['iteration']}",
                    (c.stopped["minutes"], c.stopped["value"]),
                    textcoords="offset points",
                    xytext=(-6, -14),
                    ha="right",
                    fontsize=7,
                )
                panel["stopped"][c.title] = (mark.get_xdata()[0], mark.get_ydata()[0])
        # From the start of training (the cost is read off the axis), room for the markers.
        right = max(max(c.minutes) for c in curves if c.metric == metric)
        ax.set_xlim(0.0, 1.06 * right if right > 0 else 1.0)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(TIME_AXIS, fontsize=8)
        ax.set_ylabel(metric, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        drawn[title] = panel
    for ax in list(axes.flat)[len(metrics) :]:
        ax.set_visible(False)
    fig.suptitle("Validation metric against training time (★ best checkpoint, ✖ plateau stop)")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return drawn


def curves_payload(curves: Sequence[ValidationCurve]) -> dict[str, Any]:
    """``report.json``'s record of the curves: the time axis and every curve by method."""
    return {"time_axis": TIME_AXIS, "curves": {c.method: asdict(c) for c in curves}}
