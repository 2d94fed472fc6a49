"""Where a training step's time goes: named stages, timed exclusively, CPU and CUDA alike.

Model code marks the parts of a step that a reader wants to see apart::

    with stage("backbone"):
        features = self.backbone(images)

    @stage("losses")
    def mesh_rcnn_loss(...): ...

A mark costs nothing measurable while no :class:`StageTimer` is active (one global read and a
``torch.profiler.record_function`` range, so the stages also show by name in a
``torch.profiler`` trace). Inside ``with StageTimer(device) as timer:`` every mark adds its
*exclusive* wall time (time in nested marks is not counted twice) to ``timer.totals``; the
timer's own :meth:`StageTimer.measure` opens top-level stages the same way. With a CUDA device
the timer synchronizes at every stage boundary, so that a stage's time is the time its kernels
took and not the time their launches took; on CPU every op runs synchronously and the times
are exact. The synchronizations cost a CUDA step some overlap, which is the price of an honest
split (``tools/benchmark.py train`` documents this).

The timer is process-global and meant for the training thread; data-loader workers are other
processes and never see it.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

__all__ = ["StageTimer", "stage"]

_F = TypeVar("_F", bound=Callable[..., Any])

_ACTIVE: StageTimer | None = None


class StageTimer:
    """Accumulate the exclusive wall time of named stages while active.

    Attributes:
        totals: stage name -> seconds accumulated so far.
        device: the device whose queue is synchronized at stage boundaries (CUDA only).
    """

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.totals: dict[str, float] = defaultdict(float)
        # Open stages: [name, start of the current exclusive interval].
        self._stack: list[list[Any]] = []

    def __enter__(self) -> StageTimer:
        global _ACTIVE
        if _ACTIVE is not None:
            raise RuntimeError("a StageTimer is already active; they do not nest")
        _ACTIVE = self
        return self

    def __exit__(self, *exc: object) -> None:
        global _ACTIVE
        _ACTIVE = None
        self._stack.clear()

    def reset(self) -> None:
        """Forget the accumulated totals (e.g. after warm-up steps)."""
        self.totals.clear()

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _push(self, name: str) -> None:
        now = self._now()
        if self._stack:
            parent = self._stack[-1]
            self.totals[parent[0]] += now - parent[1]
        self._stack.append([name, now])

    def _pop(self) -> None:
        if not self._stack:  # the timer was closed while this stage ran
            return
        now = self._now()
        name, start = self._stack.pop()
        self.totals[name] += now - start
        if self._stack:
            self._stack[-1][1] = now

    @contextmanager
    def measure(self, name: str) -> Iterator[None]:
        """Time the block as stage ``name`` (exclusive of stages marked inside it)."""
        self._push(name)
        try:
            yield
        finally:
            self._pop()


class stage:
    """Mark a block (``with stage(name):``) or a function (``@stage(name)``) as a stage.

    The name appears in ``torch.profiler`` traces as ``meshrecon.<name>`` and, while a
    :class:`StageTimer` is active, the block's exclusive time is added to its ``totals``.
    """

    def __init__(self, name: str) -> None:
        if not name:
            raise ValueError("stage name must be a non-empty string")
        self.name = name
        self._timer: StageTimer | None = None
        self._range: torch.profiler.record_function | None = None

    def __enter__(self) -> stage:
        self._range = torch.profiler.record_function(f"meshrecon.{self.name}")
        self._range.__enter__()
        self._timer = _ACTIVE
        if self._timer is not None:
            self._timer._push(self.name)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer._pop()
            self._timer = None
        self._range.__exit__(*exc)

    def __call__(self, func: _F) -> _F:
        name = self.name

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            # A fresh mark per call: a decorated function may call itself or run nested.
            with stage(name):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]
