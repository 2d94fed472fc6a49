"""Which dtype a network computes in: bfloat16 where the hardware has it, float32 elsewhere.

Shared by ``MODEL.BACKBONE.AUTOCAST`` (``meshrecon.modeling.backbone``) and the pretraining
recipes' ``encoder_autocast`` (``meshrecon.pretrain``); it imports nothing of meshrecon, so a
recipe can check its setting without importing the models. :func:`call_in_dtype` is how both
run their encoder in the low dtype and hand float32 to what follows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["call_in_dtype", "has_native_bfloat16", "resolve_autocast"]

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


def _to_float32(value: Any, low: torch.dtype) -> Any:
    """``value`` with every tensor of dtype ``low`` cast to float32, through dicts, lists and
    tuples (other values, and tensors of other dtypes, returned as they are)."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.dtype == low else value
    if isinstance(value, dict):
        return type(value)((k, _to_float32(v, low)) for k, v in value.items())
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_to_float32(v, low) for v in value)
    return value


def call_in_dtype(
    fn: Callable[..., Any], dtype: torch.dtype | None, device_type: str, *args: Any, **kwargs: Any
) -> Any:
    """``fn(*args, **kwargs)`` computed under ``torch.autocast(device_type, dtype)``, its
    outputs that came back in ``dtype`` cast to float32 (tensors, or dicts / lists / tuples of
    them), so that what runs after it (heads, losses) stays float32. ``dtype`` None: a plain
    call. Autocast leaves float64 inputs alone, so their outputs are bit-equal to a plain call.
    """
    if dtype is None:
        return fn(*args, **kwargs)
    with torch.autocast(device_type, dtype=dtype):
        out = fn(*args, **kwargs)
    return _to_float32(out, dtype)
