"""ROI heads: sample proposals against ground truth, then run the per-region heads.

``ROIHeads`` holds what every ROI stage shares (proposal matching and sampling);
``StandardROIHeads`` runs a pooled box head + predictor and, with ``MASK_ON``, a mask head, each
from its own registry. Mesh R-CNN's ``MeshRCNNROIHeads`` subclasses ``StandardROIHeads`` and adds
its z, voxel and mesh heads on the foreground boxes (see ``StandardROIHeads``'s docstring for the
extension points).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from meshrecon.config import configurable
from meshrecon.layers import ShapeSpec
from meshrecon.modeling.matcher import Matcher
from meshrecon.modeling.poolers import ROIPooler
from meshrecon.modeling.proposal_generator.proposal_utils import add_ground_truth_to_proposals
from meshrecon.modeling.roi_heads.build import (
    ROI_HEADS_REGISTRY,
    build_box_head,
    build_mask_head,
)
from meshrecon.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from meshrecon.modeling.sampling import subsample_labels
from meshrecon.structures import ImageList, Instances, pairwise_iou
from meshrecon.utils.events import get_event_storage, has_event_storage

__all__ = ["ROIHeads", "StandardROIHeads", "select_foreground_proposals", "pooler_from_config"]

logger = logging.getLogger(__name__)


def select_foreground_proposals(
    proposals: Sequence[Instances], bg_label: int
) -> tuple[list[Instances], list[torch.Tensor]]:
    """Keep the proposals labelled with a foreground class (not -1, not ``bg_label``).

    Returns:
        Per image, the foreground proposals, and the ``(R_i,)`` bool mask that selected them.
    """
    fg_proposals, fg_masks = [], []
    for props in proposals:
        gt_classes = props.gt_classes
        mask = (gt_classes != -1) & (gt_classes != bg_label)
        fg_proposals.append(props[torch.nonzero(mask, as_tuple=True)[0]])
        fg_masks.append(mask)
    return fg_proposals, fg_masks


def pooler_from_config(
    input_shape: dict[str, ShapeSpec],
    in_features: Sequence[str],
    resolution: int,
    sampling_ratio: int,
    pooler_type: str,
) -> tuple[ROIPooler, ShapeSpec]:
    """A ``ROIPooler`` over ``in_features`` and the ``ShapeSpec`` of its pooled output.

    Helper for every per-ROI head (box, mask, and Mesh R-CNN's voxel / mesh / z heads), which
    read the same four ``MODEL.ROI_<KIND>_HEAD.POOLER_*`` keys.
    """
    missing = [f for f in in_features if f not in input_shape]
    if missing:
        raise ValueError(
            f"ROI head features {missing} are not among the backbone's {sorted(input_shape)}"
        )
    channels = {input_shape[f].channels for f in in_features}
    if len(channels) != 1:
        raise ValueError(f"ROI head features {list(in_features)} differ in channels: {channels}")
    pooler = ROIPooler(
        output_size=resolution,
        scales=[1.0 / input_shape[f].stride for f in in_features],
        sampling_ratio=sampling_ratio,
        pooler_type=pooler_type,
    )
    return pooler, ShapeSpec(channels=channels.pop(), height=resolution, width=resolution)


class ROIHeads(nn.Module):
    """What every ROI stage shares: label proposals by matching them to ground truth, and
    sample a balanced minibatch of them for training.

    Args:
        num_classes: K foreground classes; background is label K.
        batch_size_per_image: ROIs sampled per image in training.
        positive_fraction: largest share of foreground ROIs in that sample.
        proposal_matcher: labels proposals by IoU (Mesh R-CNN: < 0.2 ignored, < 0.5 background).
        proposal_append_gt: add the ground-truth boxes to the proposals before sampling.
    """

    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        batch_size_per_image: int,
        positive_fraction: float,
        proposal_matcher: Matcher,
        proposal_append_gt: bool = True,
    ) -> None:
        super().__init__()
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = num_classes
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.proposal_matcher = proposal_matcher
        self.proposal_append_gt = proposal_append_gt

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec] | None = None) -> dict[str, Any]:
        heads = cfg.MODEL.ROI_HEADS
        return {
            "num_classes": heads.NUM_CLASSES,
            "batch_size_per_image": heads.BATCH_SIZE_PER_IMAGE,
            "positive_fraction": heads.POSITIVE_FRACTION,
            "proposal_matcher": Matcher(
                heads.IOU_THRESHOLDS, heads.IOU_LABELS, allow_low_quality_matches=False
            ),
            "proposal_append_gt": heads.PROPOSAL_APPEND_GT,
        }

    def _sample_proposals(
        self, matched_idxs: torch.Tensor, matched_labels: torch.Tensor, gt_classes: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ROIs; return their indices and classes (K for background, -1 ignored)."""
        if gt_classes.numel() > 0:
            classes = gt_classes[matched_idxs]
            classes[matched_labels == 0] = self.num_classes
            classes[matched_labels == -1] = -1
        else:
            classes = torch.full_like(matched_idxs, self.num_classes)
        fg_idx, bg_idx = subsample_labels(
            classes, self.batch_size_per_image, self.positive_fraction, self.num_classes
        )
        sampled = torch.cat([fg_idx, bg_idx], dim=0)
        return sampled, classes[sampled]

    @torch.no_grad()
    def label_and_sample_proposals(
        self, proposals: Sequence[Instances], targets: Sequence[Instances]
    ) -> list[Instances]:
        """Match proposals to ground truth and sample ``batch_size_per_image`` of them.

        Args:
            proposals: per image, ``Instances`` with ``proposal_boxes`` (and
                ``objectness_logits``).
            targets: per image, ``Instances`` with ``gt_boxes``, ``gt_classes`` and any other
                ``gt_*`` fields (masks, meshes, voxels, ...).

        Returns:
            Per image, the sampled proposals (foreground first) with ``gt_classes`` and, when
            the image has ground truth, every ``gt_*`` field of its matched target (so
            ``gt_boxes``, ``gt_masks``, Mesh R-CNN's ``gt_meshes``/``gt_voxels``/``gt_dz``...).
        """
        if len(proposals) != len(targets):
            raise ValueError(
                f"proposals ({len(proposals)} images) and targets ({len(targets)}) must match"
            )
        if self.proposal_append_gt:
            proposals = add_ground_truth_to_proposals(targets, proposals)
        out, num_fg, num_bg = [], [], []
        for props, tgt in zip(proposals, targets):
            has_gt = len(tgt) > 0
            quality = pairwise_iou(tgt.gt_boxes, props.proposal_boxes)
            matched_idxs, matched_labels = self.proposal_matcher(quality)
            sampled, classes = self._sample_proposals(matched_idxs, matched_labels, tgt.gt_classes)
            props = props[sampled]
            props.gt_classes = classes
            if has_gt:
                sampled_targets = matched_idxs[sampled]
                for name, value in tgt.get_fields().items():
                    if name.startswith("gt_") and not props.has(name):
                        props.set(name, value[sampled_targets])
            num_bg.append((classes == self.num_classes).sum().item())
            num_fg.append(classes.numel() - num_bg[-1])
            out.append(props)
        if has_event_storage():
            storage = get_event_storage()
            storage.put_scalar("roi_head/num_fg_samples", float(np.mean(num_fg)))
            storage.put_scalar("roi_head/num_bg_samples", float(np.mean(num_bg)))
        return out

    def forward(
        self,
        images: ImageList,
        features: dict[str, torch.Tensor],
        proposals: list[Instances],
        targets: list[Instances] | None = None,
    ) -> tuple[list[Instances], dict[str, torch.Tensor]]:
        """Run the heads; see ``StandardROIHeads.forward``."""
        raise NotImplementedError


@ROI_HEADS_REGISTRY.register()
class StandardROIHeads(ROIHeads):
    """Box head + box predictor, and optionally a mask head, each with its own pooler.

    Extension points for subclasses (Mesh R-CNN's ``MeshRCNNROIHeads``):

    - ``from_config`` builds the keyword arguments; a subclass calls
      ``super().from_config(cfg, input_shape)`` and adds its heads (``pooler_from_config``
      builds a pooler + ShapeSpec from a head's ``POOLER_*`` keys). ``__init__`` passes extra
      keyword arguments it does not know to nobody: a subclass pops its own before
      ``super().__init__(**kwargs)``.
    - ``_forward_box``, ``_forward_mask`` (and a subclass's own ``_forward_z``,
      ``_forward_voxel``, ``_forward_mesh``): in training they take the sampled proposals and
      return a dict of losses; in inference they take the detections and return them with
      new fields.
    - ``forward_with_given_boxes`` runs every head after the box stage at inference; a
      subclass overrides it to also run its heads on ``pred_boxes``.
    - ``forward`` in training calls ``label_and_sample_proposals``, then ``_forward_box``,
      then ``_forward_training_heads`` (the mask head here); a subclass extends the latter.
      Heads that need foreground ROIs only call ``select_foreground_proposals``.
    - ``in_features`` (= ``box_in_features``) names the pooled feature maps, as Mesh R-CNN's
      heads expect.

    Args:
        box_in_features: feature maps the box head pools from.
        box_pooler, box_head, box_predictor: the box stage.
        mask_in_features, mask_pooler, mask_head: the mask stage (``mask_on`` only).
        train_on_pred_boxes: the mask head trains on the box predictor's refined boxes.
        **kwargs: ``ROIHeads``'s arguments.
    """

    @configurable
    def __init__(
        self,
        *,
        box_in_features: Sequence[str],
        box_pooler: ROIPooler,
        box_head: nn.Module,
        box_predictor: nn.Module,
        mask_in_features: Sequence[str] | None = None,
        mask_pooler: ROIPooler | None = None,
        mask_head: nn.Module | None = None,
        train_on_pred_boxes: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.in_features = self.box_in_features = list(box_in_features)
        self.box_pooler = box_pooler
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.mask_on = mask_in_features is not None
        if self.mask_on:
            if mask_head is None:
                raise ValueError("mask_in_features is given, so mask_head is required")
            self.mask_in_features = list(mask_in_features)
            self.mask_pooler = mask_pooler
            self.mask_head = mask_head
        self.train_on_pred_boxes = train_on_pred_boxes

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]) -> dict[str, Any]:
        ret = super().from_config(cfg)
        ret["train_on_pred_boxes"] = cfg.MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES
        ret.update(cls._init_box_head(cfg, input_shape))
        ret.update(cls._init_mask_head(cfg, input_shape))
        return ret

    @classmethod
    def _init_box_head(cls, cfg, input_shape: dict[str, ShapeSpec]) -> dict[str, Any]:
        in_features = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
        head = cfg.MODEL.ROI_BOX_HEAD
        pooler, shape = pooler_from_config(
            input_shape,
            in_features,
            head.POOLER_RESOLUTION,
            head.POOLER_SAMPLING_RATIO,
            head.POOLER_TYPE,
        )
        box_head = build_box_head(cfg, shape)
        return {
            "box_in_features": in_features,
            "box_pooler": pooler,
            "box_head": box_head,
            "box_predictor": FastRCNNOutputLayers(cfg, box_head.output_shape),
        }

    @classmethod
    def _init_mask_head(cls, cfg, input_shape: dict[str, ShapeSpec]) -> dict[str, Any]:
        if not cfg.MODEL.MASK_ON:
            return {}
        in_features = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
        head = cfg.MODEL.ROI_MASK_HEAD
        pooler, shape = pooler_from_config(
            input_shape,
            in_features,
            head.POOLER_RESOLUTION,
            head.POOLER_SAMPLING_RATIO,
            head.POOLER_TYPE,
        )
        return {
            "mask_in_features": in_features,
            "mask_pooler": pooler,
            "mask_head": build_mask_head(cfg, shape),
        }

    def forward(
        self,
        images: ImageList,
        features: dict[str, torch.Tensor],
        proposals: list[Instances],
        targets: list[Instances] | None = None,
    ) -> tuple[list[Instances], dict[str, torch.Tensor]]:
        """Training: sample proposals against ``targets`` and return ``(proposals, losses)``.
        Inference: return ``(detections, {})``, detections with ``pred_boxes``, ``scores``,
        ``pred_classes`` (and ``pred_masks (D, 1, M, M)`` with the mask head).

        Args:
            images: unused (kept for Detectron2's signature).
            features: name -> ``(N, C, H_l, W_l)`` maps.
            proposals: per image, ``Instances`` with ``proposal_boxes``.
            targets: per image, ground truth (training only).
        """
        del images
        if self.training:
            if targets is None:
                raise ValueError("StandardROIHeads in training mode needs targets")
            proposals = self.label_and_sample_proposals(proposals, targets)
            losses = self._forward_box(features, proposals)
            losses.update(self._forward_training_heads(features, proposals))
            return proposals, losses
        detections = self._forward_box(features, proposals)
        return self.forward_with_given_boxes(features, detections), {}

    def _forward_training_heads(
        self, features: dict[str, torch.Tensor], proposals: list[Instances]
    ) -> dict[str, torch.Tensor]:
        """Losses of every head after the box stage, on the sampled proposals."""
        return self._forward_mask(features, proposals)

    def forward_with_given_boxes(
        self, features: dict[str, torch.Tensor], instances: list[Instances]
    ) -> list[Instances]:
        """Run the heads after the box stage on detections with ``pred_boxes`` and
        ``pred_classes`` (inference only); returns them with new fields."""
        if self.training:
            raise RuntimeError("forward_with_given_boxes is for inference (call .eval())")
        if instances and not (instances[0].has("pred_boxes") and instances[0].has("pred_classes")):
            raise ValueError("instances need pred_boxes and pred_classes")
        return self._forward_mask(features, instances)

    def _forward_box(
        self, features: dict[str, torch.Tensor], proposals: list[Instances]
    ) -> dict[str, torch.Tensor] | list[Instances]:
        """Training: box losses (``loss_cls``, ``loss_box_reg``); inference: detections."""
        maps = [features[f] for f in self.box_in_features]
        box_features = self.box_head(self.box_pooler(maps, [p.proposal_boxes for p in proposals]))
        predictions = self.box_predictor(box_features)
        del box_features
        if self.training:
            losses = self.box_predictor.losses(predictions, proposals)
            if self.train_on_pred_boxes:
                with torch.no_grad():
                    pred_boxes = self.box_predictor.predict_boxes_for_gt_classes(
                        predictions, proposals
                    )
                    for props, boxes in zip(proposals, pred_boxes):
                        props.proposal_boxes = type(props.proposal_boxes)(boxes)
            return losses
        detections, _ = self.box_predictor.inference(predictions, proposals)
        return detections

    def _forward_mask(
        self, features: dict[str, torch.Tensor], instances: list[Instances]
    ) -> dict[str, torch.Tensor] | list[Instances]:
        """Training: ``{"loss_mask"}`` on the foreground proposals; inference: set
        ``pred_masks`` on the detections. A no-op (``{}`` / the input) without the mask head."""
        if not self.mask_on:
            return {} if self.training else instances
        if self.training:
            instances, _ = select_foreground_proposals(instances, self.num_classes)
            boxes = [x.proposal_boxes for x in instances]
        else:
            boxes = [x.pred_boxes for x in instances]
        maps = [features[f] for f in self.mask_in_features]
        return self.mask_head(self.mask_pooler(maps, boxes), instances)
