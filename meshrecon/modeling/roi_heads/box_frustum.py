"""The box frustum frame of Mesh R-CNN's Pix3D heads: camera points <-> [-1, 1]^3 per box.

Mesh R-CNN predicts voxels and meshes in the frustum of each detected box: a camera-frame
point (X, Y, Z) maps to

    x = 2 (u - x1) / (x2 - x1) - 1,   y = 2 (v - y1) / (y2 - y1) - 1,
    z = 2 (1/zmin - 1/Z) / (1/zmin - 1/zmax) - 1,

where (u, v) is its pixel, (x1, y1, x2, y2) the box and [zmin, zmax] the object's depth range:
x, y are box-normalized image coordinates (x right, y down) and z is linear in inverse depth.
Mesh R-CNN (``meshrcnn/utils/shape.py``, ``structures/mesh.py``, ``structures/voxel.py``) gets
this map by estimating, with an SVD, the plane homographies that send the frustum's corners to
the unit square; the closed form above is that same homography, without the float32 SVD noise.

Pixels: the camera frame is +X left, +Y up, +Z forward. For Mesh R-CNN's ``K = [f, px, py]``
(3 entries, the principal point at the image centre) the pixel is Mesh R-CNN's
``u = W - 1 - px - f X / Z`` with ``W = 2 px`` (and likewise v), one pixel off the exact
projection; for ``K = [fx, fy, cx, cy]`` (4 entries) it is the exact ``u = cx - fx X / Z``.
"""

from __future__ import annotations

import torch

from meshrecon.structures import Meshes

__all__ = [
    "box_ray_bounds",
    "camera_to_box_frustum",
    "box_frustum_to_camera",
    "crop_meshes_within_boxes",
    "crop_voxels_within_boxes",
    "points_to_voxel_grid",
]


def _check(boxes: torch.Tensor, Ks: torch.Tensor) -> None:
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {tuple(boxes.shape)}")
    if Ks.dim() != 2 or Ks.shape[1] not in (3, 4) or Ks.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"Ks must have shape ({boxes.shape[0]}, 3) or ({boxes.shape[0]}, 4), "
            f"got {tuple(Ks.shape)}"
        )


def box_ray_bounds(
    boxes: torch.Tensor, Ks: torch.Tensor, image_sizes: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """X/Z and Y/Z of the rays through each box's right/left and bottom/top edges.

    Args:
        boxes: (N, 4) XYXY pixel boxes.
        Ks: (N, 3) ``[f, px, py]`` or (N, 4) ``[fx, fy, cx, cy]``.
        image_sizes: (N, 2) ``(W, H)`` for 3-entry Ks (default ``2 * (px, py)``, as Mesh R-CNN
            in training); ignored for 4-entry Ks.

    Returns:
        (a_lo, a_hi, b_lo, b_hi), each (N,): X/Z at x2 and x1, Y/Z at y2 and y1.
    """
    _check(boxes, Ks)
    x1, y1, x2, y2 = boxes.unbind(dim=1)
    if Ks.shape[1] == 3:
        f, px, py = Ks.to(boxes.dtype).unbind(dim=1)
        if image_sizes is None:
            W, H = 2.0 * px, 2.0 * py
        else:
            W, H = image_sizes.to(boxes.dtype).unbind(dim=1)
        return (
            (W - 1 - x2 - px) / f,
            (W - 1 - x1 - px) / f,
            (H - 1 - y2 - py) / f,
            (H - 1 - y1 - py) / f,
        )
    fx, fy, cx, cy = Ks.to(boxes.dtype).unbind(dim=1)
    return (cx - x2) / fx, (cx - x1) / fx, (cy - y2) / fy, (cy - y1) / fy


def camera_to_box_frustum(
    points: torch.Tensor,
    boxes: torch.Tensor,
    Ks: torch.Tensor,
    zranges: torch.Tensor,
    image_sizes: torch.Tensor | None = None,
) -> torch.Tensor:
    """Camera-frame points -> box frustum coordinates (x right, y down, z far; box = [-1, 1]).

    Args:
        points: (N, P, 3) camera-frame points, one set per box.
        boxes, Ks, image_sizes: see :func:`box_ray_bounds`.
        zranges: (N, 2) ``(zmin, zmax)`` depth range mapped to z = -1, +1.

    Returns:
        (N, P, 3) frustum coordinates.
    """
    if points.dim() != 3 or points.shape[2] != 3 or points.shape[0] != boxes.shape[0]:
        raise ValueError(f"points must have shape ({boxes.shape[0]}, P, 3), got {points.shape}")
    a_lo, a_hi, b_lo, b_hi = (t[:, None] for t in box_ray_bounds(boxes, Ks, image_sizes))
    inv_lo, inv_hi = (1.0 / zranges.to(points.dtype)).unbind(dim=1)
    X, Y, Z = points.unbind(dim=2)
    # In Mesh R-CNN's (x, y) both axes point the other way (camera X left, Y up) and are
    # negated at the end; the two negations are folded in here.
    x = 1.0 - 2.0 * (X / Z - a_lo) / (a_hi - a_lo)
    y = 1.0 - 2.0 * (Y / Z - b_lo) / (b_hi - b_lo)
    z = 2.0 * (inv_lo[:, None] - 1.0 / Z) / (inv_lo - inv_hi)[:, None] - 1.0
    return torch.stack([x, y, z], dim=2)


def box_frustum_to_camera(
    coords: torch.Tensor,
    boxes: torch.Tensor,
    Ks: torch.Tensor,
    zranges: torch.Tensor,
    image_sizes: torch.Tensor | None = None,
) -> torch.Tensor:
    """Inverse of :func:`camera_to_box_frustum`: (N, P, 3) frustum coords -> camera points.

    Mesh R-CNN places predicted meshes this way at evaluation, with the image size given and
    ``zranges`` from the predicted dz around the ground-truth depth centre.
    """
    if coords.dim() != 3 or coords.shape[2] != 3 or coords.shape[0] != boxes.shape[0]:
        raise ValueError(f"coords must have shape ({boxes.shape[0]}, P, 3), got {coords.shape}")
    a_lo, a_hi, b_lo, b_hi = (t[:, None] for t in box_ray_bounds(boxes, Ks, image_sizes))
    inv_lo, inv_hi = (1.0 / zranges.to(coords.dtype)).unbind(dim=1)
    x, y, z = coords.unbind(dim=2)
    Z = 1.0 / (inv_lo[:, None] - (z + 1.0) / 2.0 * (inv_lo - inv_hi)[:, None])
    X = (a_lo + (1.0 - x) / 2.0 * (a_hi - a_lo)) * Z
    Y = (b_lo + (1.0 - y) / 2.0 * (b_hi - b_lo)) * Z
    return torch.stack([X, Y, Z], dim=2)


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
