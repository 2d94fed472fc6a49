"""Region Proposal Network (Faster R-CNN's RPN, with Detectron2's module names and defaults)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from meshrecon.config import configurable
from meshrecon.layers import Conv2d, ShapeSpec
from meshrecon.modeling.anchor_generator import build_anchor_generator
from meshrecon.modeling.box_regression import Box2BoxTransform, dense_box_regression_loss
from meshrecon.modeling.matcher import Matcher
from meshrecon.modeling.proposal_generator.build import PROPOSAL_GENERATOR_REGISTRY
from meshrecon.modeling.proposal_generator.proposal_utils import find_top_rpn_proposals
from meshrecon.modeling.sampling import subsample_labels
from meshrecon.structures import Boxes, ImageList, Instances, pairwise_iou
from meshrecon.utils.events import get_event_storage, has_event_storage
from meshrecon.utils.registry import Registry
from meshrecon.utils.stage_timer import stage

__all__ = ["RPN_HEAD_REGISTRY", "StandardRPNHead", "RPN", "build_rpn_head"]

RPN_HEAD_REGISTRY = Registry("RPN_HEAD")
RPN_HEAD_REGISTRY.__doc__ = """
RPN heads; ``cls(cfg, input_shape: list[ShapeSpec])``. A head maps the list of feature maps to
per-level objectness logits ``(N, A, H, W)`` and anchor deltas ``(N, A * box_dim, H, W)``.
"""


def build_rpn_head(cfg, input_shape: Sequence[ShapeSpec]) -> nn.Module:
    """Build ``cfg.MODEL.RPN.HEAD_NAME``."""
    name = cfg.MODEL.RPN.HEAD_NAME
    return RPN_HEAD_REGISTRY.get(name, cfg_key="MODEL.RPN.HEAD_NAME")(cfg, input_shape)


@RPN_HEAD_REGISTRY.register()
class StandardRPNHead(nn.Module):
    """A shared 3x3 conv (+ ReLU), then 1x1 convs for objectness and anchor deltas.

    Args:
        in_channels: channels of every input feature map (they must agree).
        num_anchors: anchors per cell (the same on every level).
        box_dim: numbers per box delta (4).
        conv_dims: widths of the hidden 3x3 convs; ``-1`` means ``in_channels``. One entry
            gives the single conv named ``conv`` of Detectron2's checkpoints.
    """

    @configurable
    def __init__(
        self,
        *,
        in_channels: int,
        num_anchors: int,
        box_dim: int = 4,
        conv_dims: Sequence[int] = (-1,),
    ) -> None:
        super().__init__()
        if len(conv_dims) == 0:
            raise ValueError("conv_dims must hold at least one width")
        dims = [in_channels if d == -1 else int(d) for d in conv_dims]
        if any(d <= 0 for d in dims):
            raise ValueError(f"conv_dims must be positive or -1, got {list(conv_dims)}")
        if len(dims) == 1:
            self.conv = self._rpn_conv(in_channels, dims[0])
        else:
            self.conv = nn.Sequential()
            prev = in_channels
            for k, d in enumerate(dims):
                self.conv.add_module(f"conv{k}", self._rpn_conv(prev, d))
                prev = d
        self.objectness_logits = nn.Conv2d(dims[-1], num_anchors, kernel_size=1, stride=1)
        self.anchor_deltas = nn.Conv2d(dims[-1], num_anchors * box_dim, kernel_size=1, stride=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.constant_(m.bias, 0)

    @staticmethod
    def _rpn_conv(in_channels: int, out_channels: int) -> nn.Module:
        return Conv2d(
            in_channels, out_channels, kernel_size=3, stride=1, padding=1, activation=nn.ReLU()
        )

    @classmethod
    def from_config(cls, cfg, input_shape: Sequence[ShapeSpec]) -> dict[str, Any]:
        channels = {s.channels for s in input_shape}
        if len(channels) != 1:
            raise ValueError(f"RPN input feature maps must share a channel count, got {channels}")
        anchor_generator = build_anchor_generator(cfg, input_shape)
        num_anchors = set(anchor_generator.num_anchors)
        if len(num_anchors) != 1:
            raise ValueError(
                "StandardRPNHead needs the same number of anchors per cell on every level, got "
                f"{anchor_generator.num_anchors} (MODEL.ANCHOR_GENERATOR.SIZES/ASPECT_RATIOS)"
            )
        return {
            "in_channels": channels.pop(),
            "num_anchors": num_anchors.pop(),
            "box_dim": anchor_generator.box_dim,
            "conv_dims": cfg.MODEL.RPN.CONV_DIMS,
        }

    def forward(
        self, features: Sequence[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Return per level the logits ``(N, A, H, W)`` and deltas ``(N, A*box_dim, H, W)``."""
        logits, deltas = [], []
        for x in features:
            t = self.conv(x)
            logits.append(self.objectness_logits(t))
            deltas.append(self.anchor_deltas(t))
        return logits, deltas


@PROPOSAL_GENERATOR_REGISTRY.register()
class RPN(nn.Module):
    """Region Proposal Network: anchors, head, anchor labelling, losses and proposal selection.

    Args:
        in_features: names of the feature maps it reads (e.g. ``p2``-``p6``).
        head: the RPN head.
        anchor_generator: anchors per feature map.
        anchor_matcher: labels anchors against ground truth (low-quality matches allowed).
        box2box_transform: the anchor -> box encoding.
        batch_size_per_image: anchors sampled per image for the losses.
        positive_fraction: largest share of positives in that sample.
        pre_nms_topk: ``(train, test)`` boxes kept per level before NMS.
        post_nms_topk: ``(train, test)`` boxes kept per image after NMS.
        nms_thresh: NMS IoU threshold.
        min_box_size: proposals with a side at or below this are dropped.
        anchor_boundary_thresh: anchors further than this outside the image are ignored in
            training; negative keeps all.
        loss_weight: multipliers of ``loss_rpn_cls`` and ``loss_rpn_loc`` (a float: both).
        box_reg_loss_type: ``"smooth_l1"`` or ``"giou"``.
        smooth_l1_beta: beta of the smooth L1 loss.
    """

    @configurable
    def __init__(
        self,
        *,
        in_features: Sequence[str],
        head: nn.Module,
        anchor_generator: nn.Module,
        anchor_matcher: Matcher,
        box2box_transform: Box2BoxTransform,
        batch_size_per_image: int,
        positive_fraction: float,
        pre_nms_topk: tuple[int, int],
        post_nms_topk: tuple[int, int],
        nms_thresh: float = 0.7,
        min_box_size: float = 0.0,
        anchor_boundary_thresh: float = -1.0,
        loss_weight: float | dict[str, float] = 1.0,
        box_reg_loss_type: str = "smooth_l1",
        smooth_l1_beta: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_features = list(in_features)
        self.rpn_head = head
        self.anchor_generator = anchor_generator
        self.anchor_matcher = anchor_matcher
        self.box2box_transform = box2box_transform
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        if len(pre_nms_topk) != 2 or len(post_nms_topk) != 2:
            raise ValueError("pre_nms_topk and post_nms_topk must be (train, test) pairs")
        self.pre_nms_topk = {True: int(pre_nms_topk[0]), False: int(pre_nms_topk[1])}
        self.post_nms_topk = {True: int(post_nms_topk[0]), False: int(post_nms_topk[1])}
        self.nms_thresh = nms_thresh
        self.min_box_size = float(min_box_size)
        self.anchor_boundary_thresh = anchor_boundary_thresh
        if isinstance(loss_weight, (int, float)):
            loss_weight = {"loss_rpn_cls": loss_weight, "loss_rpn_loc": loss_weight}
        self.loss_weight = dict(loss_weight)
        if box_reg_loss_type not in ("smooth_l1", "giou"):
            raise ValueError(
                f"box_reg_loss_type must be 'smooth_l1' or 'giou', got {box_reg_loss_type!r}"
            )
        self.box_reg_loss_type = box_reg_loss_type
        self.smooth_l1_beta = smooth_l1_beta

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]) -> dict[str, Any]:
        in_features = list(cfg.MODEL.RPN.IN_FEATURES)
        missing = [f for f in in_features if f not in input_shape]
        if missing:
            raise ValueError(
                f"MODEL.RPN.IN_FEATURES names {missing}, which the backbone does not output "
                f"(it has {sorted(input_shape)})"
            )
        shapes = [input_shape[f] for f in in_features]
        rpn = cfg.MODEL.RPN
        return {
            "in_features": in_features,
            "head": build_rpn_head(cfg, shapes),
            "anchor_generator": build_anchor_generator(cfg, shapes),
            "anchor_matcher": Matcher(
                rpn.IOU_THRESHOLDS, rpn.IOU_LABELS, allow_low_quality_matches=True
            ),
            "box2box_transform": Box2BoxTransform(weights=rpn.BBOX_REG_WEIGHTS),
            "batch_size_per_image": rpn.BATCH_SIZE_PER_IMAGE,
            "positive_fraction": rpn.POSITIVE_FRACTION,
            "pre_nms_topk": (rpn.PRE_NMS_TOPK_TRAIN, rpn.PRE_NMS_TOPK_TEST),
            "post_nms_topk": (rpn.POST_NMS_TOPK_TRAIN, rpn.POST_NMS_TOPK_TEST),
            "nms_thresh": rpn.NMS_THRESH,
            "min_box_size": cfg.MODEL.PROPOSAL_GENERATOR.MIN_SIZE,
            "anchor_boundary_thresh": rpn.BOUNDARY_THRESH,
            "loss_weight": {
                "loss_rpn_cls": rpn.LOSS_WEIGHT,
                "loss_rpn_loc": rpn.BBOX_REG_LOSS_WEIGHT * rpn.LOSS_WEIGHT,
            },
            "box_reg_loss_type": rpn.BBOX_REG_LOSS_TYPE,
            "smooth_l1_beta": rpn.SMOOTH_L1_BETA,
        }

    def _subsample_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Keep a random ``batch_size_per_image`` sample of labelled anchors; the rest -> -1."""
        pos_idx, neg_idx = subsample_labels(
            labels, self.batch_size_per_image, self.positive_fraction, 0
        )
        out = torch.full_like(labels, -1)
        out[pos_idx] = 1
        out[neg_idx] = 0
        return out

    @torch.no_grad()
    def label_and_sample_anchors(
        self, anchors: Sequence[Boxes], gt_instances: Sequence[Instances]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Label every anchor of every image and sample a minibatch of them.

        Args:
            anchors: per level, the anchors (shared by all images).
            gt_instances: per image, ``Instances`` with ``gt_boxes``.

        Returns:
            gt_labels: per image, ``(R,)`` int: 1 positive, 0 negative, -1 ignored / unsampled.
            matched_gt_boxes: per image, ``(R, 4)`` the ground truth matched to each anchor
                (meaningful for positives only).
        """
        all_anchors = Boxes.cat(list(anchors))
        gt_labels, matched_gt_boxes = [], []
        for inst in gt_instances:
            gt_boxes = inst.gt_boxes
            quality = pairwise_iou(gt_boxes, all_anchors)
            matched_idxs, labels = self.anchor_matcher(quality)
            labels = labels.to(device=gt_boxes.device, dtype=torch.int64)
            del quality
            if self.anchor_boundary_thresh >= 0:
                inside = all_anchors.inside_box(inst.image_size, self.anchor_boundary_thresh)
                labels[~inside] = -1
            labels = self._subsample_labels(labels)
            if len(gt_boxes) == 0:
                matched = torch.zeros_like(all_anchors.tensor)
            else:
                matched = gt_boxes.tensor[matched_idxs].to(all_anchors.tensor.dtype)
            gt_labels.append(labels)
            matched_gt_boxes.append(matched)
        return gt_labels, matched_gt_boxes

    @stage("losses")
    def losses(
        self,
        anchors: Sequence[Boxes],
        pred_objectness_logits: Sequence[torch.Tensor],
        gt_labels: Sequence[torch.Tensor],
        pred_anchor_deltas: Sequence[torch.Tensor],
        gt_boxes: Sequence[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """Return ``loss_rpn_cls`` (BCE) and ``loss_rpn_loc``, both summed over the sampled
        anchors and divided by ``batch_size_per_image * num_images``.

        Shapes: ``pred_objectness_logits`` per level ``(N, R_l)``, ``pred_anchor_deltas`` per
        level ``(N, R_l, 4)``, ``gt_labels`` and ``gt_boxes`` per image ``(R,)`` / ``(R, 4)``.
        """
        num_images = len(gt_labels)
        labels = torch.stack(list(gt_labels))
        pos_mask = labels == 1
        if has_event_storage():
            storage = get_event_storage()
            storage.put_scalar("rpn/num_pos_anchors", pos_mask.sum().item() / num_images)
            storage.put_scalar("rpn/num_neg_anchors", (labels == 0).sum().item() / num_images)

        loc_loss = dense_box_regression_loss(
            anchors,
            self.box2box_transform,
            pred_anchor_deltas,
            gt_boxes,
            pos_mask,
            box_reg_loss_type=self.box_reg_loss_type,
            smooth_l1_beta=self.smooth_l1_beta,
        )
        valid = labels >= 0
        logits = torch.cat(list(pred_objectness_logits), dim=1)
        cls_loss = F.binary_cross_entropy_with_logits(
            logits[valid], labels[valid].to(logits.dtype), reduction="sum"
        )
        normalizer = self.batch_size_per_image * num_images
        losses = {"loss_rpn_cls": cls_loss / normalizer, "loss_rpn_loc": loc_loss / normalizer}
        return {k: v * self.loss_weight.get(k, 1.0) for k, v in losses.items()}

    def forward(
        self,
        images: ImageList,
        features: dict[str, torch.Tensor],
        gt_instances: Sequence[Instances] | None = None,
    ) -> tuple[list[Instances], dict[str, torch.Tensor]]:
        """Propose boxes for each image; in training also return the RPN losses.

        Args:
            images: the padded batch (only ``image_sizes`` is read).
            features: name -> ``(N, C, H_l, W_l)`` maps, including ``in_features``.
            gt_instances: per image, ``Instances`` with ``gt_boxes`` (training only).

        Returns:
            proposals: per image, ``Instances`` with ``proposal_boxes`` and
                ``objectness_logits``, best first.
            losses: ``{"loss_rpn_cls", "loss_rpn_loc"}`` in training, else empty.
        """
        maps = [features[f] for f in self.in_features]
        anchors = self.anchor_generator(maps)
        logits, deltas = self.rpn_head(maps)
        # (N, A, H, W) -> (N, H*W*A): cell-major, matching the anchors' order.
        logits = [x.permute(0, 2, 3, 1).flatten(1) for x in logits]
        box_dim = anchors[0].tensor.shape[1]
        deltas = [
            x.view(x.shape[0], -1, box_dim, x.shape[-2], x.shape[-1])
            .permute(0, 3, 4, 1, 2)
            .flatten(1, -2)
            for x in deltas
        ]

        losses: dict[str, torch.Tensor] = {}
        if self.training:
            if gt_instances is None:
                raise ValueError("RPN in training mode needs gt_instances")
            gt_labels, gt_boxes = self.label_and_sample_anchors(anchors, gt_instances)
            losses = self.losses(anchors, logits, gt_labels, deltas, gt_boxes)
        proposals = self.predict_proposals(anchors, logits, deltas, images.image_sizes)
        return proposals, losses

    @torch.no_grad()
    def predict_proposals(
        self,
        anchors: Sequence[Boxes],
        pred_objectness_logits: Sequence[torch.Tensor],
        pred_anchor_deltas: Sequence[torch.Tensor],
        image_sizes: Sequence[tuple[int, int]],
    ) -> list[Instances]:
        """Decode the deltas and select the top proposals per image.

        The proposals are constants for the ROI heads: no gradient flows back through their
        coordinates (as in Detectron2's joint training).
        """
        proposals = self._decode_proposals(anchors, pred_anchor_deltas)
        return find_top_rpn_proposals(
            proposals,
            pred_objectness_logits,
            image_sizes,
            self.nms_thresh,
            self.pre_nms_topk[self.training],
            self.post_nms_topk[self.training],
            self.min_box_size,
            self.training,
        )

    def _decode_proposals(
        self, anchors: Sequence[Boxes], pred_anchor_deltas: Sequence[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Per level, ``(N, R_l, 4)`` boxes from the anchors and the predicted deltas."""
        out = []
        for anchors_l, deltas_l in zip(anchors, pred_anchor_deltas):
            n, r, b = deltas_l.shape
            ref = anchors_l.tensor.to(deltas_l.dtype)
            ref = ref.unsqueeze(0).expand(n, -1, -1).reshape(-1, b)
            boxes = self.box2box_transform.apply_deltas(deltas_l.reshape(-1, b), ref)
            out.append(boxes.view(n, r, b))
        return out
