"""Turn dense RPN predictions into per-image proposals, and add ground truth to proposals."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torchvision.ops import batched_nms

from meshrecon.structures import Boxes, Instances

__all__ = ["find_top_rpn_proposals", "add_ground_truth_to_proposals"]


def find_top_rpn_proposals(
    proposals: Sequence[torch.Tensor],
    pred_objectness_logits: Sequence[torch.Tensor],
    image_sizes: Sequence[tuple[int, int]],
    nms_thresh: float,
    pre_nms_topk: int,
    post_nms_topk: int,
    min_box_size: float,
    training: bool,
) -> list[Instances]:
    """Select the best proposals of each image: top-k per level, clip, drop small, NMS, top-k.

    Per level, the ``pre_nms_topk`` highest-scoring boxes are kept; they are then clipped to
    the image, boxes not larger than ``min_box_size`` are dropped, non-maximum suppression runs
    per level (boxes of different levels never suppress each other), and the
    ``post_nms_topk`` best survivors are returned, best first.

    Args:
        proposals: per level, ``(N, Hi*Wi*A, 4)`` decoded boxes.
        pred_objectness_logits: per level, ``(N, Hi*Wi*A)`` logits.
        image_sizes: ``(h, w)`` of each image, before padding.
        nms_thresh: IoU threshold of the NMS.
        pre_nms_topk: boxes kept per level before NMS.
        post_nms_topk: boxes kept per image after NMS.
        min_box_size: side length at or below which a box is dropped.
        training: non-finite predictions are an error in training, dropped otherwise.

    Returns:
        Per image, ``Instances`` with ``proposal_boxes`` and ``objectness_logits``.
    """
    num_images = len(image_sizes)
    if len(proposals) != len(pred_objectness_logits):
        raise ValueError("proposals and pred_objectness_logits must have one entry per level")
    device = proposals[0].device
    batch_idx = torch.arange(num_images, device=device)

    top_scores, top_boxes, level_ids = [], [], []
    for level, (boxes_l, logits_l) in enumerate(zip(proposals, pred_objectness_logits)):
        k = min(pre_nms_topk, logits_l.shape[1])
        # A full sort, then a slice: equal logits keep the same order as the original's.
        logits_sorted, idx = logits_l.sort(descending=True, dim=1)
        top_scores.append(logits_sorted[:, :k])
        top_boxes.append(boxes_l[batch_idx[:, None], idx[:, :k]])
        level_ids.append(torch.full((k,), level, dtype=torch.int64, device=device))
    scores_all = torch.cat(top_scores, dim=1)
    boxes_all = torch.cat(top_boxes, dim=1)
    levels_all = torch.cat(level_ids, dim=0)

    results = []
    for n, image_size in enumerate(image_sizes):
        boxes = Boxes(boxes_all[n])
        scores = scores_all[n]
        levels = levels_all
        valid = torch.isfinite(boxes.tensor).all(dim=1) & torch.isfinite(scores)
        if not valid.all():
            if training:
                raise FloatingPointError(
                    "Predicted boxes or scores contain Inf/NaN. Training has diverged."
                )
            boxes, scores, levels = boxes[valid], scores[valid], levels[valid]
        boxes.clip(image_size)
        keep = boxes.nonempty(threshold=min_box_size)
        if not keep.all():
            boxes, scores, levels = boxes[keep], scores[keep], levels[keep]
        keep = batched_nms(boxes.tensor, scores, levels, nms_thresh)[:post_nms_topk]
        res = Instances(image_size)
        res.proposal_boxes = boxes[keep]
        res.objectness_logits = scores[keep]
        results.append(res)
    return results


def add_ground_truth_to_proposals(
    targets: Sequence[Instances], proposals: Sequence[Instances]
) -> list[Instances]:
    """Append each image's ground-truth boxes to its proposals (with a near-certain logit).

    Early in training the RPN proposes little that overlaps the objects; adding the ground
    truth gives the ROI heads positives from the first iteration.

    Args:
        targets: per image, ``Instances`` with ``gt_boxes``.
        proposals: per image, ``Instances`` with ``proposal_boxes`` and, if the proposals have
            them, ``objectness_logits``.

    Returns:
        Per image, the proposals followed by the ground-truth boxes (fields of ``proposals``).
    """
    if len(targets) != len(proposals):
        raise ValueError(
            f"targets ({len(targets)} images) and proposals ({len(proposals)}) must match"
        )
    out = []
    for gt, props in zip(targets, proposals):
        ref = props.proposal_boxes.tensor
        gt_boxes = Boxes(gt.gt_boxes.tensor.to(device=ref.device, dtype=ref.dtype))
        gt_props = Instances(props.image_size)
        gt_props.proposal_boxes = gt_boxes
        if props.has("objectness_logits"):
            logits = props.objectness_logits
            # sigmoid(logit) = 1 - 1e-10: "certainly an object".
            value = math.log((1.0 - 1e-10) / (1.0 - (1.0 - 1e-10)))
            gt_props.objectness_logits = torch.full(
                (len(gt_boxes),), value, dtype=logits.dtype, device=logits.device
            )
        extra = set(props.get_fields()) - set(gt_props.get_fields())
        if extra:
            raise ValueError(
                f"proposals have fields {sorted(extra)} that ground truth cannot provide"
            )
        out.append(Instances.cat([props, gt_props]))
    return out
