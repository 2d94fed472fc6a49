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

__all__ = ["HookBase", "SimpleTrainer", "TrainerBase"]

logger = logging.getLogger(__name__)


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
        """
        super().__init__()
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

        if self.amp:
            with torch.autocast("cuda", dtype=self.amp_dtype):
                loss_dict = self.model(data)
        else:
            loss_dict = self.model(data)
        if isinstance(loss_dict, torch.Tensor):
            loss_dict = {"total_loss": loss_dict}
        losses = sum(loss_dict.values())

        # Checked before backward, in every process, so that all of them stop together instead
        # of some waiting forever for the gradients of the others.
        self._write_metrics(loss_dict, data_time)

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

    def _write_metrics(self, loss_dict: Mapping[str, torch.Tensor], data_time: float) -> None:
        """Average the losses over processes into the storage; raise if any is not finite.

        Raises:
            FloatingPointError: naming the non-finite loss term(s), the iteration and the rank.
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
        if bad:
            raise FloatingPointError(
                f"Loss became NaN or infinite at iteration {iteration}: {', '.join(bad)}; "
                f"all losses: {all_metrics}"
            )
        if not comm.is_main_process():
            return
        storage = get_event_storage()
        # The slowest process sets the pace, so its data time is the one that matters.
        storage.put_scalar("data_time", max(g[1] for g in gathered))
        averaged = {k: float(np.mean([m[k] for m in all_metrics])) for k in all_metrics[0]}
        storage.put_scalar("total_loss", sum(averaged.values()))
        if len(averaged) > 1 or "total_loss" not in averaged:
            storage.put_scalars(**averaged)
        if skipped is not None:
            total_skipped = sum(g[2] for g in gathered)
            storage.put_scalar("data/skipped_samples", total_skipped, smoothing_hint=False)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["optimizer"] = self.optimizer.state_dict()
        if self.grad_scaler is not None:
            state["grad_scaler"] = self.grad_scaler.state_dict()
        return state
