"""Anchor generators: reference boxes tiled over each feature map, registered by name."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from meshrecon.config import configurable
from meshrecon.structures import Boxes
from meshrecon.utils.registry import Registry

__all__ = [
    "ANCHOR_GENERATOR_REGISTRY",
    "DefaultAnchorGenerator",
    "build_anchor_generator",
    "generate_cell_anchors",
]

ANCHOR_GENERATOR_REGISTRY = Registry("ANCHOR_GENERATOR")
ANCHOR_GENERATOR_REGISTRY.__doc__ = """
Anchor generators; ``cls(cfg, input_shape: list[ShapeSpec])`` with one ShapeSpec per feature map.
"""


def build_anchor_generator(cfg, input_shape: Sequence[Any]) -> nn.Module:
    """Build ``cfg.MODEL.ANCHOR_GENERATOR.NAME`` for the feature maps ``input_shape``."""
    name = cfg.MODEL.ANCHOR_GENERATOR.NAME
    return ANCHOR_GENERATOR_REGISTRY.get(name, cfg_key="MODEL.ANCHOR_GENERATOR.NAME")(
        cfg, input_shape
    )


def _broadcast_params(params: Any, num_features: int, name: str) -> list[list[float]]:
    """Turn ``params`` (a list, or a list of lists) into one list per feature map."""
    if not isinstance(params, Sequence) or isinstance(params, str) or len(params) == 0:
        raise ValueError(f"{name} must be a non-empty list or list of lists, got {params!r}")
    if not isinstance(params[0], Sequence):
        return [list(params)] * num_features
    if len(params) == 1:
        return [list(params[0])] * num_features
    if len(params) != num_features:
        raise ValueError(
            f"{name} has {len(params)} lists but there are {num_features} feature maps; give one "
            "list per feature map or a single list for all"
        )
    return [list(p) for p in params]


def generate_cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> torch.Tensor:
    """Return the anchors of one cell, ``(len(sizes) * len(aspect_ratios), 4)``, centred at 0.

    Each anchor has area ``size**2`` and height / width ``aspect_ratio``; sizes vary slowest.
    The tensor has torch's default dtype (float32), as Detectron2 builds it: a model cast to
    float64 later keeps the float32-rounded cell sizes, which the recorded outputs depend on.
    """
    anchors = []
    for size in sizes:
        area = float(size) ** 2
        for ratio in aspect_ratios:
            w = math.sqrt(area / ratio)
            h = ratio * w
            anchors.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
    return torch.tensor(anchors)


class _BufferList(nn.Module):
    """Tensors that follow ``.to()`` / ``.double()`` but are not saved in the state_dict."""

    def __init__(self, buffers: Sequence[torch.Tensor]) -> None:
        super().__init__()
        for i, b in enumerate(buffers):
            self.register_buffer(str(i), b, persistent=False)

    def __len__(self) -> int:
        return len(self._buffers)

    def __iter__(self):
        return iter(self._buffers.values())


@ANCHOR_GENERATOR_REGISTRY.register()
class DefaultAnchorGenerator(nn.Module):
    """Axis-aligned anchors of several sizes and aspect ratios at every feature-map cell.

    Args:
        sizes: per feature map, the anchor sizes (sqrt of the area) in input pixels; a single
            list is used for every map.
        aspect_ratios: per feature map, the height / width ratios; a single list for all maps.
        strides: the stride of each feature map.
        offset: where in a cell the anchor centres sit, in [0, 1) (0: its top-left corner).
    """

    box_dim: int = 4

    @configurable
    def __init__(
        self,
        *,
        sizes: Sequence[Sequence[float]] | Sequence[float],
        aspect_ratios: Sequence[Sequence[float]] | Sequence[float],
        strides: Sequence[int],
        offset: float = 0.0,
    ) -> None:
        super().__init__()
        if len(strides) == 0:
            raise ValueError("strides must name at least one feature map")
        if not 0.0 <= offset < 1.0:
            raise ValueError(f"offset must be in [0, 1), got {offset}")
        self.strides = [int(s) for s in strides]
        self.num_features = len(self.strides)
        sizes = _broadcast_params(sizes, self.num_features, "sizes")
        aspect_ratios = _broadcast_params(aspect_ratios, self.num_features, "aspect_ratios")
        self.cell_anchors = _BufferList(
            [generate_cell_anchors(s, a) for s, a in zip(sizes, aspect_ratios)]
        )
        self.offset = float(offset)

    @classmethod
    def from_config(cls, cfg, input_shape: Sequence[Any]) -> dict[str, Any]:
        return {
            "sizes": cfg.MODEL.ANCHOR_GENERATOR.SIZES,
            "aspect_ratios": cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS,
            "strides": [s.stride for s in input_shape],
            "offset": cfg.MODEL.ANCHOR_GENERATOR.OFFSET,
        }

    @property
    def num_cell_anchors(self) -> list[int]:
        """Alias of ``num_anchors`` (Detectron2's older name)."""
        return self.num_anchors

    @property
    def num_anchors(self) -> list[int]:
        """Anchors per cell, per feature map (3 for 1 size x 3 ratios)."""
        return [len(a) for a in self.cell_anchors]

    def _grid_anchors(self, grid_sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
        out = []
        for (h, w), stride, base in zip(grid_sizes, self.strides, self.cell_anchors):
            # Cell positions are integer multiples of the stride (plus offset * stride):
            # exact in any float dtype.
            shift_x = (torch.arange(w, dtype=base.dtype, device=base.device) + self.offset) * stride
            shift_y = (torch.arange(h, dtype=base.dtype, device=base.device) + self.offset) * stride
            sy, sx = torch.meshgrid(shift_y, shift_x, indexing="ij")
            sx, sy = sx.reshape(-1), sy.reshape(-1)
            shifts = torch.stack((sx, sy, sx, sy), dim=1)
            # Cell-major order: all anchors of cell 0, then cell 1, ... (row-major cells).
            out.append((shifts[:, None, :] + base[None, :, :]).reshape(-1, 4))
        return out

    def forward(self, features: Sequence[torch.Tensor]) -> list[Boxes]:
        """Return, per feature map ``(N, C, H_l, W_l)``, the ``(H_l * W_l * A_l, 4)`` anchors.

        Anchors are the same for every image of the batch, so one ``Boxes`` per level.
        """
        if len(features) != self.num_features:
            raise ValueError(
                f"features has {len(features)} maps, but the generator was built for "
                f"{self.num_features} (strides {self.strides})"
            )
        grid_sizes = [tuple(f.shape[-2:]) for f in features]
        return [Boxes(a) for a in self._grid_anchors(grid_sizes)]
