"""Box heads: per-ROI feature extractors before the box predictor (Detectron2's FC head)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from meshrecon.config import configurable
from meshrecon.layers import (
    Conv2d,
    ShapeSpec,
    get_norm,  # only configs with a NORM need it
    weight_init,
)
from meshrecon.modeling.roi_heads.build import ROI_BOX_HEAD_REGISTRY

__all__ = ["FastRCNNConvFCHead", "make_norm"]


def make_norm(norm: str, channels: int) -> nn.Module | None:
    """The normalization layer named by a config (``""``: none), via ``meshrecon.layers``."""
    if not norm:
        return None
    return get_norm(norm, channels)


@ROI_BOX_HEAD_REGISTRY.register()
class FastRCNNConvFCHead(nn.Sequential):
    """``NUM_CONV`` 3x3 convs, then ``NUM_FC`` fully connected layers, each with ReLU.

    Module names (``conv1``..., ``fc1``...) are those of Detectron2's checkpoints.

    Args:
        input_shape: the pooled feature ``(C, H, W)``.
        conv_dims: width of each conv.
        fc_dims: width of each FC layer.
        conv_norm: normalization of the convs (``""``: none, convs then have a bias).
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        conv_dims: Sequence[int],
        fc_dims: Sequence[int],
        conv_norm: str = "",
    ) -> None:
        super().__init__()
        if len(conv_dims) + len(fc_dims) == 0:
            raise ValueError("conv_dims and fc_dims cannot both be empty")
        if input_shape.channels is None or input_shape.height is None:
            raise ValueError(f"input_shape needs channels, height and width, got {input_shape}")
        self._output_size: int | tuple[int, int, int] = (
            input_shape.channels,
            input_shape.height,
            input_shape.width,
        )
        self.conv_norm_relus = []
        for k, dim in enumerate(conv_dims):
            conv = Conv2d(
                self._output_size[0],
                dim,
                kernel_size=3,
                padding=1,
                bias=not conv_norm,
                norm=make_norm(conv_norm, dim),
                activation=nn.ReLU(),
            )
            self.add_module(f"conv{k + 1}", conv)
            self.conv_norm_relus.append(conv)
            self._output_size = (dim, self._output_size[1], self._output_size[2])

        self.fcs = []
        for k, dim in enumerate(fc_dims):
            if k == 0:
                self.add_module("flatten", nn.Flatten())
                in_dim = int(torch.tensor(self._output_size).prod())
            else:
                in_dim = self._output_size
            fc = nn.Linear(in_dim, dim)
            self.add_module(f"fc{k + 1}", fc)
            self.add_module(f"fc_relu{k + 1}", nn.ReLU())
            self.fcs.append(fc)
            self._output_size = dim

        for layer in self.conv_norm_relus:
            weight_init.c2_msra_fill(layer)
        for layer in self.fcs:
            weight_init.c2_xavier_fill(layer)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec) -> dict[str, Any]:
        head = cfg.MODEL.ROI_BOX_HEAD
        return {
            "input_shape": input_shape,
            "conv_dims": [head.CONV_DIM] * head.NUM_CONV,
            "fc_dims": [head.FC_DIM] * head.NUM_FC,
            "conv_norm": head.NORM,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(R, C, H, W)`` pooled features -> ``(R, FC_DIM)`` (or ``(R, C', H, W)`` without
        FC layers)."""
        for layer in self:
            x = layer(x)
        return x

    @property
    def output_shape(self) -> ShapeSpec:
        """The shape of one ROI's output."""
        o = self._output_size
        if isinstance(o, int):
            return ShapeSpec(channels=o)
        return ShapeSpec(channels=o[0], height=o[1], width=o[2])
