"""``ROIAlign``: Detectron2's module interface over ``torchvision.ops.roi_align``.

On CPU, with a fixed ``sampling_ratio`` and an input that needs a gradient, the backward pass
is computed here instead of by torchvision: torchvision's CPU kernel recomputes every sample's
bilinear weights for every channel and adds them one by one on a single thread (about a sixth
of a Mesh R-CNN training step on two cores). Here the weights are computed once per sample and
laid out as a sparse matrix, whose product with the output gradient is the input gradient.
The forward pass is torchvision's in every case.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torchvision.ops import roi_align

__all__ = ["ROIAlign", "roi_align_backward_matrix"]


def _axis_samples(
    start: torch.Tensor, size: torch.Tensor, bins: int, grid: int, limit: int
) -> tuple[torch.Tensor, ...]:
    """Bilinear taps along one axis of every ROI's samples, as torchvision computes them.

    Args:
        start: (R,) ROI start along the axis, in map cells.
        size: (R,) ROI extent along the axis, in map cells.
        bins: output bins along the axis.
        grid: samples per bin.
        limit: the map's length along the axis.

    Returns:
        (low, high) (R, bins, grid) cell indices, (w_low, w_high) their weights, and
        ``valid`` (R, bins, grid): False for samples more than one cell outside the map.
    """
    dtype = start.dtype
    bin_size = size / bins
    b = torch.arange(bins, dtype=dtype, device=start.device)
    g = torch.arange(grid, dtype=dtype, device=start.device) + 0.5
    # The same operations in the same order as torchvision's kernel.
    pos = (start[:, None, None] + b[None, :, None] * bin_size[:, None, None]) + (
        g[None, None, :] * bin_size[:, None, None]
    ) / grid
    valid = (pos >= -1.0) & (pos <= limit)
    pos = pos.clamp(min=0)
    low = pos.floor().long()
    at_edge = low >= limit - 1
    low = torch.where(at_edge, torch.full_like(low, limit - 1), low)
    high = torch.where(at_edge, low, low + 1)
    pos = torch.where(at_edge, low.to(dtype), pos)
    frac = pos - low.to(dtype)
    return low, high, 1.0 - frac, frac, valid


def roi_align_backward_matrix(
    rois: torch.Tensor,
    input_shape: tuple[int, int, int],
    output_size: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> torch.Tensor:
    """The transposed linear map of ROIAlign: (N H W, R h w) sparse CSR, values in rois' dtype.

    Entry (cell, bin) is the weight with which output bin ``bin`` (ROI r, row i, column j at
    ``r h w + i w + j``) reads map cell ``cell`` (image n, row y, column x at ``n H W + y W +
    x``): the bilinear weights of the bin's ``sampling_ratio ** 2`` samples, divided by their
    count, exactly as ``torchvision.ops.roi_align`` samples (samples more than one cell outside
    the map read nothing; the others are clamped to it). So for features ``f`` (N H W, C) and
    output gradients ``g`` (R h w, C), the input gradient is ``matrix @ g``.

    Args:
        rois: (R, 5) ``(batch_index, x0, y0, x1, y1)`` in input-image pixels.
        input_shape: (N, H, W) of the feature map.
        output_size: (h, w) of each pooled window.
        spatial_scale: feature-map pixels per input pixel, as for :class:`ROIAlign`.
        sampling_ratio: bilinear samples per bin along each axis, > 0 (as for
            :class:`ROIAlign`, without its adaptive 0).
        aligned: shift box corners by -0.5 pixel, as for :class:`ROIAlign`.

    Returns:
        (N H W, R h w) sparse CSR tensor in the dtype of ``rois``.
    """
    if sampling_ratio <= 0:
        raise ValueError(f"sampling_ratio must be > 0 here, got {sampling_ratio}")
    N, H, W = input_shape
    ph, pw = output_size
    R = rois.shape[0]
    offset = 0.5 if aligned else 0.0
    scaled = rois[:, 1:] * spatial_scale - offset
    x0, y0, x1, y1 = scaled.unbind(1)
    roi_w, roi_h = x1 - x0, y1 - y0
    if not aligned:  # the original ROIAlign forces boxes to at least one cell
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    ylo, yhi, wylo, wyhi, yok = _axis_samples(y0, roi_h, ph, sampling_ratio, H)
    xlo, xhi, wxlo, wxhi, xok = _axis_samples(x0, roi_w, pw, sampling_ratio, W)

    # Broadcast to (R, ph, gy, pw, gx) samples.
    def ys(t):
        return t[:, :, :, None, None]

    def xs(t):
        return t[:, None, None, :, :]

    valid = ys(yok) & xs(xok)
    base = rois[:, 0].long()[:, None, None, None, None] * (H * W)
    bins = (
        torch.arange(R, device=rois.device)[:, None, None, None, None] * (ph * pw)
        + torch.arange(ph, device=rois.device)[None, :, None, None, None] * pw
        + torch.arange(pw, device=rois.device)[None, None, None, :, None]
    )
    count = float(sampling_ratio * sampling_ratio)
    cells, cols, values = [], [], []
    for y, wy in ((ylo, wylo), (yhi, wyhi)):
        for x, wx in ((xlo, wxlo), (xhi, wxhi)):
            cell = base + ys(y) * W + xs(x)
            weight = ys(wy) * xs(wx) / count
            shape = torch.broadcast_shapes(cell.shape, valid.shape, bins.shape)
            cells.append(cell.expand(shape)[valid.expand(shape)])
            cols.append(bins.expand(shape)[valid.expand(shape)])
            values.append(weight.expand(shape)[valid.expand(shape)])
    cell, col, value = torch.cat(cells), torch.cat(cols), torch.cat(values)
    order = torch.argsort(cell)
    crow = torch.zeros(N * H * W + 1, dtype=torch.long, device=rois.device)
    torch.cumsum(torch.bincount(cell, minlength=N * H * W), 0, out=crow[1:])
    with warnings.catch_warnings():
        # The "CSR support is in beta" notice says nothing actionable to a caller.
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            crow, col[order], value[order], (N * H * W, R * ph * pw), check_invariants=False
        )


class _ROIAlignSparseBackward(torch.autograd.Function):
    """torchvision's ROIAlign forward; the backward as a sparse matrix product (CPU)."""

    @staticmethod
    def forward(ctx, input, rois, output_size, spatial_scale, sampling_ratio, aligned):
        ctx.save_for_backward(rois)
        ctx.args = (tuple(input.shape), output_size, spatial_scale, sampling_ratio, aligned)
        return roi_align(input, rois, output_size, spatial_scale, sampling_ratio, aligned)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        (rois,) = ctx.saved_tensors
        (N, C, H, W), output_size, spatial_scale, sampling_ratio, aligned = ctx.args
        if rois.shape[0] == 0:
            return grad_output.new_zeros((N, C, H, W)), None, None, None, None, None
        matrix = roi_align_backward_matrix(
            rois, (N, H, W), output_size, spatial_scale, sampling_ratio, aligned
        ).to(grad_output.dtype)
        grad = grad_output.permute(0, 2, 3, 1).reshape(-1, C)  # (R h w, C)
        grad_input = (matrix @ grad).view(N, H, W, C).permute(0, 3, 1, 2)
        return grad_input, None, None, None, None, None


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
    ``(batch_index, x0, y0, x1, y1)`` in input-image pixels. Returns ``(R, C, h, w)``. On CPU
    with ``sampling_ratio > 0`` the gradient goes through :func:`roi_align_backward_matrix`
    (same values as torchvision's, faster; see the module docstring).
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
        """Pool one window per ROI.

        Args:
            input: (N, C, H, W) feature map (a quantized one is dequantized first).
            rois: (R, 5) ``(batch_index, x0, y0, x1, y1)`` in input-image pixels.

        Returns:
            (R, C, h, w) pooled features in the dtype of ``input``.

        Raises:
            ValueError: ``input`` is not 4-d or ``rois`` not (R, 5).
        """
        if input.dim() != 4:
            raise ValueError(f"input must be (N, C, H, W), got shape {tuple(input.shape)}")
        if rois.dim() != 2 or rois.shape[1] != 5:
            raise ValueError(f"rois must be (R, 5), got shape {tuple(rois.shape)}")
        if input.is_quantized:
            input = input.dequantize()
        rois = rois.to(dtype=input.dtype)
        args = (self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)
        if (
            input.device.type == "cpu"
            and self.sampling_ratio > 0
            and input.dtype in (torch.float32, torch.float64)
            and input.requires_grad
            and torch.is_grad_enabled()
        ):
            return _ROIAlignSparseBackward.apply(input, rois, *args)
        return roi_align(input, rois, *args)

    def extra_repr(self) -> str:
        """The settings shown in the module's repr."""
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}"
        )
