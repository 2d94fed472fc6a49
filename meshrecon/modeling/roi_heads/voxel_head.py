"""Mesh R-CNN's ROI voxel head: occupancy logits in each box's frustum, loss and inference."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from meshrecon.config import configurable
from meshrecon.layers import ShapeSpec
from meshrecon.modeling.heads.shared import VoxelConvHead
from meshrecon.modeling.roi_heads.box_frustum import crop_voxels_within_boxes
from meshrecon.modeling.roi_heads.build import ROI_VOXEL_HEAD_REGISTRY
from meshrecon.structures import Instances
from meshrecon.utils.events import get_event_storage, has_event_storage
from meshrecon.utils.stage_timer import stage

__all__ = ["VoxelRCNNConvUpsampleHead", "voxel_rcnn_loss", "voxel_rcnn_inference"]


@ROI_VOXEL_HEAD_REGISTRY.register()
class VoxelRCNNConvUpsampleHead(VoxelConvHead):
    """:class:`VoxelConvHead` on pooled ROI features: (R, C, M, M) -> (R, K, D, 2M, 2M)
    logits, K = 1 (class-agnostic) or the number of classes, D = ``NUM_DEPTH``."""

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        num_classes: int,
        conv_dim: int,
        num_conv: int,
        num_depth: int,
        norm: str = "",
    ) -> None:
        super().__init__(
            input_shape.channels, conv_dim, num_conv, num_depth, norm=norm, num_classes=num_classes
        )

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec) -> dict[str, Any]:
        head = cfg.MODEL.ROI_VOXEL_HEAD
        return {
            "input_shape": input_shape,
            "num_classes": 1 if head.CLS_AGNOSTIC_VOXEL else cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "conv_dim": head.CONV_DIM,
            "num_conv": head.NUM_CONV,
            "num_depth": head.NUM_DEPTH,
            "norm": head.NORM,
        }


@stage("losses")
def voxel_rcnn_loss(
    pred_voxel_logits: torch.Tensor, instances: Sequence[Instances], loss_weight: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean binary cross-entropy against ``gt_voxels`` placed in each proposal's frustum.

    Args:
        pred_voxel_logits: (R, K, V, V, V) logits of the foreground ROIs of all images.
        instances: per image, those ROIs with ``proposal_boxes``, ``gt_classes``, ``gt_voxels``
            and ``gt_K``.
        loss_weight: multiplies the loss.

    Returns:
        (loss, (R, V, V, V) targets). Logs ``voxel_rcnn/accuracy`` when an event storage is
        active.
    """
    if pred_voxel_logits.dim() != 5 or len(set(pred_voxel_logits.shape[2:])) != 1:
        raise ValueError(
            f"pred_voxel_logits must be (R, K, V, V, V), got {tuple(pred_voxel_logits.shape)}"
        )
    side = pred_voxel_logits.shape[2]
    targets, classes = [], []
    for inst in instances:
        if len(inst) == 0:
            continue
        classes.append(inst.gt_classes.long())
        targets.append(
            crop_voxels_within_boxes(inst.gt_voxels, inst.proposal_boxes.tensor, inst.gt_K, side)
        )
    if not targets:
        return pred_voxel_logits.sum() * 0, pred_voxel_logits.new_zeros((0, side, side, side))
    target = torch.cat(targets).to(pred_voxel_logits)
    if target.shape[0] != pred_voxel_logits.shape[0]:
        raise ValueError(f"{pred_voxel_logits.shape[0]} voxel predictions for {len(target)} ROIs")
    if pred_voxel_logits.shape[1] == 1:
        logits = pred_voxel_logits[:, 0]
    else:
        idx = torch.arange(target.shape[0], device=target.device)
        logits = pred_voxel_logits[idx, torch.cat(classes)]
    if has_event_storage():
        # As Mesh R-CNN, logits are thresholded at 0.5 (not 0) for the logged accuracy.
        acc = ((logits > 0.5) == (target > 0.5)).float().mean().item()
        get_event_storage().put_scalar("voxel_rcnn/accuracy", acc)
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="mean")
    return loss * loss_weight, target


def voxel_rcnn_inference(
    pred_voxel_logits: torch.Tensor, pred_instances: Sequence[Instances]
) -> torch.Tensor:
    """Set ``pred_voxels`` (D, 1, V, V, V) probabilities (of the predicted class) on each image's
    detections; returns the (R, V, V, V) probabilities of all detections."""
    if pred_voxel_logits.shape[1] == 1:
        probs = pred_voxel_logits.sigmoid()
    else:
        classes = torch.cat([x.pred_classes for x in pred_instances]).long()
        idx = torch.arange(pred_voxel_logits.shape[0], device=pred_voxel_logits.device)
        probs = pred_voxel_logits[idx, classes][:, None].sigmoid()
    for p, inst in zip(probs.split([len(x) for x in pred_instances]), pred_instances):
        inst.pred_voxels = p
    return probs[:, 0]
