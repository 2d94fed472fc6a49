"""Caffe2's weight fills, as Detectron2's models initialize their layers.

fvcore has the same two functions in ``fvcore.nn.weight_init``, but importing anything from
``fvcore.nn`` runs its package ``__init__``, which compiles a focal loss with
``torch.jit.script`` and so prints PyTorch's deprecation warning of TorchScript on every
command. These fills make the same calls in the same order (the same random numbers for a
given seed).
"""

from __future__ import annotations

from torch import nn

__all__ = ["c2_msra_fill", "c2_xavier_fill"]


def c2_xavier_fill(module: nn.Module) -> None:
    """Initialize ``module`` as Caffe2's "XavierFill", in place.

    ``module.weight`` uniform with bound ``sqrt(3 / fan_in)`` (PyTorch's ``kaiming_uniform_``
    with ``a=1``); ``module.bias``, if any, 0.
    """
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)


def c2_msra_fill(module: nn.Module) -> None:
    """Initialize ``module`` as Caffe2's "MSRAFill", in place.

    ``module.weight`` normal with std ``sqrt(2 / fan_out)``; ``module.bias``, if any, 0.
    """
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)
