"""``ROIAlign``: Detectron2's module interface over ``torchvision.ops.roi_align``."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import roi_align

__all__ = ["ROIAlign"]


class ROIAlign(nn.Module):
    """Pool a fixed-size window of a feature map for each box, by bilinear sampling.

    Args:
        output_size: ``(h, w)`` of each pooled window, or one int for a square one.
        spatial_scale: feature-map pixels per input pixel (1 / stride), e.g. 0.25 for p2.
        sampling_ratio: bilinear samples per output bin along each axis; ``0`` adapts it to the
            box size (``ceil(box_size / output_size)``).
        aligned: if ``True``, box corners are shifted by -0.5 pixel before pooling so that
            pixel centres line up ("ROIAlignV2"); if ``False``, the original ROIAlign of
            Mask R-CNN (what Mesh R-CNN's released Pix3D configs use, ``POOLER_TYPE: ROIAlign``).

    ``forward(input, rois)``: ``input (N, C, H, W)``; ``rois (R, 5)`` rows
    ``(batch_index, x0, y0, x1, y1)`` in input-image pixels. Returns ``(R, C, h, w)``.
    """

    def __init__(
        self,
        output_size: int | tuple[int, int],
        spatial_scale: float,
        sampling_ratio: int,
        aligned: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        output_size = tuple(int(s) for s in output_size)
        if len(output_size) != 2 or min(output_size) <= 0:
            raise ValueError(f"output_size must be a positive int or (h, w), got {output_size}")
        if spatial_scale <= 0:
            raise ValueError(f"spatial_scale must be positive, got {spatial_scale}")
        if sampling_ratio < 0:
            raise ValueError(f"sampling_ratio must be >= 0, got {sampling_ratio}")
        self.output_size = output_size
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)
        self.aligned = bool(aligned)

    def forward(self, input: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        if input.dim() != 4:
            raise ValueError(f"input must be (N, C, H, W), got shape {tuple(input.shape)}")
        if rois.dim() != 2 or rois.shape[1] != 5:
            raise ValueError(f"rois must be (R, 5), got shape {tuple(rois.shape)}")
        if input.is_quantized:
            input = input.dequantize()
        return roi_align(
            input,
            rois.to(dtype=input.dtype),
            self.output_size,
            self.spatial_scale,
            self.sampling_ratio,
            self.aligned,
        )

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}"
        )
