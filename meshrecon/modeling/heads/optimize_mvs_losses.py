"""Geometry and losses of OptimizeMVS (Wei et al., CVPR 2019): z-buffer, front constraint,
diversity, multi-view consistency, farthest-point sampling.

Everything here is a plain function of tensors, so the head (``optimize_mvs.py``) and the tests
use the same code:

* :func:`zbuffer_first` keeps, in each cell of a coarse ``(h, w)`` grid over the image, the
  point nearest to the camera: the points a low-resolution z-buffer sees.
* :func:`depth_front_points` lifts a depth map to the camera-frame points of its front surface,
  one per coarse cell (the pixel of smallest depth in the cell, i.e. the depth min-pooled to the
  grid), so that the two sets of :func:`front_constraint_loss` have the same density.
* :func:`diversity_loss`: a hinge that asks the shapes made from two random inputs of the same
  image to be apart by at least ``margin`` per unit of (normalised) distance between the inputs.
* :func:`consistency_loss`: mean Chamfer distance over the pairs of views' world-frame clouds.
* :func:`sample_farthest_points` and :func:`set_distance` are :mod:`meshrecon.ops`' (the
  first with the head's older signature), kept importable here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from meshrecon.ops.point_set_distance import set_distance as _ops_set_distance
from meshrecon.ops.sample_farthest_points import (
    sample_farthest_points as _ops_sample_farthest_points,
)
from meshrecon.render.cameras import project_points, unproject_depth
from meshrecon.utils.stage_timer import stage

__all__ = [
    "consistency_loss",
    "depth_front_points",
    "diversity_loss",
    "front_constraint_loss",
    "pack_by_mask",
    "sample_farthest_points",
    "set_distance",
    "zbuffer_first",
]


def _grid_hw(resolution: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(resolution, int):
        resolution = (resolution, resolution)
    h, w = (int(r) for r in resolution)
    if h < 1 or w < 1:
        raise ValueError(f"z-buffer resolution must be >= 1, got {tuple(resolution)}")
    return h, w


def _cells(
    uv: torch.Tensor, image_size: Sequence[int], grid: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates (..., 2) -> (flat cell index (...), inside-the-image mask (...))."""
    H, W = (float(s) for s in image_size)
    gh, gw = grid
    col = torch.floor(uv[..., 0] * (gw / W))
    row = torch.floor(uv[..., 1] * (gh / H))
    inside = (col >= 0) & (col < gw) & (row >= 0) & (row < gh)
    # Cells of points outside (NaN included: its int64 cast would index far out of range) are
    # never used; 0 keeps them a valid index.
    index = torch.where(inside, row * gw + col, torch.zeros_like(row)).long()
    return index, inside


def _first_in_cell(
    index: torch.Tensor, key: torch.Tensor, valid: torch.Tensor, num_cells: int
) -> torch.Tensor:
    """(N, M) mask of the entries with the smallest ``key`` of their (row, cell); ties -> one.

    Args:
        index: (N, M) cell of each entry, in [0, num_cells).
        key: (N, M) value to minimise (depth).
        valid: (N, M) entries that take part.
    """
    N, M = index.shape
    if M == 0:
        return valid.clone()
    flat_cell = (index + torch.arange(N, device=index.device)[:, None] * num_cells).flatten()
    big = torch.finfo(key.dtype).max
    key = torch.where(valid, key, torch.full_like(key, big)).flatten()
    # Sort by depth, then the first position of each cell in that order is its nearest entry.
    order = torch.argsort(key, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    first = torch.full((N * num_cells,), order.numel(), dtype=torch.long, device=index.device)
    first = first.scatter_reduce(0, flat_cell, rank, reduce="amin")
    keep = (rank == first[flat_cell]).view(N, M)
    return keep & valid


def zbuffer_first(
    points_cam: torch.Tensor,
    K: torch.Tensor,
    image_size: Sequence[int],
    resolution: int | Sequence[int],
    lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Visibility of camera-frame points in a coarse z-buffer.

    The image is divided into a ``resolution`` grid of cells; a point is visible when it lies in
    front of the camera (Z > 0), projects inside the image and is the nearest point of its cell.
    So at most one point per cell is visible, and a point hidden behind another in the same
    cell is not.

    Args:
        points_cam: (N, P, 3) camera-frame points (+X left, +Y up, +Z forward).
        K: (N, 4) intrinsics ``[fx, fy, cx, cy]`` of images of ``image_size``.
        image_size: (H, W) in pixels.
        resolution: cells per side, int or (h, w).
        lengths: optional (N,) number of real points per cloud (the rest is padding).

    Returns:
        (N, P) bool.
    """
    if points_cam.dim() != 3 or points_cam.shape[-1] != 3:
        raise ValueError(f"points_cam must be (N, P, 3), got {tuple(points_cam.shape)}")
    if K.shape != (points_cam.shape[0], 4):
        raise ValueError(f"K must be ({points_cam.shape[0]}, 4), got {tuple(K.shape)}")
    grid = _grid_hw(resolution)
    pts = points_cam.detach()
    z = pts[..., 2]
    front = z > 1e-6
    safe = torch.where(front[..., None], pts, torch.ones_like(pts))
    index, inside = _cells(project_points(safe, K), image_size, grid)
    valid = front & inside
    if lengths is not None:
        valid &= torch.arange(pts.shape[1], device=pts.device)[None] < lengths[:, None]
    return _first_in_cell(index, z, valid, grid[0] * grid[1])


def pack_by_mask(points: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather the masked points of each cloud to the front: (padded (N, M, 3), lengths (N,)).

    ``M`` is the largest count (at least 1); padding rows are zeros. Differentiable w.r.t.
    ``points``.
    """
    lengths = mask.sum(dim=1)
    M = max(int(lengths.max()) if lengths.numel() else 0, 1)
    # Stable sort puts the selected points first, in their original order.
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :M]
    gathered = torch.gather(points, 1, order[..., None].expand(-1, -1, points.shape[-1]))
    keep = torch.arange(M, device=points.device)[None] < lengths[:, None]
    return gathered * keep[..., None].to(points.dtype), lengths


def depth_front_points(
    depth: torch.Tensor, K: torch.Tensor, resolution: int | Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The visible surface of depth maps, one camera-frame point per coarse cell.

    Each pixel with depth (> 0, finite) is lifted to its camera-frame point at the pixel centre
    (:func:`meshrecon.render.cameras.unproject_depth`); in each cell of the ``resolution`` grid
    the pixel of smallest depth is kept (the map min-pooled to the grid), as the z-buffer of
    :func:`zbuffer_first` keeps the nearest predicted point.

    Args:
        depth: (N, H, W) camera Z, 0 where there is no surface.
        K: (N, 4) intrinsics of those maps.
        resolution: cells per side, int or (h, w).

    Returns:
        (points (N, M, 3) padded, lengths (N,)).
    """
    if depth.dim() != 3:
        raise ValueError(f"depth must be (N, H, W), got {tuple(depth.shape)}")
    grid = _grid_hw(resolution)
    N, H, W = depth.shape
    pts, valid = unproject_depth(depth, K)
    pts, valid = pts.reshape(N, H * W, 3), valid.reshape(N, H * W)
    v, u = torch.meshgrid(
        torch.arange(H, device=depth.device, dtype=depth.dtype) + 0.5,
        torch.arange(W, device=depth.device, dtype=depth.dtype) + 0.5,
        indexing="ij",
    )
    index, _ = _cells(torch.stack([u, v], -1).reshape(1, H * W, 2), (H, W), grid)
    keep = _first_in_cell(index.expand(N, -1), pts[..., 2], valid, grid[0] * grid[1])
    return pack_by_mask(pts, keep)


# The set distance is an op (the evaluator scores with it too); timed here as a loss.
set_distance = stage("losses")(_ops_set_distance)


@stage("losses")
def front_constraint_loss(
    points_cam: torch.Tensor,
    depth: torch.Tensor,
    K: torch.Tensor,
    resolution: int | Sequence[int],
    distance: str = "chamfer",
    emd_points: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Front constraint: the predicted points a coarse z-buffer sees vs the depth map's surface.

    Args:
        points_cam: (N, P, 3) predicted clouds in the frame of the camera that took ``depth``.
        depth: (N, H, W) ground-truth depth of that view (0: background).
        K: (N, 4) intrinsics.
        resolution: z-buffer cells per side (int or (h, w)).
        distance: "chamfer" or "emd" (see :func:`set_distance`).

    Returns:
        (losses (N,), valid (N,) bool): the loss is 0 and valid False where either set is empty;
        NaN (and valid True) for a cloud holding a NaN or infinite point.
    """
    if points_cam.shape[0] != depth.shape[0]:
        raise ValueError(
            f"points_cam ({points_cam.shape[0]} clouds) and depth ({depth.shape[0]} maps) differ"
        )
    visible = zbuffer_first(points_cam, K, depth.shape[-2:], resolution)
    pred, pred_len = pack_by_mask(points_cam, visible)
    gt, gt_len = depth_front_points(depth.to(points_cam.dtype), K, resolution)
    valid = (pred_len > 0) & (gt_len > 0)
    # The z-buffer never sees a NaN point, so a diverged cloud would look merely empty (loss 0):
    # such clouds get a NaN loss and count as valid, so that the NaN reaches the trainer's guard.
    nonfinite = ~torch.isfinite(points_cam.detach()).flatten(1).all(1)
    if not bool(valid.any()):
        zero = points_cam.sum(dim=(1, 2)) * 0.0
        return zero.masked_fill(nonfinite, float("nan")), valid | nonfinite
    # Empty sets get one (zero) point so that no 0 / 0 reaches the gradient; masked below.
    loss = set_distance(pred, gt, distance, pred_len.clamp(min=1), gt_len.clamp(min=1), emd_points)
    loss = torch.where(valid, loss, loss.new_zeros(())).masked_fill(nonfinite, float("nan"))
    return loss, valid | nonfinite


@stage("losses")
def diversity_loss(
    clouds: torch.Tensor, noise: torch.Tensor, margin: float, distance: str = "chamfer"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Diversity hinge over the pairs of random inputs of each image.

    ``mean over images and pairs i < j of max(0, margin * d_r(i, j) - D(S_i, S_j))`` with
    ``d_r = ||r_i - r_j|| / sqrt(2 * dim(r))`` (about 1 for independent r ~ N(0, I)) and D the
    set distance of :func:`set_distance`. So shapes must differ by at least ``margin`` (in D's
    units) per unit of distance between their inputs, and more distant inputs must give more
    distant shapes. The authors write ``max(0, ||r_i - r_j|| - a * D)``, which is
    ``a * max(0, ||r_i - r_j|| / a - D)``: the same hinge with margin ``1 / a`` per unit of the
    raw distance, weighted by ``a``.

    Args:
        clouds: (B, n, P, 3) the n shapes generated for each of B images.
        noise: (B, n, D) their random inputs.
        margin: shape distance asked per unit of normalised input distance.

    Returns:
        (loss scalar, mean shape distance over the pairs, detached; for logging).
    """
    if clouds.dim() != 4 or noise.dim() != 3 or clouds.shape[:2] != noise.shape[:2]:
        raise ValueError(
            f"clouds must be (B, n, P, 3) and noise (B, n, D) with the same B, n; got "
            f"{tuple(clouds.shape)} and {tuple(noise.shape)}"
        )
    B, n = noise.shape[:2]
    if n < 2:
        zero = clouds.sum() * 0.0
        return zero, zero.detach()
    i, j = torch.triu_indices(n, n, offset=1, device=clouds.device)
    d_r = (noise[:, i] - noise[:, j]).norm(dim=-1) / math.sqrt(2 * noise.shape[-1])
    P = clouds.shape[2]
    d_s = set_distance(
        clouds[:, i].reshape(-1, P, 3), clouds[:, j].reshape(-1, P, 3), distance
    ).view(B, -1)
    return torch.relu(margin * d_r - d_s).mean(), d_s.mean().detach()


def consistency_loss(clouds_world: torch.Tensor) -> torch.Tensor:
    """Mean Chamfer distance over the pairs of views: (..., V, P, 3) world clouds -> (...).

    With one view there is no pair and the loss is 0.
    """
    if clouds_world.dim() < 3 or clouds_world.shape[-1] != 3:
        raise ValueError(f"clouds_world must be (..., V, P, 3), got {tuple(clouds_world.shape)}")
    lead, (V, P) = clouds_world.shape[:-3], clouds_world.shape[-3:-1]
    flat = clouds_world.reshape(-1, V, P, 3)
    if V < 2:
        return flat.sum(dim=(1, 2, 3)).reshape(lead) * 0.0
    i, j = torch.triu_indices(V, V, offset=1, device=flat.device)
    d = set_distance(flat[:, i].reshape(-1, P, 3), flat[:, j].reshape(-1, P, 3))
    return d.view(flat.shape[0], -1).mean(dim=1).reshape(lead)


def sample_farthest_points(
    points: torch.Tensor, K: int, random_start_point: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Farthest-point sampling of K points of equal-length clouds, keeping every point (in
    their order) when ``K >= P``: the head's use of :func:`meshrecon.ops.sample_farthest_points`
    (which has PyTorch3D's arguments; this older signature stays for its callers).

    Args:
        points: (N, P, D).
        K: points to keep.

    Returns:
        (selected (N, min(K, P), D), indices (N, min(K, P)) long).
    """
    if points.dim() != 3:
        raise ValueError(f"points must be (N, P, D), got {tuple(points.shape)}")
    if K < 1:
        raise ValueError(f"K must be >= 1, got {K}")
    N, P, _ = points.shape
    if K >= P:
        idx = torch.arange(P, device=points.device).expand(N, P).clone()
        return points.clone(), idx
    return _ops_sample_farthest_points(points, K=K, random_start_point=random_start_point)
