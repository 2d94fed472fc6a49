"""``paste_masks_in_image``: paste per-box M x M mask probabilities into full-size image masks."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["paste_masks_in_image"]

# Detectron2's chunking of the GPU path: at most this many bytes of float masks per chunk.
_BYTES_PER_FLOAT = 4
_GPU_MEM_LIMIT = 1024**3


def _paste_chunk(
    masks: torch.Tensor, boxes: torch.Tensor, img_h: int, img_w: int, skip_empty: bool
) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Sample ``masks (n, 1, M, M)`` at the pixel centres of the image, each in its box.

    With ``skip_empty`` only the region around the union of the boxes is computed (and its
    slices are returned), which is what makes the CPU path fast.
    """
    if skip_empty:
        x0_int, y0_int = (
            torch.clamp(boxes.min(dim=0).values.floor()[:2] - 1, min=0).to(torch.int64).tolist()
        )
        x1_int = int(torch.clamp(boxes[:, 2].max().ceil() + 1, max=img_w).item())
        y1_int = int(torch.clamp(boxes[:, 3].max().ceil() + 1, max=img_h).item())
    else:
        x0_int, y0_int, x1_int, y1_int = 0, 0, img_w, img_h
    x0, y0, x1, y1 = torch.split(boxes, 1, dim=1)  # each (n, 1)
    n = masks.shape[0]

    # Pixel centres, mapped to [-1, 1] across each box (grid_sample's align_corners=False
    # convention, so the mask's border cells cover the box edge to edge).
    img_y = torch.arange(y0_int, y1_int, device=boxes.device, dtype=boxes.dtype) + 0.5
    img_x = torch.arange(x0_int, x1_int, device=boxes.device, dtype=boxes.dtype) + 0.5
    img_y = (img_y - y0) / (y1 - y0) * 2 - 1  # (n, h)
    img_x = (img_x - x0) / (x1 - x0) * 2 - 1  # (n, w)
    gx = img_x[:, None, :].expand(n, img_y.shape[1], img_x.shape[1])
    gy = img_y[:, :, None].expand(n, img_y.shape[1], img_x.shape[1])
    grid = torch.stack([gx, gy], dim=3)

    if not masks.dtype.is_floating_point:
        masks = masks.to(boxes.dtype if boxes.dtype.is_floating_point else torch.float32)
    pasted = F.grid_sample(masks, grid.to(masks.dtype), align_corners=False)
    if skip_empty:
        return pasted[:, 0], (slice(y0_int, y1_int), slice(x0_int, x1_int))
    return pasted[:, 0], ()


def paste_masks_in_image(
    masks: torch.Tensor,
    boxes: torch.Tensor,
    image_shape: tuple[int, int],
    threshold: float = 0.5,
) -> torch.Tensor:
    """Paste each ``M x M`` mask into its box of an ``image_shape`` image (Detectron2's rule).

    A pixel takes the bilinearly sampled mask value at its centre, mapped into the box; pixels
    outside a box are 0. On the CPU one box is pasted at a time, on only the region around it;
    on a GPU boxes are pasted in chunks over the whole image.

    Args:
        masks: ``(N, M, M)`` mask probabilities (square).
        boxes: ``(N, 4)`` XYXY boxes in image pixels (a tensor or ``Boxes``).
        image_shape: ``(height, width)`` of the output.
        threshold: pixels with value >= threshold are foreground; a negative threshold returns
            the soft values scaled to uint8 0..255 instead.

    Returns:
        ``(N, height, width)`` bool masks (uint8 when ``threshold < 0``).
    """
    if masks.dim() != 3 or masks.shape[-1] != masks.shape[-2]:
        raise ValueError(f"masks must be (N, M, M) square masks, got {tuple(masks.shape)}")
    if not isinstance(boxes, torch.Tensor):
        boxes = boxes.tensor
    n = masks.shape[0]
    if boxes.shape != (n, 4):
        raise ValueError(f"boxes must be ({n}, 4) to match masks, got {tuple(boxes.shape)}")
    img_h, img_w = (int(s) for s in image_shape)
    out_dtype = torch.bool if threshold >= 0 else torch.uint8
    if n == 0:
        return masks.new_zeros((0, img_h, img_w), dtype=out_dtype)
    device = boxes.device
    if device.type == "cpu":
        num_chunks = n
    else:
        num_chunks = min(n, int(math.ceil(n * img_h * img_w * _BYTES_PER_FLOAT / _GPU_MEM_LIMIT)))
    chunks = torch.chunk(torch.arange(n, device=device), num_chunks)
    out = torch.zeros(n, img_h, img_w, device=device, dtype=out_dtype)
    for inds in chunks:
        pasted, region = _paste_chunk(
            masks[inds, None, :, :], boxes[inds], img_h, img_w, skip_empty=device.type == "cpu"
        )
        if threshold >= 0:
            pasted = pasted >= threshold
        else:
            pasted = (pasted * 255).to(dtype=torch.uint8)
        out[(inds, *region)] = pasted
    return out
