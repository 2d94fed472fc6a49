"""3D training targets built by the mappers: camera-frame shapes, frustum voxels, dz.

The camera frame is +X left, +Y up, +Z forward; every projection goes through
:mod:`meshrecon.render.cameras`.

The frustum voxel grid (``voxelize_in_frustum`` and its inverse) is defined in
:mod:`meshrecon.render.frustum`.
"""

from __future__ import annotations

import torch

from meshrecon.render.cameras import transform_points

# The frustum grid's maps live with the camera geometry (heads and evaluators use them too);
# they stay importable from here.
from meshrecon.render.frustum import (
    BLENDER_NEAR_FAR,
    SHAPENET_ZRANGE,
    frustum_voxel_coords_to_camera,
    voxelize_in_frustum,
)

from .transforms import Transform

__all__ = [
    "BLENDER_NEAR_FAR",
    "SHAPENET_ZRANGE",
    "align_points_to_box",
    "frustum_voxel_coords_to_camera",
    "meshrcnn_dz",
    "model_to_camera",
    "voxelize_in_frustum",
]


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


def align_points_to_box(points: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """Stretch points axis by axis so their bounding box becomes ``box`` (2, 3).

    Mesh R-CNN's ShapeNet preprocessing places binvox voxels this way, onto the bounding box
    of the model's mesh, instead of trusting the binvox header.
    """
    lo, hi = points.min(dim=0).values, points.max(dim=0).values
    span = (hi - lo).clamp(min=1e-12)
    return (points - lo) / span * (box[1] - box[0]) + box[0]
