"""Cameras: intrinsics ``K``, extrinsics ``(R, t)`` and every frame conversion of meshrecon.

Conventions (``docs/DATA_FORMATS.md``):

* **Camera frame** (PyTorch3D's and Pix3D's): +X left, +Y up, +Z forward into the scene. A model
  point ``p`` goes to the camera frame as ``X = R p + t``.
* **Pixels**: origin at the top-left image corner, x right, y down; pixel ``(i, j)`` (row, column)
  covers ``[j, j+1) x [i, i+1)`` and its centre is ``(j + 0.5, i + 0.5)``.
* **Intrinsics** ``K = [fx, fy, cx, cy]``: ``u = cx - fx X / Z``, ``v = cy - fy Y / Z``.

Other frames met in the datasets, and how they relate to ours:

* OpenCV (x right, y down, z forward): ``diag(-1, -1, 1)`` times ours, same ``K``.
* OpenGL / Blender camera (x right, y up, looking down -z): ``diag(-1, 1, -1)`` times ours. Its
  projection matrix maps to NDC in ``[-1, 1]``, x right and y up across the image, so pixel
  ``u = (x_ndc + 1) W / 2`` and ``v = (1 - y_ndc) H / 2``.
* R2N2 / ShapeNet renders: Blender's default 35 mm lens on a 32 mm sensor, the camera placed by
  (azimuth, elevation, distance) as Mesh R-CNN's ``compute_extrinsic_matrix`` does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

# Blender's camera (R2N2's renders) is defined with the frustum geometry; the names stay here too.
from .frustum import BLENDER_F_NDC, BLENDER_NEAR_FAR

__all__ = [
    "BLENDER_F_NDC",
    "R2N2_MAX_CAMERA_DISTANCE",
    "K_from_fov",
    "K_from_opencv_matrix",
    "K_to_opencv_matrix",
    "blender_projection_matrix",
    "camera_center",
    "camera_from_opengl",
    "camera_position_from_spherical_angles",
    "camera_to_opencv",
    "camera_to_opengl",
    "extrinsics_from_opencv",
    "extrinsics_to_opencv",
    "look_at_view_transform",
    "opencv_to_camera",
    "opengl_to_camera",
    "camera_to_opengl_points",
    "pix3d_K",
    "project_points",
    "r2n2_camera",
    "r2n2_extrinsic_opengl",
    "transform_points",
    "unproject_depth",
]

# R2N2's rendering_metadata.txt stores distance / 1.75 (the constant Mesh R-CNN and PyTorch3D use).
R2N2_MAX_CAMERA_DISTANCE = 1.75

_FLIP_OPENCV = (-1.0, -1.0, 1.0)
_FLIP_OPENGL = (-1.0, 1.0, -1.0)


# ---------------------------------------------------------------------------- helpers
def _tensor(x, name: str, like: torch.Tensor | None = None) -> torch.Tensor:
    if torch.is_tensor(x):
        out = x
    else:
        try:
            out = torch.as_tensor(x, dtype=torch.get_default_dtype())
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"{name} must be a tensor or a nested sequence of numbers") from err
    if not out.is_floating_point():
        out = out.to(torch.get_default_dtype())
    if like is not None:
        out = out.to(device=like.device, dtype=like.dtype)
    return out


def _check_K(K: torch.Tensor) -> None:
    if K.ndim not in (1, 2) or K.shape[-1] != 4:
        raise ValueError(
            f"K must have shape (4,) or (N, 4) = [fx, fy, cx, cy], got {tuple(K.shape)}"
        )


def _image_hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        hw = (image_size, image_size)
    else:
        hw = tuple(int(s) for s in image_size)
    if len(hw) != 2 or min(hw) <= 0:
        raise ValueError(f"image_size must be an int or (H, W) of positive ints, got {image_size}")
    return hw


def _batched_apply(points: torch.Tensor, n: int, fn) -> torch.Tensor:
    """Run ``fn(points (N, M, 3)) -> (N, M, k)`` on points (N, ..., 3), keeping the middle dims."""
    if points.ndim < 2 or points.shape[0] != n:
        raise ValueError(
            f"with batched cameras (N={n}) points must have shape (N, ..., 3), "
            f"got {tuple(points.shape)}"
        )
    out = fn(points.reshape(n, -1, 3))
    return out.reshape(*points.shape[:-1], out.shape[-1])


# ---------------------------------------------------------------------------- R, t and K
def transform_points(points: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Return ``R p + t`` for every point: model frame -> camera frame.

    Args:
        points: (..., 3), or (N, ..., 3) when ``R`` or ``t`` is batched.
        R: (3, 3) or (N, 3, 3) rotation (any 3x3 matrix works).
        t: (3,) or (N, 3) translation.

    Returns:
        Tensor of the shape of ``points``.
    """
    points = _tensor(points, "points")
    R, t = _tensor(R, "R", points), _tensor(t, "t", points)
    if points.shape[-1] != 3:
        raise ValueError(f"points must have shape (..., 3), got {tuple(points.shape)}")
    if R.shape[-2:] != (3, 3) or R.ndim not in (2, 3):
        raise ValueError(f"R must have shape (3, 3) or (N, 3, 3), got {tuple(R.shape)}")
    if t.shape[-1] != 3 or t.ndim not in (1, 2):
        raise ValueError(f"t must have shape (3,) or (N, 3), got {tuple(t.shape)}")
    if R.ndim == 2 and t.ndim == 1:
        return points @ R.transpose(0, 1) + t
    n = R.shape[0] if R.ndim == 3 else t.shape[0]
    R = R.expand(n, 3, 3) if R.ndim == 2 else R
    t = t.expand(n, 3) if t.ndim == 1 else t
    if R.shape[0] != t.shape[0]:
        raise ValueError(f"R and t batch sizes differ: {R.shape[0]} vs {t.shape[0]}")
    return _batched_apply(points, n, lambda p: torch.baddbmm(t[:, None], p, R.transpose(1, 2)))


def camera_center(R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Return the camera centre in the model frame, ``-R^T t``: (3,) or (N, 3)."""
    R = _tensor(R, "R")
    t = _tensor(t, "t", R)
    return -(R.transpose(-1, -2) @ t.unsqueeze(-1)).squeeze(-1)


def project_points(points_cam: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Project camera-frame points to pixels: ``u = cx - fx X/Z``, ``v = cy - fy Y/Z``.

    Args:
        points_cam: (..., 3), or (N, ..., 3) when ``K`` is (N, 4). Points with ``Z == 0`` give
            inf / nan; those behind the camera (``Z < 0``) project mirrored, as the formula says.
        K: (4,) or (N, 4) ``[fx, fy, cx, cy]``.

    Returns:
        Pixel coordinates (..., 2) as ``(u, v)`` = (x right, y down).
    """
    points_cam = _tensor(points_cam, "points_cam")
    K = _tensor(K, "K", points_cam)
    _check_K(K)
    if points_cam.shape[-1] != 3:
        raise ValueError(f"points_cam must have shape (..., 3), got {tuple(points_cam.shape)}")

    def proj(p: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        # k broadcasts against p's (..., 3) as (..., 4) or (N, 1, 4).
        xz = p[..., 0] / p[..., 2]
        yz = p[..., 1] / p[..., 2]
        return torch.stack([k[..., 2] - k[..., 0] * xz, k[..., 3] - k[..., 1] * yz], dim=-1)

    if K.ndim == 1:
        return proj(points_cam, K)
    return _batched_apply(points_cam, K.shape[0], lambda p: proj(p, K[:, None]))


def unproject_depth(depth: torch.Tensor, K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lift a depth map (camera Z) to camera-frame points at the pixel centres.

    Args:
        depth: (H, W) or (N, H, W), Z in the camera frame; 0 (or non-finite) marks no depth.
        K: (4,) or (N, 4) ``[fx, fy, cx, cy]``; a batched K needs a batched depth.

    Returns:
        ``(points, valid)``: points (..., H, W, 3) with ``X = (cx - u) Z / fx`` and
        ``Y = (cy - v) Z / fy`` at ``u = j + 0.5``, ``v = i + 0.5``, zero where invalid; valid
        (..., H, W) bool, True where ``depth > 0`` and finite.
    """
    depth = _tensor(depth, "depth")
    K = _tensor(K, "K", depth)
    _check_K(K)
    if depth.ndim not in (2, 3):
        raise ValueError(f"depth must have shape (H, W) or (N, H, W), got {tuple(depth.shape)}")
    if K.ndim == 2 and (depth.ndim != 3 or K.shape[0] != depth.shape[0]):
        raise ValueError(
            f"K of shape {tuple(K.shape)} needs depth of shape (N, H, W) with the same N, "
            f"got {tuple(depth.shape)}"
        )
    H, W = depth.shape[-2:]
    valid = torch.isfinite(depth) & (depth > 0)
    z = torch.where(valid, depth, torch.zeros_like(depth))
    u = torch.arange(W, device=depth.device, dtype=depth.dtype) + 0.5
    v = torch.arange(H, device=depth.device, dtype=depth.dtype) + 0.5
    fx, fy, cx, cy = K.unbind(-1)
    if K.ndim == 2:  # per-image cameras: (N,) -> (N, 1, 1)
        fx, fy, cx, cy = (k[:, None, None] for k in (fx, fy, cx, cy))
    x_over_z = (cx - u) / fx  # (W,) or (N, 1, W)
    y_over_z = (cy - v[:, None]) / fy  # (H, 1) or (N, H, 1)
    points = torch.stack(torch.broadcast_tensors(x_over_z * z, y_over_z * z, z), dim=-1)
    return points, valid


def K_from_fov(fov_deg: float, width: int, height: int, *, axis: str = "x") -> torch.Tensor:
    """Return ``K = [f, f, W/2, H/2]`` of a pinhole camera with square pixels.

    Args:
        fov_deg: full field of view in degrees, in (0, 180), across the image width
            (``axis="x"``) or its height (``axis="y"``).
        width: image width W in pixels.
        height: image height H in pixels.
        axis: ``"x"`` or ``"y"``, the image axis ``fov_deg`` spans.

    Returns:
        (4,) ``[f, f, W/2, H/2]`` in the default dtype.

    Raises:
        ValueError: ``fov_deg`` outside (0, 180) or ``axis`` not ``"x"`` / ``"y"``.
    """
    if not 0.0 < float(fov_deg) < 180.0:
        raise ValueError(f"fov_deg must lie in (0, 180), got {fov_deg}")
    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    span = width if axis == "x" else height
    f = 0.5 * span / math.tan(math.radians(float(fov_deg)) / 2.0)
    return torch.tensor([f, f, width / 2.0, height / 2.0])


def pix3d_K(focal_length_mm: float, width: int, height: int) -> torch.Tensor:
    """Return Pix3D's intrinsics ``[f, f, W/2, H/2]``, with ``f = focal_length * W / 32``.

    Pix3D's focal lengths are in mm on a 32 mm wide sensor; the principal point is the image
    centre.

    Args:
        focal_length_mm: the annotation's ``focal_length``, > 0.
        width: image width W in pixels.
        height: image height H in pixels.

    Returns:
        (4,) intrinsics in the default dtype.

    Raises:
        ValueError: ``focal_length_mm`` is not positive.
    """
    if float(focal_length_mm) <= 0:
        raise ValueError(f"focal_length_mm must be positive, got {focal_length_mm}")
    f = float(focal_length_mm) * width / 32.0
    return torch.tensor([f, f, width / 2.0, height / 2.0])


def K_to_opencv_matrix(K: torch.Tensor) -> torch.Tensor:
    """Return the matrix ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` of intrinsics ``K``.

    Args:
        K: (..., 4) ``[fx, fy, cx, cy]``.

    Returns:
        (..., 3, 3) matrices that project OpenCV-frame points (see :func:`camera_to_opencv`).
    """
    K = _tensor(K, "K")
    _check_K(K)
    M = torch.zeros(*K.shape[:-1], 3, 3, dtype=K.dtype, device=K.device)
    M[..., 0, 0], M[..., 1, 1] = K[..., 0], K[..., 1]
    M[..., 0, 2], M[..., 1, 2], M[..., 2, 2] = K[..., 2], K[..., 3], 1.0
    return M


def K_from_opencv_matrix(M: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`K_to_opencv_matrix` (skew is ignored): (..., 3, 3) -> (..., 4)."""
    M = _tensor(M, "M")
    if M.shape[-2:] != (3, 3):
        raise ValueError(f"M must have shape (..., 3, 3), got {tuple(M.shape)}")
    return torch.stack([M[..., 0, 0], M[..., 1, 1], M[..., 0, 2], M[..., 1, 2]], dim=-1)


# ---------------------------------------------------------------------------- other frames
def _flip(points: torch.Tensor, signs: tuple[float, float, float], name: str) -> torch.Tensor:
    points = _tensor(points, name)
    if points.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (..., 3), got {tuple(points.shape)}")
    return points * points.new_tensor(signs)


def opencv_to_camera(points: torch.Tensor) -> torch.Tensor:
    """OpenCV-frame points (x right, y down, z forward) (..., 3) -> our camera frame."""
    return _flip(points, _FLIP_OPENCV, "points")


def camera_to_opencv(points: torch.Tensor) -> torch.Tensor:
    """Our camera-frame points (..., 3) -> OpenCV frame (x right, y down, z forward)."""
    return _flip(points, _FLIP_OPENCV, "points")


def opengl_to_camera(points: torch.Tensor) -> torch.Tensor:
    """OpenGL/Blender camera-frame points (x right, y up, looking down -z) -> our frame."""
    return _flip(points, _FLIP_OPENGL, "points")


def camera_to_opengl_points(points: torch.Tensor) -> torch.Tensor:
    """Our camera-frame points (..., 3) -> OpenGL/Blender camera frame."""
    return _flip(points, _FLIP_OPENGL, "points")


def extrinsics_from_opencv(
    R_cv: torch.Tensor, t_cv: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Model->OpenCV-camera ``(R, t)`` ((..., 3, 3), (..., 3)) -> model->our-camera ``(R, t)``."""
    R_cv, t_cv = _tensor(R_cv, "R_cv"), _tensor(t_cv, "t_cv")
    d = R_cv.new_tensor(_FLIP_OPENCV)
    return R_cv * d[:, None], t_cv * d


def extrinsics_to_opencv(R: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Model->our-camera ``(R, t)`` -> model->OpenCV-camera ``(R, t)`` (the same flip)."""
    return extrinsics_from_opencv(R, t)


# ---------------------------------------------------------------------------- look-at cameras
def camera_position_from_spherical_angles(
    dist, elev, azim, *, degrees: bool = True, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Return camera positions (N, 3) relative to the target, model +Y up.

    ``(dist cos(elev) sin(azim), dist sin(elev), dist cos(elev) cos(azim))``: azimuth 0 and
    elevation 0 put the camera on the model's +Z axis; positive azimuth turns it towards +X,
    positive elevation raises it towards +Y. ``dist``, ``elev``, ``azim`` are numbers or tensors
    broadcast to a common (N,).
    """
    dtype = dtype or torch.get_default_dtype()
    d, e, a = (torch.as_tensor(x, dtype=dtype).reshape(-1) for x in (dist, elev, azim))
    d, e, a = torch.broadcast_tensors(d, e, a)
    if degrees:
        e, a = torch.deg2rad(e), torch.deg2rad(a)
    return torch.stack([d * e.cos() * a.sin(), d * e.sin(), d * e.cos() * a.cos()], dim=1)


def look_at_view_transform(
    dist=1.0,
    elev=0.0,
    azim=0.0,
    at: Sequence[float] | torch.Tensor = (0.0, 0.0, 0.0),
    degrees: bool = True,
    up: Sequence[float] | torch.Tensor = (0.0, 1.0, 0.0),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the model->camera ``(R (N, 3, 3), t (N, 3))`` of cameras looking at ``at``.

    The camera sits at ``at + camera_position_from_spherical_angles(dist, elev, azim)``: azimuth
    0 (elevation 0) is the camera on the model's +Z axis looking toward -Z, so the model's +X
    appears on the right of the image and +Y up; azimuth 90 is the camera on +X. The camera's
    +Z axis points at ``at``, its +Y axis is as close to ``up`` as possible and +X is left (our
    camera frame). Straight above or below ``at`` (view parallel to ``up``), the camera keeps the
    orientation it has just off the pole at that azimuth.

    Args:
        dist: distance of the cameras from ``at``: a number or a tensor broadcast to (N,).
        elev: elevation angles, broadcast to (N,).
        azim: azimuth angles, broadcast to (N,).
        at: (3,) or (N, 3) target point in the model frame.
        degrees: angles in degrees (else radians).
        up: (3,) or (N, 3) model-frame up direction.
    """
    C_rel = camera_position_from_spherical_angles(dist, elev, azim, degrees=degrees)
    at_t = _tensor(at, "at", C_rel).reshape(-1, 3)
    up_t = _tensor(up, "up", C_rel).reshape(-1, 3)
    n = max(C_rel.shape[0], at_t.shape[0], up_t.shape[0])
    C_rel, at_t, up_t = C_rel.expand(n, 3), at_t.expand(n, 3), up_t.expand(n, 3)
    if (C_rel.norm(dim=1) == 0).any():
        raise ValueError("dist must be non-zero: the camera cannot sit on its target")
    z_axis = torch.nn.functional.normalize(-C_rel, dim=1)
    x_axis = torch.linalg.cross(up_t, z_axis, dim=1)
    # At the poles up x z vanishes; fall back to the azimuth's horizontal direction, the limit of
    # x_axis for the default up as the elevation approaches +-90 degrees.
    a = torch.as_tensor(azim, dtype=C_rel.dtype).reshape(-1).expand(n)
    a = torch.deg2rad(a) if degrees else a
    fallback = torch.stack([-a.cos(), torch.zeros_like(a), a.sin()], dim=1)
    degenerate = x_axis.norm(dim=1, keepdim=True) < 1e-5 * up_t.norm(dim=1, keepdim=True)
    x_axis = torch.nn.functional.normalize(torch.where(degenerate, fallback, x_axis), dim=1)
    y_axis = torch.linalg.cross(z_axis, x_axis, dim=1)
    R = torch.stack([x_axis, y_axis, z_axis], dim=1)  # rows: camera axes in model coordinates
    t = -(R @ (at_t + C_rel).unsqueeze(-1)).squeeze(-1)
    return R, t


# ---------------------------------------------------------------------------- OpenGL / Blender
def blender_projection_matrix(
    f_ndc: float = BLENDER_F_NDC,
    znear: float = BLENDER_NEAR_FAR[0],
    zfar: float = BLENDER_NEAR_FAR[1],
) -> torch.Tensor:
    """Return Blender's camera->NDC 4x4 matrix for a square image (Mesh R-CNN's intrinsic).

    With the defaults it is ``[[2.1875,0,0,0],[0,2.1875,0,0],[0,0,-1.002002,-0.2002002],
    [0,0,-1,0]]``: the 35 mm lens on a 32 mm sensor, near 0.1 and far 100. It acts on
    OpenGL-frame camera points.
    """
    if not 0 < znear < zfar:
        raise ValueError(f"need 0 < znear < zfar, got znear={znear}, zfar={zfar}")
    P = torch.zeros(4, 4)
    P[0, 0] = P[1, 1] = f_ndc
    P[2, 2] = -(zfar + znear) / (zfar - znear)
    P[2, 3] = -2.0 * zfar * znear / (zfar - znear)
    P[3, 2] = -1.0
    return P


def r2n2_extrinsic_opengl(azimuth_deg, elevation_deg, distance) -> torch.Tensor:
    """Return the 4x4 model->OpenGL-camera matrix of an R2N2 view, as Mesh R-CNN computes it.

    Mesh R-CNN's ``compute_extrinsic_matrix``: (..., 4, 4) for the arguments broadcast to (...), in
    the default dtype. Built as: Blender's OBJ import (model +Y up becomes world +Z up), a turn by
    the azimuth about world Z and by the elevation about world Y that brings the camera onto world
    +X, a permutation of axes (x, y, z) -> (y, z, x) into the OpenGL camera frame, and a shift of
    ``distance`` along the view axis.
    """
    a = torch.deg2rad(torch.as_tensor(azimuth_deg, dtype=torch.float64))
    e = torch.deg2rad(torch.as_tensor(elevation_deg, dtype=torch.float64))
    d = torch.as_tensor(distance, dtype=torch.float64)
    a, e, d = torch.broadcast_tensors(a, e, d)
    one, zero = torch.ones_like(a), torch.zeros_like(a)
    # Right-handed rotations by +azimuth about Z and +elevation about Y.
    Rz = torch.stack(
        [a.cos(), -a.sin(), zero, a.sin(), a.cos(), zero, zero, zero, one], -1
    ).unflatten(-1, (3, 3))
    Ry = torch.stack(
        [e.cos(), zero, e.sin(), zero, one, zero, -e.sin(), zero, e.cos()], -1
    ).unflatten(-1, (3, 3))
    import_yup = torch.tensor([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=torch.float64)
    to_gl_axes = torch.tensor([[0.0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=torch.float64)
    R = to_gl_axes @ Ry @ Rz @ import_yup
    RT = torch.zeros(*a.shape, 4, 4, dtype=torch.float64)
    RT[..., :3, :3] = R
    RT[..., 2, 3] = -d
    RT[..., 3, 3] = 1.0
    return RT.to(torch.get_default_dtype())


def camera_from_opengl(
    projection: torch.Tensor, extrinsic: torch.Tensor, image_size: int | Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Convert an OpenGL camera (Mesh R-CNN's ``intrinsic`` and ``extrinsic`` 4x4s) to ours.

    Args:
        projection: (4, 4) or (N, 4, 4) camera->clip matrix acting on OpenGL camera points
            (x right, y up, looking down -z); NDC spans the image, y up. Its depth rows are
            dropped.
        extrinsic: (4, 4) or (N, 4, 4) model->OpenGL-camera matrix (last row 0, 0, 0, 1).
        image_size: (H, W) or an int for square images.

    Returns:
        ``(K (..., 4), R (..., 3, 3), t (..., 3))`` in our conventions, projecting every model
        point to the same pixel as ``projection @ extrinsic`` followed by the NDC->pixel map.
    """
    H, W = _image_hw(image_size)
    P = _tensor(projection, "projection")
    E = _tensor(extrinsic, "extrinsic", P)
    if P.shape[-2:] != (4, 4) or E.shape[-2:] != (4, 4):
        raise ValueError("projection and extrinsic must have shape (4, 4) or (N, 4, 4)")
    if not torch.allclose(
        P[..., 3, :], P.new_tensor([0.0, 0.0, -1.0, 0.0]).expand_as(P[..., 3, :])
    ):
        raise ValueError("projection must be a perspective matrix with last row [0, 0, -1, 0]")
    # x_ndc = P00 x/(-z) + P01 y/(-z) - P02 with (x, y, z) OpenGL = (-X, Y, -Z) ours.
    if (P[..., 0, 1].abs() > 1e-12).any() or (P[..., 1, 0].abs() > 1e-12).any():
        raise ValueError("projection with skew or rotated axes is not supported")
    fx = P[..., 0, 0] * W / 2.0
    fy = P[..., 1, 1] * H / 2.0
    cx = (1.0 - P[..., 0, 2]) * W / 2.0
    cy = (1.0 + P[..., 1, 2]) * H / 2.0
    K = torch.stack([fx, fy, cx, cy], dim=-1)
    d = E.new_tensor(_FLIP_OPENGL)
    R = E[..., :3, :3] * d[:, None]
    t = E[..., :3, 3] * d
    return K, R, t


def camera_to_opengl(
    K: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    image_size: int | Sequence[int],
    *,
    znear: float = 0.1,
    zfar: float = 100.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`camera_from_opengl`: ``(projection (..., 4, 4), extrinsic (..., 4, 4))``.

    The depth rows use ``znear`` / ``zfar`` (Blender's 0.1 / 100 by default).
    """
    H, W = _image_hw(image_size)
    K = _tensor(K, "K")
    R, t = _tensor(R, "R", K), _tensor(t, "t", K)
    _check_K(K)
    if not 0 < znear < zfar:
        raise ValueError(f"need 0 < znear < zfar, got znear={znear}, zfar={zfar}")
    P = torch.zeros(*K.shape[:-1], 4, 4, dtype=K.dtype, device=K.device)
    P[..., 0, 0] = 2.0 * K[..., 0] / W
    P[..., 1, 1] = 2.0 * K[..., 1] / H
    P[..., 0, 2] = 1.0 - 2.0 * K[..., 2] / W
    P[..., 1, 2] = 2.0 * K[..., 3] / H - 1.0
    P[..., 2, 2] = -(zfar + znear) / (zfar - znear)
    P[..., 2, 3] = -2.0 * zfar * znear / (zfar - znear)
    P[..., 3, 2] = -1.0
    d = R.new_tensor(_FLIP_OPENGL)
    E = torch.zeros(*R.shape[:-2], 4, 4, dtype=K.dtype, device=K.device)
    E[..., :3, :3] = R * d[:, None]
    E[..., :3, 3] = t * d
    E[..., 3, 3] = 1.0
    return P, E


def r2n2_camera(
    azimuth_deg, elevation_deg, distance, image_size: int | Sequence[int] = 137
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return ``(K, R, t)`` of an R2N2 / ShapeNet render, as Mesh R-CNN's preprocessing has it.

    Intrinsics: Blender's default 35 mm lens on a 32 mm sensor (``f_ndc = 2.1875``), so
    ``fx = fy = 2.1875 * W / 2`` (149.84 px at 137 px) with the principal point at the image
    centre. Extrinsics: Mesh R-CNN's ``compute_extrinsic_matrix(azimuth, elevation, distance)``
    converted from OpenGL to our frame; the same camera as
    ``look_at_view_transform(distance, elevation, 90 - azimuth)`` (R2N2's azimuth 0 is the
    model's +X axis).

    Args:
        azimuth_deg: R2N2's azimuth in degrees (rendering_metadata.txt column 1).
        elevation_deg: R2N2's elevation in degrees (column 2).
        distance: camera distance in model units (``R2N2_MAX_CAMERA_DISTANCE`` times the file's
            distance ratio).
        image_size: (H, W) or an int; R2N2 renders are 137 x 137.

    Returns:
        K (..., 4), R (..., 3, 3), t (..., 3) where (...) is the broadcast shape of the
        arguments: () for scalars.
    """
    H, W = _image_hw(image_size)
    if H != W:
        # Blender fits the 32 mm sensor to the larger side; only square renders are defined here.
        raise ValueError(f"image_size must be square for R2N2 cameras, got {(H, W)}")
    E = r2n2_extrinsic_opengl(azimuth_deg, elevation_deg, distance)
    P = blender_projection_matrix().expand(*E.shape)
    return camera_from_opengl(P, E, (H, W))
