"""Voxel grid -> watertight cube mesh, with PyTorch3D's ``cubify`` semantics.

Each occupied voxel becomes a unit cube; faces shared by two occupied voxels are dropped and the
corners of neighbouring cubes are merged, so the result is the boundary surface of the occupied
region. Everything is vectorized over the batch: exposed faces come from shifted comparisons of
the occupancy grid, the corners live on the ``(D+1) x (H+1) x (W+1)`` lattice of each grid and the
used lattice points are compacted with a cumulative sum.

Axis convention (PyTorch3D's): a grid ``voxels[n, z, y, x]`` has its depth axis D along z, its
height axis H along y and its width axis W along x, and the output vertices are ``(x, y, z)``.
"""

from __future__ import annotations

import math

import torch

from meshrecon.structures import Meshes

__all__ = ["ALIGN_MODES", "cubify", "cubify_packed"]

# Where a voxel's cube sits relative to its grid cell (PyTorch3D's ``align``).
ALIGN_MODES = ("topleft", "corner", "center")

# The 12 triangles of a unit cube as (x, y, z) offsets of their corners, two per face, in
# PyTorch3D's order: -x, +y, -z, -y, +x, +z. Corners are wound counter-clockwise when seen from
# outside, so face normals (v1 - v0) x (v2 - v0) point out of the solid.
_CUBE_TRIANGLES = (
    ((0, 0, 0), (0, 0, 1), (0, 1, 0)),
    ((0, 0, 1), (0, 1, 1), (0, 1, 0)),
    ((0, 1, 0), (0, 1, 1), (1, 1, 0)),
    ((0, 1, 1), (1, 1, 1), (1, 1, 0)),
    ((0, 0, 0), (0, 1, 0), (1, 1, 0)),
    ((0, 0, 0), (1, 1, 0), (1, 0, 0)),
    ((0, 0, 0), (1, 0, 1), (0, 0, 1)),
    ((0, 0, 0), (1, 0, 0), (1, 0, 1)),
    ((1, 1, 0), (1, 1, 1), (1, 0, 1)),
    ((1, 1, 0), (1, 0, 1), (1, 0, 0)),
    ((0, 0, 1), (1, 1, 1), (0, 1, 1)),
    ((0, 0, 1), (1, 0, 1), (1, 1, 1)),
)


def _check_align(align: str) -> None:
    if align not in ALIGN_MODES:
        raise ValueError(f"align must be one of {ALIGN_MODES}, got {align!r}")


def _exposed_faces(occ: torch.Tensor) -> torch.Tensor:
    """Mask (N, H, W, D, 6) of cube faces whose neighbour across the face is empty.

    ``occ`` is (N, H, W, D) bool. The last axis follows the face order of ``_CUBE_TRIANGLES``
    (-x, +y, -z, -y, +x, +z); cells outside the grid count as empty.
    """
    N, H, W, D = occ.shape
    pad = occ.new_zeros((N, H + 2, W + 2, D + 2))
    pad[:, 1:-1, 1:-1, 1:-1] = occ
    inner = (slice(None), slice(1, -1), slice(1, -1), slice(1, -1))

    def neighbour(dy: int, dx: int, dz: int) -> torch.Tensor:
        return pad[:, 1 + dy : 1 + dy + H, 1 + dx : 1 + dx + W, 1 + dz : 1 + dz + D]

    occ_in = pad[inner]
    mask = torch.empty((N, H, W, D, 6), dtype=torch.bool, device=occ.device)
    for k, (dy, dx, dz) in enumerate(
        ((0, -1, 0), (1, 0, 0), (0, 0, -1), (-1, 0, 0), (0, 1, 0), (0, 0, 1))
    ):
        # "occupied and not (neighbour occupied)" without materializing the negation.
        torch.gt(occ_in, neighbour(dy, dx, dz), out=mask[..., k])
    return mask


def _used_lattice_points(exposed: torch.Tensor) -> torch.Tensor:
    """Mask (N, H+1, W+1, D+1) of the lattice points that are a corner of an exposed face.

    A dilation of each face kind's mask by its four corners: cheaper than scattering the
    corner ids of every face, which repeat each point up to 24 times.
    """
    N, H, W, D, _ = exposed.shape
    used = exposed.new_zeros((N, H + 1, W + 1, D + 1))
    for k in range(6):
        kind = exposed[..., k]
        corners = {c for tri in _CUBE_TRIANGLES[2 * k : 2 * k + 2] for c in tri}
        for cx, cy, cz in corners:
            used[:, cy : cy + H, cx : cx + W, cz : cz + D] |= kind
    return used


def _grid_coordinates(size: int, align: str, device: torch.device) -> torch.Tensor:
    """Normalized coordinate of each of the ``size + 1`` lattice planes along one grid axis."""
    lattice = torch.arange(size + 1, dtype=torch.float32, device=device)
    if align == "center":
        lattice = lattice - 0.5
    # PyTorch3D maps grid locations 0 .. size-1 to [-1, 1] for "topleft" and "center" and the
    # lattice 0 .. size to [-1, 1] for "corner".
    margin = 0.0 if align == "corner" else 1.0
    return lattice * 2.0 / (size - margin) - 1.0


def _cubify_impl(
    voxels: torch.Tensor, thresh: float, align: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shared core of :func:`cubify` and :func:`cubify_packed`; also returns each quad's cell.

    The cells index the (N, H, W, D)-permuted grid, one per cube face (two triangles).
    """
    _check_align(align)
    if not torch.is_tensor(voxels) or voxels.dim() != 4:
        shape = tuple(voxels.shape) if torch.is_tensor(voxels) else type(voxels).__name__
        raise ValueError(f"voxels must be a tensor of shape (N, D, H, W), got {shape}")
    N, D, H, W = voxels.shape
    device = voxels.device
    if align != "corner" and min(D, H, W) == 1 and voxels.numel() > 0:
        # PyTorch3D divides by (size - 1) here and returns infinite coordinates.
        raise ValueError(f"align={align!r} needs every grid dimension >= 2, got {(D, H, W)}")
    # NaN compares false with any threshold: PyTorch3D returns an empty (or partial) mesh for
    # it, a finite answer to an undefined occupancy, e.g. from a diverged voxel head.
    if isinstance(thresh, float) and math.isnan(thresh):
        raise ValueError("thresh is NaN")
    # (Not while torch.export traces: a value-dependent branch cannot be exported, and an
    # exported program's caller owns its inputs.)
    exporting = torch.compiler.is_exporting()
    if voxels.is_floating_point() and not exporting and bool(torch.isnan(voxels).any()):
        grids = torch.isnan(voxels).flatten(1).any(1).nonzero()[:, 0].tolist()
        raise ValueError(f"voxels hold NaN occupancies (grid(s) {grids}); cannot cubify them")

    # (n, y, x, z) ordering is PyTorch3D's output order for both faces and vertices.
    occ = voxels.ge(thresh).permute(0, 2, 3, 1)
    exposed = _exposed_faces(occ)
    quads_sorted = exposed.view(-1).nonzero().squeeze(1)
    cells = torch.div(quads_sorted, 6, rounding_mode="floor")
    face_kind = quads_sorted - cells * 6

    L1, L2 = W + 1, D + 1  # lattice strides of x and y (z is contiguous)
    L = (H + 1) * L1 * L2
    # 32-bit lattice ids halve the memory traffic of the two big gathers below.
    id_dtype = torch.int32 if N * L < 2**31 else torch.int64

    def arange(n: int) -> torch.Tensor:
        return torch.arange(n, device=device, dtype=id_dtype)

    # Lattice id of each cell's (0, 0, 0) corner, offset by n * L so the batch shares one lattice.
    base = (
        arange(N).view(N, 1, 1, 1) * L
        + arange(H).view(1, H, 1, 1) * (L1 * L2)
        + arange(W).view(1, 1, W, 1) * L2
        + arange(D).view(1, 1, 1, D)
    )
    corner_offset = torch.tensor(
        [[x * L2 + y * L1 * L2 + z for x, y, z in tri] for tri in _CUBE_TRIANGLES],
        dtype=id_dtype,
        device=device,
    ).view(6, 6)
    corners = corner_offset.index_select(0, face_kind).add_(
        base.view(-1).index_select(0, cells).unsqueeze(1)
    )  # (Q, 6)

    used = _used_lattice_points(exposed)
    local_id = used.view(N, L).cumsum(1)
    num_verts = local_id[:, -1].clone()
    faces = local_id.view(-1).sub_(1).index_select(0, corners.view(-1)).view(-1, 3)

    # Coordinates of the L lattice points of one grid, gathered for the used ones.
    grid_y, grid_x, grid_z = torch.meshgrid(
        _grid_coordinates(H, align, device),
        _grid_coordinates(W, align, device),
        _grid_coordinates(D, align, device),
        indexing="ij",
    )
    lattice_xyz = torch.stack((grid_x, grid_y, grid_z), dim=-1).view(L, 3)
    verts = lattice_xyz.index_select(0, used.view(-1).nonzero().squeeze(1).remainder_(L))

    # Two triangles per exposed quad. (A count of the mask rather than a search in the sorted
    # quads: ONNX has no searchsorted, and exported VoxMesh programs go through here.)
    num_faces = exposed.view(N, -1).sum(1) * 2
    return verts, faces, num_verts, num_faces, cells


@torch.no_grad()
def cubify_packed(
    voxels: torch.Tensor, thresh: float, *, align: str = "topleft"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tensor-level core of :func:`cubify`: the cube meshes of a batch in packed form.

    Skips building a :class:`Meshes`, for callers that only need the tensors.

    Args:
        voxels: (N, D, H, W) occupancy probabilities; a voxel is occupied when ``>= thresh``.
        thresh: occupancy threshold.
        align: one of ``"topleft"``, ``"corner"``, ``"center"`` (see :func:`cubify`).

    Returns:
        4-element tuple

        - **verts**: (sum(V_n), 3) float32 vertex positions ``(x, y, z)``, mesh by mesh, each
          mesh's vertices in increasing ``(y, x, z)`` lattice order.
        - **faces**: (sum(F_n), 3) int64 faces indexing each mesh's own vertices (not offset by
          the vertices of earlier meshes), mesh by mesh, ordered by voxel ``(y, x, z)`` and
          then by cube face (-x, +y, -z, -y, +x, +z), two triangles per face.
        - **num_verts**: (N,) int64 V_n.
        - **num_faces**: (N,) int64 F_n.
    """
    return _cubify_impl(voxels, thresh, align)[:4]


@torch.no_grad()
def cubify(
    voxels: torch.Tensor,
    thresh: float,
    *,
    feats: torch.Tensor | None = None,
    device: torch.device | str | None = None,
    align: str = "topleft",
) -> Meshes | tuple[Meshes, torch.Tensor]:
    r"""Convert a batch of voxel grids into meshes made of the occupied voxels' cubes.

    Each voxel with occupancy ``>= thresh`` (PyTorch3D compares with ``ge``) becomes a cube of
    12 triangles; cube faces shared by two occupied voxels are removed and coincident corners
    are merged, so each mesh is the closed boundary of its occupied region, with every face
    wound counter-clockwise seen from outside (normals point out). Vertex and face order are
    PyTorch3D's.

    ``align`` says where the grid locations sit relative to the cubes, shown for a 2 x 2 grid
    (X are grid locations)::

        X---X----        X-------X        ---------
        |   |   |        |   |   |        | X | X |
        X---X----        ---------        ---------
        |   |   |        |   |   |        | X | X |
        ---------        X-------X        ---------
         topleft           corner           center

    Coordinates are normalized per axis so that, for a dimension of size S, the grid locations
    ``0 .. S-1`` span [-1, 1] (``"topleft"``, ``"center"``; the cubes then reach one voxel
    beyond 1, resp. half a voxel beyond both ends), or so that the cubes' outer corners span
    exactly [-1, 1] (``"corner"``). The x coordinate runs along W, y along H and z along D.

    Args:
        voxels: (N, D, H, W) occupancy probabilities.
        thresh: scalar threshold; a voxel is occupied when its value is ``>= thresh``.
        feats: optional (N, C, D, H, W) per-voxel features (e.g. colours). PyTorch3D turns them
            into a ``TexturesAtlas`` with one colour per face and only for ``align="center"``;
            meshrecon's Meshes has no textures, so here they are returned next to the meshes as
            one feature row per face, for every ``align``.
        device: device of the output; defaults to the device of ``voxels``.
        align: ``"topleft"`` (default), ``"corner"`` or ``"center"``.

    Returns:
        meshes: a :class:`Meshes` of N meshes (a grid with no occupied voxel gives an empty mesh,
        with (0, 3) verts and faces); when ``feats`` is given, the tuple
        ``(meshes, face_feats)`` where ``face_feats`` is (sum(F_n), C), parallel to
        ``meshes.faces_packed()``: the features of the voxel each face belongs to.

    Raises:
        ValueError: if ``voxels`` is not 4-D, ``align`` is unknown, ``feats`` has the wrong
            shape, a grid dimension is 1 with ``align`` other than ``"corner"`` (PyTorch3D
            would return infinite coordinates), or ``voxels`` or ``thresh`` holds a NaN (PyTorch3D
            would treat it as empty).
    """
    if not torch.is_tensor(voxels) or voxels.dim() != 4:
        shape = tuple(voxels.shape) if torch.is_tensor(voxels) else type(voxels).__name__
        raise ValueError(f"voxels must be a tensor of shape (N, D, H, W), got {shape}")
    device = torch.device(device) if device is not None else voxels.device
    voxels = voxels.to(device)
    N, D, H, W = voxels.shape
    if feats is not None and (
        not torch.is_tensor(feats)
        or feats.dim() != 5
        or feats.shape[0] != N
        or tuple(feats.shape[2:]) != (D, H, W)
    ):
        shape = tuple(feats.shape) if torch.is_tensor(feats) else type(feats).__name__
        raise ValueError(f"feats must be a tensor of shape (N, C, {D}, {H}, {W}), got {shape}")
    if N == 0:
        _check_align(align)
        meshes = Meshes(verts=[], faces=[])
        if feats is None:
            return meshes
        return meshes, feats.new_zeros((0, feats.shape[1]), device=device)

    verts, faces, num_verts, num_faces, cells = _cubify_impl(voxels, thresh, align)
    verts_list = list(verts.split(num_verts.tolist(), 0))
    faces_list = list(faces.split(num_faces.tolist(), 0))
    meshes = Meshes(verts=verts_list, faces=faces_list)
    if feats is None:
        return meshes
    # The cells index the (N, H, W, D) permutation of the grid: gather features in that layout.
    cell_feats = feats.to(device).permute(0, 3, 4, 2, 1).reshape(-1, feats.shape[1])
    return meshes, cell_feats.index_select(0, cells).repeat_interleave(2, dim=0)
