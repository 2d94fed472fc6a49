"""VGG-16 feature extractor (Pixel2Mesh's image encoder), in torchvision's key layout.

The convolutions live in ``features`` at torchvision's indices (``features.0`` conv1_1, ...,
``features.28`` conv5_3), so ``torchvision://vgg16`` loads into it with
``Checkpointer(model, rename_hook=torchvision_backbone_rename_hook)`` (the classifier is
dropped). ``MODEL.BACKBONE.NAME: vgg16``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from meshrecon.config import configurable
from meshrecon.layers import ShapeSpec
from meshrecon.modeling.backbone.backbone import Backbone
from meshrecon.modeling.backbone.build import BACKBONE_REGISTRY

__all__ = ["VGG16"]

# Convolutions per block and their widths (VGG configuration "D").
_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
# The last convolution of each block; its ReLU output is the named feature.
_FEATURE_NAMES = ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3")


class VGG16(Backbone):
    """VGG-16's 13 convolutions (with ReLUs and 2x2 max pools), returning block outputs.

    Args:
        in_channels: image channels.
        out_features: any of ``conv1_2`` (stride 1, 64 channels), ``conv2_2`` (2, 128),
            ``conv3_3`` (4, 256), ``conv4_3`` (8, 512), ``conv5_3`` (16, 512), each taken
            after its ReLU, before the pool. Default: Pixel2Mesh's conv3_3, conv4_3, conv5_3
            (1280 channels in all). Layers after the last requested one are not built.

    ``forward(x (N, C, H, W))`` -> ``{name: (N, C_name, H / stride, W / stride)}`` (floor).
    """

    @configurable
    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_features: list[str] | tuple[str, ...] = ("conv3_3", "conv4_3", "conv5_3"),
    ) -> None:
        super().__init__()
        out_features = list(out_features)
        if not out_features or any(f not in _FEATURE_NAMES for f in out_features):
            raise ValueError(f"out_features must be a non-empty subset of {_FEATURE_NAMES}")
        num_blocks = max(_FEATURE_NAMES.index(f) for f in out_features) + 1
        layers: list[nn.Module] = []
        self._taps: dict[int, str] = {}
        self._out_feature_channels, self._out_feature_strides = {}, {}
        channels = in_channels
        for b, (num_convs, width) in enumerate(_BLOCKS[:num_blocks]):
            if b > 0:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            for _ in range(num_convs):
                conv = nn.Conv2d(channels, width, kernel_size=3, padding=1)
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(conv.bias)
                layers += [conv, nn.ReLU(inplace=True)]
                channels = width
            name = _FEATURE_NAMES[b]
            self._taps[len(layers) - 1] = name
            self._out_feature_channels[name] = width
            self._out_feature_strides[name] = 2**b
        self.features = nn.Sequential(*layers)
        self._out_features = out_features

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec | None = None) -> dict[str, Any]:
        channels = input_shape.channels if input_shape is not None else len(cfg.MODEL.PIXEL_MEAN)
        return {"in_channels": channels}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() != 4:
            raise ValueError(f"VGG16 takes (N, C, H, W), got {tuple(x.shape)}")
        outputs = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            name = self._taps.get(i)
            if name is not None and name in self._out_features:
                outputs[name] = x
        return outputs


@BACKBONE_REGISTRY.register()
def vgg16(cfg, input_shape: ShapeSpec | None = None) -> VGG16:
    """``MODEL.BACKBONE.NAME: vgg16``: the VGG-16 encoder with Pixel2Mesh's outputs."""
    return VGG16(cfg, input_shape)
