"""Voxel grids: IoU, index <-> point conversions, and solid voxelization of closed meshes.

Conventions shared by every function here and by :func:`~meshrecon.ops.cubify`:

* a batch of grids is ``(N, D, H, W)``, indexed ``grid[n, z, y, x]``: D runs along z, H along y
  and W along x;
* voxel coordinates are ``(x, y, z)`` triples in index units (voxel ``grid[n, k, j, i]`` has
  its centre at coordinates ``(i, j, k)``); they may be fractional;
* a ``box`` ``[[xmin, ymin, zmin], [xmax, ymax, zmax]]`` is the region that cubify's normalized
  [-1, 1]^3 stands for, and ``align`` places the voxels in it exactly as cubify's ``align``
  places its cubes. For an axis with S voxels, the centre of voxel i sits at normalized
  coordinate ``u = (i + c) * 2 / (S - m) - 1`` with

  ================  ===  ===  ==================================================
  align              c    m   meaning
  ================  ===  ===  ==================================================
  ``"center"``       0    1   centres span the box: Mesh R-CNN's ShapeNet voxels
  ``"corner"``       1/2  0   the voxels tile the box exactly
  ``"topleft"``      1/2  1   voxel corners 0 .. S-1 span the box (cubify default)
  ================  ===  ===  ==================================================

  and ``point = box_min + (u + 1) / 2 * (box_max - box_min)``. Hence
  ``cubify(voxelize_meshes(m, S, box, align), 0.5, align=align)`` rebuilds the voxels' cubes in
  the box's normalized frame, and voxelizing a cubified grid gives the grid back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from meshrecon.structures import Meshes

__all__ = [
    "voxel_iou",
    "voxel_coords_to_points",
    "points_to_voxel_coords",
    "voxelize_meshes",
]

# (c, m) of the module docstring's table.
_ALIGN_OFFSETS = {"center": (0.0, 1.0), "corner": (0.5, 0.0), "topleft": (0.5, 1.0)}


def voxel_iou(pred: torch.Tensor, gt: torch.Tensor, thresh: float = 0.5) -> torch.Tensor:
    """Intersection over union of batches of occupancy grids, one value per grid.

    Args:
        pred: (N, D, H, W) predicted occupancy: bool, or probabilities occupied when
            ``> thresh``.
        gt: (N, D, H, W) ground truth: bool, or values occupied when ``> 0.5``.
        thresh: threshold for a non-bool ``pred``.

    Returns:
        (N,) float32 IoU. A pair of grids that are both empty has IoU 1 (they agree exactly).
        A grid holding a NaN (in ``pred`` or ``gt``) has IoU NaN: NaN is neither occupied nor
        empty, and a diverged model must not score as if it predicted empty space.
    """
    if not torch.is_tensor(pred) or pred.dim() != 4:
        raise ValueError(f"pred must be a tensor of shape (N, D, H, W), got {_shape(pred)}")
    if not torch.is_tensor(gt) or gt.shape != pred.shape:
        raise ValueError(
            f"gt must be a tensor of pred's shape {tuple(pred.shape)}, got {_shape(gt)}"
        )
    p = pred if pred.dtype == torch.bool else pred > thresh
    g = gt.to(pred.device)
    g = g if g.dtype == torch.bool else g > 0.5
    inter = (p & g).flatten(1).sum(1)
    union = (p | g).flatten(1).sum(1)
    iou = inter.float() / union.clamp(min=1).float()
    iou = torch.where(union == 0, torch.ones_like(iou), iou)
    for t in (pred, gt):
        if t.is_floating_point():
            iou = iou.masked_fill(torch.isnan(t).flatten(1).any(1).to(iou.device), float("nan"))
    return iou


def _shape(x: object) -> object:
    return tuple(x.shape) if torch.is_tensor(x) else type(x).__name__


def _grid_dims(grid_size: int | Sequence[int]) -> tuple[int, int, int]:
    """(D, H, W) from an int or a 3-sequence."""
    dims: tuple[int, ...]
    if isinstance(grid_size, int) and not isinstance(grid_size, bool):
        dims = (grid_size,) * 3
    else:
        dims = tuple(grid_size) if isinstance(grid_size, Sequence) else ()
    if len(dims) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) for s in dims):
        raise ValueError(f"grid_size must be an int or three ints (D, H, W), got {grid_size!r}")
    if min(dims) < 1:
        raise ValueError(f"grid_size must be >= 1 in every dimension, got {grid_size!r}")
    return (dims[0], dims[1], dims[2])


def _align_terms(align: str, dims: tuple[int, int, int]) -> tuple[list[float], list[float]]:
    """Per-axis (x, y, z) offset c and normalized voxel pitch 2 / (S - m)."""
    if align not in _ALIGN_OFFSETS:
        raise ValueError(f"align must be one of {tuple(_ALIGN_OFFSETS)}, got {align!r}")
    c, m = _ALIGN_OFFSETS[align]
    sizes_xyz = (dims[2], dims[1], dims[0])
    if m == 1.0 and min(sizes_xyz) < 2:
        raise ValueError(f"align={align!r} needs every grid dimension >= 2, got {dims}")
    return [c] * 3, [2.0 / (s - m) for s in sizes_xyz]


def _box_tensor(
    box: torch.Tensor | Sequence | None, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Box as a (2, 3) or (N, 2, 3) tensor; [-1, 1]^3 when None."""
    if box is None:
        t = torch.tensor([[-1.0] * 3, [1.0] * 3], device=device, dtype=dtype)
    else:
        t = torch.as_tensor(box, device=device, dtype=dtype)
    if t.shape[-2:] != (2, 3) or t.dim() not in (2, 3):
        raise ValueError(f"box must have shape (2, 3) or (N, 2, 3), got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"box must be finite, got {t.tolist()}")
    if not bool((t[..., 1, :] > t[..., 0, :]).all()):
        raise ValueError("box must satisfy max > min on every axis")
    return t


def _box_scale_shift(
    box: torch.Tensor, batch_shape: torch.Size
) -> tuple[torch.Tensor, torch.Tensor]:
    """Box minimum and size, broadcastable against points of shape (*batch_shape, 3)."""
    lo, size = box[..., 0, :], box[..., 1, :] - box[..., 0, :]
    if box.dim() == 3:
        if len(batch_shape) == 0 or batch_shape[0] != box.shape[0]:
            raise ValueError(
                f"a batched box (N, 2, 3) needs points/coords of shape (N, ..., 3) with "
                f"N = {box.shape[0]}, got batch shape {tuple(batch_shape)}"
            )
        view = (box.shape[0],) + (1,) * (len(batch_shape) - 1) + (3,)
        lo, size = lo.view(view), size.view(view)
    return lo, size


def voxel_coords_to_points(
    coords: torch.Tensor,
    grid_size: int | Sequence[int],
    box: torch.Tensor | Sequence | None = None,
    align: str = "center",
) -> torch.Tensor:
    """Map voxel coordinates (index units, voxel centres at integers) to points in the box.

    Args:
        coords: (..., 3) voxel coordinates ``(x, y, z)`` (x indexes W, y H, z D); integer or
            fractional.
        grid_size: S or (D, H, W).
        box: (2, 3) ``[min_xyz, max_xyz]`` shared by all points, or (N, 2, 3) one per grid
            with ``coords`` of shape (N, ..., 3); default [-1, 1]^3.
        align: ``"center"`` (default), ``"corner"`` or ``"topleft"``, see the module docstring.

    Returns:
        (..., 3) points, floating point (float32 for integer ``coords``).
    """
    if not torch.is_tensor(coords) or coords.dim() < 1 or coords.shape[-1] != 3:
        raise ValueError(f"coords must be a tensor of shape (..., 3), got {_shape(coords)}")
    c, pitch = _align_terms(align, _grid_dims(grid_size))
    dtype = coords.dtype if coords.is_floating_point() else torch.float32
    x = coords.to(dtype)
    offset = torch.tensor(c, dtype=dtype, device=x.device)
    pitch_t = torch.tensor(pitch, dtype=dtype, device=x.device)
    u = (x + offset) * pitch_t - 1.0
    lo, size = _box_scale_shift(_box_tensor(box, x.device, dtype), coords.shape[:-1])
    return lo + (u + 1.0) * 0.5 * size


def points_to_voxel_coords(
    points: torch.Tensor,
    grid_size: int | Sequence[int],
    box: torch.Tensor | Sequence | None = None,
    align: str = "center",
) -> torch.Tensor:
    """Inverse of :func:`voxel_coords_to_points`: fractional voxel coordinates of points.

    ``coords.round().long()`` gives the voxel whose centre is nearest (Mesh R-CNN's rule);
    points outside the grid give coordinates outside ``[0, S - 1]``.

    Args:
        points: (..., 3) points ``(x, y, z)``, floating point.
        grid_size: S or (D, H, W).
        box: (2, 3) or (N, 2, 3) box, as in :func:`voxel_coords_to_points`.
        align: ``"center"`` (default), ``"corner"`` or ``"topleft"``.

    Returns:
        (..., 3) fractional voxel coordinates ``(x, y, z)``, same dtype as ``points``.
    """
    if not torch.is_tensor(points) or points.dim() < 1 or points.shape[-1] != 3:
        raise ValueError(f"points must be a tensor of shape (..., 3), got {_shape(points)}")
    if not points.is_floating_point():
        raise ValueError(f"points must be floating point, got {points.dtype}")
    c, pitch = _align_terms(align, _grid_dims(grid_size))
    lo, size = _box_scale_shift(_box_tensor(box, points.device, points.dtype), points.shape[:-1])
    u = (points - lo) / size * 2.0 - 1.0
    offset = torch.tensor(c, dtype=points.dtype, device=points.device)
    pitch_t = torch.tensor(pitch, dtype=points.dtype, device=points.device)
    return (u + 1.0) / pitch_t - offset


# Column-triangle candidate pairs handled at once; bounds the memory of voxelize_meshes.
_MAX_PAIRS = 1 << 22


@torch.no_grad()
def voxelize_meshes(
    meshes: Meshes,
    grid_size: int | Sequence[int],
    box: torch.Tensor | Sequence | None = None,
    align: str = "center",
) -> torch.Tensor:
    """Solid occupancy grids of closed meshes: a voxel is occupied when its centre is inside.

    The inside test casts one ray per (x, y) column of voxel centres along +z and counts surface
    crossings (parity), all columns and meshes at once: every triangle is tested against the
    columns under its bounding box, each hit toggles the voxels above it, and a cumulative sum
    along z turns the toggles into occupancy. Rays that pass exactly through an edge or a
    vertex are resolved by a symbolic perturbation of the ray (moved by (eps, eps^2) in (x, y)),
    so each crossing of the surface is counted once. Meshes should be closed (watertight);
    their orientation does not matter. Voxel centres exactly on the surface may go either way.

    Args:
        meshes: :class:`Meshes` batch of N meshes, in the box's coordinates.
        grid_size: S or (D, H, W).
        box: (2, 3) ``[min_xyz, max_xyz]`` or (N, 2, 3), default [-1, 1]^3; with ``align``
            it places the voxel centres exactly as :func:`voxel_coords_to_points` does.
        align: ``"center"`` (default), ``"corner"`` or ``"topleft"``, see the module docstring.

    Returns:
        (N, D, H, W) bool occupancy, indexed ``[n, z, y, x]``.

    Raises:
        ValueError: for vertices or a box that are not finite (a NaN vertex would silently
            leave holes), an empty or inverted box, or a bad ``grid_size`` / ``align``.
    """
    if not isinstance(meshes, Meshes):
        raise ValueError(f"meshes must be a Meshes object, got {type(meshes).__name__}")
    D, H, W = _grid_dims(grid_size)
    c, pitch = _align_terms(align, (D, H, W))
    N = len(meshes)
    device = meshes.device
    box_t = _box_tensor(box, device, torch.float64)
    if box_t.dim() == 3 and box_t.shape[0] != N:
        raise ValueError(f"a batched box must have shape ({N}, 2, 3), got {tuple(box_t.shape)}")
    counts = torch.zeros(N * (D + 1) * H * W, dtype=torch.int64, device=device)
    faces = meshes.faces_packed()
    if not bool(torch.isfinite(meshes.verts_packed()).all()):
        # A NaN vertex would drop out of every comparison and leave holes in the parity count.
        raise ValueError("meshes contain NaN or infinite vertex coordinates")
    if faces.shape[0] > 0:
        verts = meshes.verts_packed().detach().to(torch.float64)
        if box_t.dim() == 3:
            box_t = box_t[meshes.verts_packed_to_mesh_idx()]
        lo, size = box_t[..., 0, :], box_t[..., 1, :] - box_t[..., 0, :]
        offset = torch.tensor(c, dtype=torch.float64, device=device)
        pitch_t = torch.tensor(pitch, dtype=torch.float64, device=device)
        # Voxel coordinates: centres at integers, so columns sit at integer (x, y).
        coords = ((verts - lo) / size * 2.0) / pitch_t - offset
        _count_crossings(
            coords[faces], meshes.faces_packed_to_mesh_idx(), (D, H, W), counts.view(N, -1)
        )
    parity = counts.view(N, D + 1, H, W).cumsum(1)[:, :D] % 2
    return parity.bool()


def _count_crossings(
    tri: torch.Tensor, owner: torch.Tensor, dims: tuple[int, int, int], counts: torch.Tensor
) -> None:
    """Add to ``counts`` (N, (D+1) * H * W) the +z ray crossings of triangles ``tri`` (F, 3, 3).

    A crossing at height z of column (x, y) is recorded in slot ``floor(z) + 1`` (clamped to
    [0, D]) of that column: the first voxel centre above the surface.
    """
    D, H, W = dims
    # Edge k is the one opposite corner k. Its end points are put in a canonical (x, y)
    # lexicographic order so that two triangles sharing the edge evaluate bit-identical edge
    # functions and the tie-breaking rule below gives them opposite answers.
    p, q = tri[:, [1, 2, 0]], tri[:, [2, 0, 1]]
    swap = (p[..., 0] > q[..., 0]) | ((p[..., 0] == q[..., 0]) & (p[..., 1] > q[..., 1]))
    a = torch.where(swap.unsqueeze(-1), q, p)
    b = torch.where(swap.unsqueeze(-1), p, q)
    ax, ay = a[..., 0], a[..., 1]
    ex, ey = b[..., 0] - ax, b[..., 1] - ay  # (F, 3)
    side = ex * (tri[..., 1] - ay) - ey * (tri[..., 0] - ax)  # edge function at corner k
    # How the edge function changes when the ray moves by (eps, eps^2): -ey * eps + ex * eps^2.
    tie = torch.where(ey != 0, -torch.sign(ey), torch.sign(ex))
    valid = (side != 0).all(1)  # triangles seen edge-on cannot be crossed by a perturbed ray

    xmin, xmax = tri[..., 0].amin(1), tri[..., 0].amax(1)
    ymin, ymax = tri[..., 1].amin(1), tri[..., 1].amax(1)
    ix0 = torch.ceil(xmin).clamp(min=0).long()
    iy0 = torch.ceil(ymin).clamp(min=0).long()
    nx = (torch.floor(xmax).clamp(max=W - 1).long() - ix0 + 1).clamp(min=0)
    ny = (torch.floor(ymax).clamp(max=H - 1).long() - iy0 + 1).clamp(min=0)
    num_pairs = nx * ny * valid
    ends = torch.cumsum(num_pairs, 0)
    total = int(ends[-1]) if ends.numel() else 0
    start = 0
    while start < total:
        # Whole triangles per chunk, about _MAX_PAIRS pairs each (at least one triangle).
        t0 = int(torch.searchsorted(ends, start, right=True))
        t1 = max(int(torch.searchsorted(ends, start + _MAX_PAIRS, right=True)), t0 + 1)
        stop = int(ends[t1 - 1])
        t = torch.repeat_interleave(
            torch.arange(t0, t1, device=tri.device), num_pairs[t0:t1], output_size=stop - start
        )
        local = torch.arange(start, stop, device=tri.device) - (ends[t] - num_pairs[t])
        ix = ix0[t] + local % nx[t]
        iy = iy0[t] + torch.div(local, nx[t], rounding_mode="floor")
        e = ex[t] * (iy.unsqueeze(1) - ay[t]) - ey[t] * (ix.unsqueeze(1) - ax[t])  # (P, 3)
        s = side[t]
        inside = torch.where(e != 0, e * s > 0, tie[t] * s > 0).all(1)
        t, ix, iy = t[inside], ix[inside], iy[inside]
        bary = e[inside] / s[inside]
        z = (bary * tri[t, :, 2]).sum(1)
        slot = (torch.floor(z) + 1).clamp(0, D).long()
        index = (slot * H + iy) * W + ix
        counts.index_put_((owner[t], index), torch.ones_like(index), accumulate=True)
        start = stop
