"""Progress bars that suit where they are written: a live bar on a terminal, lines in a log.

tqdm redraws its bar in place with carriage returns, ten times a second. Written to a file (a
log, a CI console, a pipe) that leaves thousands of ``\\r``-separated copies of the bar on one
line. :func:`progress_bar` returns tqdm's bar when the stream is a terminal and otherwise a
bar that writes one plain line per ``step_percent`` of progress (or, without a known total,
one per ``interval`` seconds), plus the final state.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable
from typing import IO, Any

from tqdm import tqdm

__all__ = ["LineProgressBar", "progress_bar", "restart"]


def _is_terminal(stream: IO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class LineProgressBar(tqdm):
    """A tqdm that writes whole lines: at every ``step_percent`` of ``total`` and at the end.

    Without a total it writes a line every ``interval`` seconds. The bar is never redrawn in
    place, so the output holds no carriage returns.
    """

    def __init__(
        self,
        iterable: Iterable | None = None,
        *args: Any,
        step_percent: int = 10,
        interval: float = 60.0,
        **kwargs: Any,
    ) -> None:
        if not 0 < step_percent <= 100:
            raise ValueError(f"step_percent must be in (0, 100], got {step_percent}")
        self._step_percent = step_percent
        self._interval = interval
        self._quiet = False
        self._forget_lines()
        # A bar that is left in place would add an empty line after the final one.
        kwargs["leave"] = False
        kwargs["dynamic_ncols"] = False
        super().__init__(iterable, *args, **kwargs)

    def _forget_lines(self) -> None:
        self._last_step: int | None = None
        self._last_line_n: float | None = None
        self._last_line_t = -math.inf

    def reset(self, total: float | None = None) -> None:
        self._forget_lines()
        super().reset(total)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if self._quiet or (msg is not None and msg != ""):
            return False  # restart()'s interim zero, or tqdm's "more hidden" notice
        now = time.monotonic()
        step = None
        if msg == "":  # close(): the final state, unless that line is already written
            due = self.n != self._last_line_n
        elif self.total:
            step = int(min(100.0, 100.0 * self.n / self.total) // self._step_percent)
            due = step != self._last_step
        else:
            due = now - self._last_line_t >= self._interval
        if due:
            self.fp.write(self.__str__() + "\n")
            self.fp.flush()
            self._last_step = step if step is not None else self._last_step
            self._last_line_n = self.n
            self._last_line_t = now
        # False: close() then writes no "\r" to clear the bar.
        return False


def progress_bar(
    iterable: Iterable | None = None, *, file: IO | None = None, **kwargs: Any
) -> tqdm:
    """Return a progress bar over ``iterable`` (or one to ``update()``), for ``file``.

    Args:
        iterable: what to iterate over, or None.
        file: the stream to write to (default ``sys.stderr``). A terminal gets tqdm's live
            bar; anything else a :class:`LineProgressBar`.
        kwargs: tqdm's arguments (``total``, ``desc``, ``unit``, ``disable``, ...); for a
            line bar also ``step_percent`` and ``interval``.
    """
    stream = sys.stderr if file is None else file
    if _is_terminal(stream):
        kwargs.pop("step_percent", None)
        kwargs.pop("interval", None)
        return tqdm(iterable, file=stream, **kwargs)
    return LineProgressBar(iterable, file=stream, **kwargs)


def restart(bar: tqdm, *, total: float | None, start: float = 0) -> None:
    """Start ``bar`` over for a new phase whose count resumes at ``start``.

    For a bar fed from outside (a training's iterations, then a validation's batches, then the
    training again at iteration ``start``): its rate and time left count only what is done from
    here, not the ``start`` it picks up at, and a line bar writes no line for the interim zero.
    """
    line_bar = isinstance(bar, LineProgressBar)
    if line_bar:
        bar._quiet = True
    try:
        bar.reset(total=total)
    finally:
        if line_bar:
            bar._quiet = False
    bar.total = total  # reset() keeps the old total for None; here None means unknown
    bar.initial = start
    bar.n = bar.last_print_n = start
    bar.refresh()
