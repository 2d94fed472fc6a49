"""Mesh R-CNN's z head: per-ROI depth extent dz, its loss and inference."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from meshrecon.config import configurable
from meshrecon.layers import ShapeSpec, weight_init
from meshrecon.modeling.box_regression import smooth_l1_loss
from meshrecon.modeling.roi_heads.build import ROI_Z_HEAD_REGISTRY
from meshrecon.structures import Instances
from meshrecon.utils.stage_timer import stage

__all__ = ["FastRCNNFCHead", "z_rcnn_loss", "z_rcnn_inference"]

# exp() of predictions is clamped as Mesh R-CNN does (dz at most 1000/16 box heights).
_MAX_LOG_DZ = math.log(1000.0 / 16)


@ROI_Z_HEAD_REGISTRY.register()
class FastRCNNFCHead(nn.Module):
    """``NUM_FC`` fully connected layers (``z_fc1``...) with ReLU, then ``z_pred``.

    Input (R, C, H, W) pooled features; output (R, K) (or (R, 1) class-agnostic)
    predictions of ``log(dz / box height)``.
    """

    @configurable
    def __init__(
        self, input_shape: ShapeSpec, *, num_fc: int, fc_dim: int, num_classes: int
    ) -> None:
        """
        Args:
            input_shape: pooled feature shape (channels, height, width).
            num_fc: number of hidden fc layers (>= 1).
            fc_dim: their width.
            num_classes: outputs (1 for class-agnostic).
        """
        super().__init__()
        if num_fc < 1:
            raise ValueError(f"num_fc must be >= 1, got {num_fc}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        size = input_shape.channels * (input_shape.height or 1) * (input_shape.width or 1)
        self.fcs: list[nn.Linear] = []
        for k in range(num_fc):
            fc = nn.Linear(size, fc_dim)
            self.add_module(f"z_fc{k + 1}", fc)
            self.fcs.append(fc)
            size = fc_dim
        self.z_pred = nn.Linear(fc_dim, num_classes)
        for layer in self.fcs:
            weight_init.c2_xavier_fill(layer)
        nn.init.normal_(self.z_pred.weight, std=0.001)
        nn.init.constant_(self.z_pred.bias, 0)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec) -> dict[str, Any]:
        head = cfg.MODEL.ROI_Z_HEAD
        return {
            "input_shape": input_shape,
            "num_fc": head.NUM_FC,
            "fc_dim": head.FC_DIM,
            "num_classes": 1 if head.CLS_AGNOSTIC_Z_REG else cfg.MODEL.ROI_HEADS.NUM_CLASSES,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(R, C, H, W) -> (R, K) log-dz predictions."""
        x = x.flatten(1)
        for layer in self.fcs:
            x = F.relu(layer(x))
        return self.z_pred(x)


@stage("losses")
def z_rcnn_loss(
    z_pred: torch.Tensor,
    instances: Sequence[Instances],
    src_boxes: torch.Tensor,
    loss_weight: float = 1.0,
    smooth_l1_beta: float = 0.0,
) -> torch.Tensor:
    """Smooth-L1 loss between predicted and target ``log(gt_dz / proposal height)``.

    Summed over ROIs and divided by their number, times ``loss_weight`` (Mesh R-CNN).

    Args:
        z_pred: (R, K) or (R, 1) predictions for the foreground ROIs of all images.
        instances: per image, the foreground ROIs with ``gt_classes`` and ``gt_dz``.
        src_boxes: (R, 4) their proposal boxes.
    """
    gt_dz = [x.gt_dz for x in instances if len(x)]
    if not gt_dz:
        return z_pred.sum() * 0
    gt_dz = torch.cat(gt_dz).to(z_pred)
    if gt_dz.shape[0] != z_pred.shape[0]:
        raise ValueError(f"{z_pred.shape[0]} z predictions for {gt_dz.shape[0]} ROIs")
    heights = (src_boxes[:, 3] - src_boxes[:, 1]).to(z_pred)
    target = torch.log(gt_dz / heights)
    if z_pred.shape[1] == 1:
        pred = z_pred[:, 0]
    else:
        classes = torch.cat([x.gt_classes for x in instances if len(x)]).long()
        pred = z_pred[torch.arange(z_pred.shape[0], device=z_pred.device), classes]
    loss = smooth_l1_loss(pred, target, smooth_l1_beta, reduction="sum")
    return loss_weight * loss / max(gt_dz.numel(), 1)


def z_rcnn_inference(z_pred: torch.Tensor, pred_instances: Sequence[Instances]) -> None:
    """Set ``pred_dz`` (D, 1) = exp(clamped prediction of the predicted class) on each image's
    detections: dz in units of the box height (multiply by the height for Mesh R-CNN's dz)."""
    if z_pred.shape[1] != 1:
        classes = torch.cat([x.pred_classes for x in pred_instances]).long()
        z_pred = z_pred[torch.arange(z_pred.shape[0], device=z_pred.device), classes][:, None]
    dz = torch.exp(torch.clamp(z_pred, max=_MAX_LOG_DZ))
    for value, inst in zip(dz.split([len(x) for x in pred_instances]), pred_instances):
        inst.pred_dz = value
