"""``Backbone``: the interface every feature extractor implements."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Any

import torch
from torch import nn

from meshrecon.layers import ShapeSpec
from meshrecon.utils.precision import call_in_dtype

__all__ = ["Backbone"]


class Backbone(nn.Module, metaclass=ABCMeta):
    """An image-to-features network that describes its outputs.

    Subclasses set ``_out_features`` (names, in order), ``_out_feature_channels`` and
    ``_out_feature_strides`` (name -> int) and implement ``forward``.
    """

    _out_features: list[str]
    _out_feature_channels: dict[str, int]
    _out_feature_strides: dict[str, int]
    #: Run ``forward`` under ``torch.autocast`` with this dtype (``None``: in the input's dtype).
    #: Features computed in that dtype come back as float32, so the heads, the losses and the
    #: weights stay float32 (``MODEL.BACKBONE.AUTOCAST``). Autocast leaves float64 inputs alone.
    autocast_dtype: torch.dtype | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.autocast_dtype is None:
            return super().__call__(*args, **kwargs)
        x = args[0] if args else next(iter(kwargs.values()))
        call = super().__call__
        return call_in_dtype(call, self.autocast_dtype, x.device.type, *args, **kwargs)

    @abstractmethod
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Map images ``(N, C, H, W)`` to named feature maps ``name -> (N, C_i, H_i, W_i)``."""

    @property
    def size_divisibility(self) -> int:
        """Input height and width must be multiples of this (0: no constraint).

        Networks that add coarse and fine maps (FPN) need it; images are padded to it.
        """
        return 0

    @property
    def padding_constraints(self) -> dict[str, Any]:
        """Extra padding requirements: ``{"size_divisiblity": int, "square_size": int}``
        (either may be absent; Detectron2's spelling of the first key is kept)."""
        return {}

    def output_shape(self) -> dict[str, ShapeSpec]:
        """``name -> ShapeSpec(channels, stride)`` of each output, in output order."""
        return {
            name: ShapeSpec(
                channels=self._out_feature_channels[name],
                stride=self._out_feature_strides[name],
            )
            for name in self._out_features
        }
