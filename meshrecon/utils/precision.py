"""Which dtype a network computes in: bfloat16 where the hardware has it, float32 elsewhere.

Shared by ``MODEL.BACKBONE.AUTOCAST`` (``meshrecon.modeling.backbone``) and the pretraining
recipes' ``encoder_autocast`` (``meshrecon.pretrain``); it imports nothing of meshrecon, so a
recipe can check its setting without importing the models.
"""

from __future__ import annotations

import torch

__all__ = ["has_native_bfloat16", "resolve_autocast"]

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


def resolve_autocast(
    name: str, device: torch.device | str, key: str = "MODEL.BACKBONE.AUTOCAST"
) -> torch.dtype | None:
    """An autocast setting as a dtype (``None``: float32), or a clear error naming ``key``.

    ``"auto"`` is bfloat16 where ``device`` has it in hardware, float32 elsewhere; ``""`` is
    float32, ``"bfloat16"`` bfloat16. Used by ``MODEL.BACKBONE.AUTOCAST`` and by the pretraining
    recipe's ``encoder_autocast``.
    """
    if name == "auto":
        return torch.bfloat16 if has_native_bfloat16(device) else None
    if name not in _AUTOCAST_DTYPES:
        raise ValueError(
            f"{key}={name!r}: expected one of "
            f"{sorted(_AUTOCAST_DTYPES) + ['auto']} ('' computes in float32)"
        )
    return _AUTOCAST_DTYPES[name]
