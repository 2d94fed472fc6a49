"""Thin wrappers over torch layers and ops, as Detectron2 names them.

``Conv2d`` carries an optional normalization and activation, which is what makes the
state_dict names of Detectron2's models (``conv1.weight``, ``conv1.norm.running_mean``) come
out right; the helpers keep the idioms of the detection code short.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from meshrecon.layers.batch_norm import FrozenBatchNorm2d

__all__ = ["Conv2d", "ConvTranspose2d", "cat", "nonzero_tuple", "shapes_to_tensor"]


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` followed by an optional ``norm`` module and ``activation`` callable.

    Takes every argument of ``nn.Conv2d`` plus:

    Args:
        norm: a module applied to the convolution's output (registered as the child ``norm``,
            so its tensors are saved as ``<conv>.norm.*``), or ``None``.
        activation: a callable applied last (e.g. ``torch.nn.functional.relu``), or ``None``.

    A :class:`~meshrecon.layers.FrozenBatchNorm2d` norm is folded into the convolution (its
    per-channel scale multiplies the kernel, its shift becomes the bias): one pass over the
    output instead of two, the same result up to rounding, and the same gradients.

    Input ``(N, C_in, H, W)``; output ``(N, C_out, H', W')``.
    """

    def __init__(
        self,
        *args,
        norm: nn.Module | None = None,
        activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve ``x`` (N, C_in, H, W), then normalize and activate: (N, C_out, H', W')."""
        if isinstance(self.norm, FrozenBatchNorm2d):
            scale, shift = self.norm.scale_and_shift()
            weight = self.weight * scale.to(self.weight.dtype).reshape(-1, 1, 1, 1)
            bias = shift if self.bias is None else self.bias * scale + shift
            x = self._conv_forward(x, weight, bias.to(weight.dtype))
        else:
            x = self._conv_forward(x, self.weight, self.bias)
            if self.norm is not None:
                x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


# torch's own transposed convolution handles empty batches; the alias keeps Detectron2's name.
ConvTranspose2d = nn.ConvTranspose2d


def cat(tensors: Sequence[torch.Tensor], dim: int = 0) -> torch.Tensor:
    """``torch.cat`` that returns a lone tensor as it is (no copy).

    Raises:
        ValueError: if ``tensors`` is not a non-empty list or tuple.
    """
    if not isinstance(tensors, (list, tuple)) or len(tensors) == 0:
        raise ValueError(f"tensors must be a non-empty list or tuple, got {type(tensors)}")
    if len(tensors) == 1:
        return tensors[0]
    return torch.cat(tensors, dim)


def nonzero_tuple(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Indices of the non-zero elements of ``x``, one ``(K,)`` tensor per dimension.

    Same as ``x.nonzero(as_tuple=True)``, but a 0-d ``x`` is treated as a 1-element vector so
    the result is always indexable and scriptable.
    """
    if x.dim() == 0:
        return x.unsqueeze(0).nonzero().unbind(1)
    return x.nonzero().unbind(1)


def shapes_to_tensor(x: Sequence[int | torch.Tensor], device: torch.device | None = None):
    """Turn a list of sizes into a 1-d int64 tensor on ``device``.

    Args:
        x: Python ints or 0-d tensors (shapes are tensors while tracing).
        device: where the result lives.

    Returns:
        (len(x),) int64 tensor.
    """
    if all(isinstance(t, torch.Tensor) for t in x) and len(x) > 0:
        return torch.stack([t.to(device=device, dtype=torch.int64) for t in x])
    return torch.as_tensor([int(t) for t in x], dtype=torch.int64, device=device)
