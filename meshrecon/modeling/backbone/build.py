"""``BACKBONE_REGISTRY`` and ``build_backbone``."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from meshrecon.layers import ShapeSpec
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


_AUTOCAST_DTYPES = {"": None, "bfloat16": torch.bfloat16}


def has_native_bfloat16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bfloat16 matrix products in hardware.

    CPUs: AVX512-BF16 or AMX (where bfloat16 convolutions are ~1.5x faster than float32; on
    other CPUs oneDNN emulates them, slower than float32). CUDA: compute capability 8.0+.
    """
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch before the including_emulation argument
            return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)
    return False


def autocast_dtype(cfg) -> torch.dtype | None:
    """``cfg.MODEL.BACKBONE.AUTOCAST`` as a dtype (``None``: float32), or a clear error.

    ``"auto"`` is bfloat16 where ``cfg.MODEL.DEVICE`` has it in hardware, float32 elsewhere.
    """
    name = cfg.MODEL.BACKBONE.AUTOCAST
    if name == "auto":
        return torch.bfloat16 if has_native_bfloat16(cfg.MODEL.DEVICE) else None
    if name not in _AUTOCAST_DTYPES:
        raise ValueError(
            f"MODEL.BACKBONE.AUTOCAST={name!r}: expected one of "
            f"{sorted(_AUTOCAST_DTYPES) + ['auto']} ('' computes the backbone in float32)"
        )
    return _AUTOCAST_DTYPES[name]
