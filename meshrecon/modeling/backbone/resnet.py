"""Detectron2-compatible ResNet (stem + res2..res5), ``build_resnet_backbone``.

Module names follow Detectron2's (``stem.conv1``, ``res2.0.conv1.norm``, ``res2.0.shortcut``),
so its ``.pkl`` models, Mesh R-CNN's and the converted MSRA ImageNet weights load as they are.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from meshrecon.config import configurable
from meshrecon.layers import Conv2d, FrozenBatchNorm2d, ShapeSpec, get_norm, weight_init
from meshrecon.modeling.backbone.backbone import Backbone
from meshrecon.modeling.backbone.build import BACKBONE_REGISTRY

__all__ = [
    "CNNBlockBase",
    "BasicStem",
    "BasicBlock",
    "BottleneckBlock",
    "ResNet",
    "make_stage",
    "build_resnet_backbone",
]

# Blocks per stage (res2..res5) of each depth.
_NUM_BLOCKS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}
_STAGE_INDEX = {"res2": 2, "res3": 3, "res4": 4, "res5": 5}


class CNNBlockBase(nn.Module):
    """A block with known ``in_channels``, ``out_channels`` and ``stride``, that can freeze."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride

    def freeze(self) -> CNNBlockBase:
        """Stop training this block: no gradients, batch norms become ``FrozenBatchNorm2d``."""
        for p in self.parameters():
            p.requires_grad = False
        FrozenBatchNorm2d.convert_frozen_batchnorm(self)
        return self


def _conv_norm(in_ch: int, out_ch: int, k: int, norm: Any, **kwargs: Any) -> Conv2d:
    # Convolutions followed by a normalization have no bias of their own.
    return Conv2d(in_ch, out_ch, kernel_size=k, bias=False, norm=get_norm(norm, out_ch), **kwargs)


class BasicStem(CNNBlockBase):
    """7x7 stride-2 convolution + norm + ReLU, then 3x3 stride-2 max pooling (stride 4).

    ``(N, in_channels, H, W)`` -> ``(N, out_channels, ceil(H/4), ceil(W/4))``.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 64, norm: Any = "BN") -> None:
        super().__init__(in_channels, out_channels, 4)
        self.conv1 = _conv_norm(in_channels, out_channels, 7, norm, stride=2, padding=3)
        weight_init.c2_msra_fill(self.conv1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu_(self.conv1(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class BasicBlock(CNNBlockBase):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    def __init__(
        self, in_channels: int, out_channels: int, *, stride: int = 1, norm: Any = "BN"
    ) -> None:
        super().__init__(in_channels, out_channels, stride)
        self.shortcut = (
            _conv_norm(in_channels, out_channels, 1, norm, stride=stride)
            if in_channels != out_channels
            else None
        )
        self.conv1 = _conv_norm(in_channels, out_channels, 3, norm, stride=stride, padding=1)
        self.conv2 = _conv_norm(out_channels, out_channels, 3, norm, stride=1, padding=1)
        for layer in (self.conv1, self.conv2, self.shortcut):
            if layer is not None:
                weight_init.c2_msra_fill(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu_(self.conv1(x)))
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return F.relu_(out.add_(shortcut))  # in place: the conv's output is not saved for backward


class BottleneckBlock(CNNBlockBase):
    """1x1 reduce, 3x3 (grouped, dilated), 1x1 expand, with a residual connection.

    Args:
        stride_in_1x1: put the block's stride on the first 1x1 convolution (MSRA / Caffe2
            models, Detectron2's default) instead of on the 3x3 one (torchvision's models).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        bottleneck_channels: int,
        stride: int = 1,
        num_groups: int = 1,
        norm: Any = "BN",
        stride_in_1x1: bool = False,
        dilation: int = 1,
    ) -> None:
        super().__init__(in_channels, out_channels, stride)
        if bottleneck_channels % num_groups != 0:
            raise ValueError(
                f"bottleneck_channels={bottleneck_channels} is not divisible by "
                f"num_groups={num_groups}"
            )
        self.shortcut = (
            _conv_norm(in_channels, out_channels, 1, norm, stride=stride)
            if in_channels != out_channels
            else None
        )
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = _conv_norm(in_channels, bottleneck_channels, 1, norm, stride=stride_1x1)
        self.conv2 = _conv_norm(
            bottleneck_channels,
            bottleneck_channels,
            3,
            norm,
            stride=stride_3x3,
            padding=dilation,
            groups=num_groups,
            dilation=dilation,
        )
        self.conv3 = _conv_norm(bottleneck_channels, out_channels, 1, norm)
        for layer in (self.conv1, self.conv2, self.conv3, self.shortcut):
            if layer is not None:
                weight_init.c2_msra_fill(layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu_(self.conv1(x))
        out = F.relu_(self.conv2(out))
        out = self.conv3(out)
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return F.relu_(out.add_(shortcut))  # in place: the conv's output is not saved for backward


def make_stage(
    block_class: type[CNNBlockBase],
    num_blocks: int,
    *,
    in_channels: int,
    out_channels: int,
    **kwargs: Any,
) -> list[CNNBlockBase]:
    """Build the blocks of one stage.

    A keyword ending in ``_per_block`` is a list of ``num_blocks`` values, the i-th given to
    block i under the name without the suffix (e.g. ``stride_per_block=[2, 1, 1]``); other
    keywords go to every block. Block i > 0 takes ``out_channels`` as its input.
    """
    if num_blocks <= 0:
        raise ValueError(f"num_blocks must be positive, got {num_blocks}")
    blocks = []
    for i in range(num_blocks):
        block_kwargs = {}
        for key, value in kwargs.items():
            if key.endswith("_per_block"):
                if len(value) != num_blocks:
                    raise ValueError(f"{key} has {len(value)} values for {num_blocks} blocks")
                block_kwargs[key[: -len("_per_block")]] = value[i]
            else:
                block_kwargs[key] = value
        blocks.append(
            block_class(in_channels=in_channels, out_channels=out_channels, **block_kwargs)
        )
        in_channels = out_channels
    return blocks


class ResNet(Backbone):
    """A stem and stages ``res2``, ``res3``, ... returning the maps named in ``out_features``.

    Args:
        stem: a ``CNNBlockBase`` (usually ``BasicStem``).
        stages: lists of blocks, one list per stage, named ``res2``, ``res3``, ... in order.
            Stages after the last requested output are dropped (not built, not saved).
        num_classes: if given, adds global average pooling and a ``linear`` classifier.
        out_features: output names among ``stem``, ``res2``.., ``linear``; default: the last.
        freeze_at: freeze the stem (1) and the first ``freeze_at - 1`` stages; 0 freezes
            nothing.

    ``forward(x (N, C, H, W))`` -> ``{name: (N, C_name, H / stride, W / stride)}``.
    """

    def __init__(
        self,
        stem: CNNBlockBase,
        stages: list[list[CNNBlockBase]],
        num_classes: int | None = None,
        out_features: list[str] | tuple[str, ...] | None = None,
        freeze_at: int = 0,
    ) -> None:
        super().__init__()
        self.stem = stem
        self.num_classes = num_classes
        stage_names = [f"res{i + 2}" for i in range(len(stages))]
        known = ["stem", *stage_names] + (["linear"] if num_classes is not None else [])
        if out_features is None:
            out_features = [known[-1]]
        out_features = list(out_features)
        if not out_features:
            raise ValueError("out_features must name at least one output")
        for name in out_features:
            if name not in known:
                raise ValueError(f"out_features entry {name!r} is not one of {known}")
        if "linear" not in out_features:
            # Later stages would compute nothing anyone reads.
            last = max(known.index(name) for name in out_features)
            stages = stages[:last]
            stage_names = stage_names[:last]

        current_stride = stem.stride
        self._out_feature_strides = {"stem": current_stride}
        self._out_feature_channels = {"stem": stem.out_channels}
        self.stage_names = tuple(stage_names)
        self.stages: list[nn.Sequential] = []
        for name, blocks in zip(stage_names, stages):
            if not blocks:
                raise ValueError(f"stage {name} has no blocks")
            stage = nn.Sequential(*blocks)
            self.add_module(name, stage)
            self.stages.append(stage)
            for block in blocks:
                current_stride *= block.stride
            self._out_feature_strides[name] = current_stride
            self._out_feature_channels[name] = blocks[-1].out_channels

        if num_classes is not None:
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.linear = nn.Linear(self._out_feature_channels[stage_names[-1]], num_classes)
            # As in "Accurate, Large Minibatch SGD": small random classifier weights.
            nn.init.normal_(self.linear.weight, std=0.01)
            nn.init.zeros_(self.linear.bias)
        self._out_features = out_features
        self.freeze(freeze_at)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() != 4:
            raise ValueError(f"ResNet takes (N, C, H, W) input, got shape {tuple(x.shape)}")
        outputs = {}
        x = self.stem(x)
        if "stem" in self._out_features:
            outputs["stem"] = x
        for name, stage in zip(self.stage_names, self.stages):
            x = stage(x)
            if name in self._out_features:
                outputs[name] = x
        if self.num_classes is not None:
            x = torch.flatten(self.avgpool(x), 1)
            x = self.linear(x)
            if "linear" in self._out_features:
                outputs["linear"] = x
        return outputs

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {
            name: ShapeSpec(
                channels=self._out_feature_channels[name],
                stride=self._out_feature_strides[name],
            )
            for name in self._out_features
            if name != "linear"
        }

    def freeze(self, freeze_at: int = 0) -> ResNet:
        """Freeze the stem (``freeze_at >= 1``) and stage ``res{k}`` for ``k <= freeze_at``
        (so 2 freezes the stem and res2, Detectron2's default)."""
        if freeze_at < 0:
            raise ValueError(f"freeze_at must be >= 0, got {freeze_at}")
        if freeze_at >= 1:
            self.stem.freeze()
        for idx, stage in enumerate(self.stages, start=2):
            if freeze_at >= idx:
                for block in stage:
                    block.freeze()
        return self

    make_stage = staticmethod(make_stage)


def _resnet_from_config(cfg, input_shape: ShapeSpec | None = None) -> dict[str, Any]:
    r = cfg.MODEL.RESNETS
    if any(r.DEFORM_ON_PER_STAGE):
        raise ValueError(
            "MODEL.RESNETS.DEFORM_ON_PER_STAGE: deformable convolutions are not implemented"
        )
    channels = input_shape.channels if input_shape is not None else len(cfg.MODEL.PIXEL_MEAN)
    return {
        "depth": r.DEPTH,
        "in_channels": channels,
        "out_features": list(r.OUT_FEATURES),
        "norm": r.NORM,
        "num_groups": r.NUM_GROUPS,
        "width_per_group": r.WIDTH_PER_GROUP,
        "stem_out_channels": r.STEM_OUT_CHANNELS,
        "res2_out_channels": r.RES2_OUT_CHANNELS,
        "stride_in_1x1": r.STRIDE_IN_1X1,
        "res5_dilation": r.RES5_DILATION,
        "freeze_at": cfg.MODEL.BACKBONE.FREEZE_AT,
    }


@BACKBONE_REGISTRY.register()
@configurable(from_config=_resnet_from_config)
def build_resnet_backbone(
    *,
    depth: int = 50,
    in_channels: int = 3,
    out_features: list[str] | tuple[str, ...] = ("res4",),
    norm: Any = "FrozenBN",
    num_groups: int = 1,
    width_per_group: int = 64,
    stem_out_channels: int = 64,
    res2_out_channels: int = 256,
    stride_in_1x1: bool = True,
    res5_dilation: int = 1,
    freeze_at: int = 0,
) -> ResNet:
    """Build a Detectron2 ResNet, from ``cfg.MODEL.RESNETS`` or from explicit arguments.

    Called as ``build_resnet_backbone(cfg, input_shape)`` by ``build_backbone``. Arguments
    mirror the config keys (see ``meshrecon/config/defaults.py``).

    Raises:
        ValueError: for an unsupported ``depth``, a ``res5_dilation`` other than 1 or 2, or
            an 18/34-layer net with ``res2_out_channels != 64``, dilation or groups.
    """
    if depth not in _NUM_BLOCKS:
        raise ValueError(f"depth must be one of {sorted(_NUM_BLOCKS)}, got {depth}")
    if res5_dilation not in (1, 2):
        raise ValueError(f"res5_dilation must be 1 or 2, got {res5_dilation}")
    if depth in (18, 34):
        if res2_out_channels != 64:
            raise ValueError(f"res2_out_channels must be 64 for depth {depth}")
        if res5_dilation != 1:
            raise ValueError(f"res5_dilation must be 1 for depth {depth}")
        if num_groups != 1:
            raise ValueError(f"num_groups must be 1 for depth {depth}")
    for name in out_features:
        if name != "stem" and name not in _STAGE_INDEX:
            raise ValueError(f"out_features entry {name!r} is not stem or res2..res5")

    stem = BasicStem(in_channels=in_channels, out_channels=stem_out_channels, norm=norm)
    max_stage = max((_STAGE_INDEX.get(f, 1) for f in out_features), default=1)
    bottleneck_channels = num_groups * width_per_group
    block_in, block_out = stem_out_channels, res2_out_channels
    stages = []
    for stage_index in range(2, max_stage + 1):
        dilation = res5_dilation if stage_index == 5 else 1
        first_stride = 1 if stage_index == 2 or dilation == 2 else 2
        n = _NUM_BLOCKS[depth][stage_index - 2]
        kwargs: dict[str, Any] = {
            "stride_per_block": [first_stride] + [1] * (n - 1),
            "in_channels": block_in,
            "out_channels": block_out,
            "norm": norm,
        }
        if depth in (18, 34):
            block_class: type[CNNBlockBase] = BasicBlock
        else:
            block_class = BottleneckBlock
            kwargs.update(
                bottleneck_channels=bottleneck_channels,
                stride_in_1x1=stride_in_1x1,
                dilation=dilation,
                num_groups=num_groups,
            )
        stages.append(make_stage(block_class, n, **kwargs))
        block_in, block_out = block_out, block_out * 2
        bottleneck_channels *= 2
    return ResNet(stem, stages, out_features=out_features, freeze_at=freeze_at)
