"""``BACKBONE_REGISTRY`` and ``build_backbone``."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from meshrecon.layers import ShapeSpec
from meshrecon.utils.precision import resolve_autocast
from meshrecon.utils.registry import Registry

__all__ = ["BACKBONE_REGISTRY", "build_backbone"]

BACKBONE_REGISTRY = Registry("BACKBONE")
BACKBONE_REGISTRY.__doc__ = """
Backbone builders (ResNet, FPN, VGG-16, ...). A registered function or class is called as
``f(cfg, input_shape)`` with ``input_shape`` a ``meshrecon.layers.ShapeSpec`` of the image, and
returns an ``nn.Module`` mapping an image batch to a dict of named feature maps.
"""


def build_backbone(cfg, input_shape: Any = None) -> nn.Module:
    """Build ``cfg.MODEL.BACKBONE.NAME``; the input defaults to ``len(PIXEL_MEAN)`` channels."""
    if input_shape is None:
        input_shape = ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN))
    builder = BACKBONE_REGISTRY.get(cfg.MODEL.BACKBONE.NAME, cfg_key="MODEL.BACKBONE.NAME")
    backbone = builder(cfg, input_shape)
    if not isinstance(backbone, nn.Module):
        raise TypeError(
            f"MODEL.BACKBONE.NAME={cfg.MODEL.BACKBONE.NAME!r} built a "
            f"{type(backbone).__name__}, not an nn.Module"
        )
    backbone.autocast_dtype = autocast_dtype(cfg)
    if cfg.MODEL.BACKBONE.AUTOCAST:
        logging.getLogger(__name__).info(
            "MODEL.BACKBONE.AUTOCAST=%r: the backbone computes in %s on %s",
            cfg.MODEL.BACKBONE.AUTOCAST,
            "bfloat16" if backbone.autocast_dtype is not None else "float32",
            cfg.MODEL.DEVICE,
        )
    return backbone


def autocast_dtype(cfg) -> torch.dtype | None:
    """``cfg.MODEL.BACKBONE.AUTOCAST`` on ``cfg.MODEL.DEVICE`` as a dtype (``None``: float32)."""
    return resolve_autocast(cfg.MODEL.BACKBONE.AUTOCAST, cfg.MODEL.DEVICE)
