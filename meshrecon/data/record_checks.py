"""Cheap geometric checks of a record's targets, run by the mappers before a sample is used.

A record whose camera or shape is degenerate (a zero or non-finite rotation, a zero translation,
an absurd focal length, a mesh whose vertices coincide, an empty voxel grid, a depth map with no
valid pixel...) would pass the mapper and only fail later, inside a loss, naming no sample; or,
worse, train on a silently wrong target. Each check here raises a ValueError that names the
record (``where``) and what is wrong with it; ``MapDataset`` then skips the sample, logs it and
counts it, exactly as it does for a file that cannot be read.

The bounds are wide: they reject values that no real camera or object has, never a valid sample
of the supported datasets (the tests run every mapper over the synthetic and fixture datasets
and expect no sample to be skipped).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "FOCAL_RATIO_RANGE",
    "MAX_ABS_COORDINATE",
    "ROTATION_TOLERANCE",
    "check_depth",
    "check_depth_range",
    "check_intrinsics",
    "check_mesh",
    "check_points",
    "check_rotation",
    "check_translation",
    "check_voxel_grid",
]

ROTATION_TOLERANCE = 1e-2
"""Largest ``|det R - 1|`` and ``max |R^T R - I|`` of a rotation: loose enough for matrices
stored in float32 or rounded to three decimals, tight enough to reject scalings and shears."""

FOCAL_RATIO_RANGE = (1e-2, 1e2)
"""Focal lengths (pixels) divided by the image's longer side: outside this range the field of
view is above ~176 degrees or below ~0.6 degrees, which no dataset of these methods has."""

MAX_ABS_COORDINATE = 1e6
"""Largest absolute vertex / point coordinate (the units of the dataset, metres or model units).
Beyond it the squared distances of the losses lose all precision (and overflow float32 from
~1e19)."""


def _finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t).all())


def check_rotation(R: torch.Tensor, where: str) -> None:
    """``R`` (3, 3) must be a finite proper rotation: ``R^T R = I`` and ``det R = 1``.

    A reflection (det -1) is refused too: every supported format stores proper rotations (a
    horizontal flip is applied by the mapper's transforms, after this check).
    """
    if not _finite(R):
        raise ValueError(f"{where}: R has non-finite entries {R.tolist()}")
    Rd = R.double()
    det = float(torch.linalg.det(Rd))
    ortho = float((Rd.T @ Rd - torch.eye(3, dtype=torch.float64)).abs().max())
    if abs(det - 1.0) > ROTATION_TOLERANCE or ortho > ROTATION_TOLERANCE:
        raise ValueError(
            f"{where}: R is not a rotation (det {det:.4g}, max |R^T R - I| {ortho:.3g}; "
            f"tolerance {ROTATION_TOLERANCE}): {R.tolist()}"
        )


def check_translation(t: torch.Tensor, where: str) -> None:
    """``t`` (3,) must be finite, non-zero and at most ``MAX_ABS_COORDINATE``: a zero ``t``
    puts the camera at the object's origin, inside the object, where no projection holds."""
    if not _finite(t):
        raise ValueError(f"{where}: t has non-finite entries {t.tolist()}")
    if not bool(t.abs().max() > 0):
        raise ValueError(f"{where}: t is zero (the camera sits at the object's origin)")
    if float(t.abs().max()) > MAX_ABS_COORDINATE:
        raise ValueError(f"{where}: t {t.tolist()} is beyond +-{MAX_ABS_COORDINATE:g}")


def check_intrinsics(K: Sequence[float], image_size: tuple[int, int], where: str) -> None:
    """``K`` = ``[fx, fy, cx, cy]`` of an image of ``image_size`` (h, w): finite, focal lengths
    positive and within ``FOCAL_RATIO_RANGE`` times the image's longer side."""
    k = [float(x) for x in K]
    if len(k) != 4 or not all(math.isfinite(x) for x in k):
        raise ValueError(f"{where}: K must be 4 finite numbers [fx, fy, cx, cy], got {list(K)}")
    side = float(max(image_size))
    lo, hi = FOCAL_RATIO_RANGE
    for name, f in (("fx", k[0]), ("fy", k[1])):
        if not lo * side <= f <= hi * side:
            raise ValueError(
                f"{where}: focal length {name} = {f:g} px is absurd for an image of "
                f"{image_size[0]}x{image_size[1]} px (allowed: {lo:g} to {hi:g} times its longer "
                f"side, {lo * side:g} to {hi * side:g} px)"
            )


def check_points(points: torch.Tensor, where: str, what: str = "points") -> None:
    """``points`` (M, 3): at least one, finite, within ``MAX_ABS_COORDINATE``."""
    if points.dim() != 2 or points.shape[0] == 0:
        raise ValueError(f"{where}: {what} are empty (shape {tuple(points.shape)})")
    if not _finite(points):
        raise ValueError(f"{where}: {what} have non-finite coordinates")
    largest = float(points.abs().max())
    if largest > MAX_ABS_COORDINATE:
        raise ValueError(
            f"{where}: {what} reach |coordinate| = {largest:g}, beyond {MAX_ABS_COORDINATE:g}"
        )


def check_mesh(verts: torch.Tensor, faces: torch.Tensor, where: str) -> None:
    """A mesh target must have finite vertices that do not all coincide, and faces of which
    at least one has a non-zero area (so that its surface can be sampled)."""
    check_points(verts, where, "mesh vertices")
    if faces.dim() != 2 or faces.shape[0] == 0:
        raise ValueError(f"{where}: the mesh has no faces")
    extent = verts.max(0).values - verts.min(0).values
    if not bool(extent.max() > 0):
        raise ValueError(f"{where}: all {verts.shape[0]} mesh vertices coincide")
    # In float64 and in units of the extent (no overflow, no underflow of tiny models); the
    # total is compared to a relative 1e-12, as collinear vertices leave rounding-sized areas.
    v = (verts.double() - verts.min(0).values.double()) / float(extent.max())
    tri = v[faces.long()]
    area = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=1).norm(dim=1)
    if not float(area.sum()) > 1e-12:
        raise ValueError(f"{where}: all {faces.shape[0]} faces of the mesh have zero area")


def check_depth_range(points_cam: torch.Tensor, where: str, what: str = "mesh") -> None:
    """Camera-frame points of an object must lie in front of the camera (Z > 0) and span a
    depth range (Mesh R-CNN's box frustum maps [zmin, zmax] through 1 / Z)."""
    z = points_cam[:, 2]
    zmin, zmax = float(z.min()), float(z.max())
    if not zmin > 0:
        raise ValueError(
            f"{where}: the {what} is not in front of the camera (camera Z from {zmin:g} to "
            f"{zmax:g}; check R and t)"
        )
    if not zmax > zmin:
        raise ValueError(f"{where}: the {what} has no depth extent (camera Z = {zmin:g})")


def check_voxel_grid(grid: torch.Tensor, where: str) -> None:
    """A voxel target must have at least one occupied voxel."""
    if not bool(grid.any()):
        raise ValueError(
            f"{where}: the voxel target is empty (no occupied voxel; for frustum voxels, the "
            "model lies outside the view's frustum or INPUT.SHAPENET.VOXEL_ZRANGE)"
        )


def check_depth(depth: np.ndarray | torch.Tensor, where: str) -> None:
    """A depth target must have a valid pixel (finite and > 0; the readers and losses treat
    every other value as "no measurement")."""
    d = depth if torch.is_tensor(depth) else torch.as_tensor(np.asarray(depth))
    if not bool((torch.isfinite(d) & (d > 0)).any()):
        raise ValueError(f"{where}: the depth map has no valid pixel (none finite and > 0)")
