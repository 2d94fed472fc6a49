"""Small helpers of ``pytorch3d.ops.utils``.

Weighted means, batched identities, point clouds given as tensors or ``Pointclouds``, per-point
neighbourhood covariances and masked gathers.
"""

from __future__ import annotations

from typing import Any

import torch

from .knn import knn_points

__all__ = [
    "convert_pointclouds_to_tensor",
    "eyes",
    "get_point_covariances",
    "is_pointclouds",
    "masked_gather",
    "wmean",
]


def wmean(
    x: torch.Tensor,
    weight: torch.Tensor | None = None,
    dim: int | tuple[int, ...] = -2,
    keepdim: bool = True,
    eps: float = 1e-9,
) -> torch.Tensor:
    """Mean of ``x`` over ``dim``, weighted by ``weight`` when given.

    Args:
        x: tensor (*, D); the last dimension holds the coordinates and is never averaged.
        weight: optional non-negative tensor broadcastable to ``x.shape[:-1]``; every
            coordinate of a row gets the row's weight.
        dim: dimension(s) of ``x`` to average over.
        keepdim: keep the averaged dimensions with size 1.
        eps: lower bound of the summed weights, so all-zero weights give 0 rather than NaN.

    Returns:
        ``x.mean(dim)`` without weights, else ``sum(x * w, dim) / max(sum(w, dim), eps)``.

    Raises:
        ValueError: if ``weight`` does not broadcast against ``x.shape[:-1]``.
    """
    if weight is None:
        return x.mean(dim=dim, keepdim=keepdim)
    if any(xd != wd and xd != 1 and wd != 1 for xd, wd in zip(x.shape[-2::-1], weight.shape[::-1])):
        raise ValueError(
            f"weight of shape {tuple(weight.shape)} does not broadcast against "
            f"x.shape[:-1] = {tuple(x.shape[:-1])}"
        )
    w = weight[..., None]
    return (x * w).sum(dim=dim, keepdim=keepdim) / w.sum(dim=dim, keepdim=keepdim).clamp(eps)


def eyes(
    dim: int,
    N: int,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A batch of N identity matrices, shape (N, dim, dim)."""
    return torch.eye(dim, device=device, dtype=dtype)[None].repeat(N, 1, 1)


def is_pointclouds(pcl: Any) -> bool:
    """Whether ``pcl`` behaves like a ``Pointclouds``.

    True when it has ``points_padded`` and ``num_points_per_cloud``: PyTorch3D's own
    Pointclouds qualify too.
    """
    return hasattr(pcl, "points_padded") and hasattr(pcl, "num_points_per_cloud")


def convert_pointclouds_to_tensor(pcl: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded points and per-cloud sizes of a ``Pointclouds`` or a tensor.

    Args:
        pcl: a ``Pointclouds``, or a tensor (N, P, D) whose clouds all have P points.

    Returns:
        ``(points (N, P, D), num_points (N,) int64)``.

    Raises:
        ValueError: for anything else.
    """
    if is_pointclouds(pcl):
        return pcl.points_padded(), pcl.num_points_per_cloud()
    if torch.is_tensor(pcl):
        if pcl.ndim != 3:
            raise ValueError(f"pcl must be a tensor of shape (N, P, D), got {tuple(pcl.shape)}")
        sizes = torch.full((pcl.shape[0],), pcl.shape[1], dtype=torch.int64, device=pcl.device)
        return pcl, sizes
    raise ValueError(f"pcl must be a Pointclouds or a tensor (N, P, D), got {type(pcl).__name__}")


def get_point_covariances(
    points_padded: torch.Tensor,
    num_points_per_cloud: torch.Tensor,
    neighborhood_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Covariance of the ``neighborhood_size`` nearest neighbours of every point.

    Each point's neighbourhood includes the point itself (it is its own nearest neighbour).

    Args:
        points_padded: (N, P, D) padded clouds.
        num_points_per_cloud: (N,) int64 sizes of the clouds.
        neighborhood_size: number K of neighbours per point.

    Returns:
        ``(covariances (N, P, D, D), neighbours (N, P, K, D))``: the mean over the K neighbours
        of the outer products of their offsets from the neighbourhood mean, and the neighbours
        themselves. Rows of padded points and missing neighbours (a cloud smaller than K) hold
        zeros, as ``knn_points`` gives them. Differentiable with respect to the points.
    """
    neighbours = knn_points(
        points_padded,
        points_padded,
        lengths1=num_points_per_cloud,
        lengths2=num_points_per_cloud,
        K=neighborhood_size,
        return_nn=True,
    ).knn
    offsets = neighbours - neighbours.mean(2, keepdim=True)
    covariances = (offsets.unsqueeze(4) * offsets.unsqueeze(3)).mean(2)
    return covariances, neighbours


def masked_gather(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Gather rows of ``points`` at ``idx``, where -1 marks padding and gives a zero row.

    Args:
        points: (N, P, D) tensor.
        idx: (N, K) or (N, P', K) integer tensor of indices into P, or -1.

    Returns:
        (N, K, D) or (N, P', K, D) tensor of gathered rows, zero where ``idx`` is -1.
        Differentiable with respect to ``points``.

    Raises:
        ValueError: if the batch sizes differ or ``idx`` is not 2- or 3-dimensional.
    """
    if len(idx) != len(points):
        raise ValueError("points and idx must have the same batch dimension")
    if idx.ndim not in (2, 3):
        raise ValueError(f"idx must have shape (N, K) or (N, P, K), got {tuple(idx.shape)}")
    N, P, D = points.shape
    pad = idx.eq(-1)
    if P == 0:
        # Nothing to gather from: every index must be padding.
        if not bool(pad.all()):
            raise ValueError("idx must be -1 everywhere when points has no rows")
        # The sum of the empty points keeps the result in their autograd graph.
        return points.new_zeros((*idx.shape, D)) + points.sum()
    flat = idx.masked_fill(pad, 0).long().reshape(N, -1)
    out = points.gather(1, flat[..., None].expand(-1, -1, D)).view(*idx.shape, D)
    return out.masked_fill(pad[..., None], 0.0)
