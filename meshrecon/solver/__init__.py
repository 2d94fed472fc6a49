"""Optimizers, learning-rate schedules and gradient clipping built from a config."""

from .build import (
    build_gradient_clipper,
    build_lr_scheduler,
    build_optimizer,
    get_default_optimizer_params,
)
from .lr_scheduler import (
    WarmupCosineLR,
    WarmupMultiStepLR,
    apply_scheduled_lr,
    get_warmup_factor_at_iter,
)

__all__ = [
    "WarmupCosineLR",
    "WarmupMultiStepLR",
    "apply_scheduled_lr",
    "build_gradient_clipper",
    "build_lr_scheduler",
    "build_optimizer",
    "get_default_optimizer_params",
    "get_warmup_factor_at_iter",
]
