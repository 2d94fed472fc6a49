"""Learning-rate schedules with warmup, stepped once per iteration.

Both schedulers compute the LR in closed form from the iteration count (``last_epoch``), so their
``state_dict`` is all a checkpoint needs to resume them exactly.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["WarmupCosineLR", "WarmupMultiStepLR", "apply_scheduled_lr", "get_warmup_factor_at_iter"]

_WARMUP_METHODS = ("constant", "linear")


def get_warmup_factor_at_iter(
    method: str, iteration: int, warmup_iters: int, warmup_factor: float
) -> float:
    """Return the factor that multiplies the base LR at ``iteration`` during warmup.

    Args:
        method: ``"constant"`` (``warmup_factor`` throughout warmup) or ``"linear"`` (from
            ``warmup_factor`` at iteration 0 up to 1 at ``warmup_iters``).
        iteration: the iteration, counted from 0.
        warmup_iters: the length of the warmup; 0 disables it.
        warmup_factor: the factor at iteration 0.

    Returns:
        1.0 once ``iteration >= warmup_iters``.
    """
    if iteration >= warmup_iters:
        return 1.0
    if method == "constant":
        return warmup_factor
    if method == "linear":
        alpha = iteration / warmup_iters
        return warmup_factor * (1.0 - alpha) + alpha
    raise ValueError(f"unknown warmup method {method!r}; expected one of {_WARMUP_METHODS}")


class _WarmupScheduler(LRScheduler):
    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        warmup_factor: float,
        warmup_iters: int,
        warmup_method: str,
        last_epoch: int,
    ) -> None:
        if warmup_method not in _WARMUP_METHODS:
            raise ValueError(
                f"unknown warmup method {warmup_method!r}; expected one of {_WARMUP_METHODS}"
            )
        if warmup_iters < 0:
            raise ValueError(f"warmup_iters must be >= 0, got {warmup_iters}")
        self.warmup_factor = warmup_factor
        self.warmup_iters = warmup_iters
        self.warmup_method = warmup_method
        super().__init__(optimizer, last_epoch)

    def _warmup(self) -> float:
        return get_warmup_factor_at_iter(
            self.warmup_method, self.last_epoch, self.warmup_iters, self.warmup_factor
        )

    def _factor(self) -> float:
        raise NotImplementedError

    def get_lr(self) -> list[float]:
        factor = self._warmup() * self._factor()
        return [base_lr * factor for base_lr in self.base_lrs]

    def _get_closed_form_lr(self) -> list[float]:
        return self.get_lr()


class WarmupMultiStepLR(_WarmupScheduler):
    """Multiply the LR by ``gamma`` at each milestone, after a warmup.

    The LR at iteration ``i`` is ``base_lr * warmup(i) * gamma ** (number of milestones <= i)``.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        milestones: list[int] | tuple[int, ...],
        gamma: float = 0.1,
        warmup_factor: float = 0.001,
        warmup_iters: int = 1000,
        warmup_method: str = "linear",
        last_epoch: int = -1,
    ) -> None:
        milestones = list(milestones)
        if milestones != sorted(milestones):
            raise ValueError(f"milestones must be increasing, got {milestones}")
        self.milestones = milestones
        self.gamma = gamma
        super().__init__(optimizer, warmup_factor, warmup_iters, warmup_method, last_epoch)

    def _factor(self) -> float:
        passed = sum(1 for m in self.milestones if m <= self.last_epoch)
        return self.gamma**passed


class WarmupCosineLR(_WarmupScheduler):
    """Cosine decay from the base LR to ``base_lr * end_factor`` at ``max_iters``, after a warmup.

    The LR at iteration ``i`` is ``base_lr * warmup(i) * (e + (1 - e) * c(i))`` with
    ``c(i) = 0.5 * (1 + cos(pi * min(i, max_iters) / max_iters))`` and ``e = end_factor``.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        max_iters: int,
        warmup_factor: float = 0.001,
        warmup_iters: int = 1000,
        warmup_method: str = "linear",
        last_epoch: int = -1,
        end_factor: float = 0.0,
    ) -> None:
        if max_iters <= 0:
            raise ValueError(f"max_iters must be positive, got {max_iters}")
        self.max_iters = max_iters
        self.end_factor = end_factor
        super().__init__(optimizer, warmup_factor, warmup_iters, warmup_method, last_epoch)

    def _factor(self) -> float:
        progress = min(self.last_epoch, self.max_iters) / self.max_iters
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.end_factor + (1.0 - self.end_factor) * cosine


def apply_scheduled_lr(scheduler: LRScheduler) -> list[float]:
    """Set the optimizer's rates to what ``scheduler`` gives at its position; return them.

    For a scheduler whose state was changed in place (moved to another iteration, a milestone
    moved): the rates at ``last_epoch`` in closed form. meshrecon's schedulers have the closed
    form; others raise TypeError.
    """
    closed_form = getattr(scheduler, "_get_closed_form_lr", None)
    if closed_form is None:
        raise TypeError(
            f"{type(scheduler).__name__} has no closed-form LR (_get_closed_form_lr): its rate "
            "cannot be set from a changed schedule"
        )
    lrs = list(closed_form())
    for group, lr in zip(scheduler.optimizer.param_groups, lrs):
        group["lr"] = lr
    scheduler._last_lr = list(lrs)
    return lrs
