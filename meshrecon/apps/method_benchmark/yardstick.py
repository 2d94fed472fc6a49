"""Does a method reconstruct, or only recognize? Each learned method against Retrieval.

Tatarchenko et al. (CVPR 2019) showed that single-view networks were matched by retrieving the
nearest training shape. The report therefore says, under each table and from its numbers
alone, whether each learned method beats the task's Retrieval baseline (its ``yardstick``) on
the task's headline metrics (one or two per protocol).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["compare_with_yardstick", "yardstick_paragraph"]


def _finite(v) -> bool:
    return isinstance(v, float) and math.isfinite(v)


def compare_with_yardstick(
    row: Mapping[str, float | None],
    yardstick: Mapping[str, float | None],
    columns: Sequence,
    keys: Sequence[str],
) -> tuple[list[str], list[str]]:
    """``(better, worse)``: headers of the ``keys`` columns where ``row`` is strictly better /
    not better than ``yardstick`` (columns without a number on both sides are left out)."""
    by_key = {c.key: c for c in columns}
    better, worse = [], []
    for key in keys:
        col = by_key[key]
        a, b = row.get(key), yardstick.get(key)
        if not (_finite(a) and _finite(b)):
            continue
        wins = a > b if col.higher_is_better else a < b
        (better if wins else worse).append(col.header)
    return better, worse


def yardstick_paragraph(task, entries: Sequence[tuple]) -> str:
    """The paragraph under a task's table.

    Args:
        task: the :class:`~.methods.Task` (its ``headline`` and ``columns``).
        entries: ``(spec, row)`` of the methods in the table.

    Returns:
        Plain text, "" when the task has no headline metrics.
    """
    if not task.headline:
        return ""
    yard = [(s, r) for s, r in entries if s.yardstick]
    learned = [(s, r) for s, r in entries if s.kind == "method"]
    if not learned:
        return ""
    if not yard:
        return (
            "Retrieval was not run, so whether the methods reconstruct beyond recognizing the "
            "training shapes cannot be told from this table."
        )
    yspec, yrow = yard[0]
    every = [c.key for c in task.columns]
    headline = ", ".join(c.header for c in task.columns if c.key in task.headline)
    name = yspec.title.split(" (")[0]
    parts = [
        f"Beyond recognition? Each learned method against {name} (the training shape nearest "
        f"to what the input shows) on the headline metrics ({headline}):"
    ]
    for spec, row in learned:
        better, worse = compare_with_yardstick(row, yrow, task.columns, task.headline)
        all_better, all_worse = compare_with_yardstick(row, yrow, task.columns, every)
        n = len(better) + len(worse)
        overall = f"; {len(all_better)} of {len(all_better) + len(all_worse)} columns in all"
        if n == 0:
            parts.append(f"{spec.title} has no headline metric to compare.")
        elif not worse:
            parts.append(
                f"{spec.title} beats it on all {n}{overall}: it reconstructs beyond recognition."
            )
        elif not better:
            parts.append(
                f"{spec.title} beats it on none of {n}{overall}: no sign that it does more than "
                "recognize."
            )
        else:
            parts.append(
                f"{spec.title} beats it on {len(better)} of {n} ({', '.join(better)}) but not on "
                f"{', '.join(worse)}{overall}: mixed."
            )
    return " ".join(parts)
