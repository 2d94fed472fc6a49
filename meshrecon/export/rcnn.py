"""The exportable parts of ``GeneralizedRCNN`` (Mesh R-CNN): backbone + RPN head, box head.

Two programs, whose seams are where the eager model leaves tensors for Python structures:

* :class:`RCNNBackboneProgram` ``images -> features, RPN objectness logits and anchor deltas,
  anchors`` (every level): normalization, padding to the backbone's size divisibility, the
  backbone + FPN, the RPN's convolutional head and the anchor grid.
* :class:`RCNNBoxHeadProgram` ``(features, rois) -> class logits, box deltas``: the multi-level
  ROIAlign pooler, the box head and the box predictor on a given set of regions.

Between them the caller selects proposals (decode the deltas on the anchors, top-k per level,
NMS per image) and after the second it runs the box post-processing (softmax, per-class decode,
score threshold, per-class NMS, top-k per image); both select a data-dependent number of boxes
per image into per-image ``Instances``, which is what stops a whole-model export (see the
README's export section for each blocker).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from meshrecon.modeling.meta_arch.rcnn import GeneralizedRCNN
from meshrecon.modeling.poolers import assign_boxes_to_levels
from meshrecon.structures import Boxes

__all__ = ["RCNNBackboneProgram", "RCNNBoxHeadProgram"]


def _check_rcnn(model) -> None:
    if not isinstance(model, GeneralizedRCNN):
        raise ValueError(f"expected a GeneralizedRCNN, got {type(model).__name__}")
    if model.proposal_generator is None:
        raise ValueError("the model has no proposal generator (RPN) to export")
    if model.channels_last:
        # The strides of channels_last activations with a symbolic height and width make
        # torch.export emit guards it cannot prove (e.g. "1 % (512 * ceil(W / 32)) != 0").
        raise ValueError(
            "export a GeneralizedRCNN built with MODEL.MEMORY_FORMAT 'contiguous' (this one "
            "keeps its backbone channels_last)"
        )


class RCNNBackboneProgram(nn.Module):
    """``images -> dict``: backbone features, RPN head outputs and anchors of every level.

    ``forward(images)``: (N, 3, H, W) float 0..255 in ``INPUT.FORMAT`` order, already resized
    as the test-time mapper does (``INPUT.MIN_SIZE_TEST`` / ``MAX_SIZE_TEST``); they are
    normalized and zero-padded (after normalization, as ``ImageList`` does) at the bottom and
    right to multiples of the backbone's ``size_divisibility``. Outputs, per feature name
    ``f`` (``p2`` .. ``p6``):

    * ``features_f`` (N, C, H_f, W_f): the backbone's map;
    * for the RPN's maps, ``rpn_objectness_f`` (N, A, H_f, W_f) logits and ``rpn_deltas_f``
      (N, 4A, H_f, W_f) anchor deltas (Detectron2's layout), and ``anchors_f``
      (H_f * W_f * A, 4) XYXY anchors in padded-image pixels, cell-major.
    """

    def __init__(self, model: GeneralizedRCNN) -> None:
        super().__init__()
        _check_rcnn(model)
        self.model = model.eval()
        self.feature_names = list(model.backbone.output_shape())
        self.rpn_features = list(model.proposal_generator.in_features)
        self.size_divisibility = int(getattr(model.backbone, "size_divisibility", 0))
        self.eval()  # an exporter that re-applies the wrapper's mode must not train the model

    @property
    def output_names(self) -> list[str]:
        names = [f"features_{f}" for f in self.feature_names]
        for kind in ("rpn_objectness", "rpn_deltas", "anchors"):
            names += [f"{kind}_{f}" for f in self.rpn_features]
        return names

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        model = self.model
        x = model.normalize_pixels(images)
        d = self.size_divisibility
        if d > 1:
            H, W = images.shape[-2], images.shape[-1]
            x = F.pad(x, (0, (W + d - 1) // d * d - W, 0, (H + d - 1) // d * d - H))
        features = model.backbone(x)
        out = {f"features_{f}": features[f] for f in self.feature_names}
        rpn = model.proposal_generator
        maps = [features[f] for f in self.rpn_features]
        logits, deltas = rpn.rpn_head(maps)
        grid = [(m.shape[-2], m.shape[-1]) for m in maps]
        anchors = rpn.anchor_generator._grid_anchors(grid)
        # Kind by kind, in output_names' order (ONNX names the outputs by position).
        for kind, values in (("rpn_objectness", logits), ("rpn_deltas", deltas)):
            out.update({f"{kind}_{f}": v for f, v in zip(self.rpn_features, values)})
        out.update({f"anchors_{f}": a for f, a in zip(self.rpn_features, anchors)})
        return out


class RCNNBoxHeadProgram(nn.Module):
    """``(features of the box stage's maps..., rois) -> {"class_logits", "box_deltas"}``.

    ``forward(*maps, rois)``: the box stage's feature maps in ``ROI_HEADS.IN_FEATURES`` order
    (``features_p2`` .. ``features_p5`` of :class:`RCNNBackboneProgram`) and ``rois`` (R, 5)
    rows ``(image index, x0, y0, x1, y1)`` in padded-image pixels (the proposals). Returns
    ``class_logits`` (R, K + 1) (background last; softmax gives the eager scores) and
    ``box_deltas`` (R, 4K) per-class deltas relative to each roi.
    """

    def __init__(self, model: GeneralizedRCNN) -> None:
        super().__init__()
        _check_rcnn(model)
        self.model = model.eval()
        roi_heads = model.roi_heads
        self.in_features = list(roi_heads.box_in_features)
        self.eval()

    @property
    def output_names(self) -> list[str]:
        return ["class_logits", "box_deltas"]

    def forward(self, *args: torch.Tensor) -> dict[str, torch.Tensor]:
        *maps, rois = args
        roi_heads = self.model.roi_heads
        pooled = self._pool(roi_heads.box_pooler, maps, rois)
        logits, deltas = roi_heads.box_predictor(roi_heads.box_head(pooled))
        return {"class_logits": logits, "box_deltas": deltas}

    @staticmethod
    def _pool(pooler, maps, rois: torch.Tensor) -> torch.Tensor:
        """``ROIPooler.forward`` on (R, 5) rois (it takes per-image ``Boxes`` lists)."""
        if len(pooler.level_poolers) == 1:
            return pooler.level_poolers[0](maps[0], rois)
        levels = assign_boxes_to_levels(
            [Boxes(rois[:, 1:])],
            pooler.min_level,
            pooler.max_level,
            pooler.canonical_box_size,
            pooler.canonical_level,
        )
        out = maps[0].new_zeros((rois.shape[0], maps[0].shape[1], *pooler.output_size))
        for level, level_pooler in enumerate(pooler.level_poolers):
            inds = torch.nonzero(levels == level, as_tuple=True)[0]
            out = out.index_put((inds,), level_pooler(maps[level], rois[inds]))
        return out
