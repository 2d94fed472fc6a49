"""Frustum geometry: ShapeNet's Blender camera, the frustum voxel grid, the box frustum.

One home for the constants of the camera that rendered ShapeNet (R2N2's Blender setup, which
Mesh R-CNN's ShapeNet models assume) and for the maps between camera-frame points and the two
voxel frames the methods predict in:

- the **frustum grid** of a whole image (Mesh R-CNN's ShapeNet voxels, generalised from its fixed
  Blender camera to any ``K``): a camera-frame point with pixel (u, v) and depth Z has
  normalised coordinates

      x = 2 u / W - 1,   y = 2 v / H - 1,   z = 2 (ndc(Z) - zmin) / (zmax - zmin) - 1,
      ndc(Z) = (far + near) / (far - near) - 2 far near / ((far - near) Z)

  (Blender's NDC depth), and lies in voxel ``grid[k, j, i]`` with (i, j, k) = round((V - 1)
  (x, y, z + 1) / 2) (voxel centres span [-1, 1], align "center"). For a 137x137 R2N2 render
  with cx = W/2 this is exactly the grid of Mesh R-CNN's ``MeshVoxDataset``. Mesh R-CNN's heads
  use the same space without K (:func:`voxel_to_camera`, through Blender's matrix).
- the **box frustum** of each detected box (Mesh R-CNN's Pix3D heads): a camera-frame point maps
  to

      x = 2 (u - x1) / (x2 - x1) - 1,   y = 2 (v - y1) / (y2 - y1) - 1,
      z = 2 (1/zmin - 1/Z) / (1/zmin - 1/zmax) - 1,

  where (u, v) is its pixel, (x1, y1, x2, y2) the box and [zmin, zmax] the object's depth
  range: x, y are box-normalized image coordinates (x right, y down) and z is linear in inverse
  depth. Mesh R-CNN (``meshrcnn/utils/shape.py``, ``structures/mesh.py``,
  ``structures/voxel.py``) gets this map by estimating, with an SVD, the plane homographies that
  send the frustum's corners to the unit square; the closed form above is that same homography,
  without the float32 SVD noise. For Mesh R-CNN's ``K = [f, px, py]`` (3 entries, the principal
  point at the image centre) the pixel is Mesh R-CNN's ``u = W - 1 - px - f X / Z`` with
  ``W = 2 px`` (and likewise v), one pixel off the exact projection; for ``K = [fx, fy, cx, cy]``
  (4 entries) it is the exact ``u = cx - fx X / Z``.

The camera frame is +X left, +Y up, +Z forward (see :mod:`meshrecon.render.cameras`, which
takes Blender's constants from here). This module imports nothing of meshrecon, so that data,
heads and evaluators can all use it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "BLENDER_FOCAL_MM",
    "BLENDER_SENSOR_MM",
    "BLENDER_F_NDC",
    "BLENDER_NEAR_FAR",
    "R2N2_IMAGE_SIZE",
    "SHAPENET_ZRANGE",
    "blender_ndc_depth_coefficients",
    "blender_ndc_to_camera",
    "voxel_to_camera",
    "voxelize_in_frustum",
    "frustum_voxel_coords_to_camera",
    "box_ray_bounds",
    "camera_to_box_frustum",
    "box_frustum_to_camera",
]

# Blender's default camera, with which R2N2 rendered ShapeNet: a 35 mm lens on a 32 mm sensor
# fitted to the (square) image, clip planes at 0.1 and 100 model units.
BLENDER_FOCAL_MM = 35.0
BLENDER_SENSOR_MM = 32.0
BLENDER_NEAR_FAR = (0.1, 100.0)
# The focal length as an NDC scale: the image spans [-1, 1], so f_ndc = 2 f / sensor (2.1875).
BLENDER_F_NDC = 2.0 * BLENDER_FOCAL_MM / BLENDER_SENSOR_MM
# Mesh R-CNN's dataset-wide range of the renders' Blender-NDC depth that the ShapeNet voxel
# grid spans (measured on the data, not derived from the camera).
SHAPENET_ZRANGE = (0.67, 0.92)
# Side (pixels) of R2N2's square renders: the views single-view models are trained on (Mesh
# R-CNN's ShapeNet models and the synthetic single-view configs), so the size they are fed at.
R2N2_IMAGE_SIZE = 137


def blender_ndc_depth_coefficients(
    near_far: Sequence[float] = BLENDER_NEAR_FAR,
) -> tuple[float, float]:
    """Return the coefficients (A, B) of the NDC depth of Blender's projection.

    NDC depth ``z_ndc = (A Z_gl + B) / -Z_gl`` for OpenGL camera depth ``Z_gl < 0``, with
    ``A = -(far + near) / (far - near)`` and ``B = -2 far near / (far - near)`` (rows 3, 4 of
    ``blender_projection_matrix``).

    Args:
        near_far: (near, far) clip planes, 0 < near < far.

    Raises:
        ValueError: ``near_far`` is not 0 < near < far.
    """
    n, f = float(near_far[0]), float(near_far[1])
    if not 0 < n < f:
        raise ValueError(f"near_far must satisfy 0 < near < far, got {tuple(near_far)}")
    return -(f + n) / (f - n), -2.0 * f * n / (f - n)


# The same two entries as Mesh R-CNN's code writes them, rounded to 7 digits (its
# blender_ndc_to_world): kept so double-precision inputs give its numbers (float32 ones are
# identical either way); tests check they equal blender_ndc_depth_coefficients() to 1e-8.
_MESHRCNN_BLENDER_A3 = -1.002002
_MESHRCNN_BLENDER_B1 = -0.2002002


def _project(points_cam: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    # meshrecon.render.cameras.project_points for (M, 3) points and a (4,) K (the cameras
    # module imports this one, so it is not imported back).
    xz = points_cam[..., 0] / points_cam[..., 2]
    yz = points_cam[..., 1] / points_cam[..., 2]
    return torch.stack([K[..., 2] - K[..., 0] * xz, K[..., 3] - K[..., 1] * yz], dim=-1)


# ---------------------------------------------------------------------------- ShapeNet grid
def blender_ndc_to_camera(verts: torch.Tensor) -> torch.Tensor:
    """Invert the Blender projection: (V, 3) NDC points -> (V, 3) OpenGL camera-frame points."""
    if verts.dim() != 2 or verts.shape[1] != 3:
        raise ValueError(f"verts must have shape (V, 3), got {tuple(verts.shape)}")
    x_ndc, y_ndc, z_ndc = verts.unbind(dim=1)
    # w = -z, z_ndc = (A3 z + B1) / (-z)  =>  z = B1 / (-z_ndc - A3)
    z = _MESHRCNN_BLENDER_B1 / (-1.0 * z_ndc - _MESHRCNN_BLENDER_A3)
    y = (-1.0 / BLENDER_F_NDC) * (z * y_ndc)
    x = (-1.0 / BLENDER_F_NDC) * (z * x_ndc)
    return torch.stack([x, y, z], dim=1)


def voxel_to_camera(verts: torch.Tensor) -> torch.Tensor:
    """Map (V, 3) points of the ShapeNet voxel space [-1, 1]^3 to Blender's camera frame.

    Blender's (OpenGL) camera frame is Mesh R-CNN's: x right, y up, looking down -z. The voxel
    space is Blender's NDC with y flipped to image orientation and the NDC depth
    range :data:`SHAPENET_ZRANGE` rescaled to [-1, 1].
    """
    if verts.dim() != 2 or verts.shape[1] != 3:
        raise ValueError(f"verts must have shape (V, 3), got {tuple(verts.shape)}")
    zmin, zmax = SHAPENET_ZRANGE
    m = 2.0 / (zmax - zmin)
    b = -2.0 * zmin / (zmax - zmin) - 1
    x, y, z = verts.unbind(dim=1)
    ndc = torch.stack([x, -y, (z - b) / m], dim=1)
    return blender_ndc_to_camera(ndc)


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
    V = int(voxel_size)
    grid = torch.zeros(V, V, V, dtype=torch.bool)
    pts = points_cam[points_cam[:, 2] > 0]
    if len(pts) == 0:
        return grid
    uv = _project(pts.float(), torch.as_tensor(K, dtype=torch.float32))
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
    """Map voxel coordinates of :func:`voxelize_in_frustum`'s grid back to camera points.

    Args:
        coords: (..., 3) (x, y, z) in voxel index units (fractional allowed, e.g. cubified
            vertices).
        K: (4,) ``[fx, fy, cx, cy]`` of the image.
        image_size: (H, W) of the image.
        voxel_size: V, the grid's side.
        zrange: Blender-NDC depth range mapped to the grid's depth extent.
        near_far: Blender's clip planes, defining NDC depth.

    Returns:
        (..., 3) camera-frame points, in the dtype of ``coords`` (float32 for integer ones).
    """
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


# ---------------------------------------------------------------------------- box frustum
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
        boxes: (N, 4) XYXY pixel boxes (see :func:`box_ray_bounds`).
        Ks: (N, 3) ``[f, px, py]`` or (N, 4) ``[fx, fy, cx, cy]`` (see :func:`box_ray_bounds`).
        zranges: (N, 2) ``(zmin, zmax)`` depth range mapped to z = -1, +1.
        image_sizes: (N, 2) ``(W, H)`` for 3-entry Ks (see :func:`box_ray_bounds`).

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
