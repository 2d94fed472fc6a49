"""Normals and local frames of point clouds from neighbourhood covariances.

PyTorch3D's ``estimate_pointcloud_normals`` and ``estimate_pointcloud_local_coord_frames``.
"""

from __future__ import annotations

from typing import Any

import torch

from .utils import convert_pointclouds_to_tensor, get_point_covariances

__all__ = ["estimate_pointcloud_local_coord_frames", "estimate_pointcloud_normals"]


def estimate_pointcloud_normals(
    pointclouds: Any,
    neighborhood_size: int = 50,
    disambiguate_directions: bool = True,
    *,
    use_symeig_workaround: bool = True,
) -> torch.Tensor:
    """Estimate a unit normal at every point of a batch of point clouds.

    The normal of a point is the direction of least variance of its ``neighborhood_size``
    nearest neighbours: the first column of the frame that
    :func:`estimate_pointcloud_local_coord_frames` returns.

    Args:
        pointclouds: a ``Pointclouds`` or a tensor (N, P, 3).
        neighborhood_size: number of neighbours (the point included) per neighbourhood; every
            cloud must have more points than this.
        disambiguate_directions: orient each normal towards the side where most of its
            neighbours lie (Tombari et al., ECCV 2010), so neighbouring normals agree in sign.
        use_symeig_workaround: accepted for compatibility; ``torch.linalg.eigh`` is always used
            (PyTorch3D's switch picks its own 3x3 eigensolver).

    Returns:
        (N, P, 3) unit normals; for a ``Pointclouds``, padded like ``points_padded()`` with
        zero rows.
        Differentiable with respect to the points (except where eigenvalues coincide).

    Raises:
        ValueError: as :func:`estimate_pointcloud_local_coord_frames`.
    """
    _, frames = estimate_pointcloud_local_coord_frames(
        pointclouds,
        neighborhood_size=neighborhood_size,
        disambiguate_directions=disambiguate_directions,
        use_symeig_workaround=use_symeig_workaround,
    )
    return frames[:, :, :, 0]


def estimate_pointcloud_local_coord_frames(
    pointclouds: Any,
    neighborhood_size: int = 50,
    disambiguate_directions: bool = True,
    *,
    use_symeig_workaround: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Principal directions and variances of every point's neighbourhood.

    The covariance of the ``neighborhood_size`` nearest neighbours of each point (the point
    included) is diagonalised; its eigenvectors, by increasing eigenvalue, are the normal, the
    direction of secondary curvature and the direction of main curvature.

    Args:
        pointclouds: a ``Pointclouds`` or a tensor (N, P, 3).
        neighborhood_size: number of neighbours per neighbourhood; every cloud must have more
            points than this.
        disambiguate_directions: fix the signs as in Tombari et al. (ECCV 2010): the normal and
            the main-curvature direction each point to the side holding most neighbours, and
            the middle axis is their cross product ``normal x main`` (PyTorch3D's choice,
            which makes the frame ``(normal, middle, main)`` left-handed).
        use_symeig_workaround: accepted for compatibility; ``torch.linalg.eigh`` is always used.

    Returns:
        ``(curvatures, local_coord_frames)``: (N, P, 3) eigenvalues in increasing order and
        (N, P, 3, 3) frames with the directions in columns (``[..., 0]`` is the normal).
        For a ``Pointclouds``, padded like ``points_padded()``, with zeros in the padding
        (PyTorch3D leaves arbitrary values there).

    Raises:
        ValueError: if the points are not (N, P, 3), ``neighborhood_size`` is not a positive
            integer, or a cloud has ``neighborhood_size`` points or fewer (empty clouds
            included), as in PyTorch3D.
    """
    del use_symeig_workaround  # see docstring
    points, num_points = convert_pointclouds_to_tensor(pointclouds)
    if points.shape[2] != 3:
        raise ValueError(f"pointclouds must have shape (N, P, 3), got {tuple(points.shape)}")
    if isinstance(neighborhood_size, bool) or not isinstance(neighborhood_size, int):
        raise ValueError(f"neighborhood_size must be an int, got {neighborhood_size!r}")
    if neighborhood_size < 1:
        raise ValueError(f"neighborhood_size must be >= 1, got {neighborhood_size}")
    small = (num_points <= neighborhood_size).nonzero()
    if len(small):
        i = int(small[0, 0])
        raise ValueError(
            f"neighborhood_size ({neighborhood_size}) must be smaller than the size of every "
            f"cloud; cloud {i} has {int(num_points[i])} points"
        )
    # Centre each cloud first: the covariances then lose less precision to large offsets.
    mean = points.sum(1) / num_points[:, None].to(points.dtype)
    centered = points - mean[:, None, :]
    cov, neighbours = get_point_covariances(centered, num_points, neighborhood_size)
    curvatures, frames = torch.linalg.eigh(cov)
    if disambiguate_directions:
        normal = _disambiguate_vector_directions(centered, neighbours, frames[..., 0])
        main = _disambiguate_vector_directions(centered, neighbours, frames[..., 2])
        middle = torch.linalg.cross(normal, main, dim=2)
        frames = torch.stack((normal, middle, main), dim=3)
    # Padding rows of a Pointclouds' padded view hold zeros, as points_padded() does.
    real = torch.arange(points.shape[1], device=points.device)[None, :] < num_points[:, None]
    zero = torch.zeros((), dtype=frames.dtype, device=frames.device)
    curvatures = torch.where(real[..., None], curvatures, zero)
    frames = torch.where(real[..., None, None], frames, zero)
    return curvatures, frames


def _disambiguate_vector_directions(
    points: torch.Tensor, neighbours: torch.Tensor, vecs: torch.Tensor
) -> torch.Tensor:
    """Flip each vector (N, P, 3) that has fewer than half of its K neighbours on its side."""
    K = neighbours.shape[2]
    proj = (vecs[:, :, None] * (neighbours - points[:, :, None])).sum(3)
    positive = (proj > 0).to(vecs.dtype).sum(2, keepdim=True)
    flip = (positive < 0.5 * K).to(vecs.dtype)
    return (1.0 - 2.0 * flip) * vecs
