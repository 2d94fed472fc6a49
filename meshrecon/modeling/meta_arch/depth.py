"""``DepthEstimator``: monocular depth (Eigen et al.) as a meta-architecture.

Inputs are :class:`meshrecon.data.DepthMapper` dicts: ``image`` (3, H, W) float 0..255 in
``INPUT.FORMAT``, ``depth`` (H', W') metres with 0 = invalid (training; also at inference when
the loader keeps annotations), ``height`` / ``width`` (the record's size).

The networks take a fixed size (their FC layers fix it), so every image is resized to
``MODEL.DEPTH.INPUT_SIZE`` after normalization; in training the mapper's crop already has that
size. The training target is the ground truth averaged (over valid pixels) onto the output grid.

:meth:`DepthEstimator.optimizer_param_groups` gives the solver the paper's per-layer rates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from meshrecon.config import configurable
from meshrecon.layers import PixelNormalization
from meshrecon.modeling.heads import build_head
from meshrecon.modeling.heads.depth_eigen import (
    EigenMultiScaleHead,
    downsample_depth,
    scale_invariant_log_loss,
)
from meshrecon.modeling.meta_arch.build import META_ARCH_REGISTRY
from meshrecon.utils.stage_timer import stage

__all__ = ["DepthEstimator", "depth_param_groups"]


@META_ARCH_REGISTRY.register()
class DepthEstimator(PixelNormalization, nn.Module):
    """Normalize, resize, run a depth head; return losses (training) or depth maps (inference).

    Args:
        head: a module mapping (N, 3, H, W) images to ``{"coarse": (N, h, w)}`` and optionally
            ``"fine"``, both log depth (:class:`EigenMultiScaleHead`).
        pixel_mean, pixel_std: per-channel normalization, in the images' channel order.
        input_size: (H, W) the head takes.
        loss_lambda: the scale-invariant loss's lambda (0.5: the paper's; 0: L2 of log depth;
            1: fully scale invariant).

    Training returns ``{"loss_depth_coarse"}`` (phase coarse), ``{"loss_depth_fine"}`` (phase
    fine) or both (joint). Inference returns one dict per image with ``depth`` (height, width)
    metres (the final prediction, upsampled to the record's size) and, when a fine network
    exists, ``depth_coarse`` (height, width) too.
    """

    @configurable
    def __init__(
        self,
        *,
        head: nn.Module,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        input_size: Sequence[int],
        loss_lambda: float = 0.5,
    ) -> None:
        super().__init__()
        self.head = head
        self.register_pixel_normalization(pixel_mean, pixel_std)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        if not 0.0 <= float(loss_lambda) <= 1.0:
            raise ValueError(f"MODEL.DEPTH.LAMBDA must be in [0, 1], got {loss_lambda}")
        self.loss_lambda = float(loss_lambda)

    @classmethod
    def from_config(cls, cfg) -> dict[str, Any]:
        return {
            "head": build_head(cfg, "depth"),
            "pixel_mean": list(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": list(cfg.MODEL.PIXEL_STD),
            "input_size": list(cfg.MODEL.DEPTH.INPUT_SIZE),
            "loss_lambda": cfg.MODEL.DEPTH.LAMBDA,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def optimizer_param_groups(self, cfg) -> list[dict[str, Any]]:
        """Return the solver's parameter groups with the paper's per-layer learning rates.

        The factors are the head's ``lr_factors`` (``MODEL.DEPTH.COARSE_CONV_LR_FACTOR``,
        ``COARSE_FC_LR_FACTOR``, ``FINE_LR_FACTORS``; with ``SOLVER.BASE_LR`` 1e-3 the paper's
        coarse conv 1e-3, coarse FC 0.1, fine 1e-3 / 1e-2 / 1e-3). LR schedulers scale every
        group alike. Used by :func:`meshrecon.solver.build_optimizer`.
        """
        groups = depth_param_groups(
            self,
            cfg.SOLVER.BASE_LR,
            cfg.SOLVER.WEIGHT_DECAY,
            dict(getattr(self.head, "lr_factors", {}) or {}),
            bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
            weight_decay_bias=cfg.SOLVER.get("WEIGHT_DECAY_BIAS", None),
        )
        if not groups:
            raise ValueError("the model has no trainable parameters: nothing to optimize")
        return groups

    def preprocess_image(self, batched_inputs: list[dict]) -> torch.Tensor:
        """Return the normalized images resized to ``input_size``: (N, 3, H, W)."""
        images = []
        for i, item in enumerate(batched_inputs):
            img = item.get("image")
            if not isinstance(img, torch.Tensor):
                raise ValueError(f"batched_inputs[{i}]['image'] must be a (C, H, W) tensor")
            self.check_image(img, f"batched_inputs[{i}]['image']")
            img = self.normalize_pixels(img)
            if tuple(img.shape[-2:]) != self.input_size:
                img = F.interpolate(
                    img[None], size=self.input_size, mode="bilinear", align_corners=False
                )[0]
            images.append(img)
        return torch.stack(images)

    def forward(self, batched_inputs: list[dict]) -> dict[str, torch.Tensor] | list[dict]:
        images = self.preprocess_image(batched_inputs)
        preds = self.head(images)
        if self.training:
            return self.losses(preds, batched_inputs)
        return self.inference(preds, batched_inputs)

    @stage("losses")
    def losses(
        self, preds: dict[str, torch.Tensor], batched_inputs: list[dict]
    ) -> dict[str, torch.Tensor]:
        """Return the scale-invariant log loss of every trained prediction."""
        grid = tuple(preds["coarse"].shape[-2:])
        targets = []
        for i, item in enumerate(batched_inputs):
            if "depth" not in item:
                raise ValueError(f"batched_inputs[{i}] has no 'depth' to train on")
            depth = item["depth"].to(self.device, torch.float32)
            targets.append(downsample_depth(depth[None], grid)[0])
        gt = torch.stack(targets)
        phase = getattr(self.head, "phase", "coarse")
        names = {"coarse": ["coarse"], "fine": ["fine"], "joint": ["coarse", "fine"]}[phase]
        return {
            f"loss_depth_{name}": scale_invariant_log_loss(preds[name], gt, self.loss_lambda)
            for name in names
        }

    def inference(self, preds: dict[str, torch.Tensor], batched_inputs: list[dict]) -> list[dict]:
        """Return per image ``depth`` (and ``depth_coarse``) in metres at the record's size."""
        final = preds.get("fine", preds["coarse"])
        results = []
        for i, item in enumerate(batched_inputs):
            size = (
                int(item.get("height", final.shape[-2])),
                int(item.get("width", final.shape[-1])),
            )
            out = {"depth": _upsample_log_depth(final[i], size)}
            if "fine" in preds:
                out["depth_coarse"] = _upsample_log_depth(preds["coarse"][i], size)
            results.append(out)
        return results


def _upsample_log_depth(log_depth: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(h, w) log depth -> (H, W) metres, interpolated bilinearly in log space."""
    if tuple(log_depth.shape) != size:
        log_depth = F.interpolate(
            log_depth[None, None], size=size, mode="bilinear", align_corners=False
        )[0, 0]
    return torch.exp(log_depth)


def depth_param_groups(
    model: nn.Module,
    base_lr: float,
    weight_decay: float,
    lr_factors: dict[str, float],
    bias_lr_factor: float = 1.0,
    weight_decay_bias: float | None = None,
) -> list[dict[str, Any]]:
    """Return optimizer parameter groups with the Eigen head's per-layer learning rates.

    Every trainable parameter under a head with ``param_group_name`` gets ``base_lr`` times its
    group's factor (``lr_factors[group]``, 1 when absent); biases are further multiplied by
    ``bias_lr_factor`` and decay with ``weight_decay_bias`` (default ``weight_decay``). Frozen
    parameters are left out. Each group carries its ``name`` for logs.
    """
    if weight_decay_bias is None:
        weight_decay_bias = weight_decay
    groups: dict[tuple[str, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        group = "other"
        if name.startswith("head."):
            group = EigenMultiScaleHead.param_group_name(name[len("head.") :])
        is_bias = name.endswith(".bias")
        lr = base_lr * float(lr_factors.get(group, 1.0)) * (bias_lr_factor if is_bias else 1.0)
        wd = weight_decay_bias if is_bias else weight_decay
        key = (group, is_bias)
        entry = groups.setdefault(key, {"params": [], "lr": lr, "weight_decay": wd, "name": group})
        entry["params"].append(param)
    return list(groups.values())
