"""Build the optimizer, the LR scheduler and the gradient clipper from a config."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from .lr_scheduler import WarmupCosineLR, WarmupMultiStepLR

__all__ = [
    "build_gradient_clipper",
    "build_lr_scheduler",
    "build_optimizer",
    "get_default_optimizer_params",
]

logger = logging.getLogger(__name__)

_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.GroupNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)

GradientClipper = Callable[[Iterable[torch.Tensor]], None]


def _is_norm(module: nn.Module) -> bool:
    # Frozen batch norms have no trainable parameters in Detectron2, but a subclass that unfreezes
    # them must still get the norm weight decay; they are recognised by name to avoid an import.
    return isinstance(module, _NORM_TYPES) or "BatchNorm" in type(module).__name__


def get_default_optimizer_params(
    model: nn.Module,
    base_lr: float,
    weight_decay: float,
    weight_decay_norm: float,
    bias_lr_factor: float = 1.0,
    weight_decay_bias: float | None = None,
) -> list[dict[str, Any]]:
    """Return parameter groups with per-parameter LR and weight decay.

    Parameters of normalization layers get ``weight_decay_norm``; parameters named ``bias`` get
    ``base_lr * bias_lr_factor`` and ``weight_decay_bias`` (default: ``weight_decay``). Parameters
    with equal settings share one group; a parameter shared by several modules appears once.
    """
    if weight_decay_bias is None:
        weight_decay_bias = weight_decay
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    seen: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            lr, wd = base_lr, weight_decay
            if _is_norm(module):
                wd = weight_decay_norm
            elif name == "bias":
                lr, wd = base_lr * bias_lr_factor, weight_decay_bias
            groups.setdefault((lr, wd), []).append(param)
    return [{"params": p, "lr": lr, "weight_decay": wd} for (lr, wd), p in groups.items()]


def _as_groups(params: Iterable[Any]) -> list[dict[str, Any]]:
    """Parameter groups as dicts whose ``"params"`` are lists.

    torch also takes a bare iterable of tensors, and a group's tensors as any iterable (or one
    tensor); :func:`_can_fuse` reads them before the optimizer does, which would spend a
    generator.
    """
    groups = list(params)
    if groups and not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    return [
        {
            **g,
            "params": [g["params"]] if isinstance(g["params"], torch.Tensor) else list(g["params"]),
        }
        for g in groups
    ]


def _can_fuse(groups: list[dict[str, Any]]) -> bool:
    """Whether torch's fused SGD / Adam take these parameters: floats on one CPU or CUDA device."""
    params = [p for g in groups for p in g["params"]]
    devices = {p.device for p in params}
    return (
        len(devices) == 1
        and next(iter(devices)).type in ("cpu", "cuda")
        and all(p.is_floating_point() for p in params)
    )


def build_optimizer(cfg, model: nn.Module) -> torch.optim.Optimizer:
    """Build the optimizer named by ``cfg.SOLVER.OPTIMIZER`` (``"SGD"`` or ``"ADAM"``).

    Parameter groups come from the model's ``optimizer_param_groups(cfg)`` when it defines one,
    else from :func:`get_default_optimizer_params`.
    """
    solver = cfg.SOLVER
    # A model whose paper trains its layers at different rates (Eigen et al.'s depth network)
    # says so by defining optimizer_param_groups(cfg); the trainer stays the same for all.
    custom_groups = getattr(getattr(model, "module", model), "optimizer_param_groups", None)
    if custom_groups is not None:
        params = custom_groups(cfg)
    else:
        params = get_default_optimizer_params(
            model,
            base_lr=solver.BASE_LR,
            weight_decay=solver.WEIGHT_DECAY,
            weight_decay_norm=solver.WEIGHT_DECAY_NORM,
            bias_lr_factor=solver.BIAS_LR_FACTOR,
            weight_decay_bias=solver.get("WEIGHT_DECAY_BIAS", None),
        )
    params = _as_groups(params)
    if not params:
        raise ValueError("the model has no trainable parameters: nothing to optimize")
    name = str(solver.get("OPTIMIZER", "SGD")).upper()
    fused = {"fused": True} if solver.get("FUSED", True) and _can_fuse(params) else {}
    if name == "SGD":
        return torch.optim.SGD(
            params,
            lr=solver.BASE_LR,
            momentum=solver.MOMENTUM,
            nesterov=bool(solver.get("NESTEROV", False)),
            **fused,
        )
    if name == "ADAM":
        return torch.optim.Adam(params, lr=solver.BASE_LR, **fused)
    raise ValueError(f"unknown SOLVER.OPTIMIZER {solver.OPTIMIZER!r}; expected 'SGD' or 'ADAM'")


def build_lr_scheduler(
    cfg, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler:
    """Build the scheduler named by ``cfg.SOLVER.LR_SCHEDULER_NAME``, stepped per iteration."""
    solver = cfg.SOLVER
    name = solver.LR_SCHEDULER_NAME
    if name == "WarmupMultiStepLR":
        steps = [s for s in solver.STEPS if s <= solver.MAX_ITER]
        if len(steps) != len(solver.STEPS):
            logger.warning(
                "SOLVER.STEPS %s contains steps after SOLVER.MAX_ITER=%d; they are ignored",
                list(solver.STEPS),
                solver.MAX_ITER,
            )
        return WarmupMultiStepLR(
            optimizer,
            steps,
            solver.GAMMA,
            warmup_factor=solver.WARMUP_FACTOR,
            warmup_iters=solver.WARMUP_ITERS,
            warmup_method=solver.WARMUP_METHOD,
        )
    if name == "WarmupCosineLR":
        return WarmupCosineLR(
            optimizer,
            solver.MAX_ITER,
            warmup_factor=solver.WARMUP_FACTOR,
            warmup_iters=solver.WARMUP_ITERS,
            warmup_method=solver.WARMUP_METHOD,
            end_factor=solver.get("BASE_LR_END", 0.0) / solver.BASE_LR if solver.BASE_LR else 0.0,
        )
    raise ValueError(
        f"unknown SOLVER.LR_SCHEDULER_NAME {name!r}; expected 'WarmupMultiStepLR' or "
        "'WarmupCosineLR'"
    )


def build_gradient_clipper(cfg) -> GradientClipper | None:
    """Return a function that clips the gradients of the parameters given to it, or None.

    ``SOLVER.CLIP_GRADIENTS.CLIP_TYPE`` is ``"value"`` (clamp every gradient element to
    ``[-CLIP_VALUE, CLIP_VALUE]``), ``"norm"`` (rescale each parameter's gradient so that its
    ``NORM_TYPE``-norm is at most ``CLIP_VALUE``) or ``"full_model"`` (the same, for the norm of
    all gradients together).
    """
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if not clip.ENABLED:
        return None
    clip_type = str(clip.CLIP_TYPE).lower()
    value = float(clip.CLIP_VALUE)
    if clip_type == "value":

        def clip_value(params: Iterable[torch.Tensor]) -> None:
            torch.nn.utils.clip_grad_value_(params, value)

        return clip_value
    norm_type = float(clip.NORM_TYPE)
    if clip_type == "norm":

        def clip_each_norm(params: Iterable[torch.Tensor]) -> None:
            for param in params:
                torch.nn.utils.clip_grad_norm_(param, value, norm_type)

        return clip_each_norm
    if clip_type == "full_model":

        def clip_total_norm(params: Iterable[torch.Tensor]) -> None:
            torch.nn.utils.clip_grad_norm_(list(params), value, norm_type)

        return clip_total_norm
    raise ValueError(
        f"unknown SOLVER.CLIP_GRADIENTS.CLIP_TYPE {clip.CLIP_TYPE!r}; expected 'value', 'norm' "
        "or 'full_model'"
    )
