"""Hooks for the training loop: timing, LR schedule, checkpoints, evaluation, writing metrics."""

from __future__ import annotations

import datetime
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from fvcore.common.timer import Timer

from ..checkpoint import PeriodicCheckpointer as _FvcorePeriodicCheckpointer
from ..evaluation.testing import flatten_results_dict
from ..layers.batch_norm import training_batch_norms, update_bn_stats
from ..utils import comm
from ..utils.events import EventStorage, EventWriter
from .train_loop import HookBase

__all__ = [
    "CallbackHook",
    "EvalHook",
    "IterationTimer",
    "LRScheduler",
    "PeriodicCheckpointer",
    "PeriodicWriter",
    "PreciseBN",
]

logger = logging.getLogger(__name__)


def at_period_or_end(trainer: Any, period: int) -> bool:
    """Whether the step just done ends a ``period`` (0: none) or the training.

    When :class:`PreciseBN` recomputes statistics and the validation hook validates: the two
    must agree.
    """
    next_iter = trainer.iter + 1
    return next_iter >= trainer.max_iter or (period > 0 and next_iter % period == 0)


class CallbackHook(HookBase):
    """A hook made of plain functions, each called with the trainer."""

    def __init__(
        self,
        *,
        before_train: Callable | None = None,
        after_train: Callable | None = None,
        before_step: Callable | None = None,
        after_step: Callable | None = None,
    ) -> None:
        self._before_train = before_train
        self._after_train = after_train
        self._before_step = before_step
        self._after_step = after_step

    def before_train(self) -> None:
        if self._before_train:
            self._before_train(self.trainer)

    def after_train(self) -> None:
        if self._after_train:
            self._after_train(self.trainer)

    def before_step(self) -> None:
        if self._before_step:
            self._before_step(self.trainer)

    def after_step(self) -> None:
        if self._after_step:
            self._after_step(self.trainer)


class IterationTimer(HookBase):
    """Record each step's duration as the scalar ``time`` and log the totals at the end.

    Put it first among the hooks, so that the time other hooks spend in ``after_step`` (e.g.
    checkpointing, evaluation) is not counted as step time.
    """

    def __init__(self, warmup_iter: int = 3) -> None:
        """
        Args:
            warmup_iter: the first steps (slow: allocation, caching) left out of the average.
        """
        self._warmup_iter = warmup_iter
        self._step_timer = Timer()
        self._total_timer = Timer()
        self._start_time = time.perf_counter()

    def before_train(self) -> None:
        self._start_time = time.perf_counter()
        self._total_timer.reset()
        self._total_timer.pause()

    def after_train(self) -> None:
        total = time.perf_counter() - self._start_time
        in_steps = self._total_timer.seconds()
        num_iter = self.trainer.storage.iter + 1 - self.trainer.start_iter - self._warmup_iter
        if num_iter > 0 and in_steps > 0:
            logger.info(
                "Overall training speed: %d iterations in %s (%.4f s / it)",
                num_iter,
                datetime.timedelta(seconds=int(in_steps)),
                in_steps / num_iter,
            )
        logger.info(
            "Total training time: %s (%s on hooks)",
            datetime.timedelta(seconds=int(total)),
            datetime.timedelta(seconds=int(total - in_steps)),
        )

    def before_step(self) -> None:
        self._step_timer.reset()
        self._total_timer.resume()

    def after_step(self) -> None:
        done = self.trainer.storage.iter - self.trainer.start_iter + 1
        if done >= self._warmup_iter:
            self.trainer.storage.put_scalars(time=self._step_timer.seconds())
        else:
            # Warmup steps count in no average: restart the total from here.
            self._start_time = time.perf_counter()
            self._total_timer.reset()
        self._total_timer.pause()


class LRScheduler(HookBase):
    """Record the learning rate as the scalar ``lr`` and step the scheduler after each step."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    ) -> None:
        """
        Args:
            optimizer, scheduler: default: the trainer's ``optimizer`` and ``scheduler``.
        """
        self._optimizer = optimizer
        self._scheduler = scheduler
        self._best_group = 0

    def before_train(self) -> None:
        self._optimizer = self._optimizer or self.trainer.optimizer
        self._scheduler = self._scheduler or self.trainer.scheduler
        # Log the LR of the group holding the most parameters: the "main" LR of the model.
        sizes = [sum(p.numel() for p in g["params"]) for g in self._optimizer.param_groups]
        self._best_group = max(range(len(sizes)), key=sizes.__getitem__)

    def after_step(self) -> None:
        lr = self._optimizer.param_groups[self._best_group]["lr"]
        self.trainer.storage.put_scalar("lr", lr, smoothing_hint=False)
        self._scheduler.step()

    @property
    def scheduler(self) -> torch.optim.lr_scheduler.LRScheduler | None:
        return self._scheduler


class PeriodicCheckpointer(_FvcorePeriodicCheckpointer, HookBase):
    """Save a checkpoint every ``period`` iterations and at the end (fvcore's, as a hook).

    A checkpoint saved after iteration ``i`` records ``iteration=i``; resuming from it starts at
    ``i + 1``. ``max_iter`` is taken from the trainer.
    """

    def before_train(self) -> None:
        self.max_iter = self.trainer.max_iter
        if self.max_to_keep is not None:
            # A resumed run counts the periodic checkpoints its earlier process saved (those
            # before the iteration it resumes at), so that max_to_keep holds across resumes.
            self.recent_checkpoints = self._earlier_checkpoints(self.trainer.start_iter)

    def _earlier_checkpoints(self, start_iter: int) -> list[str]:
        folder = self.checkpointer.save_dir
        if not folder or not os.path.isdir(folder):
            return []
        pattern = re.compile(rf"{re.escape(self.file_prefix)}_(\d{{7}})\.pth")
        found = []
        for name in os.listdir(folder):
            match = pattern.fullmatch(name)
            if match and int(match.group(1)) < start_iter:
                found.append((int(match.group(1)), os.path.join(folder, name)))
        return [path for _, path in sorted(found)]

    def after_step(self) -> None:
        # Follow the trainer's max_iter: a hook that stops training early lowers it, and the
        # model of that iteration is then saved as the final one.
        self.max_iter = self.trainer.max_iter
        self.step(self.trainer.iter)


class EvalHook(HookBase):
    """Run an evaluation every ``eval_period`` iterations and after the last one.

    The evaluation function returns a (nested) dict of metrics; they are put into the storage,
    flattened (``"task/metric"``).
    """

    def __init__(
        self,
        eval_period: int,
        eval_function: Callable[[], Mapping[str, Any] | None],
        eval_after_train: bool = True,
    ) -> None:
        """
        Args:
            eval_period: evaluate after every this many iterations; 0 only after training.
            eval_function: runs the evaluation in every process; returns the metrics (in the
                main process at least).
            eval_after_train: also evaluate once training has completed.
        """
        self._period = eval_period
        self._func = eval_function
        self._eval_after_train = eval_after_train

    def _do_eval(self) -> None:
        results = self._func()
        if results:
            if not isinstance(results, Mapping):
                raise TypeError(
                    f"the evaluation function returned {type(results).__name__}, expected a dict"
                )
            flat = flatten_results_dict(results)
            scalars = {}
            for key, value in flat.items():
                try:
                    scalars[key] = float(value)
                except (TypeError, ValueError) as err:
                    raise ValueError(
                        f"the evaluation returned non-scalar metric {key!r}={value!r}"
                    ) from err
            self.trainer.storage.put_scalars(**scalars, smoothing_hint=False)
        # Evaluation may take different times in different processes: wait for all of them
        # before training goes on.
        comm.synchronize()

    def after_step(self) -> None:
        next_iter = self.trainer.iter + 1
        is_last = next_iter == self.trainer.max_iter  # after_train evaluates the final model
        if self._period > 0 and next_iter % self._period == 0 and not is_last:
            self._do_eval()

    def after_train(self) -> None:
        # Evaluate only when training completed, not when it stopped on an error.
        if self._eval_after_train and self.trainer.iter + 1 >= self.trainer.max_iter:
            self._do_eval()
        # Drop the closure, which may hold the model and the data.
        del self._func


class PreciseBN(HookBase):
    """Recompute the model's batch-norm statistics before each evaluation (``TEST.PRECISE_BN``).

    Every ``period`` iterations and after the last one it runs
    :func:`~meshrecon.layers.update_bn_stats` on ``num_iter`` batches of a training loader of
    its own (built on first use by ``data_loader_fn``, so training's data order is untouched).
    Placed before the hooks that validate or test at those iterations, it makes them (and a
    ``model_best.pth`` they keep) see statistics of the current weights instead of the running
    average over weights that kept changing. The forward passes log nothing into the training's
    metrics. A model without a training-mode batch norm makes it do nothing (logged once).
    """

    def __init__(
        self,
        period: int,
        model: torch.nn.Module,
        data_loader_fn: Callable[[], Any],
        num_iter: int,
    ) -> None:
        """
        Args:
            period: recompute after every this many iterations (0: only after the last one).
            model: the model being trained (in training mode).
            data_loader_fn: returns an iterable of training batches (called once).
            num_iter: batches per recomputation.
        """
        if num_iter < 1:
            raise ValueError(f"PreciseBN needs num_iter >= 1, got {num_iter}")
        self._period, self._model, self._num_iter = int(period), model, int(num_iter)
        self._data_loader_fn: Callable[[], Any] | None = data_loader_fn
        self._data_iter: Any = None
        self._has_bn: bool | None = None

    def after_step(self) -> None:
        if at_period_or_end(self.trainer, self._period):
            self.update_stats()

    def update_stats(self) -> None:
        if self._has_bn is None:
            self._has_bn = bool(training_batch_norms(self._model))
            if not self._has_bn:
                logger.info(
                    "TEST.PRECISE_BN: the model has no batch norm in training mode (with "
                    "running statistics)"
                )
        if not self._has_bn:
            return
        if self._data_iter is None:
            assert self._data_loader_fn is not None
            self._data_iter = iter(self._data_loader_fn())
        start = time.perf_counter()
        with EventStorage(int(self.trainer.iter)):  # what the model logs is dropped
            n = update_bn_stats(self._model, self._data_iter, self._num_iter)
        logger.info(
            "Recomputed the running statistics of %d batch norms on %d training batches "
            "(TEST.PRECISE_BN) in %.1f s",
            n,
            self._num_iter,
            time.perf_counter() - start,
        )

    def after_train(self) -> None:
        self._data_iter = self._data_loader_fn = None


class PeriodicWriter(HookBase):
    """Call the writers every ``period`` iterations, at the last iteration and at the end."""

    def __init__(self, writers: Sequence[EventWriter], period: int = 20) -> None:
        for w in writers:
            if not isinstance(w, EventWriter):
                raise TypeError(f"writers must be EventWriter instances, got {type(w).__name__}")
        self._writers = list(writers)
        self._period = period

    def after_step(self) -> None:
        if at_period_or_end(self.trainer, self._period):
            self.write()

    def write(self) -> None:
        """Call the writers now: an evaluation between periods flushes its metrics with this
        (the writers keep only the latest value of each scalar)."""
        for writer in self._writers:
            writer.write()

    def after_train(self) -> None:
        for writer in self._writers:
            # One last write, for the evaluation results put after the last step.
            writer.write()
            writer.close()
