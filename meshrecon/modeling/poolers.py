"""``ROIPooler``: pool a fixed-size feature patch per box from a multi-level feature pyramid."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torchvision.ops import RoIPool

from meshrecon.layers import ROIAlign
from meshrecon.structures import Boxes

__all__ = ["ROIPooler", "assign_boxes_to_levels", "convert_boxes_to_pooler_format"]

_POOLER_TYPES = ("ROIAlign", "ROIAlignV2", "ROIPool")


def assign_boxes_to_levels(
    box_lists: Sequence[Boxes],
    min_level: int,
    max_level: int,
    canonical_box_size: int,
    canonical_level: int,
) -> torch.Tensor:
    """Return, for every box of every image, the pyramid level to pool it from (0-based).

    Feature Pyramid Networks (Lin et al., eq. 1): a box of size ``sqrt(area)`` goes to level
    ``floor(canonical_level + log2(size / canonical_box_size))``, clamped to
    ``[min_level, max_level]``; the result is relative to ``min_level``. Shape ``(R,)`` int64
    for the ``R`` boxes of all images, concatenated in order.
    """
    box_sizes = torch.sqrt(torch.cat([boxes.area() for boxes in box_lists]))
    # The epsilon keeps a box of exactly the canonical size on the canonical level despite
    # rounding in log2.
    levels = torch.floor(canonical_level + torch.log2(box_sizes / canonical_box_size + 1e-8))
    levels = torch.clamp(levels, min=min_level, max=max_level)
    return levels.to(torch.int64) - min_level


def convert_boxes_to_pooler_format(box_lists: Sequence[Boxes]) -> torch.Tensor:
    """Concatenate per-image boxes into ``(R, 5)`` rows ``(image index, x0, y0, x1, y1)``."""
    rows = []
    for i, boxes in enumerate(box_lists):
        t = boxes.tensor
        rows.append(torch.cat([torch.full_like(t[:, :1], i), t], dim=1))
    return torch.cat(rows, dim=0)


class ROIPooler(nn.Module):
    """Pool ``output_size`` patches for boxes, each from the pyramid level its size selects.

    Args:
        output_size: side (int) or ``(h, w)`` of the pooled patch.
        scales: ``1 / stride`` of each feature map, finest first; consecutive levels must differ
            by a factor of 2.
        sampling_ratio: sampling points per bin side of ROIAlign (0: adaptive).
        pooler_type: ``"ROIAlign"`` (Detectron2's original, no half-pixel shift; Mesh R-CNN's
            released configs), ``"ROIAlignV2"`` (half-pixel aligned) or ``"ROIPool"``.
        canonical_box_size: box size (sqrt area) that maps to ``canonical_level``.
        canonical_level: the level of ``canonical_box_size`` boxes (4 in the FPN paper).
    """

    def __init__(
        self,
        output_size: int | tuple[int, int],
        scales: Sequence[float],
        sampling_ratio: int,
        pooler_type: str,
        canonical_box_size: int = 224,
        canonical_level: int = 4,
    ) -> None:
        super().__init__()
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        if len(output_size) != 2 or not all(isinstance(s, int) for s in output_size):
            raise ValueError(f"output_size must be an int or (h, w), got {output_size!r}")
        self.output_size = tuple(output_size)
        if len(scales) == 0:
            raise ValueError("scales must list at least one feature map")
        if pooler_type not in _POOLER_TYPES:
            raise ValueError(f"pooler_type must be one of {_POOLER_TYPES}, got {pooler_type!r}")
        if pooler_type == "ROIPool":
            poolers = [RoIPool(self.output_size, spatial_scale=s) for s in scales]
        else:
            aligned = pooler_type == "ROIAlignV2"
            poolers = [
                ROIAlign(
                    self.output_size,
                    spatial_scale=s,
                    sampling_ratio=sampling_ratio,
                    aligned=aligned,
                )
                for s in scales
            ]
        self.level_poolers = nn.ModuleList(poolers)
        self.pooler_type = pooler_type

        min_level = -math.log2(scales[0])
        max_level = -math.log2(scales[-1])
        if not (
            math.isclose(min_level, round(min_level)) and math.isclose(max_level, round(max_level))
        ):
            raise ValueError(f"scales must be powers of 1/2, got {list(scales)}")
        self.min_level = int(round(min_level))
        self.max_level = int(round(max_level))
        if len(scales) != self.max_level - self.min_level + 1:
            raise ValueError(f"scales must be consecutive powers of 1/2, got {list(scales)}")
        if canonical_box_size <= 0:
            raise ValueError(f"canonical_box_size must be positive, got {canonical_box_size}")
        self.canonical_box_size = canonical_box_size
        self.canonical_level = canonical_level

    def forward(self, x: Sequence[torch.Tensor], box_lists: Sequence[Boxes]) -> torch.Tensor:
        """Pool one patch per box.

        Args:
            x: the feature maps ``(N, C, H_l, W_l)``, finest first, as many as ``scales``.
            box_lists: per image, its boxes in input-image pixels.

        Returns:
            ``(R, C, h, w)`` patches, boxes of all images concatenated in order.
        """
        if len(x) != len(self.level_poolers):
            raise ValueError(
                f"x has {len(x)} feature maps, the pooler was built for {len(self.level_poolers)}"
            )
        if len(box_lists) != x[0].shape[0]:
            raise ValueError(
                f"box_lists has {len(box_lists)} images, the features a batch of {x[0].shape[0]}"
            )
        num_channels = x[0].shape[1]
        if len(box_lists) == 0:
            return x[0].new_zeros((0, num_channels, *self.output_size))
        rois = convert_boxes_to_pooler_format(box_lists).to(x[0].dtype)
        if len(self.level_poolers) == 1:
            return self.level_poolers[0](x[0], rois)

        levels = assign_boxes_to_levels(
            box_lists,
            self.min_level,
            self.max_level,
            self.canonical_box_size,
            self.canonical_level,
        )
        out = x[0].new_zeros((rois.shape[0], num_channels, *self.output_size))
        for level, pooler in enumerate(self.level_poolers):
            inds = torch.nonzero(levels == level, as_tuple=True)[0]
            out.index_put_((inds,), pooler(x[level], rois[inds]))
        return out
