"""``BitMasks``: per-instance binary masks of one image (a Detectron2-compatible subset)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from .boxes import Boxes

__all__ = ["BitMasks"]


class BitMasks:
    """N binary masks of one image, stored as a (N, H, W) bool tensor.

    Args:
        tensor: (N, H, W) masks; any dtype, non-zero is foreground.
    """

    def __init__(self, tensor: torch.Tensor | Sequence):
        if not torch.is_tensor(tensor):
            tensor = torch.as_tensor(tensor)
        if tensor.dim() != 3:
            raise ValueError(f"BitMasks needs a (N, H, W) tensor, got shape {tuple(tensor.shape)}")
        self.tensor = tensor if tensor.dtype == torch.bool else tensor != 0
        self.image_size = tuple(self.tensor.shape[1:])

    @property
    def device(self) -> torch.device:
        """The device of the held tensor."""
        return self.tensor.device

    def to(self, *args, **kwargs) -> BitMasks:
        """Return the masks moved to a device (dtype arguments are ignored: masks stay bool)."""
        args = tuple(a for a in args if not isinstance(a, torch.dtype))
        kwargs.pop("dtype", None)
        return BitMasks(self.tensor.to(*args, **kwargs))

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.tensor)

    def __getitem__(self, item: int | slice | torch.Tensor) -> BitMasks:
        """Select masks; an int keeps a (1, H, W) BitMasks, as Detectron2 does."""
        if isinstance(item, int):
            return BitMasks(self.tensor[item].unsqueeze(0))
        selected = self.tensor[item]
        if selected.dim() != 3:
            raise IndexError(f"indexing BitMasks with {item!r} did not give (N, H, W) masks")
        return BitMasks(selected)

    def __repr__(self) -> str:
        return f"BitMasks(num_instances={len(self)}, image_size={self.image_size})"

    def nonempty(self) -> torch.Tensor:
        """(N,) bool: whether each mask has at least one foreground pixel."""
        return self.tensor.flatten(1).any(dim=1)

    def get_bounding_boxes(self) -> Boxes:
        """Tight XYXY boxes around each mask, in pixel-corner coordinates.

        A mask covering pixel columns j0..j1 gets x0 = j0 and x1 = j1 + 1 (the pixel's right
        edge), so the box's area equals the mask's extent. An empty mask gets a zero box.
        """
        n = len(self)
        boxes = torch.zeros(n, 4, dtype=torch.float32, device=self.device)
        if n == 0:
            return Boxes(boxes)
        cols = self.tensor.any(dim=1)  # (N, W)
        rows = self.tensor.any(dim=2)  # (N, H)
        for i in range(n):
            x = torch.nonzero(cols[i]).flatten()
            y = torch.nonzero(rows[i]).flatten()
            if len(x) and len(y):
                boxes[i] = torch.stack([x[0], y[0], x[-1] + 1, y[-1] + 1]).float()
        return Boxes(boxes)

    def crop_and_resize(self, boxes: torch.Tensor | Boxes, mask_size: int) -> torch.Tensor:
        """Crop each mask to its box and resize the crop to ``mask_size`` x ``mask_size``.

        The crop is sampled with ``torchvision.ops.roi_align`` (aligned, so that box
        coordinates are continuous pixel coordinates with pixel centres at half-integers) and
        thresholded at 0.5, exactly as Detectron2 builds mask-head targets.

        Args:
            boxes: (N, 4) XYXY boxes, one per mask.
            mask_size: side of the output masks.

        Returns:
            (N, mask_size, mask_size) bool tensor on the masks' device.
        """
        from torchvision.ops import roi_align

        if isinstance(boxes, Boxes):
            boxes = boxes.tensor
        if boxes.dim() != 2 or boxes.shape != (len(self), 4):
            raise ValueError(
                f"boxes must have shape ({len(self)}, 4) to match the masks, "
                f"got {tuple(boxes.shape)}"
            )
        if len(self) == 0:
            return torch.zeros(0, mask_size, mask_size, dtype=torch.bool, device=self.device)
        boxes = boxes.to(device=self.device, dtype=torch.float32)
        batch_idx = torch.arange(len(self), device=self.device, dtype=torch.float32)[:, None]
        rois = torch.cat([batch_idx, boxes], dim=1)
        # Each ROI reads only its own mask, so the masks are the "batch" of one-channel images.
        crops = roi_align(
            self.tensor.float()[:, None], rois, (mask_size, mask_size), 1.0, 0, True
        ).squeeze(1)
        return crops >= 0.5

    @staticmethod
    def cat(masks_list: Sequence[BitMasks]) -> BitMasks:
        """Concatenate BitMasks of the same image size."""
        if not masks_list:
            raise ValueError("BitMasks.cat needs at least one BitMasks")
        sizes = {m.image_size for m in masks_list}
        if len(sizes) != 1:
            raise ValueError(f"BitMasks.cat: image sizes differ: {sorted(sizes)}")
        return BitMasks(torch.cat([m.tensor for m in masks_list], dim=0))
