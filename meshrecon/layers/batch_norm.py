"""Normalization layers.

``FrozenBatchNorm2d`` (Detectron2-compatible), ``LayerNorm`` over channels, ``get_norm``,
which maps a config string (``"FrozenBN"``, ``"GN"``, ...) to one, and ``update_bn_stats``,
which recomputes batch norms' running statistics on training data ("precise BN").
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["FrozenBatchNorm2d", "LayerNorm", "get_norm", "update_bn_stats"]


class FrozenBatchNorm2d(nn.Module):
    """Batch normalization with fixed statistics and affine parameters.

    Computes ``(x - running_mean) / sqrt(running_var + eps) * weight + bias`` per channel.
    All four tensors are buffers (never trained, always saved), initialized to the identity.
    This is what Detectron2 and Mesh R-CNN use in pretrained backbones, whose batch statistics
    would be meaningless with the small per-GPU batches of detection training.

    Loading: Caffe2/MSRA backbones hold only ``weight`` and ``bias`` (the statistics are
    folded into them); for a state_dict without version metadata, missing ``running_mean`` /
    ``running_var`` are filled with the identity (0 and 1). A ``num_batches_tracked`` entry,
    present when the source was a trainable ``BatchNorm2d``, is ignored.

    Args:
        num_features: number of channels ``C``.
        eps: added to the variance.

    Input ``(N, C, H, W)`` (or ``(N, C)``), output of the same shape and dtype.
    """

    # 3: Detectron2's current format (the 4 buffers as above); <2 had no running statistics.
    _version = 3

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        if num_features <= 0:
            raise ValueError(f"num_features must be positive, got {num_features}")
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x`` (N, C, H, W) or (N, C) with the frozen statistics; same shape."""
        # One fused op, differentiable w.r.t. x; the buffers never receive gradients.
        return F.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            training=False,
            eps=self.eps,
        )

    def scale_and_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(scale, shift)`` with ``forward(x) == x * scale + shift`` per channel."""
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        return scale, self.bias - self.running_mean * scale

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        version = local_metadata.get("version", None)
        if version is None or version < 2:
            if prefix + "running_mean" not in state_dict:
                state_dict[prefix + "running_mean"] = torch.zeros_like(self.running_mean)
            if prefix + "running_var" not in state_dict:
                state_dict[prefix + "running_var"] = torch.ones_like(self.running_var)
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def extra_repr(self) -> str:
        """The settings shown in the module's repr: ``num_features`` and ``eps``."""
        return f"num_features={self.num_features}, eps={self.eps}"

    @classmethod
    def convert_frozen_batchnorm(cls, module: nn.Module) -> nn.Module:
        """Replace every ``BatchNorm2d`` / ``SyncBatchNorm`` in ``module`` by a frozen copy.

        Returns:
            A new ``FrozenBatchNorm2d`` if ``module`` itself is a batch norm; otherwise
            ``module``, converted in place.
        """
        if isinstance(module, (nn.BatchNorm2d, nn.SyncBatchNorm)):
            frozen = cls(module.num_features, eps=module.eps)
            if module.affine:
                frozen.weight.data = module.weight.detach().clone()
                frozen.bias.data = module.bias.detach().clone()
            if module.track_running_stats:
                frozen.running_mean.data = module.running_mean.detach().clone()
                frozen.running_var.data = module.running_var.detach().clone()
            else:
                frozen.running_var.data.fill_(1.0)
            return frozen
        for name, child in module.named_children():
            new_child = cls.convert_frozen_batchnorm(child)
            if new_child is not child:
                module.add_module(name, new_child)
        return module


class LayerNorm(nn.Module):
    """Normalization over the channel dimension of ``(N, C, H, W)`` maps, per pixel.

    Args:
        normalized_shape: ``C``.
        eps: added to the variance.
    """

    def __init__(self, normalized_shape: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))
        self.eps = eps
        self.normalized_shape = (normalized_shape,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``x`` (N, C, H, W) over C at every pixel, then scale and shift; same shape."""
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) * torch.rsqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


_NORMS: dict[str, Callable[[int], nn.Module]] = {
    "BN": nn.BatchNorm2d,
    "SyncBN": nn.SyncBatchNorm,
    "nnSyncBN": nn.SyncBatchNorm,
    "FrozenBN": FrozenBatchNorm2d,
    "GN": lambda channels: nn.GroupNorm(32, channels),
    "LN": LayerNorm,
}


def get_norm(norm: str | Callable[[int], nn.Module] | None, out_channels: int) -> nn.Module | None:
    """Build the normalization layer named by a config value.

    Args:
        norm: ``""``/``None`` (no normalization), one of ``"BN"``, ``"SyncBN"``,
            ``"FrozenBN"``, ``"GN"`` (32 groups), ``"LN"``, or a callable ``channels -> module``.
        out_channels: channels of the normalized tensor.

    Returns:
        The module, or ``None``.

    Raises:
        ValueError: if ``norm`` is an unknown name.
    """
    if norm is None or norm == "":
        return None
    if isinstance(norm, str):
        if norm not in _NORMS:
            raise ValueError(f"norm={norm!r} is not one of {sorted(_NORMS)} (or '' for none)")
        norm = _NORMS[norm]
    return norm(out_channels)


def training_batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The batch norms of ``model`` that :func:`update_bn_stats` recomputes.

    Those in training mode that keep running statistics.
    """
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats
    ]


def _running_buffers(
    bn: nn.modules.batchnorm._BatchNorm,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    mean, var, tracked = bn.running_mean, bn.running_var, bn.num_batches_tracked
    if mean is None or var is None or tracked is None:
        raise ValueError(f"{bn} keeps no running statistics")
    return mean, var, tracked


@torch.no_grad()
def update_bn_stats(model: nn.Module, data: Iterable, num_iters: int) -> int:
    """Recompute the running statistics of ``model``'s training-mode batch norms.

    The running mean and variance a batch norm keeps during training are an exponential average
    over batches computed by weights that kept changing; after a large step they can describe
    none of the recent batches, and evaluation (which normalizes with them) then sees features
    that training never produced. This runs ``model`` forward (in training mode, without
    gradients) on ``num_iters`` batches of ``data`` and sets each batch norm's running mean and
    variance to the average of those batches' statistics, all computed by the current weights
    (Detectron2's PreciseBN, after Wu and Johnson, "Rethinking 'Batch' in BatchNorm"). Layers
    in eval mode and frozen batch norms are left as they are; so are the momenta and the
    model's mode.

    Returns:
        The number of batch norms updated (0: nothing to do, ``data`` is not read).

    Raises:
        ValueError: for ``num_iters < 1`` or when ``data`` ends before ``num_iters`` batches.
    """
    if num_iters < 1:
        raise ValueError(f"num_iters must be >= 1, got {num_iters}")
    layers = training_batch_norms(model)
    if not layers:
        return 0
    # (running mean, running var, batch count) of each layer: forward passes update them in place.
    buffers = [_running_buffers(bn) for bn in layers]
    momenta = [bn.momentum for bn in layers]
    saved = [tuple(b.clone() for b in bufs) for bufs in buffers]
    means = [torch.zeros_like(mean) for mean, _, _ in buffers]
    variances = [torch.zeros_like(var) for _, var, _ in buffers]
    count = 0
    try:
        for bn in layers:
            # With momentum 1 a forward pass leaves exactly its batch's statistics behind.
            bn.momentum = 1.0
        for batch in itertools.islice(data, num_iters):
            model(batch)
            count += 1
            for (running_mean, running_var, _), mean, var in zip(buffers, means, variances):
                mean += (running_mean - mean) / count
                var += (running_var - var) / count
        if count < num_iters:
            raise ValueError(
                f"update_bn_stats: the data ended after {count} of {num_iters} batches"
            )
    except BaseException:
        # A failed update leaves the statistics it found.
        for (running_mean, running_var, _), (mean, var, _) in zip(buffers, saved):
            running_mean.copy_(mean)
            running_var.copy_(var)
        raise
    else:
        for (running_mean, running_var, _), mean, var in zip(buffers, means, variances):
            running_mean.copy_(mean)
            running_var.copy_(var)
    finally:
        for bn, momentum, (_, _, tracked), (_, _, tracked0) in zip(layers, momenta, buffers, saved):
            bn.momentum = momentum
            tracked.copy_(tracked0)
    return len(layers)
