"""Feature Pyramid Network over a bottom-up backbone; ``build_resnet_fpn_backbone``.

Names follow Detectron2 (``fpn_lateral2``, ``fpn_output2``, ..., ``bottom_up.*``) so its
and Mesh R-CNN's checkpoints load.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from meshrecon.config import configurable
from meshrecon.layers import Conv2d, ShapeSpec, get_norm, weight_init
from meshrecon.modeling.backbone.backbone import Backbone
from meshrecon.modeling.backbone.build import BACKBONE_REGISTRY
from meshrecon.modeling.backbone.resnet import build_resnet_backbone

__all__ = ["FPN", "LastLevelMaxPool", "build_resnet_fpn_backbone"]


class LastLevelMaxPool(nn.Module):
    """Extra coarsest level (``p6``): ``p5`` subsampled by a stride-2, 1x1 max pool."""

    num_levels = 1
    in_feature = "p5"

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [F.max_pool2d(x, kernel_size=1, stride=2, padding=0)]


class FPN(Backbone):
    """Top-down pathway with lateral connections over ``bottom_up``'s maps.

    Args:
        bottom_up: a ``Backbone`` whose outputs include ``in_features``.
        in_features: bottom-up maps to use, finest first, with strides that double from one
            to the next (e.g. ``res2``..``res5``, strides 4..32).
        out_channels: channels of every output map.
        norm: normalization of the lateral and output convolutions (``""``: none, with bias).
        top_block: optional module adding coarser levels from ``top_block.in_feature`` (a
            bottom-up or an FPN output name); it has ``num_levels`` outputs.
        fuse_type: ``"sum"`` or ``"avg"`` of the lateral and upsampled top-down maps.
        square_pad: if > 0, inputs are padded to this square size (padding constraint).

    Outputs ``p{log2(stride)}`` for each input (``p2``..``p5``) plus the top block's
    (``p6``), each ``(N, out_channels, H / stride, W / stride)``. Input height and width
    must be multiples of ``size_divisibility`` (the coarsest input stride).
    """

    def __init__(
        self,
        bottom_up: Backbone,
        in_features: list[str] | tuple[str, ...],
        out_channels: int,
        norm: Any = "",
        top_block: nn.Module | None = None,
        fuse_type: str = "sum",
        square_pad: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(bottom_up, Backbone):
            raise ValueError(f"bottom_up must be a Backbone, got {type(bottom_up).__name__}")
        if fuse_type not in ("sum", "avg"):
            raise ValueError(f"fuse_type must be 'sum' or 'avg', got {fuse_type!r}")
        if not in_features:
            raise ValueError("in_features must name at least one bottom-up map")
        shapes = bottom_up.output_shape()
        for f in in_features:
            if f not in shapes:
                raise ValueError(
                    f"in_features entry {f!r} is not a bottom-up output; have {list(shapes)}"
                )
        strides = [shapes[f].stride for f in in_features]
        for i, s in enumerate(strides):
            if s != 2 ** round(math.log2(s)) or (i > 0 and s != 2 * strides[i - 1]):
                raise ValueError(f"in_features strides must be powers of 2, doubling: {strides}")

        use_bias = norm == ""
        lateral_convs, output_convs = [], []
        for f, stride in zip(in_features, strides):
            lateral = Conv2d(
                shapes[f].channels,
                out_channels,
                kernel_size=1,
                bias=use_bias,
                norm=get_norm(norm, out_channels),
            )
            output = Conv2d(
                out_channels,
                out_channels,
                kernel_size=3,
                stride=1,
                padding=1,
                bias=use_bias,
                norm=get_norm(norm, out_channels),
            )
            weight_init.c2_xavier_fill(lateral)
            weight_init.c2_xavier_fill(output)
            level = int(math.log2(stride))
            self.add_module(f"fpn_lateral{level}", lateral)
            self.add_module(f"fpn_output{level}", output)
            lateral_convs.append(lateral)
            output_convs.append(output)
        # Top-down order: coarsest first.
        self.lateral_convs = lateral_convs[::-1]
        self.output_convs = output_convs[::-1]
        self.top_block = top_block
        self.in_features = tuple(in_features)
        self.bottom_up = bottom_up
        self._fuse_type = fuse_type
        self._square_pad = square_pad

        self._out_feature_strides = {f"p{int(math.log2(s))}": s for s in strides}
        if top_block is not None:
            last = int(math.log2(strides[-1]))
            for level in range(last + 1, last + 1 + top_block.num_levels):
                self._out_feature_strides[f"p{level}"] = 2**level
        self._out_features = list(self._out_feature_strides)
        self._out_feature_channels = {k: out_channels for k in self._out_features}
        self._size_divisibility = strides[-1]

    @property
    def size_divisibility(self) -> int:
        return self._size_divisibility

    @property
    def padding_constraints(self) -> dict[str, Any]:
        return {"square_size": self._square_pad}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x (N, C, H, W)`` -> ``{"p2": (N, out_channels, H/4, W/4), ...}``."""
        bottom_up_features = self.bottom_up(x)
        top_down = self.lateral_convs[0](bottom_up_features[self.in_features[-1]])
        results = [self.output_convs[0](top_down)]
        for i in range(1, len(self.in_features)):
            lateral = self.lateral_convs[i](bottom_up_features[self.in_features[-1 - i]])
            upsampled = F.interpolate(top_down, scale_factor=2.0, mode="nearest")
            top_down = lateral + upsampled
            if self._fuse_type == "avg":
                top_down = top_down / 2
            results.insert(0, self.output_convs[i](top_down))
        if self.top_block is not None:
            name = self.top_block.in_feature
            if name in bottom_up_features:
                top_input = bottom_up_features[name]
            else:
                top_input = results[self._out_features.index(name)]
            results.extend(self.top_block(top_input))
        if len(results) != len(self._out_features):
            raise RuntimeError(f"FPN made {len(results)} maps for {self._out_features}")
        return dict(zip(self._out_features, results))


def _fpn_from_config(cfg, input_shape: ShapeSpec | None = None) -> dict[str, Any]:
    return {
        "bottom_up": build_resnet_backbone(cfg, input_shape),
        "in_features": list(cfg.MODEL.FPN.IN_FEATURES),
        "out_channels": cfg.MODEL.FPN.OUT_CHANNELS,
        "norm": cfg.MODEL.FPN.NORM,
        "fuse_type": cfg.MODEL.FPN.FUSE_TYPE,
    }


@BACKBONE_REGISTRY.register()
@configurable(from_config=_fpn_from_config)
def build_resnet_fpn_backbone(
    *,
    bottom_up: Backbone,
    in_features: list[str] | tuple[str, ...] = ("res2", "res3", "res4", "res5"),
    out_channels: int = 256,
    norm: Any = "",
    fuse_type: str = "sum",
) -> FPN:
    """ResNet + FPN with a ``p6`` max-pool level (Detectron2's R-FPN detectors' backbone).

    Called as ``build_resnet_fpn_backbone(cfg, input_shape)``: the ResNet from
    ``cfg.MODEL.RESNETS``, the pyramid from ``cfg.MODEL.FPN``.
    """
    return FPN(
        bottom_up=bottom_up,
        in_features=in_features,
        out_channels=out_channels,
        norm=norm,
        top_block=LastLevelMaxPool(),
        fuse_type=fuse_type,
    )
