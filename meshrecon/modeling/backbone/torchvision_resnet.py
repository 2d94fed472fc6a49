"""torchvision-layout ResNets, as Mesh R-CNN's ShapeNet models use them.

Mesh R-CNN's ShapeNet models wrap a torchvision ResNet as ``stem`` (conv1, bn1, relu, maxpool)
and ``stage1``..``stage4`` (layer1..layer4), with trainable ``BatchNorm2d``; this module builds
exactly those names, so ``backbone.stem.0.weight``, ``backbone.stage1.0.bn1.running_mean``, ...
of their checkpoints load. ImageNet weights (``torchvision://resnet50``) load through
``Checkpointer(model, rename_hook=torchvision_backbone_rename_hook)``.

Config: ``MODEL.BACKBONE.NAME`` ``resnet18`` / ``resnet34`` / ``resnet50`` / ``resnet101``.
Mesh R-CNN's own ShapeNet YAMLs say ``MODEL.BACKBONE: resnet50`` (a string where Detectron2
has a section); ``translate_meshrcnn_backbone_key`` rewrites that to this form.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

import torch
import torchvision
from torch import nn

from meshrecon.config import configurable
from meshrecon.layers import FrozenBatchNorm2d, ShapeSpec
from meshrecon.modeling.backbone.backbone import Backbone
from meshrecon.modeling.backbone.build import BACKBONE_REGISTRY

__all__ = [
    "TorchvisionResNet",
    "torchvision_backbone_rename_hook",
    "translate_meshrcnn_backbone_key",
]

_STAGE_NAMES = ("res2", "res3", "res4", "res5")
_DEPTHS = (18, 34, 50, 101)


class TorchvisionResNet(Backbone):
    """A torchvision ResNet without its classifier, returning the outputs of its 4 stages.

    Args:
        depth: 18, 34, 50 or 101.
        in_channels: image channels (3 for the ImageNet weights).
        out_features: any of ``res2``..``res5`` (outputs of ``stage1``..``stage4``, strides
            4..32; 64/128/256/512 channels for depth 18/34, 4x that otherwise). Stages after
            the last requested one are not built.
        freeze_at: 0 trains everything (Mesh R-CNN); 1 freezes the stem, ``k`` the stem and
            the first ``k - 1`` stages. Frozen batch norms become ``FrozenBatchNorm2d`` (which
            saves no ``num_batches_tracked``).

    ``forward(x (N, C, H, W))`` -> ``{name: (N, C_name, ceil(H / stride), ceil(W / stride))}``.
    """

    @configurable
    def __init__(
        self,
        *,
        depth: int = 50,
        in_channels: int = 3,
        out_features: list[str] | tuple[str, ...] = _STAGE_NAMES,
        freeze_at: int = 0,
    ) -> None:
        super().__init__()
        if depth not in _DEPTHS:
            raise ValueError(f"depth must be one of {_DEPTHS}, got {depth}")
        out_features = list(out_features)
        if not out_features or any(f not in _STAGE_NAMES for f in out_features):
            raise ValueError(f"out_features must be a non-empty subset of {_STAGE_NAMES}")
        if freeze_at < 0:
            raise ValueError(f"freeze_at must be >= 0, got {freeze_at}")
        net = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        if in_channels != 3:
            old = net.conv1
            net.conv1 = nn.Conv2d(in_channels, old.out_channels, 7, 2, 3, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        num_stages = max(_STAGE_NAMES.index(f) for f in out_features) + 1
        self.stages: list[nn.Module] = []
        self._out_feature_channels, self._out_feature_strides = {}, {}
        for i in range(num_stages):
            layer = getattr(net, f"layer{i + 1}")
            self.add_module(f"stage{i + 1}", layer)
            self.stages.append(layer)
            last_block = layer[-1]
            last_norm = last_block.bn3 if hasattr(last_block, "bn3") else last_block.bn2
            self._out_feature_channels[_STAGE_NAMES[i]] = last_norm.num_features
            self._out_feature_strides[_STAGE_NAMES[i]] = 4 * 2**i
        self._out_features = out_features
        self.freeze(freeze_at)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec | None = None) -> dict[str, Any]:
        name = cfg.MODEL.BACKBONE.NAME
        match = re.fullmatch(r"resnet(\d+)", name)
        if match is None:
            raise ValueError(f"MODEL.BACKBONE.NAME={name!r} is not resnet18/34/50/101")
        channels = input_shape.channels if input_shape is not None else len(cfg.MODEL.PIXEL_MEAN)
        return {
            "depth": int(match.group(1)),
            "in_channels": channels,
            "freeze_at": cfg.MODEL.BACKBONE.FREEZE_AT,
        }

    def freeze(self, freeze_at: int = 0) -> TorchvisionResNet:
        """Freeze the stem (``freeze_at >= 1``) and ``stage{k}`` for ``k < freeze_at``."""
        modules = [self.stem, *self.stages][:freeze_at]
        for module in modules:
            for p in module.parameters():
                p.requires_grad = False
            FrozenBatchNorm2d.convert_frozen_batchnorm(module)
        return self

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() != 4:
            raise ValueError(f"TorchvisionResNet takes (N, C, H, W), got {tuple(x.shape)}")
        outputs = {}
        x = self.stem(x)
        for name, stage in zip(_STAGE_NAMES, self.stages):
            x = stage(x)
            if name in self._out_features:
                outputs[name] = x
        return outputs


def _register(depth: int) -> None:
    def build(cfg, input_shape: ShapeSpec | None = None) -> TorchvisionResNet:
        return TorchvisionResNet(cfg, input_shape)

    build.__name__ = build.__qualname__ = f"resnet{depth}"
    build.__doc__ = f"``MODEL.BACKBONE.NAME: resnet{depth}``: a torchvision-layout ResNet-{depth}."
    BACKBONE_REGISTRY.register(build)


for _depth in _DEPTHS:
    _register(_depth)


_TORCHVISION_RENAMES = [
    (re.compile(r"^conv1\."), "stem.0."),
    (re.compile(r"^bn1\."), "stem.1."),
    (re.compile(r"^layer([1-4])\."), r"stage\1."),
]
# Classifier heads of torchvision's ResNets and VGGs: nothing in a backbone takes them.
_TORCHVISION_DROPPED = re.compile(r"^(fc|classifier)\.")


def torchvision_backbone_rename_hook(
    state_dict: Mapping[str, Any], source: str = "state_dict"
) -> dict[str, Any]:
    """Rename a torchvision ResNet/VGG state_dict to meshrecon's backbone names.

    ``conv1.*`` / ``bn1.*`` -> ``stem.0.*`` / ``stem.1.*``, ``layerK.*`` -> ``stageK.*``;
    ``fc.*`` and ``classifier.*`` are dropped; VGG's ``features.*`` stay as they are. Only
    plain ``state_dict`` files (torchvision's) are renamed, anything else passes through.
    Give it to ``Checkpointer(model, rename_hook=...)``, which then matches the names by
    suffix (``stem.0.weight`` -> ``backbone.stem.0.weight``).
    """
    if source != "state_dict":
        return dict(state_dict)
    renamed = {}
    for key, value in state_dict.items():
        if _TORCHVISION_DROPPED.match(key):
            continue
        for pattern, repl in _TORCHVISION_RENAMES:
            key = pattern.sub(repl, key)
        renamed[key] = value
    return renamed


def translate_meshrcnn_backbone_key(cfg_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Rewrite Mesh R-CNN's ShapeNet ``MODEL.BACKBONE: <name>`` into meshrecon's section.

    ``{"MODEL": {"BACKBONE": "resnet50"}}`` becomes
    ``{"MODEL": {"BACKBONE": {"NAME": "resnet50", "FREEZE_AT": 0}}}`` (Mesh R-CNN trains the
    whole ResNet). A dict whose ``MODEL.BACKBONE`` is already a section is returned unchanged.
    The input is not modified.
    """
    out = copy.deepcopy(dict(cfg_dict))
    model = out.get("MODEL")
    if isinstance(model, dict) and isinstance(model.get("BACKBONE"), str):
        model["BACKBONE"] = {"NAME": model["BACKBONE"], "FREEZE_AT": 0}
    return out
