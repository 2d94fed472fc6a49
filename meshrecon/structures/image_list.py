"""``ImageList``: images of different sizes padded into one batch tensor, sizes kept."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["ImageList"]


class ImageList:
    """A padded batch ``tensor: (N, C, Hmax, Wmax)``; ``image_sizes[i]`` is image i's ``(h, w)``.

    ``list(image_list)`` or ``image_list[i]`` gives image ``i`` without its padding.
    """

    def __init__(self, tensor: torch.Tensor, image_sizes: list[tuple[int, int]]):
        self.tensor = tensor
        self.image_sizes = image_sizes

    def __len__(self) -> int:
        return len(self.image_sizes)

    def __getitem__(self, idx: int) -> torch.Tensor:
        h, w = self.image_sizes[idx]
        return self.tensor[idx, ..., :h, :w]

    def to(self, *args, **kwargs) -> ImageList:
        """Return the batch moved/cast by ``Tensor.to``."""
        return ImageList(self.tensor.to(*args, **kwargs), self.image_sizes)

    @property
    def device(self) -> torch.device:
        """The device of the held tensor."""
        return self.tensor.device

    @staticmethod
    def from_tensors(
        tensors: Sequence[torch.Tensor],
        size_divisibility: int = 0,
        pad_value: float = 0.0,
    ) -> ImageList:
        """Pad images ``(..., H_i, W_i)`` (same leading dims) to one batch.

        Args:
            tensors: the images.
            size_divisibility: if > 0, the padded height and width are made multiples of it
                (an FPN needs sizes divisible by its largest stride).
            pad_value: the value of the padding.
        """
        if len(tensors) == 0:
            raise ValueError("ImageList.from_tensors needs at least one tensor")
        for i, t in enumerate(tensors):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"tensors[{i}] is a {type(t).__name__}, not a Tensor")
            if t.shape[:-2] != tensors[0].shape[:-2]:
                raise ValueError(
                    f"tensors[{i}] has leading shape {tuple(t.shape[:-2])}, tensors[0] has "
                    f"{tuple(tensors[0].shape[:-2])}"
                )
        image_sizes = [(int(t.shape[-2]), int(t.shape[-1])) for t in tensors]
        max_h = max(h for h, _ in image_sizes)
        max_w = max(w for _, w in image_sizes)
        if size_divisibility > 1:
            max_h = int(math.ceil(max_h / size_divisibility) * size_divisibility)
            max_w = int(math.ceil(max_w / size_divisibility) * size_divisibility)
        if len(tensors) == 1:
            h, w = image_sizes[0]
            batched = F.pad(tensors[0], (0, max_w - w, 0, max_h - h), value=pad_value)[None]
        else:
            shape = (len(tensors), *tensors[0].shape[:-2], max_h, max_w)
            batched = tensors[0].new_full(shape, pad_value)
            for img, pad in zip(tensors, batched):
                pad[..., : img.shape[-2], : img.shape[-1]].copy_(img)
        return ImageList(batched.contiguous(), image_sizes)
