"""Distances between batches of point sets: Chamfer or Earth Mover's.

OptimizeMVS's losses and its evaluator's metric.
"""

from __future__ import annotations

from typing import cast

import torch

from .chamfer import chamfer_distance
from .emd import earth_movers_distance

__all__ = ["SET_DISTANCES", "set_distance"]

SET_DISTANCES = ("chamfer", "emd")


def _resample(points: torch.Tensor, lengths: torch.Tensor, count: int) -> torch.Tensor:
    """Draw ``count`` of the first ``lengths[n]`` points of each cloud (with replacement)."""
    N = points.shape[0]
    u = torch.rand(N, count, device=points.device)
    idx = (u * lengths.clamp(min=1)[:, None].to(u.dtype)).long()
    idx = torch.minimum(idx, (lengths.clamp(min=1) - 1)[:, None])
    return torch.gather(points, 1, idx[..., None].expand(-1, -1, 3))


def set_distance(
    x: torch.Tensor,
    y: torch.Tensor,
    distance: str = "chamfer",
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
    emd_points: int = 256,
) -> torch.Tensor:
    """(N,) distances between point sets x (N, P1, 3) and y (N, P2, 3).

    ``"chamfer"``: :func:`chamfer_distance` per set (the sum of both mean squared
    nearest-neighbour distances). ``"emd"``: :func:`earth_movers_distance` per set (the mean
    matched distance); sets of different sizes, or with ``x_lengths`` / ``y_lengths`` given,
    are first resampled to ``emd_points`` points each, with replacement (uses the global RNG).

    Args:
        x: (N, P1, 3) padded point sets.
        y: (N, P2, 3) padded point sets.
        distance: ``"chamfer"`` or ``"emd"``.
        x_lengths: (N,) points of each set of ``x`` (default: all P1).
        y_lengths: (N,) points of each set of ``y`` (default: all P2).
        emd_points: points per set after resampling, for EMD.

    Returns:
        (N,) distances in the dtype of ``x``.

    Raises:
        ValueError: an unknown ``distance``; and what :func:`chamfer_distance` or
            :func:`earth_movers_distance` raise for malformed sets.
    """
    if distance not in SET_DISTANCES:
        raise ValueError(f"distance must be one of {SET_DISTANCES}, got {distance!r}")
    if distance == "chamfer":
        loss, _ = chamfer_distance(
            x, y, x_lengths=x_lengths, y_lengths=y_lengths, batch_reduction=None
        )
        return cast(torch.Tensor, loss)  # batch_reduction=None, both directions: one tensor
    if x_lengths is not None or y_lengths is not None or x.shape[1] != y.shape[1]:
        xl = x_lengths if x_lengths is not None else torch.full_like(x[:, 0, 0], x.shape[1])
        yl = y_lengths if y_lengths is not None else torch.full_like(y[:, 0, 0], y.shape[1])
        x, y = _resample(x, xl.long(), emd_points), _resample(y, yl.long(), emd_points)
    return earth_movers_distance(x, y, batch_reduction=None)
