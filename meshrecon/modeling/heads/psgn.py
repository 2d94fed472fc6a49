"""PSGN, the point set generation network (Fan, Su, Guibas, CVPR 2017), on backbone features.

Two branches predict the point set (1024 points by default):

* FC branch: the globally pooled last feature map, concatenated with the random vector r, goes
  through fully connected layers (``FC_DIMS``) to ``NUM_FC_POINTS`` x 3 coordinates; it is good
  at the thin, intricate parts.
* Deconv branch: a top-down path over the backbone maps (upsample, add a 1x1 lateral of the
  finer map, 3x3 conv; PSGN's hourglass with additive skips) with r tiled over the map, read
  out at a ``CONV_GRID`` (H, W) resolution as one point per cell; it covers large smooth
  surfaces.

The points are camera-frame coordinates around ``CENTER``.

Training uses Min-of-N (MoN): every image is decoded with ``MON_SAMPLES`` draws of r ~ N(0, I)
and only the best draw's loss counts, ``E_I[min_j D(G(I, r_j), S_gt)]``, so the network can
spread its guesses over the shapes an image leaves ambiguous. D is Chamfer (mean squared
nearest-neighbour distance both ways, the paper's), Chamfer-L1 (mean Euclidean nearest-neighbour
distance both ways: its pull on a point does not fade as the point nears the surface) or EMD
(against as many ground-truth points, drawn at random). Inference decodes r = 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from meshrecon.config import configurable
from meshrecon.layers import ShapeSpec
from meshrecon.modeling.heads.build import POINT_HEAD_REGISTRY
from meshrecon.ops import chamfer_distance, earth_movers_distance
from meshrecon.structures import ViewBatch
from meshrecon.utils.stage_timer import stage

__all__ = ["PSGNHead", "chamfer_l1", "min_of_n"]

_LOSSES = ("chamfer", "chamfer_l1", "emd")


def min_of_n(losses: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Min-of-N reduction of per-sample losses.

    Args:
        losses: (B * n,) losses ordered image by image: the n draws of image 0, then image 1...
        n: draws per image.

    Returns:
        (mean over images of the smallest loss of each image's draws, (B,) index of that draw).
    """
    if losses.dim() != 1 or losses.numel() % n:
        raise ValueError(f"losses must be (B * {n},), got {tuple(losses.shape)}")
    best, idx = losses.view(-1, n).min(dim=1)
    return best.mean(), idx


def chamfer_l1(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """(B, P, 3) and (B, Q, 3) clouds -> (B,) mean Euclidean (not squared) distance from each
    point of x to its nearest point of y, plus the same from y to x.

    The square root's slope is cut off below ``eps`` squared distance (a point on its
    neighbour gets no gradient instead of an infinite one).
    """
    (d_x, d_y), _ = chamfer_distance(x, y, batch_reduction=None, point_reduction=None)
    return d_x.clamp_min(eps).sqrt().mean(dim=1) + d_y.clamp_min(eps).sqrt().mean(dim=1)


def _uniform_in_ball(n: int, radius: float) -> torch.Tensor:
    """(n, 3) points uniform in the ball of ``radius`` about 0 (torch's global generator)."""
    direction = F.normalize(torch.randn(n, 3), dim=1)
    return direction * radius * torch.rand(n, 1) ** (1.0 / 3.0)


@POINT_HEAD_REGISTRY.register()
class PSGNHead(nn.Module):
    """PSGN's two-branch point decoder with Min-of-N training (see the module docstring).

    ``forward(features, views)``: ``{"loss_points": ...}`` in training, ``[{"points": (P, 3)}]``
    in inference. ``decode(features, noise)`` maps features and (B, NOISE_DIM) noise to
    (B, P, 3) points.
    """

    @configurable
    def __init__(
        self,
        *,
        feature_channels: Sequence[int],
        num_fc_points: int = 256,
        conv_grid: Sequence[int] = (24, 32),
        fc_dims: Sequence[int] = (2048, 1024),
        deconv_dim: int = 128,
        noise_dim: int = 32,
        mon_samples: int = 2,
        loss: str = "chamfer",
        loss_weight: float = 1.0,
        center: Sequence[float] = (0.0, 0.0, 1.4),
        init_spread: float = 0.0,
    ) -> None:
        """
        Args:
            feature_channels: channels of the backbone maps, finest first.
            num_fc_points: points of the FC branch (256).
            conv_grid: (H, W) of the deconv branch's point map (24 x 32 = 768 points).
            fc_dims: hidden widths of the FC branch.
            deconv_dim: width of the top-down path.
            noise_dim: size of r (0: deterministic network, MoN then needs mon_samples 1).
            mon_samples: n of Min-of-N in training.
            loss: "chamfer", "chamfer_l1" or "emd".
            loss_weight: multiplies the loss.
            center: camera-frame point the predicted coordinates are offsets from.
            init_spread: > 0: every point starts at its own random position, uniform in a ball
                of this radius about ``center`` (the FC branch's output bias, and a learned
                per-cell offset of the deconv branch, ``point_offsets``). 0: every point
                starts at ``center``; a Chamfer loss then moves one point of the cluster per
                target point, and in short schedules the deconv points stay clumped.
        """
        super().__init__()
        if loss not in _LOSSES:
            raise ValueError(f"loss must be one of {_LOSSES}, got {loss!r}")
        if mon_samples < 1:
            raise ValueError(f"mon_samples must be >= 1, got {mon_samples}")
        if noise_dim < 0:
            raise ValueError(f"noise_dim must be >= 0, got {noise_dim}")
        if len(conv_grid) != 2 or min(conv_grid) < 1:
            raise ValueError(f"conv_grid must be (H, W) with H, W >= 1, got {conv_grid}")
        if num_fc_points < 0 or not feature_channels:
            raise ValueError("need num_fc_points >= 0 and at least one feature map")
        if not init_spread >= 0:
            raise ValueError(f"init_spread must be >= 0, got {init_spread}")
        self.num_fc_points = int(num_fc_points)
        self.conv_grid = (int(conv_grid[0]), int(conv_grid[1]))
        self.noise_dim = int(noise_dim)
        self.mon_samples = int(mon_samples)
        self.loss_name = loss
        self.loss_weight = float(loss_weight)
        self.register_buffer("center", torch.tensor(list(center), dtype=torch.float32))
        # FC branch.
        layers: list[nn.Module] = []
        prev = feature_channels[-1] + self.noise_dim
        for dim in fc_dims:
            layers += [nn.Linear(prev, dim), nn.ReLU(inplace=True)]
            prev = dim
        self.fc = nn.Sequential(*layers)
        self.fc_points = nn.Linear(prev, 3 * self.num_fc_points) if self.num_fc_points else None
        # Deconv branch: laterals from coarse to fine.
        self.laterals = nn.ModuleList(
            nn.Conv2d(c, deconv_dim, 1) for c in reversed(list(feature_channels))
        )
        self.smooth = nn.ModuleList(
            nn.Conv2d(deconv_dim, deconv_dim, 3, padding=1) for _ in feature_channels
        )
        self.noise_conv = nn.Conv2d(deconv_dim + self.noise_dim, deconv_dim, 3, padding=1)
        self.conv_points = nn.Conv2d(deconv_dim, 3, 1)
        for layer in (self.conv_points, self.fc_points):
            if layer is not None:
                nn.init.normal_(layer.weight, std=1e-3)
                nn.init.zeros_(layer.bias)
        self.point_offsets = None
        if init_spread > 0:
            n_grid = self.conv_grid[0] * self.conv_grid[1]
            spread = _uniform_in_ball(self.num_fc_points + n_grid, float(init_spread))
            if self.fc_points is not None:
                with torch.no_grad():
                    self.fc_points.bias.copy_(spread[: self.num_fc_points].flatten())
            grid = spread[self.num_fc_points :].T.reshape(1, 3, *self.conv_grid)
            self.point_offsets = nn.Parameter(grid)

    @classmethod
    def from_config(cls, cfg, input_shape: Mapping[str, ShapeSpec]) -> dict[str, Any]:
        p = cfg.MODEL.PSGN
        return {
            "feature_channels": [s.channels for s in input_shape.values()],
            "num_fc_points": p.NUM_FC_POINTS,
            "conv_grid": p.CONV_GRID,
            "fc_dims": p.FC_DIMS,
            "deconv_dim": p.DECONV_DIM,
            "noise_dim": p.NOISE_DIM,
            "mon_samples": p.MON_SAMPLES,
            "loss": p.LOSS,
            "loss_weight": p.LOSS_WEIGHT,
            "center": p.CENTER,
            "init_spread": p.INIT_SPREAD,
        }

    @property
    def num_points(self) -> int:
        return self.num_fc_points + self.conv_grid[0] * self.conv_grid[1]

    def decode(self, features: Sequence[torch.Tensor], noise: torch.Tensor) -> torch.Tensor:
        """(B, C_k, H_k, W_k) maps (finest first) and (B, noise_dim) noise -> (B, P, 3)."""
        B = features[-1].shape[0]
        if noise.shape != (B, self.noise_dim):
            raise ValueError(
                f"noise must have shape ({B}, {self.noise_dim}), got {tuple(noise.shape)}"
            )
        parts = []
        if self.fc_points is not None:
            g = torch.cat([features[-1].mean(dim=(2, 3)), noise], dim=1)
            parts.append(self.fc_points(self.fc(g)).view(B, self.num_fc_points, 3))
        x = None
        for f, lateral, smooth in zip(reversed(list(features)), self.laterals, self.smooth):
            lat = lateral(f)
            x = lat if x is None else lat + F.interpolate(x, size=lat.shape[-2:], mode="nearest")
            x = F.relu(smooth(x))
        x = F.interpolate(x, size=self.conv_grid, mode="bilinear", align_corners=False)
        tiled = noise[:, :, None, None].expand(-1, -1, *self.conv_grid)
        x = F.relu(self.noise_conv(torch.cat([x, tiled], dim=1)))
        grid = self.conv_points(x)
        if self.point_offsets is not None:
            grid = grid + self.point_offsets
        parts.append(grid.flatten(2).transpose(1, 2))
        return torch.cat(parts, dim=1) + self.center

    @stage("losses")
    def point_losses(self, pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) predictions vs (B, Q, 3) ground truth -> (B,) per-cloud losses."""
        if self.loss_name == "chamfer":
            loss, _ = chamfer_distance(pred, gt, batch_reduction=None)
            return loss
        if self.loss_name == "chamfer_l1":
            return chamfer_l1(pred, gt)
        P = pred.shape[1]
        pick = torch.stack([torch.randperm(gt.shape[1], device=gt.device)[:P] for _ in gt])
        if pick.shape[1] < P:
            raise ValueError(f"EMD needs >= {P} ground-truth points per cloud, got {gt.shape[1]}")
        gt = torch.gather(gt, 1, pick[..., None].expand(-1, -1, 3))
        return earth_movers_distance(pred, gt, batch_reduction=None)

    def forward(
        self, features: Sequence[torch.Tensor], views: ViewBatch, **unused: Any
    ) -> dict[str, torch.Tensor] | list[dict]:
        B = features[-1].shape[0]
        device = features[-1].device
        if not self.training:
            noise = torch.zeros(B, self.noise_dim, device=device)
            return [{"points": p} for p in self.decode(features, noise)]
        points = views.require("points", for_="training PSGN")
        n = self.mon_samples
        feats = [f.repeat_interleave(n, dim=0) for f in features]
        noise = torch.randn(B * n, self.noise_dim, device=device)
        pred = self.decode(feats, noise)
        gt = points.repeat_interleave(n, dim=0)
        loss, _ = min_of_n(self.point_losses(pred, gt), n)
        return {"loss_points": loss * self.loss_weight}
