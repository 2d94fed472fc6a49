"""Eigen, Puhrsch & Fergus (NIPS 2014): the coarse and fine depth networks and their loss.

The coarse network sees the whole image: five convolutions (AlexNet's layout) and two fully
connected layers whose output is reshaped into a quarter-resolution map of log depth. The fine
network sees local detail: a 9x9 convolution at stride 2 and a pool bring the image to the
coarse map's grid; the coarse prediction joins as a 64th channel, and two 5x5 convolutions
produce the refined log depth. Training is two-phase (coarse alone, then fine with the coarse
network frozen) or joint.

Everything here predicts **log depth** (natural log of metres); the loss compares it with the
log of the ground truth over the valid pixels only.

Public names: :func:`scale_invariant_log_loss`, :func:`downsample_depth`,
:class:`EigenCoarseNet`, :class:`EigenFineNet`, :class:`EigenMultiScaleHead` (registered in
``DEPTH_HEAD_REGISTRY``), :func:`build_coarse_features`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from meshrecon.checkpoint import Checkpointer
from meshrecon.config import configurable
from meshrecon.modeling.heads.build import DEPTH_HEAD_REGISTRY
from meshrecon.utils.stage_timer import stage

__all__ = [
    "PHASES",
    "EigenCoarseNet",
    "EigenFineNet",
    "EigenMultiScaleHead",
    "build_coarse_features",
    "downsample_depth",
    "scale_invariant_log_loss",
]

logger = logging.getLogger(__name__)

PHASES = ("coarse", "fine", "joint")
_TORCHVISION_FAMILIES = re.compile(r"^(resnet(18|34|50|101)|vgg(11|13|16|19)(_bn)?|alexnet)$")


# ------------------------------------------------------------------------------------ loss
def scale_invariant_log_loss(
    pred_log_depth: torch.Tensor,
    gt_depth: torch.Tensor,
    lam: float = 0.5,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Return Eigen et al.'s scale-invariant log error, averaged over the images of a batch.

    Per image, with ``d_i = pred_log_depth_i - log(gt_depth_i)`` over its ``n`` valid pixels:
    ``L = (1/n) sum d_i^2 - (lam/n^2) (sum d_i)^2``. ``lam = 0`` is the plain L2 error in log
    space, ``lam = 1`` the scale-invariant error (adding a constant to every ``d_i``, i.e.
    scaling the depth, leaves it unchanged), ``lam = 0.5`` the paper's training loss.

    Args:
        pred_log_depth: (N, H, W) predicted natural-log depth.
        gt_depth: (N, H, W) ground-truth depth, metres; pixels ``<= 0`` or non-finite are
            invalid and ignored.
        lam: the weight of the scale term, in [0, 1].
        valid: optional (N, H, W) bool mask, further restricting the valid pixels.

    Returns:
        A scalar: the mean of the per-image losses over the images with at least one valid
        pixel (zero, still attached to the graph, when no image has one).
    """
    if pred_log_depth.shape != gt_depth.shape or pred_log_depth.dim() != 3:
        raise ValueError(
            f"pred_log_depth {tuple(pred_log_depth.shape)} and gt_depth "
            f"{tuple(gt_depth.shape)} must both have shape (N, H, W)"
        )
    if not 0.0 <= float(lam) <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    mask = torch.isfinite(gt_depth) & (gt_depth > 0)
    if valid is not None:
        if valid.shape != gt_depth.shape:
            raise ValueError(f"valid {tuple(valid.shape)} must match gt_depth's shape")
        mask = mask & valid.bool()
    safe_gt = torch.where(mask, gt_depth, torch.ones_like(gt_depth))
    d = torch.where(mask, pred_log_depth - torch.log(safe_gt), torch.zeros_like(pred_log_depth))
    n = mask.flatten(1).sum(1).to(d.dtype)  # (N,)
    has = n > 0
    if not bool(has.any()):
        return pred_log_depth.sum() * 0.0
    n_safe = n.clamp(min=1)
    sum_d = d.flatten(1).sum(1)
    sum_d2 = (d * d).flatten(1).sum(1)
    per_image = sum_d2 / n_safe - float(lam) * (sum_d / n_safe) ** 2
    return per_image[has].mean()


def downsample_depth(depth: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Return ``depth`` at ``size`` = (h, w): each cell the mean of its valid source pixels.

    Invalid pixels (``<= 0`` or non-finite) do not pull the average towards zero; a cell with
    no valid pixel is 0 (invalid). Sparse maps (KITTI's Velodyne points) keep every cell that
    holds a measurement.

    Args:
        depth: (N, H, W) metres.
        size: output (h, w).

    Returns:
        (N, h, w) metres.
    """
    if depth.dim() != 3:
        raise ValueError(f"depth must have shape (N, H, W), got {tuple(depth.shape)}")
    size = (int(size[0]), int(size[1]))
    if tuple(depth.shape[-2:]) == size:
        return depth
    valid = (torch.isfinite(depth) & (depth > 0)).to(depth.dtype)
    values = torch.where(valid > 0, depth, torch.zeros_like(depth))
    total = F.adaptive_avg_pool2d(values[:, None], size)[:, 0]
    coverage = F.adaptive_avg_pool2d(valid[:, None], size)[:, 0]
    return torch.where(coverage > 0, total / coverage.clamp(min=1e-12), torch.zeros_like(total))


# -------------------------------------------------------------------------------- networks
class _TorchvisionFeatures(nn.Module):
    """The convolutional part of a torchvision classifier, with torchvision's parameter names.

    The names are kept (``features.0.weight`` for AlexNet/VGG, ``conv1.weight``,
    ``layer1.0...`` for ResNets) so that torchvision's ImageNet files load without renaming.
    ``forward(x (N, 3, H, W)) -> (N, C, h, w)``.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        net = getattr(torchvision.models, name)(weights=None)
        self.is_resnet = name.startswith("resnet")
        if self.is_resnet:
            for part in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
                self.add_module(part, getattr(net, part))
        else:
            self.features = net.features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.is_resnet:
            return self.features(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def _eigen_alexnet(in_channels: int = 3) -> nn.Sequential:
    """The paper's coarse convolutions: AlexNet's widths (96-256-384-384-256) and pools."""
    layers: list[nn.Module] = []
    spec = [(96, 11, 4, 0, True), (256, 5, 1, 2, True), (384, 3, 1, 1, False)]
    spec += [(384, 3, 1, 1, False), (256, 3, 1, 1, True)]
    channels = in_channels
    for width, kernel, stride, pad, pool in spec:
        conv = nn.Conv2d(channels, width, kernel, stride=stride, padding=pad)
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        nn.init.zeros_(conv.bias)
        layers += [conv, nn.ReLU(inplace=True)]
        if pool:
            # ceil_mode: 228 x 304 -> 55 x 74 -> 27 x 37 -> 13 x 18, the paper's figure's grid.
            layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))
        channels = width
    return nn.Sequential(*layers)


def build_coarse_features(backbone: str, pretrained: str = "") -> nn.Module:
    """Return the coarse network's convolutional stack.

    Args:
        backbone: ``"alexnet"`` (the paper's layout, randomly initialized) or a torchvision
            classifier name whose convolutions are used: ``"torchvision_alexnet"``,
            ``"resnet18"`` / ``34`` / ``50`` / ``101``, ``"vgg11"``..``"vgg19"`` (``_bn`` too).
        pretrained: weights for the stack, e.g. ``"torchvision://resnet18"``,
            ``"synthetic://resnet18_pretrained.pth"``, ``"synthetic://eigen_alexnet_pretrained.pth"``
            (the paper's widths, pretrained on the synthetic world) or a local file; loaded
            through :class:`meshrecon.checkpoint.Checkpointer`, so an offline machine gets its
            :class:`WeightsDownloadError` (which says where to put the file). Empty: random
            initialization.

    Raises:
        ValueError: an unknown ``backbone``, or ``torchvision://`` weights given with
            ``"alexnet"`` (torchvision has none at the paper's widths; use
            ``"torchvision_alexnet"``).
    """
    if backbone == "alexnet":
        if pretrained.startswith("torchvision://"):
            raise ValueError(
                f"MODEL.DEPTH.PRETRAINED={pretrained!r} with MODEL.DEPTH.BACKBONE='alexnet': the "
                "paper's AlexNet widths have no ImageNet weights in torchvision; use BACKBONE "
                "'torchvision_alexnet' (torchvision://alexnet), a ResNet/VGG name, or "
                "synthetic://eigen_alexnet_pretrained.pth"
            )
        features = _eigen_alexnet()
        if pretrained:
            Checkpointer(features, save_to_disk=False).load(pretrained, checkpointables=[])
        return features
    tv_name = "alexnet" if backbone == "torchvision_alexnet" else backbone
    if not _TORCHVISION_FAMILIES.match(tv_name):
        raise ValueError(
            f"MODEL.DEPTH.BACKBONE={backbone!r} is not supported; expected 'alexnet' (the "
            "paper's), 'torchvision_alexnet', resnet18/34/50/101 or vgg11..vgg19[_bn]"
        )
    features = _TorchvisionFeatures(tv_name)
    if pretrained:
        Checkpointer(features, save_to_disk=False).load(pretrained, checkpointables=[])
    return features


class EigenCoarseNet(nn.Module):
    """Global coarse-scale network: convolutions, FC (dropout), FC to an (h, w) log-depth map.

    Args:
        features: the convolutional stack (:func:`build_coarse_features`).
        input_size: (H, W) of the images it takes; fixes the FC input size.
        output_size: (h, w) of the predicted map (NYU: 55 x 74; KITTI: 45 x 144).
        fc_dim: width of the hidden FC layer (paper: 4096).
        dropout: dropout probability after the hidden FC layer.
        init_log_depth: initial bias of the output layer (log metres), so that training starts
            from a plausible constant depth rather than 1 m.

    ``forward(images (N, 3, H, W)) -> (N, h, w)`` log depth.
    """

    def __init__(
        self,
        features: nn.Module,
        input_size: Sequence[int],
        output_size: Sequence[int],
        fc_dim: int = 4096,
        dropout: float = 0.5,
        init_log_depth: float = 0.0,
    ) -> None:
        super().__init__()
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.output_size = (int(output_size[0]), int(output_size[1]))
        if min(self.input_size) <= 0 or min(self.output_size) <= 0:
            raise ValueError(f"input_size {input_size} and output_size {output_size} must be > 0")
        self.features = features
        with torch.no_grad():
            was_training = features.training
            features.eval()
            probe = features(torch.zeros(1, 3, *self.input_size))
            features.train(was_training)
        self.feature_shape = tuple(probe.shape[1:])
        num_in = int(probe.numel())
        self.fc1 = nn.Linear(num_in, fc_dim)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(fc_dim, self.output_size[0] * self.output_size[1])
        nn.init.kaiming_normal_(self.fc1.weight, nonlinearity="relu")
        nn.init.zeros_(self.fc1.bias)
        nn.init.normal_(self.fc2.weight, std=1e-3)
        nn.init.constant_(self.fc2.bias, float(init_log_depth))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or tuple(images.shape[-2:]) != self.input_size:
            raise ValueError(
                f"EigenCoarseNet takes (N, 3, {self.input_size[0]}, {self.input_size[1]}) images, "
                f"got {tuple(images.shape)}"
            )
        with stage("backbone"):
            x = self.features(images).flatten(1)
        x = self.dropout(F.relu(self.fc1(x)))
        return self.fc2(x).view(-1, *self.output_size)


class EigenFineNet(nn.Module):
    """Local fine-scale network: conv 9x9/63 s2 + pool, concat coarse, conv 5x5/64, conv 5x5/1.

    Args:
        residual: add the last layer's output to the coarse map instead of predicting the log
            depth directly (not the paper's; off by default). With its last layer zeroed the
            fine network then starts as the coarse one.
        init_log_depth: initial bias of the last layer when not residual (log metres).
        init: ``"identity"``: the paper's layers initialized so that the network starts by
            reproducing its coarse input exactly (two channels of ``conv2`` carry the coarse
            map's positive and negative parts through the ReLU, ``conv3`` adds them back and its
            other weights start at zero), so that training only learns the refinement;
            ``"random"``: every layer random, the last one near zero with bias
            ``init_log_depth``. The paper does not say how its fine network was initialized.

    ``forward(images (N, 3, H, W), coarse_log_depth (N, h, w)) -> (N, h, w)`` log depth. When
    the pooled image features do not fall on the coarse grid (input sizes other than the
    paper's), they are resized to it bilinearly.
    """

    INITS = ("identity", "random")

    def __init__(
        self, residual: bool = False, init_log_depth: float = 0.0, init: str = "random"
    ) -> None:
        super().__init__()
        if init not in self.INITS:
            raise ValueError(f"fine network init must be one of {self.INITS}, got {init!r}")
        self.residual = bool(residual)
        self.conv1 = nn.Conv2d(3, 63, 9, stride=2)
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(64, 64, 5, padding=2)
        self.conv3 = nn.Conv2d(64, 1, 5, padding=2)
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        nn.init.normal_(self.conv3.weight, std=1e-3)
        nn.init.constant_(self.conv3.bias, 0.0 if self.residual else float(init_log_depth))
        if self.residual:
            nn.init.zeros_(self.conv3.weight)
        elif init == "identity":
            with torch.no_grad():
                # conv2's output channels 0 and 1 are relu(coarse) and relu(-coarse) (input
                # channel 63 is the coarse map); conv3 = channel 0 - channel 1 = coarse. conv3's
                # other weights start at zero (as a residual branch would); the first update
                # gives them gradients, and through them conv1 and conv2.
                self.conv2.weight[:2].zero_()
                self.conv2.weight[0, 63, 2, 2] = 1.0
                self.conv2.weight[1, 63, 2, 2] = -1.0
                self.conv2.bias[:2].zero_()
                self.conv3.weight.zero_()
                self.conv3.weight[0, 0, 2, 2] = 1.0
                self.conv3.weight[0, 1, 2, 2] = -1.0
                self.conv3.bias.zero_()

    def forward(self, images: torch.Tensor, coarse_log_depth: torch.Tensor) -> torch.Tensor:
        if coarse_log_depth.dim() != 3 or coarse_log_depth.shape[0] != images.shape[0]:
            raise ValueError(
                f"coarse_log_depth must be (N, h, w) with N = {images.shape[0]}, got "
                f"{tuple(coarse_log_depth.shape)}"
            )
        x = self.pool(F.relu(self.conv1(images)))
        grid = tuple(coarse_log_depth.shape[-2:])
        if tuple(x.shape[-2:]) != grid:
            x = F.interpolate(x, size=grid, mode="bilinear", align_corners=False)
        x = torch.cat([x, coarse_log_depth[:, None]], dim=1)
        out = self.conv3(F.relu(self.conv2(x)))[:, 0]
        return out + coarse_log_depth if self.residual else out


@DEPTH_HEAD_REGISTRY.register()
class EigenMultiScaleHead(nn.Module):
    """The coarse network, and in phases ``"fine"`` / ``"joint"`` the fine network on top.

    Args:
        coarse: the :class:`EigenCoarseNet`.
        fine: the :class:`EigenFineNet`, or None (phase ``"coarse"``).
        phase: ``"coarse"`` (train the coarse network), ``"fine"`` (coarse frozen: no
            gradients, dropout off; train the fine network) or ``"joint"`` (train both).
        lr_factors: learning-rate multipliers of the parameter groups named by
            :meth:`param_group_name` (``coarse_conv``, ``coarse_fc``, ``fine1``..``fine3``).

    ``forward(images (N, 3, H, W))`` -> ``{"coarse": (N, h, w)}`` and, with a fine network,
    ``"fine": (N, h, w)``; both log depth.
    """

    @configurable
    def __init__(
        self,
        *,
        coarse: EigenCoarseNet,
        fine: EigenFineNet | None = None,
        phase: str = "coarse",
        lr_factors: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        if phase not in PHASES:
            raise ValueError(f"MODEL.DEPTH.PHASE={phase!r}; expected one of {PHASES}")
        if phase != "coarse" and fine is None:
            raise ValueError(f"MODEL.DEPTH.PHASE={phase!r} needs a fine network")
        self.phase = phase
        self.coarse = coarse
        self.fine = fine if phase != "coarse" else None
        self.lr_factors = dict(lr_factors or {})
        if phase == "fine":
            for p in self.coarse.parameters():
                p.requires_grad_(False)
            self.coarse.eval()

    @classmethod
    def from_config(cls, cfg, input_shape: Any = None) -> dict[str, Any]:
        d = cfg.MODEL.DEPTH
        coarse = EigenCoarseNet(
            build_coarse_features(d.BACKBONE, d.PRETRAINED),
            input_size=d.INPUT_SIZE,
            output_size=d.OUTPUT_SIZE,
            fc_dim=d.FC_DIM,
            dropout=d.DROPOUT,
            init_log_depth=d.INIT_LOG_DEPTH,
        )
        fine = None
        if d.PHASE != "coarse":
            fine = EigenFineNet(
                residual=d.FINE_RESIDUAL, init_log_depth=d.INIT_LOG_DEPTH, init=d.FINE_INIT
            )
        factors = dict(zip(("fine1", "fine2", "fine3"), (float(f) for f in d.FINE_LR_FACTORS)))
        if len(d.FINE_LR_FACTORS) != 3:
            raise ValueError(
                f"MODEL.DEPTH.FINE_LR_FACTORS must have 3 values, got {list(d.FINE_LR_FACTORS)}"
            )
        factors.update(coarse_conv=d.COARSE_CONV_LR_FACTOR, coarse_fc=d.COARSE_FC_LR_FACTOR)
        return {"coarse": coarse, "fine": fine, "phase": d.PHASE, "lr_factors": factors}

    def train(self, mode: bool = True) -> EigenMultiScaleHead:
        super().train(mode)
        if self.phase == "fine":
            self.coarse.eval()  # a frozen network keeps its dropout off and its BN statistics
        return self

    @staticmethod
    def param_group_name(name: str) -> str:
        """Return the LR group of parameter ``name`` (relative to this head)."""
        if name.startswith("coarse.features."):
            return "coarse_conv"
        if name.startswith("coarse."):
            return "coarse_fc"
        match = re.match(r"^fine\.conv([123])\.", name)
        if match:
            return f"fine{match.group(1)}"
        return "other"

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.phase == "fine":
            with torch.no_grad():
                coarse = self.coarse(images)
        else:
            coarse = self.coarse(images)
        out = {"coarse": coarse}
        if self.fine is not None:
            out["fine"] = self.fine(images, coarse)
        return out
