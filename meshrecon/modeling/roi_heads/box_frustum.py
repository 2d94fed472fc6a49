"""Crops of Mesh R-CNN's Pix3D targets to each box's frustum (voxels and meshes in [-1, 1]^3).

The box frustum maps (camera points <-> box frustum coordinates) are defined in
:mod:`meshrecon.render.frustum`, where evaluators and the demo also find them; they stay
importable from here.
"""

from __future__ import annotations

import torch

from meshrecon.render.frustum import (
    box_frustum_to_camera,
    box_ray_bounds,
    camera_to_box_frustum,
)
from meshrecon.structures import Meshes

__all__ = [
    "box_ray_bounds",
    "camera_to_box_frustum",
    "box_frustum_to_camera",
    "crop_meshes_within_boxes",
    "crop_voxels_within_boxes",
    "points_to_voxel_grid",
]


def _zranges(points: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([torch.stack([p[:, 2].min(), p[:, 2].max()]) for p in points])


def crop_meshes_within_boxes(gt_meshes, boxes: torch.Tensor, Ks: torch.Tensor) -> Meshes:
    """Ground-truth camera-frame meshes -> Meshes in each box's frustum frame (the targets of
    the mesh head; Mesh R-CNN's ``batch_crop_meshes_within_box``).

    Args:
        gt_meshes: N ``(verts (V_i, 3), faces (F_i, 3))`` pairs (e.g. ``MeshInstances``).
        boxes: (N, 4) proposal boxes.
        Ks: (N, 3) or (N, 4) intrinsics (``gt_K``).

    Returns:
        Meshes of N meshes; each mesh's depth range is its own [zmin, zmax].
    """
    pairs = list(gt_meshes)
    if len(pairs) != boxes.shape[0]:
        raise ValueError(f"{len(pairs)} gt_meshes for {boxes.shape[0]} boxes")
    if not pairs:
        return Meshes(verts=[], faces=[])
    verts = [v.to(device=boxes.device, dtype=boxes.dtype) for v, _ in pairs]
    zr = _zranges(verts)
    out = []
    for i, v in enumerate(verts):
        out.append(camera_to_box_frustum(v[None], boxes[i : i + 1], Ks[i : i + 1], zr[i : i + 1]))
    return Meshes(verts=[o[0] for o in out], faces=[f.to(boxes.device) for _, f in pairs])


def points_to_voxel_grid(coords: torch.Tensor, side: int) -> torch.Tensor:
    """Occupancy (side, side, side) float, indexed [z, y, x], of frustum-frame points.

    A point lands in voxel ``trunc((c + 1) (side - 1) / 2)`` per axis, computed in Mesh R-CNN's
    pre-flip axes (x left, y up) and then flipped, exactly as its ``verts2voxel``; points
    outside the grid are dropped.
    """
    grid = torch.zeros(side, side, side, dtype=torch.float32, device=coords.device)
    scale = (side - 1) / 2.0
    ix = ((-coords[:, 0] + 1) * scale).long()
    iy = ((-coords[:, 1] + 1) * scale).long()
    iz = ((coords[:, 2] + 1) * scale).long()
    keep = (ix >= 0) & (ix < side) & (iy >= 0) & (iy < side) & (iz >= 0) & (iz < side)
    grid[iz[keep], side - 1 - iy[keep], side - 1 - ix[keep]] = 1.0
    return grid


def crop_voxels_within_boxes(
    gt_voxels, boxes: torch.Tensor, Ks: torch.Tensor, side: int
) -> torch.Tensor:
    """Ground-truth occupied-voxel centres -> (N, side, side, side) occupancy in each box's
    frustum (the targets of the voxel head; Mesh R-CNN's ``batch_crop_voxels_within_box``).

    Args:
        gt_voxels: N (M_i, 3) camera-frame point sets (e.g. ``VoxelInstances``).
        boxes: (N, 4) proposal boxes.
        Ks: (N, 3) or (N, 4) intrinsics.
        side: grid resolution.

    Returns:
        (N, side, side, side) float32 in {0, 1}, indexed [z, y, x].
    """
    pts = [p.to(device=boxes.device, dtype=boxes.dtype) for p in gt_voxels]
    if len(pts) != boxes.shape[0]:
        raise ValueError(f"{len(pts)} gt_voxels for {boxes.shape[0]} boxes")
    if not pts:
        return torch.zeros(0, side, side, side, device=boxes.device)
    zr = _zranges(pts)
    grids = []
    for i, p in enumerate(pts):
        c = camera_to_box_frustum(p[None], boxes[i : i + 1], Ks[i : i + 1], zr[i : i + 1])[0]
        grids.append(points_to_voxel_grid(c, side))
    return torch.stack(grids)
