"""Load ImageNet-style encoder weights into the ResNet inside any meshrecon model.

``MODEL.BACKBONE.PRETRAINED`` names a file of torchvision-layout ResNet weights (``conv1``,
``bn1``, ``layerK.i.convJ``, ``layerK.i.bnJ``, ``layerK.i.downsample.{0,1}``): torchvision's
own (``torchvision://resnet18``, a plain state_dict) or meshrecon's synthetic pretraining
(``synthetic://resnet18_pretrained.pth``, ``{"model": ..., "pixel_mean", "pixel_std",
"input_format"}``). :func:`load_pretrained_backbone` finds the model's ResNet, whichever layout
it has (a :class:`TorchvisionResNet`, or the Detectron2-layout :class:`ResNet`, e.g. an FPN's
``bottom_up``), renames the weights to it, and adapts the first convolution to the model's
input convention: the weights were trained on RGB normalized with one mean and std, while a
Detectron2-style config may feed BGR with std 1. Reordering and rescaling the first
convolution's input channels makes the network compute what it computed in pretraining.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from meshrecon.checkpoint import Checkpointer
from meshrecon.modeling.backbone.resnet import ResNet
from meshrecon.modeling.backbone.torchvision_resnet import TorchvisionResNet

__all__ = [
    "adapt_first_conv",
    "find_image_encoder",
    "load_pretrained_backbone",
    "torchvision_to_detectron2_names",
]

logger = logging.getLogger(__name__)

# torchvision's weights expect RGB in 0..255 normalized with ImageNet's statistics.
_TORCHVISION_MEAN = (123.675, 116.28, 103.53)
_TORCHVISION_STD = (58.395, 57.12, 57.375)


def find_image_encoder(model: nn.Module) -> tuple[str, nn.Module]:
    """Return ``(name, module)`` of the model's only ResNet image encoder.

    Raises:
        ValueError: the model has no ResNet encoder (e.g. R2N2's own encoder, Eigen's coarse
            network: use ``MODEL.DEPTH.PRETRAINED`` there) or several.
    """
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, (TorchvisionResNet, ResNet))]
    if len(found) != 1:
        what = "no" if not found else f"{len(found)} ({', '.join(n for n, _ in found)})"
        raise ValueError(
            f"MODEL.BACKBONE.PRETRAINED needs a model with one ResNet image encoder; "
            f"{type(model).__name__} has {what}"
        )
    return found[0]


_LAYER = re.compile(r"^layer([1-4])\.(\d+)\.(.*)$")


def torchvision_to_detectron2_names(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Rename torchvision ResNet weights to the Detectron2-layout :class:`ResNet`'s names.

    ``conv1`` / ``bn1`` -> ``stem.conv1`` / ``stem.conv1.norm``; ``layerK.i.convJ`` /
    ``bnJ`` -> ``res{K+1}.i.convJ`` / ``.convJ.norm``; ``downsample.0`` / ``.1`` ->
    ``shortcut`` / ``shortcut.norm``; ``fc`` is dropped.
    """
    out = {}
    for key, value in state_dict.items():
        if key.startswith("fc."):
            continue
        if key.startswith("conv1."):
            key = "stem.conv1." + key[len("conv1.") :]
        elif key.startswith("bn1."):
            key = "stem.conv1.norm." + key[len("bn1.") :]
        else:
            match = _LAYER.match(key)
            if match is not None:
                stage, block, rest = match.groups()
                rest = re.sub(r"^bn(\d)\.", r"conv\1.norm.", rest)
                rest = re.sub(r"^downsample\.0\.", "shortcut.", rest)
                rest = re.sub(r"^downsample\.1\.", "shortcut.norm.", rest)
                key = f"res{int(stage) + 1}.{block}.{rest}"
        out[key] = value
    return out


def _torchvision_to_meshrecon_names(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in state_dict.items():
        if key.startswith("fc."):
            continue
        key = re.sub(r"^conv1\.", "stem.0.", key)
        key = re.sub(r"^bn1\.", "stem.1.", key)
        out[re.sub(r"^layer([1-4])\.", r"stage\1.", key)] = value
    return out


def adapt_first_conv(
    weight: torch.Tensor,
    src_format: str,
    src_mean: Sequence[float],
    src_std: Sequence[float],
    dst_format: str,
    dst_mean: Sequence[float],
    dst_std: Sequence[float],
) -> torch.Tensor:
    """Return the first convolution's weight for inputs normalized another way.

    A network trained on ``x = (p - src_mean) / src_std`` (channels in ``src_format`` order)
    gets, for the same pixels fed as ``x' = (p' - dst_mean) / dst_std`` in ``dst_format``
    order, the weight ``W'[:, j] = W[:, s(j)] * dst_std[j] / src_std[s(j)]`` where ``s`` maps a
    destination channel to the source channel of the same colour. The convolution then gives
    the same output exactly when the means agree colour for colour.

    Args:
        weight: (O, 3, kh, kw).
        src_format, dst_format: "RGB" or "BGR".

    Raises:
        ValueError: an unknown format, or means of the same colour that differ (by more than
            1 on the 0..255 scale): no reweighting of a bias-free convolution reproduces that.
    """
    for name, fmt in (("source", src_format), ("destination", dst_format)):
        if fmt not in ("RGB", "BGR"):
            raise ValueError(f"{name} input format must be 'RGB' or 'BGR', got {fmt!r}")
    if weight.dim() != 4 or weight.shape[1] != 3:
        raise ValueError(f"the first convolution must take 3 channels, got {tuple(weight.shape)}")
    perm = [0, 1, 2] if src_format == dst_format else [2, 1, 0]
    src_mean_d = [float(src_mean[perm[j]]) for j in range(3)]
    if any(abs(a - float(b)) > 1.0 for a, b in zip(src_mean_d, dst_mean)):
        raise ValueError(
            f"the pretrained weights expect pixel means {list(src_mean)} ({src_format}); the "
            f"model subtracts {list(dst_mean)} ({dst_format}). Set MODEL.PIXEL_MEAN to the "
            "weights' means (in INPUT.FORMAT order)"
        )
    scale = torch.tensor([float(dst_std[j]) / float(src_std[perm[j]]) for j in range(3)])
    return weight[:, perm] * scale.to(weight).view(1, 3, 1, 1)


def load_pretrained_backbone(
    model: nn.Module,
    weights: str,
    *,
    input_format: str = "RGB",
    pixel_mean: Sequence[float] = _TORCHVISION_MEAN,
    pixel_std: Sequence[float] = _TORCHVISION_STD,
):
    """Load torchvision-layout ResNet weights into ``model``'s ResNet encoder.

    Args:
        model: any meshrecon model with one ResNet encoder (see :func:`find_image_encoder`).
        weights: a path or URL (``synthetic://...``, ``torchvision://resnet18``, a file).
        input_format, pixel_mean, pixel_std: how the model normalizes its input images
            (``INPUT.FORMAT``, ``MODEL.PIXEL_MEAN``, ``MODEL.PIXEL_STD``); the first
            convolution is adapted from the weights' convention to this one.

    Returns:
        The checkpointer's report of missing / unexpected / mismatched keys.
    """
    name, encoder = find_image_encoder(model)
    detectron2_layout = isinstance(encoder, ResNet)
    first_conv = "stem.conv1.weight" if detectron2_layout else "stem.0.weight"
    seen: dict[str, Any] = {}

    def rename(state_dict: dict[str, Any], source: str) -> dict[str, Any]:
        sd = (
            torchvision_to_detectron2_names(state_dict)
            if detectron2_layout
            else _torchvision_to_meshrecon_names(state_dict)
        )
        if first_conv in sd:
            sd[first_conv] = adapt_first_conv(
                torch.as_tensor(sd[first_conv]),
                seen.get("input_format", "RGB"),
                seen.get("pixel_mean", _TORCHVISION_MEAN),
                seen.get("pixel_std", _TORCHVISION_STD),
                input_format,
                pixel_mean,
                pixel_std,
            )
        return sd

    class _Checkpointer(Checkpointer):
        # The file's record of its input convention is needed before renaming.
        def _load_file(self, f: str) -> dict[str, Any]:
            data = super()._load_file(f)
            for key in ("input_format", "pixel_mean", "pixel_std"):
                if key in data:
                    seen[key] = data[key]
            return data

    checkpointer = _Checkpointer(encoder, save_to_disk=False, rename_hook=rename)
    checkpointer.load(weights, checkpointables=[])
    logger.info("Loaded the pretrained encoder %s into %s", weights, name or "the model")
    return checkpointer.last_incompatible
