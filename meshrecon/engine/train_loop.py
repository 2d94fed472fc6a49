"""The training loop: a trainer that runs steps, and hooks that act around them.

::

    hook.before_train()
    for iter in range(start_iter, max_iter):
        hook.before_step(); trainer.run_step(); hook.after_step()
    hook.after_train()

Everything besides the step itself (LR schedule, checkpoints, evaluation, logging) is a hook.
"""

from __future__ import annotations

import logging
import math
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch

from ..utils import comm
from ..utils.events import EventStorage, get_event_storage

__all__ = ["HookBase", "SimpleTrainer", "TrainerBase", "batch_sample_ids"]

logger = logging.getLogger(__name__)


def batch_sample_ids(batch: Any) -> list[str]:
    """Names of the samples of a batch (a list of model inputs), for log messages.

    Each input dict is named by its ``image_id`` and ``file_name`` (whichever it has); other
    items by their position in the batch.
    """
    if not isinstance(batch, (list, tuple)):
        return []
    names = []
    for i, item in enumerate(batch):
        image_id = item.get("image_id") if isinstance(item, Mapping) else None
        file_name = item.get("file_name") if isinstance(item, Mapping) else None
        if image_id is not None and file_name:
            names.append(f"{image_id} ({file_name})")
        elif image_id is not None or file_name:
            names.append(str(file_name or image_id))
        else:
            names.append(f"#{i} (no image_id or file_name)")
    return names


class HookBase:
    """A hook run by a :class:`TrainerBase` at four points of training.

    ``self.trainer`` is a weak proxy to the trainer, set when the hook is registered. Keep
    ``before_step`` cheap; put slow work in ``after_step``, so that step timers stay accurate.
    """

    trainer: TrainerBase

    def before_train(self) -> None:
        """Called once, before the first iteration."""

    def after_train(self) -> None:
        """Called once, after the last iteration or after training failed."""

    def before_step(self) -> None:
        """Called before each iteration."""

    def after_step(self) -> None:
        """Called after each iteration."""

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint; hooks are stateless unless they override this."""
        return {}


class TrainerBase:
    """A loop from ``start_iter`` to ``max_iter`` calling ``run_step`` and the hooks.

    Attributes:
        iter: the current iteration (``max_iter`` after a successful run).
        start_iter, max_iter: the range of iterations of :meth:`train`.
        storage: the :class:`EventStorage` open during :meth:`train`.
    """

    def __init__(self) -> None:
        self._hooks: list[HookBase] = []
        self.iter = 0
        self.start_iter = 0
        self.max_iter = 0
        self.storage: EventStorage

    def register_hooks(self, hooks: Iterable[HookBase | None]) -> None:
        """Append ``hooks`` (None entries are ignored); they run in registration order."""
        for hook in hooks:
            if hook is None:
                continue
            if not isinstance(hook, HookBase):
                raise TypeError(f"hooks must be HookBase instances, got {type(hook).__name__}")
            # A weak reference avoids a trainer <-> hook cycle that would delay freeing both.
            hook.trainer = weakref.proxy(self)
            self._hooks.append(hook)

    def train(self, start_iter: int, max_iter: int) -> None:
        """Run iterations ``start_iter, ..., max_iter - 1``."""
        logger.info("Starting training from iteration %d", start_iter)
        self.iter = self.start_iter = start_iter
        self.max_iter = max_iter
        with EventStorage(start_iter) as self.storage:
            try:
                self.before_train()
                for self.iter in range(start_iter, max_iter):
                    self.before_step()
                    self.run_step()
                    self.after_step()
                    # A hook may end training early by lowering max_iter (a validation
                    # plateau); the run then counts as completed at this iteration.
                    if self.iter + 1 >= self.max_iter:
                        break
                # iter == max_iter tells after_train hooks that training completed.
                self.iter += 1
            except Exception:
                logger.exception("Exception during training:")
                raise
            finally:
                self.after_train()

    def before_train(self) -> None:
        for hook in self._hooks:
            hook.before_train()

    def after_train(self) -> None:
        self.storage.iter = self.iter
        for hook in self._hooks:
            hook.after_train()

    def before_step(self) -> None:
        # Everything put into the storage during a step is recorded at that step's iteration.
        self.storage.iter = self.iter
        for hook in self._hooks:
            hook.before_step()

    def after_step(self) -> None:
        for hook in self._hooks:
            hook.after_step()

    def run_step(self) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"iteration": self.iter}
        hooks_state = {type(h).__qualname__: h.state_dict() for h in self._hooks if h.state_dict()}
        if hooks_state:
            state["hooks"] = hooks_state
        return state


class SimpleTrainer(TrainerBase):
    """One model, one optimizer, one data loader: forward, check the losses, backward, step.

    The model takes a batch (a list) from the loader and returns, in training mode, a dict of
    scalar losses (or one scalar tensor) whose sum is minimized.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        data_loader: Iterable,
        optimizer: torch.optim.Optimizer,
        *,
        grad_clipper: Callable[[Iterable[torch.Tensor]], None] | None = None,
        amp: bool = False,
        amp_dtype: torch.dtype = torch.float16,
        grad_scaler: torch.amp.GradScaler | None = None,
        max_consecutive_nonfinite: int = 1,
    ) -> None:
        """
        Args:
            model: the model, already on its device (and wrapped for DDP if distributed).
            data_loader: an iterable of batches; iterated from the first step on.
            optimizer: the optimizer of the model's parameters.
            grad_clipper: called with the parameters after backward, before the step.
            amp: run the forward pass under ``torch.amp.autocast("cuda")`` and scale the loss
                with a ``GradScaler``. Needs CUDA.
            amp_dtype: the autocast dtype (float16 or bfloat16).
            grad_scaler: the scaler to use with ``amp``; default: a new one.
            max_consecutive_nonfinite: the run stops (FloatingPointError) when this many steps
                in a row have a non-finite loss; a shorter streak only skips those steps. 1
                stops at the first one, as Detectron2 does (``SOLVER.MAX_CONSECUTIVE_NONFINITE``
                sets it for :class:`DefaultTrainer`).
        """
        super().__init__()
        if isinstance(max_consecutive_nonfinite, bool) or not (
            isinstance(max_consecutive_nonfinite, int) and max_consecutive_nonfinite >= 1
        ):
            raise ValueError(
                "max_consecutive_nonfinite (SOLVER.MAX_CONSECUTIVE_NONFINITE) must be an integer "
                f">= 1, got {max_consecutive_nonfinite!r}"
            )
        if amp and not torch.cuda.is_available():
            raise ValueError("mixed precision (SOLVER.AMP.ENABLED) needs CUDA, which is absent")
        model.train()
        self.model = model
        self.data_loader = data_loader
        self.optimizer = optimizer
        self.grad_clipper = grad_clipper
        self.amp = amp
        self.amp_dtype = amp_dtype
        self.grad_scaler = (grad_scaler or torch.amp.GradScaler("cuda")) if amp else None
        self._data_loader_iter_obj = None
        self.max_consecutive_nonfinite = max_consecutive_nonfinite
        # Steps skipped for a non-finite loss: in a row (reset by a finite step) and in total.
        self.nonfinite_streak = 0
        self.num_nonfinite_steps = 0

    @property
    def _data_loader_iter(self):
        # Created on first use, so that the sampler can still be moved to the resumed iteration.
        if self._data_loader_iter_obj is None:
            self._data_loader_iter_obj = iter(self.data_loader)
        return self._data_loader_iter_obj

    def run_step(self) -> None:
        if not self.model.training:
            raise RuntimeError("SimpleTrainer: the model was switched to eval mode during training")
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start

        try:
            if self.amp:
                with torch.autocast("cuda", dtype=self.amp_dtype):
                    loss_dict = self.model(data)
            else:
                loss_dict = self.model(data)
        except FloatingPointError as err:
            # A model that detects non-finite values itself (e.g. the RPN's "training has
            # diverged") is treated like a non-finite loss: skipped, counted, stopped if repeated.
            loss_dict = {f"{type(err).__name__} in the forward ({err})": torch.tensor(math.nan)}
        if isinstance(loss_dict, torch.Tensor):
            loss_dict = {"total_loss": loss_dict}

        # Checked before backward, in every process, so that all of them skip (or stop) together
        # instead of some waiting forever for the gradients of the others.
        if not self._write_metrics(loss_dict, data_time, data):
            # No backward, no step: the non-finite loss must not reach the weights, nor the AMP
            # scaler (its scale is only adjusted for non-finite gradients of a finite loss).
            self.optimizer.zero_grad(set_to_none=True)
            return
        losses = sum(loss_dict.values())

        self.optimizer.zero_grad(set_to_none=True)
        if self.grad_scaler is not None:
            self.grad_scaler.scale(losses).backward()
            if self.grad_clipper is not None:
                self.grad_scaler.unscale_(self.optimizer)  # clip true, not scaled, gradients
                self.grad_clipper(self._params())
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            losses.backward()
            if self.grad_clipper is not None:
                self.grad_clipper(self._params())
            self.optimizer.step()

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def _write_metrics(
        self, loss_dict: Mapping[str, torch.Tensor], data_time: float, data: Any = None
    ) -> bool:
        """Average the losses over processes into the storage; False if a loss is not finite.

        A step with a non-finite loss in any process is skipped by every process: it is logged
        with the sample ids of its batch and counted (``train/skipped_iterations``).

        Raises:
            FloatingPointError: when ``max_consecutive_nonfinite`` steps in a row had a
                non-finite loss; it names the loss term(s), the iteration, the rank and the
                samples of the batch.
        """
        metrics = {k: float(v.detach().float().cpu()) for k, v in loss_dict.items()}
        skipped = getattr(getattr(self.data_loader, "dataset", None), "num_skipped", None)
        # One exchange per step carries everything the main process logs.
        gathered = comm.all_gather((metrics, data_time, skipped))
        all_metrics = [g[0] for g in gathered]
        iteration = self.iter
        bad = [
            f"{name}={value} (rank {rank})"
            for rank, m in enumerate(all_metrics)
            for name, value in m.items()
            if not math.isfinite(value)
        ]
        storage = get_event_storage() if comm.is_main_process() else None
        if storage is not None:
            # The slowest process sets the pace, so its data time is the one that matters.
            storage.put_scalar("data_time", max(g[1] for g in gathered))
            if skipped is not None:
                total_skipped = sum(g[2] for g in gathered)
                storage.put_scalar("data/skipped_samples", total_skipped, smoothing_hint=False)
        if bad:
            self._nonfinite_step(iteration, bad, all_metrics, data, storage)
            return False
        self.nonfinite_streak = 0
        if storage is None:
            return True
        averaged = {k: float(np.mean([m[k] for m in all_metrics])) for k in all_metrics[0]}
        storage.put_scalar("total_loss", sum(averaged.values()))
        if len(averaged) > 1 or "total_loss" not in averaged:
            storage.put_scalars(**averaged)
        return True

    def _nonfinite_step(self, iteration, bad, all_metrics, data, storage) -> None:
        """Count, log (or raise for) a step whose loss is not finite in some process."""
        # A second exchange, only on such steps, so that the log names every process's samples.
        samples = [s for part in comm.all_gather(batch_sample_ids(data)) for s in part]
        self.nonfinite_streak += 1
        self.num_nonfinite_steps += 1
        if storage is not None:
            storage.put_scalar(
                "train/skipped_iterations", self.num_nonfinite_steps, smoothing_hint=False
            )
        limit = self.max_consecutive_nonfinite
        what = (
            f"Loss became NaN or infinite at iteration {iteration}: {', '.join(bad)}; "
            f"samples of the batch: {', '.join(samples) or 'unknown'}"
        )
        if self.nonfinite_streak >= limit:
            raise FloatingPointError(
                f"{what}; {self.nonfinite_streak} iteration(s) in a row with a non-finite loss "
                f"(SOLVER.MAX_CONSECUTIVE_NONFINITE = {limit}); all losses: {all_metrics}"
            )
        logger.warning(
            "%s. Skipping this iteration (no update); %d in a row, %d in total; the run stops "
            "at %d in a row (SOLVER.MAX_CONSECUTIVE_NONFINITE)",
            what,
            self.nonfinite_streak,
            self.num_nonfinite_steps,
            limit,
        )

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["optimizer"] = self.optimizer.state_dict()
        if self.grad_scaler is not None:
            state["grad_scaler"] = self.grad_scaler.state_dict()
        return state
