"""``Boxes``: N axis-aligned boxes as an (N, 4) XYXY tensor (Detectron2's semantics)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

__all__ = ["Boxes", "pairwise_iou", "pairwise_intersection"]


class Boxes:
    """A list of boxes ``(x0, y0, x1, y1)`` in pixels, stored as ``tensor: (N, 4)``.

    Indexing with an int, a slice, a bool mask or an index tensor returns ``Boxes`` (an int
    gives one box, still ``(1, 4)``). Methods never copy unless they have to.
    """

    def __init__(self, tensor: torch.Tensor | Sequence):
        if not isinstance(tensor, torch.Tensor):
            tensor = torch.as_tensor(tensor, dtype=torch.float32)
        if tensor.numel() == 0:
            # Empty input of any shape (e.g. torch.zeros(0)) becomes (0, 4).
            tensor = tensor.reshape((-1, 4)).to(dtype=torch.float32)
        if tensor.dim() != 2 or tensor.size(-1) != 4:
            raise ValueError(f"Boxes need a tensor of shape (N, 4), got {tuple(tensor.shape)}")
        self.tensor = tensor

    def clone(self) -> Boxes:
        """Return a copy with its own storage."""
        return Boxes(self.tensor.clone())

    def to(self, device: torch.device | str) -> Boxes:
        """Return the boxes on ``device``."""
        return Boxes(self.tensor.to(device=device))

    @property
    def device(self) -> torch.device:
        """The device of the held tensor."""
        return self.tensor.device

    def area(self) -> torch.Tensor:
        """Return the area of each box, ``(N,)``."""
        b = self.tensor
        return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])

    def clip(self, box_size: tuple[int, int]) -> None:
        """Clip the boxes in place to an image of ``box_size = (height, width)``."""
        if not torch.isfinite(self.tensor).all():
            raise ValueError("Box tensor contains infinite or NaN values")
        h, w = box_size
        x0 = self.tensor[:, 0].clamp(min=0, max=w)
        y0 = self.tensor[:, 1].clamp(min=0, max=h)
        x1 = self.tensor[:, 2].clamp(min=0, max=w)
        y1 = self.tensor[:, 3].clamp(min=0, max=h)
        self.tensor = torch.stack((x0, y0, x1, y1), dim=-1)

    def nonempty(self, threshold: float = 0.0) -> torch.Tensor:
        """Return a bool mask ``(N,)`` of boxes wider and taller than ``threshold``."""
        b = self.tensor
        return ((b[:, 2] - b[:, 0]) > threshold) & ((b[:, 3] - b[:, 1]) > threshold)

    def inside_box(self, box_size: tuple[int, int], boundary_threshold: int = 0) -> torch.Tensor:
        """Return a bool mask of boxes inside ``(height, width)``, up to ``boundary_threshold``."""
        h, w = box_size
        t = boundary_threshold
        b = self.tensor
        return (b[:, 0] >= -t) & (b[:, 1] >= -t) & (b[:, 2] < w + t) & (b[:, 3] < h + t)

    def get_centers(self) -> torch.Tensor:
        """Return the box centers, ``(N, 2)`` as (x, y)."""
        return (self.tensor[:, :2] + self.tensor[:, 2:]) / 2

    def scale(self, scale_x: float, scale_y: float) -> None:
        """Scale the coordinates in place (x by ``scale_x``, y by ``scale_y``)."""
        self.tensor[:, 0::2] *= scale_x
        self.tensor[:, 1::2] *= scale_y

    def __getitem__(self, item) -> Boxes:
        if isinstance(item, int):
            return Boxes(self.tensor[item].view(1, -1))
        b = self.tensor[item]
        if b.dim() != 2:
            raise IndexError(f"Indexing Boxes with {item!r} did not give an (N, 4) tensor")
        return Boxes(b)

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __iter__(self) -> Iterator[torch.Tensor]:
        yield from self.tensor

    def __repr__(self) -> str:
        return f"Boxes({self.tensor})"

    @classmethod
    def cat(cls, boxes_list: Sequence[Boxes]) -> Boxes:
        """Concatenate a list of ``Boxes`` (an empty list gives zero boxes)."""
        if not isinstance(boxes_list, (list, tuple)):
            raise TypeError("Boxes.cat takes a list or tuple of Boxes")
        if len(boxes_list) == 0:
            return cls(torch.empty(0, 4))
        if not all(isinstance(b, Boxes) for b in boxes_list):
            raise TypeError("Boxes.cat: every element must be Boxes")
        return cls(torch.cat([b.tensor for b in boxes_list], dim=0))


def pairwise_intersection(boxes1: Boxes, boxes2: Boxes) -> torch.Tensor:
    """Return the intersection area of every pair, ``(N, M)``."""
    a, b = boxes1.tensor, boxes2.tensor
    wh = torch.min(a[:, None, 2:], b[None, :, 2:]) - torch.max(a[:, None, :2], b[None, :, :2])
    return wh.clamp(min=0).prod(dim=2)


def pairwise_iou(boxes1: Boxes, boxes2: Boxes) -> torch.Tensor:
    """Return the IoU of every pair of boxes, ``(N, M)``; 0 where both boxes are empty."""
    inter = pairwise_intersection(boxes1, boxes2)
    union = boxes1.area()[:, None] + boxes2.area()[None, :] - inter
    return torch.where(
        inter > 0, inter / union, torch.zeros(1, dtype=inter.dtype, device=inter.device)
    )
