"""Closed, outward-oriented triangle-mesh primitives for the synthetic shape library.

Every builder returns ``(verts, faces)``: ``verts`` (V, 3) float64, ``faces`` (F, 3) int64, a
watertight 2-manifold whose faces are ordered counter-clockwise seen from outside (so the signed
volume is positive), with no degenerate faces. The part assembly in
:mod:`~meshrecon.data.datasets.synthetic.shapes` relies on that: each part is voxelized on its
own by ray parity, and parity is only meaningful for a closed surface.

Builders work in float64 so that transforms and normalisation lose nothing; the shape library
casts to float32 at the end. Only rotations (det +1), translations and positive scalings are
applied to primitives, which keep a surface closed and outward-oriented.

Axis convention: +Y up. Revolved primitives (cylinder, cone, capsule, lathe, torus) have their
axis along +Y; use :func:`rotation_between` or :func:`cylinder_between` to place them elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "Mesh",
    "box",
    "rounded_box",
    "ellipsoid",
    "lathe",
    "cylinder",
    "frustum",
    "capsule",
    "torus",
    "cylinder_between",
    "rotation_x",
    "rotation_y",
    "rotation_z",
    "rotation_between",
    "transform",
    "signed_volume",
]

Mesh = tuple[np.ndarray, np.ndarray]


def _vec3(value: float | Sequence[float], name: str) -> np.ndarray:
    """A length-3 float64 vector from a scalar or a 3-sequence; ValueError naming ``name``."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(3, float(arr))
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be a finite scalar or 3-vector, got {value!r}")
    return arr


def _positive(value: float, name: str) -> float:
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def signed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    """Volume enclosed by a closed triangle mesh by the divergence theorem.

    Positive when the faces are counter-clockwise seen from outside (outward normals).
    """
    v = np.asarray(verts, dtype=np.float64)[np.asarray(faces)]
    return float(np.einsum("ij,ij->i", v[:, 0], np.cross(v[:, 1], v[:, 2])).sum() / 6.0)


def _orient_outward(verts: np.ndarray, faces: np.ndarray) -> Mesh:
    """Flip every face when a (consistently oriented) closed mesh points inward."""
    if signed_volume(verts, faces) < 0:
        faces = faces[:, ::-1].copy()
    return verts, faces


# ---------------------------------------------------------------------------------------------
# Transforms
# ---------------------------------------------------------------------------------------------


def rotation_x(angle: float) -> np.ndarray:
    """(3, 3) rotation by ``angle`` radians about +X (right-handed)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=np.float64)


def rotation_y(angle: float) -> np.ndarray:
    """(3, 3) rotation by ``angle`` radians about +Y (right-handed)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float64)


def rotation_z(angle: float) -> np.ndarray:
    """(3, 3) rotation by ``angle`` radians about +Z (right-handed)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)


def rotation_between(src: Sequence[float], dst: Sequence[float]) -> np.ndarray:
    """(3, 3) rotation that maps the direction ``src`` onto the direction ``dst``."""
    a = _vec3(src, "src")
    b = _vec3(dst, "dst")
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        raise ValueError("src and dst must be non-zero vectors")
    a, b = a / na, b / nb
    v = np.cross(a, b)
    c = float(a @ b)
    if c < -1 + 1e-12:
        # Opposite directions: turn by pi about any axis perpendicular to a.
        axis = np.cross(a, [1.0, 0.0, 0.0])
        if np.linalg.norm(axis) < 1e-6:
            axis = np.cross(a, [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def transform(
    mesh: Mesh,
    rotation: np.ndarray | None = None,
    translation: float | Sequence[float] = 0.0,
) -> Mesh:
    """Rotate (about the origin), then translate a mesh; faces are shared, not copied.

    Args:
        mesh: ``(verts, faces)``.
        rotation: (3, 3) proper rotation (det +1) so the orientation stays outward; None = I.
        translation: scalar or 3-vector added after the rotation.
    """
    verts, faces = mesh
    out = np.asarray(verts, dtype=np.float64)
    if rotation is not None:
        rot = np.asarray(rotation, dtype=np.float64)
        if rot.shape != (3, 3) or abs(np.linalg.det(rot) - 1.0) > 1e-6:
            raise ValueError("rotation must be a (3, 3) matrix with determinant +1")
        out = out @ rot.T
    return out + _vec3(translation, "translation"), faces


# ---------------------------------------------------------------------------------------------
# Box-like primitives
# ---------------------------------------------------------------------------------------------


def _cube_grid(n: int) -> Mesh:
    """Surface of the cube [-1, 1]^3 split into n x n quads per face, vertices shared."""
    lin = np.linspace(-1.0, 1.0, n + 1)
    keys: dict[tuple[int, int, int], int] = {}
    verts: list[tuple[float, float, float]] = []
    faces: list[tuple[int, int, int]] = []

    def vid(ijk: tuple[int, int, int]) -> int:
        if ijk not in keys:
            keys[ijk] = len(verts)
            verts.append((lin[ijk[0]], lin[ijk[1]], lin[ijk[2]]))
        return keys[ijk]

    for axis in range(3):
        u_ax, v_ax = (axis + 1) % 3, (axis + 2) % 3
        for side in (0, n):
            for i in range(n):
                for j in range(n):
                    corners = []
                    for di, dj in ((0, 0), (1, 0), (1, 1), (0, 1)):
                        ijk = [0, 0, 0]
                        ijk[axis], ijk[u_ax], ijk[v_ax] = side, i + di, j + dj
                        corners.append(vid(tuple(ijk)))
                    a, b, c, d = corners
                    # (u, v, axis) is right-handed, so u->v is counter-clockwise seen from +axis.
                    if side == n:
                        faces += [(a, b, c), (a, c, d)]
                    else:
                        faces += [(a, c, b), (a, d, c)]
    return np.array(verts, dtype=np.float64), np.array(faces, dtype=np.int64)


def box(size: float | Sequence[float], center: float | Sequence[float] = 0.0) -> Mesh:
    """Axis-aligned box of edge lengths ``size`` (sx, sy, sz) centred at ``center``; 12 faces."""
    half = _vec3(size, "size") / 2.0
    if np.any(half <= 0):
        raise ValueError(f"size must be positive on every axis, got {size!r}")
    verts, faces = _cube_grid(1)
    return verts * half + _vec3(center, "center"), faces


def rounded_box(
    size: float | Sequence[float],
    radius: float,
    center: float | Sequence[float] = 0.0,
    segments: int = 4,
) -> Mesh:
    """Axis-aligned box with edges and corners rounded by ``radius`` (a cushion, a mattress).

    Built as the Minkowski sum of a smaller box and a sphere: each vertex of a cube-sphere with
    outward direction ``d`` goes to ``sign(d) * (half - radius) + radius * d``, the point of the
    rounded box whose normal is ``d``; faces that straddle a sign change span the flat sides.

    Args:
        size: edge lengths (sx, sy, sz), positive.
        radius: rounding radius, in (0, min(size) / 2].
        center: box centre.
        segments: quads per cube face edge (even, >= 2); 12 * segments^2 faces.
    """
    half = _vec3(size, "size") / 2.0
    if np.any(half <= 0):
        raise ValueError(f"size must be positive on every axis, got {size!r}")
    radius = _positive(radius, "radius")
    if radius > half.min() + 1e-12:
        raise ValueError(f"radius must be at most min(size) / 2 = {half.min()}, got {radius}")
    if segments < 2 or segments % 2:
        raise ValueError(f"segments must be an even integer >= 2, got {segments}")
    verts, faces = _cube_grid(segments)
    d = verts / np.linalg.norm(verts, axis=1, keepdims=True)
    # Exactly-zero components (the even grid has them) map to the middle of a flat side.
    sign = np.sign(np.round(verts, 12))
    out = sign * (half - radius) + radius * d
    return out + _vec3(center, "center"), faces


def ellipsoid(
    radii: float | Sequence[float], center: float | Sequence[float] = 0.0, segments: int = 4
) -> Mesh:
    """Ellipsoid with semi-axes ``radii`` from a normalised cube-sphere; 12 * segments^2 faces."""
    r = _vec3(radii, "radii")
    if np.any(r <= 0):
        raise ValueError(f"radii must be positive, got {radii!r}")
    if segments < 1:
        raise ValueError(f"segments must be >= 1, got {segments}")
    verts, faces = _cube_grid(segments)
    d = verts / np.linalg.norm(verts, axis=1, keepdims=True)
    return d * r + _vec3(center, "center"), faces


# ---------------------------------------------------------------------------------------------
# Surfaces of revolution (axis +Y)
# ---------------------------------------------------------------------------------------------


def lathe(
    profile: Sequence[Sequence[float]] | np.ndarray, segments: int = 16, loop: bool = False
) -> Mesh:
    """Surface of revolution of a profile about the +Y axis.

    Args:
        profile: (K, 2) points ``(r, y)`` with ``r >= 0``. For an open profile (``loop=False``)
            an end with ``r == 0`` becomes a pole, an end with ``r > 0`` is closed by a flat
            cap; interior points must have ``r > 0``. A vase with a real opening is an open
            profile that runs up the outside, over the rim and down the inside to the axis.
        segments: number of angular steps (>= 3).
        loop: the profile is a closed polygon (last point joins the first), every ``r > 0``;
            revolving it gives a ring (a torus-like solid).

    Returns:
        ``(verts, faces)``, closed and outward-oriented whichever way the profile runs.
    """
    prof = np.asarray(profile, dtype=np.float64)
    if prof.ndim != 2 or prof.shape[1] != 2 or prof.shape[0] < 2 or not np.all(np.isfinite(prof)):
        raise ValueError(f"profile must be a finite (K, 2) array with K >= 2, got {prof.shape}")
    if segments < 3:
        raise ValueError(f"segments must be >= 3, got {segments}")
    r, y = prof[:, 0], prof[:, 1]
    if np.any(r < 0):
        raise ValueError("profile radii must be >= 0")
    if loop and (np.any(r <= 0) or prof.shape[0] < 3):
        raise ValueError("a loop profile needs >= 3 points, all with r > 0")
    if not loop and np.any(r[1:-1] <= 0):
        raise ValueError("interior profile points must have r > 0")

    theta = np.arange(segments) * (2.0 * np.pi / segments)
    cos, sin = np.cos(theta), np.sin(theta)
    verts: list[np.ndarray] = []
    ring_ids: list[np.ndarray | int] = []  # an int is a single axis vertex (pole or cap centre)
    count = 0
    for k in range(prof.shape[0]):
        if r[k] == 0:
            verts.append(np.array([[0.0, y[k], 0.0]]))
            ring_ids.append(count)
            count += 1
        else:
            verts.append(np.stack([r[k] * cos, np.full(segments, y[k]), r[k] * sin], axis=1))
            ring_ids.append(np.arange(count, count + segments))
            count += segments
    if not loop:
        # Flat caps: an end ring with r > 0 gets a centre vertex on the axis.
        for end in (0, -1):
            if r[end] > 0:
                verts.append(np.array([[0.0, y[end], 0.0]]))
                centre = count
                count += 1
                if end == 0:
                    ring_ids.insert(0, centre)
                else:
                    ring_ids.append(centre)

    faces: list[np.ndarray] = []
    nxt = np.roll(np.arange(segments), -1)
    pairs = list(zip(ring_ids[:-1], ring_ids[1:]))
    if loop:
        pairs.append((ring_ids[-1], ring_ids[0]))
    for a, b in pairs:
        if isinstance(a, int) and isinstance(b, int):
            raise ValueError("two consecutive profile points lie on the axis")
        if isinstance(a, int):
            faces.append(np.stack([np.full(segments, a), b[nxt], b], axis=1))
        elif isinstance(b, int):
            faces.append(np.stack([a, a[nxt], np.full(segments, b)], axis=1))
        else:
            faces.append(np.stack([a, a[nxt], b[nxt]], axis=1))
            faces.append(np.stack([a, b[nxt], b], axis=1))
    out_v = np.concatenate(verts, axis=0)
    out_f = np.concatenate(faces, axis=0).astype(np.int64)
    return _orient_outward(out_v, out_f)


def cylinder(
    radius: float, height: float, center: float | Sequence[float] = 0.0, segments: int = 16
) -> Mesh:
    """Capped cylinder along +Y of ``height``, centred at ``center``; 4 * segments faces."""
    return frustum(radius, radius, height, center, segments)


def frustum(
    radius_bottom: float,
    radius_top: float,
    height: float,
    center: float | Sequence[float] = 0.0,
    segments: int = 16,
) -> Mesh:
    """Capped truncated cone along +Y (a radius of 0 makes a cone), centred at ``center``."""
    rb, rt = float(radius_bottom), float(radius_top)
    if rb < 0 or rt < 0 or max(rb, rt) <= 0:
        raise ValueError(f"radii must be >= 0 and not both 0, got {rb}, {rt}")
    h = _positive(height, "height") / 2.0
    verts, faces = lathe([[rb, -h], [rt, h]], segments)
    return verts + _vec3(center, "center"), faces


def capsule(
    radius: float,
    length: float,
    center: float | Sequence[float] = 0.0,
    segments: int = 12,
    rings: int = 3,
) -> Mesh:
    """Cylinder along +Y with hemispherical ends; ``length`` is the total length (>= 2 radius)."""
    radius = _positive(radius, "radius")
    length = _positive(length, "length")
    if length < 2 * radius:
        raise ValueError(f"length must be >= 2 * radius, got {length} < {2 * radius}")
    if rings < 1:
        raise ValueError(f"rings must be >= 1, got {rings}")
    half = length / 2.0 - radius
    phi = np.linspace(0.0, np.pi / 2, rings + 1)
    bottom = [[radius * np.sin(p), -half - radius * np.cos(p)] for p in phi]
    top = [[radius * np.sin(p), half + radius * np.cos(p)] for p in phi[::-1]]
    profile = bottom + top if half > 1e-9 else bottom + top[1:]
    verts, faces = lathe(profile, segments)
    return verts + _vec3(center, "center"), faces


def torus(
    major_radius: float,
    minor_radius: float,
    center: float | Sequence[float] = 0.0,
    segments: int = 16,
    tube_segments: int = 8,
) -> Mesh:
    """Ring about the +Y axis: tube of ``minor_radius`` around a circle of ``major_radius``."""
    big = _positive(major_radius, "major_radius")
    small = _positive(minor_radius, "minor_radius")
    if small >= big:
        raise ValueError(f"minor_radius must be < major_radius, got {small} >= {big}")
    if tube_segments < 3:
        raise ValueError(f"tube_segments must be >= 3, got {tube_segments}")
    a = np.arange(tube_segments) * (2.0 * np.pi / tube_segments)
    profile = np.stack([big + small * np.cos(a), small * np.sin(a)], axis=1)
    verts, faces = lathe(profile, segments, loop=True)
    return verts + _vec3(center, "center"), faces


def cylinder_between(
    start: Sequence[float], end: Sequence[float], radius: float, segments: int = 12
) -> Mesh:
    """Capped cylinder whose axis runs from ``start`` to ``end`` (slanted legs, rods, arms)."""
    p0, p1 = _vec3(start, "start"), _vec3(end, "end")
    axis = p1 - p0
    length = float(np.linalg.norm(axis))
    if length <= 0:
        raise ValueError("start and end must differ")
    mesh = cylinder(radius, length, 0.0, segments)
    return transform(mesh, rotation_between([0.0, 1.0, 0.0], axis), (p0 + p1) / 2.0)
