"""Unsigned distance fields of point clouds sampled on a regular lattice.

The shape descriptor of the recognition baselines (Tatarchenko et al., CVPR 2019): the distance
from each point of a ``resolution``^3 lattice over a box to the nearest point of a cloud of
surface samples. Unlike solid occupancy it needs no watertight mesh, it varies smoothly as the
surface moves, and the Euclidean distance between two descriptors grows with the distance
between the surfaces.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .knn import knn_points

__all__ = ["descriptor_lattice", "distance_field_descriptors"]


def descriptor_lattice(
    box: torch.Tensor | Sequence[Sequence[float]], resolution: int
) -> torch.Tensor:
    """Centres of the cells of a ``resolution``^3 lattice that tiles a box.

    Args:
        box: (2, 3) ``[min_xyz, max_xyz]`` of the box, min < max on every axis.
        resolution: cells along each axis, >= 1.

    Returns:
        (resolution^3, 3) float32 cell centres, x varying fastest, then y, then z.

    Raises:
        ValueError: ``box`` is not (2, 3) with min < max, or ``resolution`` < 1.
    """
    box = torch.as_tensor(box, dtype=torch.float32)
    if box.shape != (2, 3) or not bool((box[1] > box[0]).all()):
        raise ValueError(f"box must be (2, 3) [min_xyz, max_xyz] with min < max, got {box}")
    if resolution < 1:
        raise ValueError(f"resolution must be >= 1, got {resolution}")
    steps = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution
    axes = [box[0, i] + steps * (box[1, i] - box[0, i]) for i in range(3)]
    z, y, x = torch.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    return torch.stack([x, y, z], dim=-1).reshape(-1, 3)


@torch.no_grad()
def distance_field_descriptors(
    points: torch.Tensor | Sequence[torch.Tensor], lattice: torch.Tensor, chunk: int = 16
) -> torch.Tensor:
    """Distance from every lattice point to the nearest point of each cloud.

    Args:
        points: (N, P, 3), or a sequence of N (P_i, 3) non-empty clouds.
        lattice: (L, 3) query points, e.g. from :func:`descriptor_lattice`; the result is on
            its device.
        chunk: clouds per nearest-neighbour call (bounds the memory to chunk x L x max P_i).

    Returns:
        (N, L) float32 descriptors; (0, L) for no clouds.

    Raises:
        ValueError: a cloud is not a non-empty (P, 3) tensor.
    """
    clouds = list(points) if not torch.is_tensor(points) else list(points.unbind(0))
    if not clouds:
        return torch.zeros(0, lattice.shape[0])
    out = []
    lat = lattice.float()
    for start in range(0, len(clouds), chunk):
        part = clouds[start : start + chunk]
        for i, c in enumerate(part):
            if c.dim() != 2 or c.shape[1] != 3 or c.shape[0] == 0:
                raise ValueError(
                    f"points[{start + i}] must be a non-empty (P, 3) cloud, got {tuple(c.shape)}"
                )
        lengths = torch.tensor([c.shape[0] for c in part], device=lat.device)
        padded = torch.zeros(len(part), int(lengths.max()), 3, device=lat.device)
        for i, c in enumerate(part):
            padded[i, : c.shape[0]] = c.to(lat.device).float()
        query = lat[None].expand(len(part), -1, -1)
        knn = knn_points(query, padded, lengths2=lengths, K=1)
        out.append(knn.dists[..., 0].sqrt())
    return torch.cat(out)
