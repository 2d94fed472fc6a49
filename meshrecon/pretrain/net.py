"""The network pretrained on the synthetic world: an image encoder and light task heads.

The encoder is the one the methods use, with the names their loaders expect:

* ``resnet18``: torchvision's ResNet-18 without its classifier (``conv1``, ``bn1``,
  ``layer1``..``layer4``), so the saved weights load like ``torchvision://resnet18`` into every
  ResNet-18 of meshrecon (torchvision layout, Detectron2 layout, Eigen's ``resnet18`` stack);
* ``eigen_alexnet``: Eigen et al.'s coarse convolutions at the paper's AlexNet widths
  (``MODEL.DEPTH.BACKBONE: alexnet``; names ``0.weight``, ``3.weight``, ...).

The heads, thrown away after pretraining: a linear classifier on the pooled last feature map,
and a small dense decoder (each tapped feature map projected to 64 channels, upsampled to the
target grid, summed, one 3x3 convolution) predicting the silhouette logit, the relative log
depth and the normals of every target cell.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from meshrecon.utils.precision import call_in_dtype

__all__ = ["ARCHS", "PretrainNet", "pretrain_losses"]

ARCHS = ("resnet18", "eigen_alexnet")
_DECODER_DIM = 64


class _ResNetEncoder(nn.Module):
    """torchvision's ResNet-18 minus ``fc``; returns the outputs of ``layer1``..``layer4``."""

    def __init__(self) -> None:
        super().__init__()
        net = torchvision.models.resnet18(weights=None)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            self.add_module(name, getattr(net, name))
        self.channels = [64, 128, 256, 512]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            outs.append(x)
        return outs


class _AlexNetEncoder(nn.Module):
    """Eigen's coarse convolutions; returns the maps after conv1, conv2 and conv5 (+ReLU)."""

    def __init__(self) -> None:
        super().__init__()
        from meshrecon.modeling.heads.depth_eigen import build_coarse_features

        self.features = build_coarse_features("alexnet")
        relus = [i for i, m in enumerate(self.features) if isinstance(m, nn.ReLU)]
        self.taps = {relus[0], relus[1], relus[-1]}
        self.channels = [96, 256, 256]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                outs.append(x)
        return outs


class PretrainNet(nn.Module):
    """Encoder + classifier + dense decoder.

    ``forward(images (N, 3, S, S) normalized)`` returns ``logits (N, C)`` and ``dense (N, 5, T,
    T)``: silhouette logit, log relative depth, normal xyz (unnormalized).
    """

    def __init__(self, arch: str, num_classes: int, target_size: int) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"pretraining arch must be one of {ARCHS}, got {arch!r}")
        self.arch = arch
        self.target_size = int(target_size)
        self.encoder = _ResNetEncoder() if arch == "resnet18" else _AlexNetEncoder()
        chans = self.encoder.channels
        self.classifier = nn.Linear(chans[-1], num_classes)
        self.lateral = nn.ModuleList(nn.Conv2d(c, _DECODER_DIM, 1) for c in chans)
        self.fuse = nn.Conv2d(_DECODER_DIM, _DECODER_DIM, 3, padding=1)
        self.predict = nn.Conv2d(_DECODER_DIM, 5, 1)

    #: Compute the encoder under ``torch.autocast`` in this dtype (``None``: float32); its maps
    #: come back as float32 for the heads and the losses (the recipe's ``encoder_autocast``).
    encoder_dtype: torch.dtype | None = None

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = call_in_dtype(self.encoder, self.encoder_dtype, images.device.type, images)
        logits = self.classifier(F.adaptive_avg_pool2d(feats[-1], 1).flatten(1))
        size = (self.target_size, self.target_size)
        x = sum(
            F.interpolate(lat(f), size=size, mode="bilinear", align_corners=False)
            for lat, f in zip(self.lateral, feats)
        )
        dense = self.predict(F.relu(self.fuse(F.relu(x))))
        return logits, dense

    def encoder_state_dict(self) -> dict[str, torch.Tensor]:
        """The encoder's weights under the names its consumers load (see the module doc)."""
        sd = self.encoder.state_dict()
        if self.arch == "eigen_alexnet":
            return {k[len("features.") :]: v.clone() for k, v in sd.items()}
        return {k: v.clone() for k, v in sd.items()}


def pretrain_losses(
    logits: torch.Tensor,
    dense: torch.Tensor,
    labels: torch.Tensor,
    silhouettes: torch.Tensor,
    depth: torch.Tensor,
    normals: torch.Tensor,
    valid: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """The four task losses of a batch.

    Args:
        logits: (N, C); dense: (N, 5, T, T) from :class:`PretrainNet`.
        labels: (N,); silhouettes, depth: (N, T, T); normals: (N, 3, T, T); valid: (N, T, T)
            bool, the cells where depth and normals are defined.

    Returns:
        ``cls`` (cross-entropy), ``silhouette`` (binary cross-entropy on soft coverage),
        ``depth`` (L1 of the log relative depth) and ``normals`` (1 - cosine), the last two
        averaged over the valid cells.
    """
    w = valid.float()
    count = w.sum().clamp(min=1.0)
    cos = F.cosine_similarity(dense[:, 2:5], normals, dim=1, eps=1e-6)
    return {
        "cls": F.cross_entropy(logits, labels),
        "silhouette": F.binary_cross_entropy_with_logits(dense[:, 0], silhouettes),
        "depth": ((dense[:, 1] - depth).abs() * w).sum() / count,
        "normals": ((1.0 - cos) * w).sum() / count,
    }
