"""Presenting and checking metrics: flattening, plain-text tables, expected-results checks."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["create_small_table", "flatten_results_dict", "print_csv_format", "verify_results"]

logger = logging.getLogger(__name__)


def flatten_results_dict(results: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten nested dicts into one, joining keys with ``/``: ``{"a": {"b": 1}} -> {"a/b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in results.items():
        if isinstance(value, Mapping):
            for sub_key, sub_value in flatten_results_dict(value).items():
                flat[f"{key}/{sub_key}"] = sub_value
        else:
            flat[key] = value
    return flat


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def create_small_table(rows: Mapping[str, Any] | Sequence[Sequence[Any]], headers=None) -> str:
    """Return a plain-text table.

    Args:
        rows: a dict (one row: its keys are the headers) or a list of rows.
        headers: column names when ``rows`` is a list.
    """
    if isinstance(rows, Mapping):
        headers = list(rows.keys())
        body = [[_format_value(v) for v in rows.values()]]
    else:
        body = [[_format_value(v) for v in row] for row in rows]
    headers = [str(h) for h in (headers or [])]
    table = ([headers] if headers else []) + body
    if not table:
        return ""
    widths = [max(len(row[i]) for row in table if i < len(row)) for i in range(len(table[0]))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    out = []
    if headers:
        out += [line(headers), rule]
    out += [line(row) for row in body]
    return "\n".join(out)


def _wrapped_table(metrics: Mapping[str, Any], max_width: int) -> str:
    """One-row tables of ``metrics``, as many as needed for no line to exceed ``max_width``."""
    chunks: list[dict[str, Any]] = [{}]
    width = 1
    for key, value in metrics.items():
        cell = max(len(str(key)), len(_format_value(value))) + 3  # "| " ... " "
        if chunks[-1] and width + cell > max_width:
            chunks.append({})
            width = 1
        chunks[-1][key] = value
        width += cell
    return "\n".join(create_small_table(chunk) for chunk in chunks if chunk)


def print_csv_format(
    results: Mapping[str, Any], *, tables: bool = True, max_width: int = 100
) -> None:
    """Log each task's metrics as a table, and as comma-separated lines for scripts.

    The tables are wrapped so that no line is wider than ``max_width``. The comma-separated
    ("copypaste") lines, as long as the metrics make them, go to the DEBUG level: into the log
    file, not onto the console (``results.json`` next to it holds the same numbers).

    Args:
        results: ``{task: {metric: value}}``, as evaluators return; a value at the top level is
            treated as a metric of the task ``"results"``.
        tables: log the tables at INFO (console and file); False logs them at DEBUG only, for
            an evaluator that has already logged its own readable tables.
        max_width: the widest line of a table, in characters.
    """
    tasks: dict[str, Mapping[str, Any]] = {}
    loose = {k: v for k, v in results.items() if not isinstance(v, Mapping)}
    if loose:
        tasks["results"] = loose
    for task, metrics in results.items():
        if isinstance(metrics, Mapping):
            tasks[task] = flatten_results_dict(metrics)
    level = logging.INFO if tables else logging.DEBUG
    for task, metrics in tasks.items():
        table = _wrapped_table(metrics, max_width)
        logger.log(level, "Evaluation results for %s:\n%s", task, table)
        logger.debug("copypaste: Task: %s", task)
        logger.debug("copypaste: %s", ",".join(metrics.keys()))
        logger.debug("copypaste: %s", ",".join(_format_value(v) for v in metrics.values()))


def verify_results(cfg, results: Mapping[str, Any]) -> bool:
    """Check ``results`` against ``cfg.TEST.EXPECTED_RESULTS``; log the outcome.

    Each expected result is ``[task, metric, value, tolerance]``; the check passes when
    ``|actual - value| <= tolerance`` for all of them.

    Returns:
        True when every expected result is met (or none is configured).
    """
    expected = cfg.TEST.EXPECTED_RESULTS
    if not expected:
        return True
    ok = True
    for task, metric, value, tolerance in expected:
        actual = results.get(task, {}).get(metric)
        if actual is None or not math.isfinite(actual) or abs(actual - value) > tolerance:
            ok = False
            logger.error(
                "Result %s/%s = %s, expected %s +- %s", task, metric, actual, value, tolerance
            )
    if ok:
        logger.info("Results verified: all %d expected results met", len(expected))
    return ok
