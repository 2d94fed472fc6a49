"""Mask heads: per-ROI mask logits (Mask R-CNN), their loss and inference."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from meshrecon.config import configurable
from meshrecon.layers import Conv2d, ConvTranspose2d, ShapeSpec, weight_init
from meshrecon.modeling.roi_heads.box_head import make_norm
from meshrecon.modeling.roi_heads.build import ROI_MASK_HEAD_REGISTRY
from meshrecon.structures import Instances
from meshrecon.structures.masks import BitMasks
from meshrecon.utils.events import get_event_storage, has_event_storage
from meshrecon.utils.stage_timer import stage

__all__ = [
    "BaseMaskRCNNHead",
    "MaskRCNNConvUpsampleHead",
    "crop_masks_meshrcnn",
    "mask_rcnn_loss",
    "mask_rcnn_inference",
]

# How ground-truth masks become mask-head targets (see ``mask_rcnn_loss``).
MASK_TARGET_CROPS = ("roi_align", "meshrcnn")


def _as_bitmasks(masks: Any) -> BitMasks:
    if isinstance(masks, BitMasks):
        return masks
    if isinstance(masks, torch.Tensor):
        return BitMasks(masks)
    raise ValueError(
        f"gt_masks must be BitMasks or an (N, H, W) tensor, got {type(masks).__name__}"
    )


def crop_masks_meshrcnn(masks: Any, boxes: torch.Tensor, mask_size: int) -> torch.Tensor:
    """Mesh R-CNN's mask-head targets: crop each mask to its box and resize the crop.

    As ``meshrcnn/structures/mask.py`` does: the box corners are truncated to integers, the
    pixels ``[y1:y2, x1:x2]`` are resized to ``mask_size x mask_size`` by bilinear
    interpolation (half-pixel centres) and every positive value becomes foreground. Detectron2's
    targets (:meth:`BitMasks.crop_and_resize`) instead sample the continuous box with ROIAlign
    and threshold at 0.5; the two differ along the mask borders.

    Args:
        masks: ``BitMasks`` or an (N, H, W) tensor.
        boxes: (N, 4) XYXY boxes, one per mask.
        mask_size: side of the targets.

    Returns:
        (N, mask_size, mask_size) bool. A box that covers no whole pixel after truncation
        (where Mesh R-CNN's resize fails) gives an all-background target.
    """
    masks = _as_bitmasks(masks)
    if boxes.dim() != 2 or boxes.shape != (len(masks), 4):
        raise ValueError(
            f"boxes must have shape ({len(masks)}, 4) to match the masks, got {tuple(boxes.shape)}"
        )
    out = torch.zeros(len(masks), mask_size, mask_size, dtype=torch.bool, device=masks.device)
    # .int() truncates toward zero, as Mesh R-CNN's ``box.int()``.
    for i, (x1, y1, x2, y2) in enumerate(boxes.detach().to(masks.device).int().tolist()):
        crop = masks.tensor[i, y1:y2, x1:x2]
        if crop.numel() == 0:
            continue
        resized = F.interpolate(
            crop[None, None].float(), size=(mask_size, mask_size), mode="bilinear"
        )
        out[i] = resized[0, 0] > 0
    return out


@stage("losses")
def mask_rcnn_loss(
    pred_mask_logits: torch.Tensor,
    instances: Sequence[Instances],
    target_crop: str = "roi_align",
) -> torch.Tensor:
    """Mean per-pixel binary cross-entropy of the predicted masks of the ground-truth classes.

    Targets are each ROI's ``gt_masks`` cropped to its ``proposal_boxes`` and resized to the
    prediction's ``M x M``: with ROIAlign as Detectron2 (``target_crop="roi_align"``), or as
    Mesh R-CNN (``"meshrcnn"``, :func:`crop_masks_meshrcnn`).

    Args:
        pred_mask_logits: ``(R, K, M, M)`` (or ``(R, 1, M, M)`` class-agnostic) logits of the
            foreground ROIs of all images, in order.
        instances: per image, the foreground ROIs with ``proposal_boxes``, ``gt_classes`` and
            ``gt_masks`` (``BitMasks`` or an ``(R_i, H, W)`` tensor).
        target_crop: ``"roi_align"`` or ``"meshrcnn"``.

    Returns:
        A scalar loss (0 with a gradient path if there are no ROIs).
    """
    if pred_mask_logits.dim() != 4 or pred_mask_logits.shape[2] != pred_mask_logits.shape[3]:
        raise ValueError(
            f"pred_mask_logits must be (R, K, M, M), got {tuple(pred_mask_logits.shape)}"
        )
    if target_crop not in MASK_TARGET_CROPS:
        raise ValueError(f"target_crop must be one of {MASK_TARGET_CROPS}, got {target_crop!r}")
    class_agnostic = pred_mask_logits.shape[1] == 1
    side = pred_mask_logits.shape[2]
    gt_classes, gt_masks = [], []
    for inst in instances:
        if len(inst) == 0:
            continue
        if not class_agnostic:
            gt_classes.append(inst.gt_classes.to(dtype=torch.int64))
        boxes = inst.proposal_boxes.tensor
        if target_crop == "meshrcnn":
            masks = crop_masks_meshrcnn(inst.gt_masks, boxes, side)
        else:
            masks = _as_bitmasks(inst.gt_masks).crop_and_resize(boxes, side)
        gt_masks.append(masks.to(device=pred_mask_logits.device))
    if not gt_masks:
        return pred_mask_logits.sum() * 0
    gt = torch.cat(gt_masks, dim=0)
    if gt.shape[0] != pred_mask_logits.shape[0]:
        raise ValueError(
            f"{pred_mask_logits.shape[0]} mask predictions for {gt.shape[0]} foreground ROIs"
        )
    if class_agnostic:
        logits = pred_mask_logits[:, 0]
    else:
        idx = torch.arange(pred_mask_logits.shape[0], device=pred_mask_logits.device)
        logits = pred_mask_logits[idx, torch.cat(gt_classes)]
    gt_bool = gt if gt.dtype == torch.bool else gt > 0.5

    if has_event_storage():
        wrong = (logits > 0.0) != gt_bool
        num_pos = max(gt_bool.sum().item(), 1.0)
        num_neg = max(gt_bool.numel() - gt_bool.sum().item(), 1.0)
        storage = get_event_storage()
        storage.put_scalar("mask_rcnn/accuracy", 1 - wrong.sum().item() / max(wrong.numel(), 1))
        storage.put_scalar("mask_rcnn/false_positive", (wrong & ~gt_bool).sum().item() / num_neg)
        storage.put_scalar("mask_rcnn/false_negative", (wrong & gt_bool).sum().item() / num_pos)

    return F.binary_cross_entropy_with_logits(logits, gt_bool.to(logits.dtype), reduction="mean")


def mask_rcnn_inference(
    pred_mask_logits: torch.Tensor, pred_instances: Sequence[Instances]
) -> None:
    """Set ``pred_masks`` ``(D_i, 1, M, M)`` probabilities on each image's detections.

    Each detection keeps the mask of its ``pred_classes`` (or the single class-agnostic mask).
    ``pred_mask_logits`` is ``(D, K, M, M)`` for the ``D`` detections of all images, in order.
    """
    if pred_mask_logits.shape[1] == 1:
        probs = pred_mask_logits.sigmoid()
    else:
        classes = torch.cat([i.pred_classes for i in pred_instances])
        idx = torch.arange(pred_mask_logits.shape[0], device=classes.device)
        probs = pred_mask_logits[idx, classes][:, None].sigmoid()
    counts = [len(i) for i in pred_instances]
    for p, inst in zip(probs.split(counts, dim=0), pred_instances):
        inst.pred_masks = p


class BaseMaskRCNNHead(nn.Module):
    """A mask head: ``layers`` maps pooled features to logits; ``forward`` adds the loss (in
    training) or the inference. Subclasses implement ``layers``.

    Args:
        loss_weight: multiplier of ``loss_mask``.
    """

    @configurable
    def __init__(self, *, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec) -> dict[str, Any]:
        return {}

    def forward(
        self, x: torch.Tensor, instances: Sequence[Instances]
    ) -> dict[str, torch.Tensor] | Sequence[Instances]:
        """``x``: ``(R, C, H, W)`` pooled features of the ROIs of ``instances``.

        Returns ``{"loss_mask": ...}`` in training; otherwise sets ``pred_masks`` on the
        instances and returns them.
        """
        x = self.layers(x)
        if self.training:
            return {"loss_mask": mask_rcnn_loss(x, instances) * self.loss_weight}
        mask_rcnn_inference(x, instances)
        return instances

    def layers(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@ROI_MASK_HEAD_REGISTRY.register()
class MaskRCNNConvUpsampleHead(BaseMaskRCNNHead, nn.Sequential):
    """``NUM_CONV`` 3x3 convs, a 2x2 stride-2 deconv (+ ReLU) and a 1x1 predictor of K masks.

    Module names (``mask_fcn1``..., ``deconv``, ``predictor``) are Detectron2's.

    Args:
        input_shape: the pooled feature shape (channels are read).
        num_classes: K (1 for class-agnostic masks).
        conv_dims: widths of the convs, then the deconv's as the last entry.
        conv_norm: normalization of the convs (``""``: none).
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        num_classes: int,
        conv_dims: Sequence[int],
        conv_norm: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if len(conv_dims) < 1:
            raise ValueError("conv_dims must have at least the deconv's width")
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.conv_norm_relus = []
        cur = input_shape.channels
        for k, dim in enumerate(conv_dims[:-1]):
            conv = Conv2d(
                cur,
                dim,
                kernel_size=3,
                stride=1,
                padding=1,
                bias=not conv_norm,
                norm=make_norm(conv_norm, dim),
                activation=nn.ReLU(),
            )
            self.add_module(f"mask_fcn{k + 1}", conv)
            self.conv_norm_relus.append(conv)
            cur = dim
        self.deconv = ConvTranspose2d(cur, conv_dims[-1], kernel_size=2, stride=2, padding=0)
        self.add_module("deconv_relu", nn.ReLU())
        self.predictor = Conv2d(conv_dims[-1], num_classes, kernel_size=1, stride=1, padding=0)

        for layer in [*self.conv_norm_relus, self.deconv]:
            weight_init.c2_msra_fill(layer)
        nn.init.normal_(self.predictor.weight, std=0.001)
        if self.predictor.bias is not None:
            nn.init.constant_(self.predictor.bias, 0)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec) -> dict[str, Any]:
        head = cfg.MODEL.ROI_MASK_HEAD
        return {
            "input_shape": input_shape,
            "conv_dims": [head.CONV_DIM] * (head.NUM_CONV + 1),
            "conv_norm": head.NORM,
            "num_classes": 1 if head.CLS_AGNOSTIC_MASK else cfg.MODEL.ROI_HEADS.NUM_CLASSES,
        }

    def layers(self, x: torch.Tensor) -> torch.Tensor:
        """``(R, C, M/2, M/2)`` -> ``(R, K, M, M)`` logits."""
        for layer in self:
            x = layer(x)
        return x
