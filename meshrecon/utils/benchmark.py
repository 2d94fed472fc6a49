"""A small benchmark harness: time forward and forward+backward, and measure peak memory.

Benchmark cases live in ``tests/benchmarks/bm_<name>.py``; each file defines ``SUITE`` (the name
``tools/benchmark.py`` selects it by, e.g. ``"ops"``) and ``CASES``, a list of :class:`BenchCase`.
"""

from __future__ import annotations

import gc
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

__all__ = ["BenchCase", "BenchResult", "run_case"]


@dataclass
class BenchCase:
    """One benchmark: an op at one size.

    ``make(device)`` builds the inputs on ``device`` (untimed) and returns ``run(backward)``, a
    closure that runs the op once and, when ``backward`` is True, its backward pass too.
    ``reference_ms`` maps a mode (``"fwd"`` or ``"fwd+bwd"``) to a reference time in ms on CPU
    (PyTorch3D's, measured on a 2-core machine), from which the report derives a speed ratio.
    """

    op: str
    size: str
    make: Callable[[torch.device], Callable[[bool], object]]
    backward: bool = True
    reference_ms: dict[str, float] = field(default_factory=dict)
    devices: tuple[str, ...] = ("cpu", "cuda")
    repeats: int = 5


@dataclass
class BenchResult:
    op: str
    size: str
    device: str
    fwd_ms: float
    fwd_bwd_ms: float | None
    peak_mb: float
    reference_ms: dict[str, float]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    fn()  # warm-up: lazy caches, allocator, kernel selection
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1000.0)
    times.sort()
    return times[len(times) // 2]


def _max_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux: the process's high-water mark, so the harness reports the
    # growth of that mark while the case runs (run one case per process for a clean figure).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_case(case: BenchCase, device: torch.device) -> BenchResult:
    """Time ``case`` on ``device``: median of ``case.repeats`` runs after one warm-up."""
    gc.collect()
    run = case.make(device)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = _max_rss_mb()
    fwd = _median_ms(lambda: run(False), device, case.repeats)
    both = _median_ms(lambda: run(True), device, case.repeats) if case.backward else None
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    else:
        peak = max(0.0, _max_rss_mb() - base)
    return BenchResult(case.op, case.size, str(device), fwd, both, peak, dict(case.reference_ms))
