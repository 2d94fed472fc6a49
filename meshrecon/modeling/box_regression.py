"""Box parameterizations for regression: ``Box2BoxTransform`` and the dense regression loss.

A box is encoded relative to a reference box (an anchor or a proposal) as
``(dx, dy, dw, dh)``: the centre shift in units of the reference's size and the log of the size
ratio, each multiplied by a weight. This is R-CNN's parameterization, with Detectron2's names,
weights and clamping, so trained checkpoints decode to the same boxes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from meshrecon.structures import Boxes

__all__ = ["Box2BoxTransform", "smooth_l1_loss", "dense_box_regression_loss"]

# Largest log size ratio a delta may express: a box may grow at most 1000/16 times.
_DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


def _decode_dtype(dtype: torch.dtype) -> torch.dtype:
    # Decoding in half precision loses whole pixels; promote to at least float32 but keep
    # float64 when that is what the model runs in.
    return torch.promote_types(dtype, torch.float32)


class Box2BoxTransform:
    """Encode boxes as deltas from reference boxes and decode deltas back into boxes.

    Args:
        weights: ``(wx, wy, ww, wh)`` multipliers of ``(dx, dy, dw, dh)``; Detectron2 uses
            ``(1, 1, 1, 1)`` for the RPN and ``(10, 10, 5, 5)`` for Fast R-CNN.
        scale_clamp: upper bound of ``dw`` and ``dh`` when decoding.
    """

    def __init__(self, weights: Sequence[float], scale_clamp: float = _DEFAULT_SCALE_CLAMP) -> None:
        if len(weights) != 4:
            raise ValueError(f"weights must hold 4 numbers (wx, wy, ww, wh), got {weights!r}")
        self.weights = tuple(float(w) for w in weights)
        self.scale_clamp = scale_clamp

    def get_deltas(self, src_boxes: torch.Tensor, target_boxes: torch.Tensor) -> torch.Tensor:
        """Return the deltas ``(N, 4)`` that turn ``src_boxes (N, 4)`` into ``target_boxes``.

        Both are XYXY; source boxes must have positive width and height.
        """
        if not isinstance(src_boxes, torch.Tensor) or not isinstance(target_boxes, torch.Tensor):
            raise ValueError("src_boxes and target_boxes must be tensors of shape (N, 4)")
        if src_boxes.shape != target_boxes.shape or src_boxes.shape[-1] != 4:
            raise ValueError(
                f"src_boxes {tuple(src_boxes.shape)} and target_boxes "
                f"{tuple(target_boxes.shape)} must both be (N, 4)"
            )
        target_boxes = target_boxes.to(src_boxes.dtype)
        src_w = src_boxes[:, 2] - src_boxes[:, 0]
        src_h = src_boxes[:, 3] - src_boxes[:, 1]
        src_cx = src_boxes[:, 0] + 0.5 * src_w
        src_cy = src_boxes[:, 1] + 0.5 * src_h

        tgt_w = target_boxes[:, 2] - target_boxes[:, 0]
        tgt_h = target_boxes[:, 3] - target_boxes[:, 1]
        tgt_cx = target_boxes[:, 0] + 0.5 * tgt_w
        tgt_cy = target_boxes[:, 1] + 0.5 * tgt_h

        wx, wy, ww, wh = self.weights
        dx = wx * (tgt_cx - src_cx) / src_w
        dy = wy * (tgt_cy - src_cy) / src_h
        dw = ww * torch.log(tgt_w / src_w)
        dh = wh * torch.log(tgt_h / src_h)
        return torch.stack((dx, dy, dw, dh), dim=1)

    def apply_deltas(self, deltas: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Decode ``deltas (N, 4k)`` against ``boxes (N, 4)``; returns ``(N, 4k)`` XYXY boxes.

        ``k > 1`` holds one box per class (class-specific regression); each group of four
        columns is decoded against the same reference box.
        """
        if deltas.dim() != 2 or deltas.shape[1] % 4 != 0:
            raise ValueError(f"deltas must be (N, 4k), got {tuple(deltas.shape)}")
        if boxes.dim() != 2 or boxes.shape[1] != 4 or boxes.shape[0] != deltas.shape[0]:
            raise ValueError(
                f"boxes must be ({deltas.shape[0]}, 4) to match deltas, got {tuple(boxes.shape)}"
            )
        dtype = _decode_dtype(deltas.dtype)
        deltas = deltas.to(dtype)
        boxes = boxes.to(dtype)

        widths = boxes[:, 2] - boxes[:, 0]
        heights = boxes[:, 3] - boxes[:, 1]
        ctr_x = boxes[:, 0] + 0.5 * widths
        ctr_y = boxes[:, 1] + 0.5 * heights

        wx, wy, ww, wh = self.weights
        dx = deltas[:, 0::4] / wx
        dy = deltas[:, 1::4] / wy
        dw = (deltas[:, 2::4] / ww).clamp(max=self.scale_clamp)
        dh = (deltas[:, 3::4] / wh).clamp(max=self.scale_clamp)

        pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
        pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
        pred_w = torch.exp(dw) * widths[:, None]
        pred_h = torch.exp(dh) * heights[:, None]

        x0 = pred_ctr_x - 0.5 * pred_w
        y0 = pred_ctr_y - 0.5 * pred_h
        x1 = pred_ctr_x + 0.5 * pred_w
        y1 = pred_ctr_y + 0.5 * pred_h
        return torch.stack((x0, y0, x1, y1), dim=-1).reshape(deltas.shape)


def smooth_l1_loss(
    input: torch.Tensor, target: torch.Tensor, beta: float, reduction: str = "none"
) -> torch.Tensor:
    """Huber-like loss: ``0.5 x^2 / beta`` below ``beta``, ``|x| - 0.5 beta`` above; L1 if
    ``beta < 1e-5``. ``reduction`` is ``"none"``, ``"mean"`` or ``"sum"``."""
    diff = torch.abs(input - target)
    if beta < 1e-5:
        loss = diff
    else:
        loss = torch.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)
    if reduction == "mean":
        return loss.mean() if loss.numel() > 0 else loss.sum() * 0.0
    if reduction == "sum":
        return loss.sum()
    if reduction != "none":
        raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    return loss


def dense_box_regression_loss(
    anchors: Sequence[Boxes | torch.Tensor],
    box2box_transform: Box2BoxTransform,
    pred_anchor_deltas: Sequence[torch.Tensor],
    gt_boxes: Sequence[torch.Tensor],
    fg_mask: torch.Tensor,
    box_reg_loss_type: str = "smooth_l1",
    smooth_l1_beta: float = 0.0,
) -> torch.Tensor:
    """Summed box regression loss over the foreground anchors of a batch.

    Args:
        anchors: per level, ``(R_l, 4)`` reference boxes (``Boxes`` or tensors), shared by all
            images.
        box2box_transform: the encoding of the deltas.
        pred_anchor_deltas: per level, ``(N, R_l, 4)`` predicted deltas.
        gt_boxes: per image, ``(R, 4)`` matched ground-truth boxes with ``R = sum R_l``.
        fg_mask: ``(N, R)`` bool, the anchors that contribute.
        box_reg_loss_type: ``"smooth_l1"`` (on deltas) or ``"giou"`` (on decoded boxes).
        smooth_l1_beta: beta of the smooth L1 loss.

    Returns:
        A scalar tensor: the loss summed (not averaged) over the foreground anchors.
    """
    anchor_tensor = torch.cat([a.tensor if isinstance(a, Boxes) else a for a in anchors], dim=0)
    pred = torch.cat(list(pred_anchor_deltas), dim=1)
    if box_reg_loss_type == "smooth_l1":
        gt_deltas = torch.stack([box2box_transform.get_deltas(anchor_tensor, g) for g in gt_boxes])
        return smooth_l1_loss(
            pred[fg_mask], gt_deltas[fg_mask].to(pred.dtype), smooth_l1_beta, reduction="sum"
        )
    if box_reg_loss_type == "giou":
        from torchvision.ops import generalized_box_iou_loss

        pred_boxes = torch.stack(
            [box2box_transform.apply_deltas(p, anchor_tensor) for p in pred.unbind(0)]
        )
        gt = torch.stack(list(gt_boxes)).to(pred_boxes.dtype)
        return generalized_box_iou_loss(pred_boxes[fg_mask], gt[fg_mask], reduction="sum")
    raise ValueError(f"box_reg_loss_type must be 'smooth_l1' or 'giou', got {box_reg_loss_type!r}")
