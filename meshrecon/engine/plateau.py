"""Has a validation curve flattened? One rule, used to stop training and to label reports.

The rule (``TEST.PLATEAU_WINDOW_FRAC``, ``TEST.PLATEAU_MIN_DELTA``): a curve has plateaued at
iteration ``T`` when the best value it reaches in the last ``window_frac`` of training (the
evaluations at iterations ``> (1 - window_frac) T``) improves on the best value before that
window by less than ``min_delta``, in the metric's own units (F1 in %: one point is 1.0; IoU,
AP or delta < 1.25 as fractions: one point is 0.01). Comparing best values, not the last one
with the first, keeps a noisy flat curve flat and lets a curve that rose and then fell
(overfitting) count as finished: its window does not beat its earlier best. A "max" curve that
is 0 at every evaluation (a score that has not left its floor) is undecided, never flat.

A schedule whose first phase trains part of the model (VoxMesh's voxel-only iterations) can be
flat there and rise once the rest trains: ``start_iter`` (``TEST.PLATEAU_START_ITER``) leaves the
evaluations up to that iteration out, so that only the curve after it is judged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["PlateauResult", "detect_plateau"]


@dataclass(frozen=True)
class PlateauResult:
    """The verdict on one curve.

    Attributes:
        plateaued: the window improved on the earlier best by less than ``min_delta``.
        decided: there were enough evaluations to judge (else ``plateaued`` is False).
        improvement: best in the window minus best before it, signed so that positive is
            better (``nan`` when undecided).
        window_start: the first iteration inside the window (``nan`` for an empty curve).
        reason: one sentence saying why, for logs and reports.
    """

    plateaued: bool
    decided: bool
    improvement: float
    window_start: float
    reason: str


def _check_args(mode: str, window_frac: float, min_delta: float, min_points: int) -> None:
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    if not 0.0 < window_frac < 1.0:
        raise ValueError(
            f"window_frac (TEST.PLATEAU_WINDOW_FRAC) must lie in (0, 1), got {window_frac}"
        )
    if not min_delta >= 0.0:
        raise ValueError(f"min_delta (TEST.PLATEAU_MIN_DELTA) must be >= 0, got {min_delta}")
    if min_points < 1:
        raise ValueError(f"min_points must be >= 1, got {min_points}")


def detect_plateau(
    iterations: Sequence[int],
    values: Sequence[float],
    *,
    mode: str = "max",
    window_frac: float = 0.2,
    min_delta: float = 1.0,
    min_points: int = 2,
    last_iter: int | None = None,
    start_iter: int = 0,
) -> PlateauResult:
    """Decide whether a validation curve has plateaued (see the module docstring).

    Args:
        iterations: (K,) iterations of the evaluations, increasing.
        values: (K,) the metric at each; non-finite values are ignored.
        mode: "max" when higher is better (F1, IoU, AP), "min" when lower is (Chamfer).
        window_frac: the last fraction of training that must improve.
        min_delta: the improvement, in the metric's units, below which the curve is flat.
        min_points: evaluations the window must hold (and at least one before it) for a
            verdict; with fewer the curve is "undecided" and not plateaued.
        last_iter: the end of training (default: the last evaluation's iteration).
        start_iter: evaluations at iterations <= this are left out (a first phase of the
            schedule that is not judged); 0: none.

    Returns:
        A :class:`PlateauResult`.
    """
    _check_args(mode, window_frac, min_delta, min_points)
    if len(iterations) != len(values):
        raise ValueError(
            f"iterations ({len(iterations)}) and values ({len(values)}) differ in length"
        )
    if start_iter < 0:
        raise ValueError(f"start_iter (TEST.PLATEAU_START_ITER) must be >= 0, got {start_iter}")
    points = [(int(i), float(v)) for i, v in zip(iterations, values) if math.isfinite(float(v))]
    if any(b[0] <= a[0] for a, b in zip(points, points[1:])):
        raise ValueError("iterations must be strictly increasing")
    points = [(i, v) for i, v in points if i > start_iter]
    if not points:
        reason = "no finite evaluation yet"
        if start_iter:
            reason = f"undecided: no finite evaluation after iteration {start_iter} yet"
        return PlateauResult(False, False, math.nan, math.nan, reason)
    end = points[-1][0] if last_iter is None else int(last_iter)
    start = (1.0 - window_frac) * end
    before = [v for i, v in points if i <= start]
    inside = [v for i, v in points if i > start]
    if not before or len(inside) < min_points:
        return PlateauResult(
            False,
            False,
            math.nan,
            start,
            f"undecided: {len(before)} evaluation(s) before iteration {start:.0f} and "
            f"{len(inside)} after it (need 1 and {min_points})"
            + (f", counting those after iteration {start_iter}" if start_iter else ""),
        )
    if mode == "max" and all(v == 0.0 for _, v in points):
        # A score still at its floor (a detector's AP^mesh before its boxes are good) has not
        # started to learn: not a plateau to stop, or drop the rate, at.
        return PlateauResult(
            False,
            False,
            math.nan,
            start,
            f"undecided: the curve has not left 0 ({len(points)} evaluations)",
        )
    best = max if mode == "max" else min
    sign = 1.0 if mode == "max" else -1.0
    improvement = sign * (best(inside) - best(before))
    plateaued = improvement < min_delta
    verb = "flat" if plateaued else "still improving"
    reason = (
        f"{verb}: the best of the last {window_frac:.0%} (after iteration {start:.0f}) beats the "
        f"earlier best by {improvement:+.4g} (threshold {min_delta:g})"
    )
    return PlateauResult(plateaued, True, improvement, start, reason)
