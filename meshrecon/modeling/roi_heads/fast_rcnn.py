"""Fast R-CNN box predictor: class scores and per-class box deltas, their losses and inference."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms

from meshrecon.config import configurable
from meshrecon.layers import ShapeSpec
from meshrecon.modeling.box_regression import Box2BoxTransform, dense_box_regression_loss
from meshrecon.structures import Boxes, Instances
from meshrecon.utils.events import get_event_storage, has_event_storage
from meshrecon.utils.stage_timer import stage

__all__ = ["FastRCNNOutputLayers", "fast_rcnn_inference", "fast_rcnn_inference_single_image"]


def fast_rcnn_inference(
    boxes: Sequence[torch.Tensor],
    scores: Sequence[torch.Tensor],
    image_shapes: Sequence[tuple[int, int]],
    score_thresh: float,
    nms_thresh: float,
    topk_per_image: int,
) -> tuple[list[Instances], list[torch.Tensor]]:
    """Per image: clip, drop low scores, per-class NMS, keep the best ``topk_per_image``.

    Args:
        boxes: per image, ``(R, K * 4)`` class-specific boxes (or ``(R, 4)`` class-agnostic).
        scores: per image, ``(R, K + 1)`` class probabilities, background last.
        image_shapes: ``(h, w)`` per image.
        score_thresh: detections scoring at or below this are dropped.
        nms_thresh: NMS IoU threshold (per class).
        topk_per_image: detections kept per image; negative keeps all.

    Returns:
        instances: per image, ``Instances`` with ``pred_boxes``, ``scores``, ``pred_classes``,
            best first.
        kept_indices: per image, ``(D,)`` the proposal each detection came from.
    """
    results = [
        fast_rcnn_inference_single_image(b, s, shape, score_thresh, nms_thresh, topk_per_image)
        for b, s, shape in zip(boxes, scores, image_shapes)
    ]
    return [r[0] for r in results], [r[1] for r in results]


def fast_rcnn_inference_single_image(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    image_shape: tuple[int, int],
    score_thresh: float,
    nms_thresh: float,
    topk_per_image: int,
) -> tuple[Instances, torch.Tensor]:
    """``fast_rcnn_inference`` for one image (same arguments, unbatched)."""
    valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores).all(dim=1)
    if not valid.all():
        boxes, scores = boxes[valid], scores[valid]
    scores = scores[:, :-1]
    num_reg_classes = boxes.shape[1] // 4
    clipped = Boxes(boxes.reshape(-1, 4))
    clipped.clip(image_shape)
    boxes = clipped.tensor.view(-1, num_reg_classes, 4)

    # One candidate per (proposal, class) scoring above the threshold.
    filter_mask = scores > score_thresh
    filter_inds = filter_mask.nonzero()
    if num_reg_classes == 1:
        boxes = boxes[filter_inds[:, 0], 0]
    else:
        boxes = boxes[filter_mask]
    scores = scores[filter_mask]

    keep = batched_nms(boxes, scores, filter_inds[:, 1], nms_thresh)
    if topk_per_image >= 0:
        keep = keep[:topk_per_image]
    boxes, scores, filter_inds = boxes[keep], scores[keep], filter_inds[keep]

    result = Instances(image_shape)
    result.pred_boxes = Boxes(boxes)
    result.scores = scores
    result.pred_classes = filter_inds[:, 1]
    return result, filter_inds[:, 0]


class FastRCNNOutputLayers(nn.Module):
    """Two linear layers on the box head's features: ``cls_score`` (K + 1 logits, background
    last) and ``bbox_pred`` (K * 4 deltas, or 4 when class-agnostic).

    Args:
        input_shape: shape of the box head's output (flattened if it has height and width).
        box2box_transform: the proposal -> box encoding (weights (10, 10, 5, 5) by default).
        num_classes: K, foreground classes.
        test_score_thresh: inference drops detections scoring at or below this.
        test_nms_thresh: per-class NMS threshold at inference.
        test_topk_per_image: detections per image at inference (negative: all).
        cls_agnostic_bbox_reg: one box for all classes instead of one per class.
        smooth_l1_beta: beta of the smooth L1 box loss (0: L1).
        box_reg_loss_type: ``"smooth_l1"`` or ``"giou"``.
        loss_weight: multipliers of ``loss_cls`` and ``loss_box_reg`` (a float: both).
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        box2box_transform: Box2BoxTransform,
        num_classes: int,
        test_score_thresh: float = 0.0,
        test_nms_thresh: float = 0.5,
        test_topk_per_image: int = 100,
        cls_agnostic_bbox_reg: bool = False,
        smooth_l1_beta: float = 0.0,
        box_reg_loss_type: str = "smooth_l1",
        loss_weight: float | dict[str, float] = 1.0,
    ) -> None:
        super().__init__()
        if isinstance(input_shape, int):
            input_shape = ShapeSpec(channels=input_shape)
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if box_reg_loss_type not in ("smooth_l1", "giou"):
            raise ValueError(
                f"box_reg_loss_type must be 'smooth_l1' or 'giou', got {box_reg_loss_type!r}"
            )
        input_size = input_shape.channels * (input_shape.width or 1) * (input_shape.height or 1)
        self.num_classes = num_classes
        self.cls_score = nn.Linear(input_size, num_classes + 1)
        num_reg_classes = 1 if cls_agnostic_bbox_reg else num_classes
        box_dim = len(box2box_transform.weights)
        self.bbox_pred = nn.Linear(input_size, num_reg_classes * box_dim)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        for layer in (self.cls_score, self.bbox_pred):
            nn.init.constant_(layer.bias, 0)

        self.box2box_transform = box2box_transform
        self.smooth_l1_beta = smooth_l1_beta
        self.test_score_thresh = test_score_thresh
        self.test_nms_thresh = test_nms_thresh
        self.test_topk_per_image = test_topk_per_image
        self.box_reg_loss_type = box_reg_loss_type
        if isinstance(loss_weight, (int, float)):
            loss_weight = {"loss_cls": loss_weight, "loss_box_reg": loss_weight}
        self.loss_weight = dict(loss_weight)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec) -> dict[str, Any]:
        head = cfg.MODEL.ROI_BOX_HEAD
        if head.USE_FED_LOSS or head.USE_SIGMOID_CE:
            raise ValueError(
                "MODEL.ROI_BOX_HEAD.USE_FED_LOSS / USE_SIGMOID_CE are not supported; set False"
            )
        return {
            "input_shape": input_shape,
            "box2box_transform": Box2BoxTransform(weights=head.BBOX_REG_WEIGHTS),
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "cls_agnostic_bbox_reg": head.CLS_AGNOSTIC_BBOX_REG,
            "smooth_l1_beta": head.SMOOTH_L1_BETA,
            "test_score_thresh": cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
            "test_nms_thresh": cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
            "test_topk_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
            "box_reg_loss_type": head.BBOX_REG_LOSS_TYPE,
            "loss_weight": {"loss_box_reg": head.BBOX_REG_LOSS_WEIGHT},
        }

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(R, D)`` (or ``(R, C, H, W)``) features -> scores ``(R, K + 1)``, deltas
        ``(R, K * 4)``."""
        if x.dim() > 2:
            x = torch.flatten(x, start_dim=1)
        return self.cls_score(x), self.bbox_pred(x)

    @stage("losses")
    def losses(
        self, predictions: tuple[torch.Tensor, torch.Tensor], proposals: Sequence[Instances]
    ) -> dict[str, torch.Tensor]:
        """Return ``loss_cls`` (softmax cross-entropy, mean over ROIs) and ``loss_box_reg``
        (summed over foreground ROIs, divided by the number of ROIs).

        ``proposals`` are the sampled ROIs with ``proposal_boxes``, ``gt_classes`` and, for
        images with ground truth, ``gt_boxes``.
        """
        scores, deltas = predictions
        if len(proposals):
            gt_classes = torch.cat([p.gt_classes for p in proposals], dim=0)
            proposal_boxes = torch.cat([p.proposal_boxes.tensor for p in proposals], dim=0)
            gt_boxes = torch.cat(
                [
                    (p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor.to(
                        proposal_boxes.dtype
                    )
                    for p in proposals
                ],
                dim=0,
            )
        else:
            gt_classes = torch.empty(0, dtype=torch.int64, device=scores.device)
            proposal_boxes = gt_boxes = torch.empty(
                (0, 4), dtype=deltas.dtype, device=deltas.device
            )
        self._log_classification_stats(scores, gt_classes)

        if gt_classes.numel() == 0:
            loss_cls = scores.sum() * 0.0
        else:
            loss_cls = F.cross_entropy(scores, gt_classes, reduction="mean")
        losses = {
            "loss_cls": loss_cls,
            "loss_box_reg": self.box_reg_loss(proposal_boxes, gt_boxes, deltas, gt_classes),
        }
        return {k: v * self.loss_weight.get(k, 1.0) for k, v in losses.items()}

    def box_reg_loss(
        self,
        proposal_boxes: torch.Tensor,
        gt_boxes: torch.Tensor,
        pred_deltas: torch.Tensor,
        gt_classes: torch.Tensor,
    ) -> torch.Tensor:
        """Box loss of the foreground ROIs (``0 <= gt_class < K``), normalized by all ROIs.

        Shapes: ``proposal_boxes``, ``gt_boxes`` ``(R, 4)``; ``pred_deltas`` ``(R, K*4)`` or
        ``(R, 4)``; ``gt_classes`` ``(R,)``.
        """
        box_dim = proposal_boxes.shape[1]
        fg = torch.nonzero((gt_classes >= 0) & (gt_classes < self.num_classes), as_tuple=True)[0]
        if pred_deltas.shape[1] == box_dim:
            fg_deltas = pred_deltas[fg]
        else:
            fg_deltas = pred_deltas.view(-1, self.num_classes, box_dim)[fg, gt_classes[fg]]
        loss = dense_box_regression_loss(
            [proposal_boxes[fg]],
            self.box2box_transform,
            [fg_deltas.unsqueeze(0)],
            [gt_boxes[fg]],
            torch.ones((1, len(fg)), dtype=torch.bool, device=fg.device),
            box_reg_loss_type=self.box_reg_loss_type,
            smooth_l1_beta=self.smooth_l1_beta,
        )
        # Normalizing by all ROIs (not just foreground) weighs each ROI equally, as Detectron2.
        return loss / max(gt_classes.numel(), 1.0)

    @staticmethod
    def _log_classification_stats(scores: torch.Tensor, gt_classes: torch.Tensor) -> None:
        if gt_classes.numel() == 0 or not has_event_storage():
            return
        num_classes = scores.shape[1] - 1
        pred = scores.argmax(dim=1)
        bg = num_classes
        fg_mask = (gt_classes >= 0) & (gt_classes < bg)
        num_fg = fg_mask.sum().item()
        fg_gt, fg_pred = gt_classes[fg_mask], pred[fg_mask]
        storage = get_event_storage()
        storage.put_scalar(
            "fast_rcnn/cls_accuracy", (pred == gt_classes).sum().item() / gt_classes.numel()
        )
        if num_fg > 0:
            storage.put_scalar(
                "fast_rcnn/fg_cls_accuracy", (fg_pred == fg_gt).sum().item() / num_fg
            )
            storage.put_scalar("fast_rcnn/false_negative", (fg_pred == bg).sum().item() / num_fg)

    def predict_boxes(
        self, predictions: tuple[torch.Tensor, torch.Tensor], proposals: Sequence[Instances]
    ) -> list[torch.Tensor]:
        """Per image, the decoded boxes ``(R_i, K * 4)`` (or ``(R_i, 4)`` class-agnostic)."""
        if not len(proposals):
            return []
        _, deltas = predictions
        counts = [len(p) for p in proposals]
        boxes = torch.cat([p.proposal_boxes.tensor for p in proposals], dim=0)
        return list(self.box2box_transform.apply_deltas(deltas, boxes).split(counts))

    def predict_boxes_for_gt_classes(
        self, predictions: tuple[torch.Tensor, torch.Tensor], proposals: Sequence[Instances]
    ) -> list[torch.Tensor]:
        """Per image, ``(R_i, 4)`` boxes decoded with the deltas of each ROI's ``gt_classes``
        (background ROIs use the last class's)."""
        if not len(proposals):
            return []
        _, deltas = predictions
        counts = [len(p) for p in proposals]
        boxes = torch.cat([p.proposal_boxes.tensor for p in proposals], dim=0)
        pred = self.box2box_transform.apply_deltas(deltas, boxes)
        num_reg = pred.shape[1] // 4
        if num_reg > 1:
            gt_classes = torch.cat([p.gt_classes for p in proposals]).clamp(0, num_reg - 1)
            pred = pred.view(-1, num_reg, 4)[torch.arange(len(boxes)), gt_classes]
        return list(pred.split(counts))

    def predict_probs(
        self, predictions: tuple[torch.Tensor, torch.Tensor], proposals: Sequence[Instances]
    ) -> list[torch.Tensor]:
        """Per image, the softmax class probabilities ``(R_i, K + 1)``."""
        scores, _ = predictions
        counts = [len(p) for p in proposals]
        return list(F.softmax(scores, dim=-1).split(counts, dim=0))

    def inference(
        self, predictions: tuple[torch.Tensor, torch.Tensor], proposals: Sequence[Instances]
    ) -> tuple[list[Instances], list[torch.Tensor]]:
        """Final detections per image; see ``fast_rcnn_inference``."""
        boxes = self.predict_boxes(predictions, proposals)
        scores = self.predict_probs(predictions, proposals)
        image_shapes = [p.image_size for p in proposals]
        return fast_rcnn_inference(
            boxes,
            scores,
            image_shapes,
            self.test_score_thresh,
            self.test_nms_thresh,
            self.test_topk_per_image,
        )
