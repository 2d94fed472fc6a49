"""``META_ARCH_REGISTRY`` and ``build_model``: the one entry point from a config to a model."""

from __future__ import annotations

import logging

import torch
from torch import nn

from meshrecon.utils.registry import Registry

__all__ = ["META_ARCH_REGISTRY", "build_model", "resolve_device"]

META_ARCH_REGISTRY = Registry("META_ARCH")
META_ARCH_REGISTRY.__doc__ = """
Whole models (meta-architectures): GeneralizedRCNN, SingleViewReconstructor, ...
A registered class is called as ``cls(cfg)`` and must return an ``nn.Module``.
"""

logger = logging.getLogger(__name__)


def resolve_device(device: str | torch.device, cfg_key: str = "MODEL.DEVICE") -> torch.device:
    """Return ``torch.device(device)`` after checking that this machine has it.

    Asking for CUDA where there is none is an error rather than a silent fallback to the CPU:
    a run configured for a GPU that quietly trains on a CPU wastes hours before anyone notices.
    Set ``MODEL.DEVICE cpu`` to run on the CPU.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"{cfg_key}={device!r} is not a valid torch device: {e}") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"{cfg_key}={device!r} asks for CUDA, but CUDA is not available on this machine; "
                f"set {cfg_key} cpu to run on the CPU."
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise RuntimeError(f"{cfg_key}={device!r}, but this machine has {count} CUDA devices")
    return dev


def build_model(cfg) -> nn.Module:
    """Build ``cfg.MODEL.META_ARCHITECTURE`` from ``cfg`` and move it to ``cfg.MODEL.DEVICE``.

    Weights are not loaded: use ``meshrecon.checkpoint.Checkpointer(model).load(...)``.
    """
    name = cfg.MODEL.META_ARCHITECTURE
    device = resolve_device(cfg.MODEL.DEVICE)
    model = META_ARCH_REGISTRY.get(name, cfg_key="MODEL.META_ARCHITECTURE")(cfg)
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"MODEL.META_ARCHITECTURE={name!r} built a {type(model).__name__}, not an nn.Module"
        )
    model.to(device)
    logger.info("Built model %s on %s", name, device)
    return model
