"""3D training targets built by the mappers: camera-frame shapes, frustum voxels, dz.

The camera frame is +X left, +Y up, +Z forward; every projection goes through
:mod:`meshrecon.render.cameras`.

Frustum voxel grid (Mesh R-CNN's ShapeNet voxels, generalised from its fixed Blender camera
to any K): a camera-frame point with pixel (u, v) and depth Z has normalised coordinates

    x = 2 u / W - 1,   y = 2 v / H - 1,   z = 2 (ndc(Z) - zmin) / (zmax - zmin) - 1,
    ndc(Z) = (far + near) / (far - near) - 2 far near / ((far - near) Z)

(Blender's NDC depth), and lies in voxel ``grid[k, j, i]`` with (i, j, k) = round((V - 1)
(x, y, z + 1) / 2) (voxel centres span [-1, 1], align "center"). For a 137x137 R2N2 render
with cx = W/2 this is exactly the grid of Mesh R-CNN's ``MeshVoxDataset``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .transforms import Transform

__all__ = [
    "align_points_to_box",
    "frustum_voxel_coords_to_camera",
    "meshrcnn_dz",
    "model_to_camera",
    "voxelize_in_frustum",
]

# Mesh R-CNN's dataset-wide Blender-NDC depth range of ShapeNet renders, and Blender's planes.
SHAPENET_ZRANGE = (0.67, 0.92)
BLENDER_NEAR_FAR = (0.1, 100.0)


def model_to_camera(
    points: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    transforms: Transform,
    convention: str = "scale_K",
) -> torch.Tensor:
    """Model-frame points (V, 3) to the camera frame of the transformed image.

    ``X = R v + t``, then the transforms' camera map (flips negate X). With ``convention``
    "meshrcnn", X and Y are also multiplied by the resize factors (Mesh R-CNN's Pix3D
    targets, for which K stays [f, w/2, h/2]).
    """
    from meshrecon.render.cameras import transform_points

    X = transforms.apply_points_cam(transform_points(points.float(), R.float(), t.float()))
    if convention == "meshrcnn":
        sx, sy = transforms.meshrcnn_xy_scale()
        if (sx, sy) != (1.0, 1.0):
            X = X * torch.tensor([sx, sy, 1.0], dtype=X.dtype)
    elif convention != "scale_K":
        raise ValueError(f"K convention must be 'meshrcnn' or 'scale_K', got {convention!r}")
    return X


def meshrcnn_dz(verts_cam: torch.Tensor, focal: float) -> float:
    """Mesh R-CNN's depth-extent target: ``(zmax - zmin) / zcenter * focal``.

    ``focal`` is the focal length in pixels of the image the model sees (Mesh R-CNN: f times
    new_h / h, so that log(dz / box height) does not depend on the resize).
    """
    z = verts_cam[:, 2]
    zmin, zmax = float(z.min()), float(z.max())
    zc = (zmin + zmax) / 2.0
    if zc <= 0:
        raise ValueError(f"object centre is behind the camera (z = {zc}); cannot compute dz")
    return (zmax - zmin) / zc * float(focal)


def _ndc_depth(Z: torch.Tensor, near_far: Sequence[float]) -> torch.Tensor:
    n, f = float(near_far[0]), float(near_far[1])
    return (f + n) / (f - n) - 2.0 * f * n / ((f - n) * Z)


def voxelize_in_frustum(
    points_cam: torch.Tensor,
    K: torch.Tensor | Sequence[float],
    image_size: tuple[int, int],
    voxel_size: int,
    zrange: Sequence[float] = SHAPENET_ZRANGE,
    near_far: Sequence[float] = BLENDER_NEAR_FAR,
) -> torch.Tensor:
    """Occupancy (V, V, V) bool, indexed [z, y, x], of the voxels holding any of the points.

    Args:
        points_cam: (M, 3) camera-frame points (occupied voxel centres of the model).
        K: (4,) ``[fx, fy, cx, cy]`` of the image.
        image_size: (H, W) of the image.
        voxel_size: V.
        zrange: Blender-NDC depth range mapped to the grid's depth extent.
        near_far: Blender's clip planes, defining NDC depth.
    """
    from meshrecon.render.cameras import project_points

    V = int(voxel_size)
    grid = torch.zeros(V, V, V, dtype=torch.bool)
    pts = points_cam[points_cam[:, 2] > 0]
    if len(pts) == 0:
        return grid
    uv = project_points(pts.float(), torch.as_tensor(K, dtype=torch.float32))
    H, W = image_size
    x = 2.0 * uv[:, 0] / W - 1.0
    y = 2.0 * uv[:, 1] / H - 1.0
    z0, z1 = float(zrange[0]), float(zrange[1])
    z = 2.0 * (_ndc_depth(pts[:, 2].float(), near_far) - z0) / (z1 - z0) - 1.0
    idx = torch.round(0.5 * (V - 1) * (torch.stack([x, y, z], dim=1) + 1.0)).long()
    keep = ((idx >= 0) & (idx < V)).all(dim=1)
    idx = idx[keep]
    grid[idx[:, 2], idx[:, 1], idx[:, 0]] = True
    return grid


def frustum_voxel_coords_to_camera(
    coords: torch.Tensor,
    K: torch.Tensor | Sequence[float],
    image_size: tuple[int, int],
    voxel_size: int,
    zrange: Sequence[float] = SHAPENET_ZRANGE,
    near_far: Sequence[float] = BLENDER_NEAR_FAR,
) -> torch.Tensor:
    """Inverse of :func:`voxelize_in_frustum` for voxel coordinates (..., 3) as (x, y, z)
    index units (fractional allowed, e.g. cubified vertices); returns camera points."""
    K = torch.as_tensor(K, dtype=coords.dtype if coords.is_floating_point() else torch.float32)
    c = coords.to(K.dtype) * (2.0 / (voxel_size - 1)) - 1.0
    H, W = image_size
    u = (c[..., 0] + 1.0) * W / 2.0
    v = (c[..., 1] + 1.0) * H / 2.0
    z0, z1 = float(zrange[0]), float(zrange[1])
    ndc = (c[..., 2] + 1.0) * (z1 - z0) / 2.0 + z0
    n, f = float(near_far[0]), float(near_far[1])
    Z = 2.0 * f * n / ((f - n) * ((f + n) / (f - n) - ndc))
    X = (K[2] - u) * Z / K[0]
    Y = (K[3] - v) * Z / K[1]
    return torch.stack([X, Y, Z], dim=-1)


def align_points_to_box(points: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """Stretch points axis by axis so their bounding box becomes ``box`` (2, 3).

    Mesh R-CNN's ShapeNet preprocessing places binvox voxels this way, onto the bounding box
    of the model's mesh, instead of trusting the binvox header.
    """
    lo, hi = points.min(dim=0).values, points.max(dim=0).values
    span = (hi - lo).clamp(min=1e-12)
    return (points - lo) / span * (box[1] - box[0]) + box[0]
