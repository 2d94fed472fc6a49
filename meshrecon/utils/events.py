"""Training metrics: an ``EventStorage`` that any code can write into, and writers reading it.

The trainer opens one :class:`EventStorage` for a whole run; during a step, any code may call
``get_event_storage().put_scalar(...)``. Writers (console, ``metrics.json``, TensorBoard) read
the storage periodically; :class:`WandbWriter` sends them to Weights & Biases when asked.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from fvcore.common.history_buffer import HistoryBuffer
from iopath.common.file_io import PathManager as _PathManagerCls

__all__ = [
    "CommonMetricPrinter",
    "EventStorage",
    "EventWriter",
    "JSONWriter",
    "TensorboardXWriter",
    "WandbWriter",
    "get_event_storage",
]

_PATH_MANAGER = _PathManagerCls()
_STORAGE_STACK: list[EventStorage] = []


def get_event_storage() -> EventStorage:
    """Return the innermost open :class:`EventStorage`.

    Raises:
        RuntimeError: when called outside any ``with EventStorage(...):`` block.
    """
    if not _STORAGE_STACK:
        raise RuntimeError(
            "get_event_storage() needs an open storage: call it inside 'with EventStorage(...):' "
            "(the trainer opens one for the whole of train())"
        )
    return _STORAGE_STACK[-1]


def has_event_storage() -> bool:
    """Return True when some :class:`EventStorage` is open."""
    return bool(_STORAGE_STACK)


class EventStorage:
    """Scalar histories (and images / histograms for TensorBoard) keyed by name and iteration.

    Use as a context manager; ``get_event_storage()`` then returns it.
    """

    def __init__(self, start_iter: int = 0) -> None:
        """
        Args:
            start_iter: the iteration that the first ``put_*`` calls are recorded at.
        """
        self._history: dict[str, HistoryBuffer] = defaultdict(HistoryBuffer)
        self._smoothing_hints: dict[str, bool] = {}
        self._latest_scalars: dict[str, tuple[float, int]] = {}
        self._iter = start_iter
        self._current_prefix = ""
        self._vis_data: list[tuple[str, Any, int]] = []
        self._histograms: list[dict[str, Any]] = []

    def put_scalar(
        self, name: str, value: float, smoothing_hint: bool = True, cur_iter: int | None = None
    ) -> None:
        """Record ``value`` for ``name`` at iteration ``cur_iter`` (default: the current one).

        Args:
            smoothing_hint: whether writers should smooth this noisy scalar (median over a
                window) before showing it. A name must always be put with the same hint.
        """
        name = self._current_prefix + name
        cur_iter = self._iter if cur_iter is None else int(cur_iter)
        value = float(value)
        self._history[name].update(value, cur_iter)
        self._latest_scalars[name] = (value, cur_iter)
        previous = self._smoothing_hints.setdefault(name, smoothing_hint)
        if previous != smoothing_hint:
            raise ValueError(
                f"scalar {name!r} was put with smoothing_hint={previous} before, now with "
                f"{smoothing_hint}; one name must keep one hint"
            )

    def put_scalars(
        self, *, smoothing_hint: bool = True, cur_iter: int | None = None, **kwargs: float
    ) -> None:
        """Record several scalars given as keyword arguments, e.g. ``put_scalars(loss=l, lr=r)``."""
        for name, value in kwargs.items():
            self.put_scalar(name, value, smoothing_hint=smoothing_hint, cur_iter=cur_iter)

    def put_image(self, img_name: str, img_tensor: torch.Tensor) -> None:
        """Queue an RGB image ``(3, H, W)`` (float in [0, 1] or uint8) for TensorBoard."""
        self._vis_data.append((img_name, img_tensor, self._iter))

    def put_histogram(self, hist_name: str, hist_tensor: torch.Tensor, bins: int = 1000) -> None:
        """Queue a histogram of the values of ``hist_tensor`` for TensorBoard."""
        values = hist_tensor.detach().float().flatten().cpu()
        low, high = values.min().item(), values.max().item()
        counts = torch.histc(values, bins=bins, min=low, max=high)
        edges = torch.linspace(low, high, bins + 1)
        self._histograms.append(
            dict(
                tag=hist_name,
                min=low,
                max=high,
                num=values.numel(),
                sum=float(values.sum()),
                sum_squares=float((values**2).sum()),
                bucket_limits=edges[1:].tolist(),
                bucket_counts=counts.tolist(),
                global_step=self._iter,
            )
        )

    def history(self, name: str) -> HistoryBuffer:
        """Return the history of scalar ``name``; KeyError if it was never put."""
        if name not in self._history:
            raise KeyError(f"no scalar named {name!r} has been put in this EventStorage")
        return self._history[name]

    def histories(self) -> dict[str, HistoryBuffer]:
        """Return every scalar's history, by name."""
        return dict(self._history)

    def latest(self) -> dict[str, tuple[float, int]]:
        """Return, for each scalar, its most recent value and the iteration it was put at."""
        return dict(self._latest_scalars)

    def latest_with_smoothing_hint(self, window_size: int = 20) -> dict[str, tuple[float, int]]:
        """Like :meth:`latest`, but a smoothed scalar's value is the median of its last
        ``window_size`` values."""
        result = {}
        for name, (value, itr) in self._latest_scalars.items():
            if self._smoothing_hints[name]:
                value = self._history[name].median(window_size)
            result[name] = (value, itr)
        return result

    def smoothing_hints(self) -> dict[str, bool]:
        """Return each scalar's smoothing hint."""
        return dict(self._smoothing_hints)

    def step(self) -> None:
        """Advance the current iteration by one (the trainer calls this after each step)."""
        self._iter += 1

    @property
    def iter(self) -> int:
        """The current iteration: the one the step in progress (or last finished) has."""
        return self._iter

    @iter.setter
    def iter(self, value: int) -> None:
        self._iter = int(value)

    @property
    def iteration(self) -> int:
        """Alias of :attr:`iter`."""
        return self._iter

    @contextmanager
    def name_scope(self, name: str) -> Iterator[None]:
        """Prefix every scalar put inside the block with ``name + "/"``."""
        old_prefix = self._current_prefix
        self._current_prefix = name.rstrip("/") + "/"
        try:
            yield
        finally:
            self._current_prefix = old_prefix

    def clear_images(self) -> None:
        """Drop the queued images (the TensorBoard writer calls this once it wrote them)."""
        self._vis_data = []

    def clear_histograms(self) -> None:
        """Drop the queued histograms (the TensorBoard writer calls this once it wrote them)."""
        self._histograms = []

    def __enter__(self) -> EventStorage:
        _STORAGE_STACK.append(self)
        return self

    def __exit__(self, exc_type, exc_val, exc_tb) -> None:
        if not _STORAGE_STACK or _STORAGE_STACK[-1] is not self:
            raise RuntimeError("EventStorage contexts must be closed in the order they opened")
        _STORAGE_STACK.pop()


def _scalars_since(window_size: int, last_write: int) -> dict[int, dict[str, float]]:
    """``{iteration: {name: value}}`` of the current storage's scalars (smoothed over
    ``window_size`` where hinted) put after iteration ``last_write``: what a writer that
    keeps every logged iteration has not written yet."""
    storage = get_event_storage()
    by_iter: dict[int, dict[str, float]] = defaultdict(dict)
    for name, (value, itr) in storage.latest_with_smoothing_hint(window_size).items():
        if itr > last_write:
            by_iter[itr][name] = value
    return by_iter


class EventWriter:
    """Base class of writers that read the current :class:`EventStorage` and output it."""

    def write(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class JSONWriter(EventWriter):
    """Append the scalars to a file, one JSON object per iteration and per line.

    Each line holds ``"iteration"`` and every scalar put at that iteration since the last write;
    read it with e.g. ``[json.loads(line) for line in open("metrics.json")]``.
    """

    def __init__(self, json_file: str, window_size: int = 20) -> None:
        """
        Args:
            json_file: the file; appended to if it exists, so a resumed run continues it.
            window_size: median window for scalars whose smoothing hint is True.
        """
        self._file = _PATH_MANAGER.open(json_file, "a")
        self._window_size = window_size
        self._last_write = -1

    def write(self) -> None:
        by_iter = _scalars_since(self._window_size, self._last_write)
        for itr in sorted(by_iter):
            line = {"iteration": itr, **by_iter[itr]}
            self._file.write(json.dumps(line, sort_keys=True) + "\n")
        if by_iter:
            self._last_write = max(by_iter)
        self._file.flush()
        try:
            os.fsync(self._file.fileno())
        except (AttributeError, OSError):
            pass  # not every iopath stream is backed by a local file descriptor

    def close(self) -> None:
        self._file.close()


class TensorboardXWriter(EventWriter):
    """Write scalars, images and histograms to TensorBoard event files."""

    def __init__(self, log_dir: str, window_size: int = 20, **kwargs: Any) -> None:
        """
        Args:
            log_dir: the directory of the event files.
            window_size: median window for scalars whose smoothing hint is True.
            kwargs: passed on to ``torch.utils.tensorboard.SummaryWriter``.
        """
        from torch.utils.tensorboard import SummaryWriter

        self._window_size = window_size
        self._writer = SummaryWriter(log_dir, **kwargs)
        self._last_write = -1

    def write(self) -> None:
        storage = get_event_storage()
        newest = self._last_write
        for name, (value, itr) in storage.latest_with_smoothing_hint(self._window_size).items():
            if itr > self._last_write:
                self._writer.add_scalar(name, value, itr)
                newest = max(newest, itr)
        self._last_write = newest
        # The storage keeps images and histograms only until one writer has shown them.
        for img_name, img, step in storage._vis_data:
            self._writer.add_image(img_name, img, step)
        storage.clear_images()
        for params in storage._histograms:
            self._writer.add_histogram_raw(**params)
        storage.clear_histograms()
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class WandbWriter(EventWriter):
    """Log the scalars to Weights & Biases, at their iteration (``step``).

    The run is created on construction with the config attached; evaluation results reach it as
    the scalars that :class:`~meshrecon.engine.hooks.EvalHook` puts into the storage (flattened
    ``"task/metric"`` names). ``wandb`` is an optional package, imported here only.
    """

    def __init__(
        self,
        project: str,
        *,
        config: dict[str, Any] | None = None,
        name: str | None = None,
        entity: str | None = None,
        mode: str | None = None,
        tags: list[str] | None = None,
        log_dir: str | None = None,
        window_size: int = 20,
    ) -> None:
        """
        Args:
            project: the W&B project.
            config: the run's configuration (a plain dict), shown and searchable in W&B.
            name, entity, tags: the run's name, team / user and tags (None: W&B's defaults).
            mode: ``"online"``, ``"offline"`` or ``"disabled"``; None: W&B's default (the
                ``WANDB_MODE`` environment variable).
            log_dir: parent of W&B's ``wandb/`` folder (None: W&B's default, ``WANDB_DIR``).
            window_size: median window for scalars whose smoothing hint is True.

        Raises:
            ImportError: when ``wandb`` is not installed.
            ValueError: an unknown ``mode``.
        """
        try:
            import wandb
        except ImportError as err:
            raise ImportError(
                "WANDB.ENABLED is True but the optional package wandb is not installed: "
                "pip install wandb, or set WANDB.ENABLED False"
            ) from err
        if mode not in (None, "online", "offline", "disabled"):
            raise ValueError(f"WANDB.MODE must be online, offline or disabled, got {mode!r}")
        if log_dir:
            _PATH_MANAGER.mkdirs(log_dir)
        self._run = wandb.init(
            project=project,
            config=config,
            name=name or None,
            entity=entity or None,
            mode=mode or None,
            tags=list(tags) if tags else None,
            dir=log_dir or None,
        )
        self._window_size = window_size
        self._last_write = -1

    @property
    def run(self):
        """The ``wandb`` run."""
        return self._run

    def write(self) -> None:
        by_iter = _scalars_since(self._window_size, self._last_write)
        # W&B drops a step lower than one already logged: iterations go in increasing order.
        for itr in sorted(by_iter):
            self._run.log(by_iter[itr], step=itr)
        if by_iter:
            self._last_write = max(by_iter)

    def close(self) -> None:
        self._run.finish()


class CommonMetricPrinter(EventWriter):
    """Log one line of progress: ETA, iteration, losses, step and data time, LR, GPU memory."""

    def __init__(self, max_iter: int | None = None, window_size: int = 20) -> None:
        """
        Args:
            max_iter: the number of iterations of the run; without it no ETA is shown.
            window_size: median window for the losses.
        """
        self.logger = logging.getLogger(__name__)
        self._max_iter = max_iter
        self._window_size = window_size
        self._last_write: tuple[int, float] | None = None

    def _eta(self, storage: EventStorage) -> str | None:
        if self._max_iter is None:
            return None
        iteration = storage.iter
        remaining = self._max_iter - iteration - 1
        try:
            seconds = storage.history("time").median(1000) * remaining
            storage.put_scalar("eta_seconds", seconds, smoothing_hint=False)
            return str(datetime.timedelta(seconds=int(seconds)))
        except KeyError:
            # No step timings (e.g. a custom trainer): estimate from the time between writes.
            eta = None
            now = time.perf_counter()
            if self._last_write is not None and iteration > self._last_write[0]:
                per_iter = (now - self._last_write[1]) / (iteration - self._last_write[0])
                eta = str(datetime.timedelta(seconds=int(per_iter * remaining)))
            self._last_write = (iteration, now)
            return eta

    def write(self) -> None:
        storage = get_event_storage()
        iteration = storage.iter
        if self._max_iter is not None and iteration >= self._max_iter:
            return  # training is over; nothing left to report on progress
        histories = storage.histories()

        def _fmt(name: str, fn) -> str | None:
            return f"{fn(histories[name]):.4f}" if name in histories else None

        parts = []
        eta = self._eta(storage)
        if eta:
            parts.append(f"eta: {eta}")
        parts.append(f"iter: {iteration}")
        for name, hist in histories.items():
            if "loss" in name:
                parts.append(f"{name}: {hist.median(self._window_size):.4g}")
        step_time = _fmt("time", lambda h: h.global_avg())
        if step_time is not None:
            parts.append(f"time: {step_time}")
        data_time = _fmt("data_time", lambda h: h.avg(self._window_size))
        if data_time is not None:
            parts.append(f"data_time: {data_time}")
        parts.append(f"lr: {histories['lr'].latest():.5g}" if "lr" in histories else "lr: N/A")
        if torch.cuda.is_available():
            parts.append(f"max_mem: {torch.cuda.max_memory_allocated() / 2**20:.0f}M")
        self.logger.info("  ".join(parts))
