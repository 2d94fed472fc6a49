"""Differentiable graph and mesh Laplacians as sparse matrices.

PyTorch3D's ``laplacian``, ``cot_laplacian`` and ``norm_laplacian``. All three return coalesced
sparse COO tensors of shape (V, V) in the dtype of ``verts``; ``cot_laplacian`` and
``norm_laplacian`` are differentiable with respect to ``verts``.
"""

from __future__ import annotations

import torch

__all__ = ["cot_laplacian", "cot_laplacian_entries", "laplacian", "norm_laplacian"]


def _check_verts(verts: torch.Tensor) -> None:
    if not torch.is_tensor(verts) or verts.dim() != 2 or verts.shape[1] != 3:
        shape = tuple(verts.shape) if torch.is_tensor(verts) else type(verts).__name__
        raise ValueError(f"verts must have shape (V, 3), got {shape}")
    if not verts.is_floating_point():
        raise ValueError(f"verts must be a floating point tensor, got {verts.dtype}")


def _check_index(name: str, index: torch.Tensor, width: int, verts: torch.Tensor) -> None:
    if not torch.is_tensor(index) or index.dim() != 2 or index.shape[1] != width:
        shape = tuple(index.shape) if torch.is_tensor(index) else type(index).__name__
        raise ValueError(f"{name} must have shape ({name[0].upper()}, {width}), got {shape}")
    if index.is_floating_point() or index.is_complex() or index.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got {index.dtype}")
    if index.device != verts.device:
        raise ValueError(f"{name} and verts must be on the same device")
    if index.numel() > 0:
        lo, hi = torch.aminmax(index)
        if lo.item() < 0 or hi.item() >= verts.shape[0]:
            raise ValueError(
                f"{name} must index vertices in [0, {verts.shape[0]}), got values in "
                f"[{lo.item()}, {hi.item()}]"
            )


def _sparse(idx: torch.Tensor, values: torch.Tensor, size: int) -> torch.Tensor:
    # Duplicate (i, j) entries add up when coalescing, which is exactly the "L[i, j] += w"
    # accumulation every Laplacian below needs.
    return torch.sparse_coo_tensor(idx, values, (size, size), check_invariants=False).coalesce()


def laplacian(verts: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Uniform (random-walk) graph Laplacian.

    ``L[i, j] = 1 / deg(i)`` if (i, j) is an edge, ``L[i, i] = -1`` and 0 otherwise, where
    ``deg(i)`` counts the edges at vertex ``i`` (a repeated edge counts every time). So
    ``(L @ verts)[i]`` is the vector from vertex ``i`` to the centroid of its neighbours.

    Args:
        verts: (V, 3) float tensor of vertex positions (only its size, dtype and device are
            used).
        edges: (E, 2) integer tensor of undirected edges.

    Returns:
        Sparse COO tensor (V, V) in ``verts.dtype``.

    Raises:
        ValueError: if a shape, dtype or device is wrong or an edge index is out of range.
    """
    _check_verts(verts)
    _check_index("edges", edges, 2, verts)
    num_verts = verts.shape[0]
    e0, e1 = edges.long().unbind(1)
    rows, cols = torch.cat([e0, e1]), torch.cat([e1, e0])
    deg = torch.bincount(rows, minlength=num_verts).to(verts.dtype)
    inv_deg = torch.where(deg > 0, 1.0 / deg.clamp(min=1), torch.zeros_like(deg))
    diag = torch.arange(num_verts, device=verts.device)
    idx = torch.stack([torch.cat([rows, diag]), torch.cat([cols, diag])])
    values = torch.cat([inv_deg[rows], -torch.ones_like(deg)])
    return _sparse(idx, values, num_verts)


def cot_laplacian(
    verts: torch.Tensor, faces: torch.Tensor, eps: float = 1e-12
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cotangent-weight Laplacian and the inverse area around each vertex.

    For an edge (i, j) with opposite angles ``a_ij`` and ``b_ij`` in its two triangles,
    ``L[i, j] = L[j, i] = cot a_ij + cot b_ij``: each triangle adds the cotangent of the angle
    opposite an edge (a boundary edge has only one term). The diagonal is zero. Cotangents
    come from side lengths, ``cot a = (B^2 + C^2 - A^2) / (4 area)``, with the area from
    Heron's formula clamped to ``sqrt(eps)`` from below so that degenerate triangles give large
    finite weights instead of NaN.

    Args:
        verts: (V, 3) float tensor of vertex positions.
        faces: (F, 3) integer tensor of triangles.
        eps: lower bound of the squared area (Heron's product) before the square root.

    Returns:
        Tuple ``(L, inv_areas)``:

        - **L**: sparse COO tensor (V, V) of cotangent weights, differentiable w.r.t. ``verts``.
        - **inv_areas**: (V, 1) tensor, ``1 / (sum of the areas of the faces containing each
          vertex)``, 0 for vertices in no face.

    Raises:
        ValueError: if a shape, dtype or device is wrong or a face index is out of range.
    """
    _check_verts(verts)
    _check_index("faces", faces, 3, verts)
    idx, values, inv_areas = cot_laplacian_entries(verts, faces, eps)
    return _sparse(idx, values, verts.shape[0]), inv_areas


def cot_laplacian_entries(
    verts: torch.Tensor, faces: torch.Tensor, eps: float = 1e-12
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The uncoalesced entries of :func:`cot_laplacian`, for callers that apply it by scatter.

    Args:
        verts: (V, 3) float tensor of vertex positions (not validated here).
        faces: (F, 3) integer tensor of triangles (not validated here).
        eps: see :func:`cot_laplacian`.

    Returns:
        Tuple ``(idx, values, inv_areas)``: ``idx`` (2, 6F) row/column indices and ``values``
        (6F,) weights whose sums per (row, column) give ``L``; ``inv_areas`` as in
        :func:`cot_laplacian`.
    """
    num_verts = verts.shape[0]
    faces = faces.long()
    v0, v1, v2 = verts[faces].unbind(1)
    # Side k is opposite corner k.
    a = (v1 - v2).norm(dim=1)
    b = (v0 - v2).norm(dim=1)
    c = (v0 - v1).norm(dim=1)
    s = 0.5 * (a + b + c)
    # Rounding can push Heron's product of a near-degenerate triangle below zero.
    area = (s * (s - a) * (s - b) * (s - c)).clamp(min=eps).sqrt()
    a2, b2, c2 = a * a, b * b, c * c
    # (B^2 + C^2 - A^2) / area is 4 cot a: the cotangent of the angle at each corner.
    cot = torch.stack([b2 + c2 - a2, a2 + c2 - b2, a2 + b2 - c2], dim=1) / area[:, None] / 4.0
    # The weight of corner k goes to the edge opposite it: (v1, v2), (v2, v0), (v0, v1).
    ii = faces[:, [1, 2, 0]].reshape(-1)
    jj = faces[:, [2, 0, 1]].reshape(-1)
    idx = torch.stack([torch.cat([ii, jj]), torch.cat([jj, ii])])
    values = cot.reshape(-1).repeat(2)

    areas = verts.new_zeros(num_verts).index_add(0, faces.reshape(-1), area.repeat_interleave(3))
    safe = torch.where(areas > 0, areas, torch.ones_like(areas))
    inv_areas = torch.where(areas > 0, 1.0 / safe, torch.zeros_like(areas))
    return idx, values, inv_areas.view(-1, 1)


def norm_laplacian(verts: torch.Tensor, edges: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Inverse-edge-length affinity matrix.

    ``L[i, j] = L[j, i] = 1 / (||v_i - v_j|| + eps)`` for each edge (i, j) (repeated edges add
    up), zero elsewhere including the diagonal.

    Args:
        verts: (V, 3) float tensor of vertex positions.
        edges: (E, 2) integer tensor of undirected edges.
        eps: added to each length so that coincident vertices give a finite weight.

    Returns:
        Sparse COO tensor (V, V), differentiable w.r.t. ``verts``.

    Raises:
        ValueError: if a shape, dtype or device is wrong or an edge index is out of range.
    """
    _check_verts(verts)
    _check_index("edges", edges, 2, verts)
    e0, e1 = edges.long().unbind(1)
    w = 1.0 / ((verts[e0] - verts[e1]).norm(dim=1) + eps)
    idx = torch.stack([torch.cat([e0, e1]), torch.cat([e1, e0])])
    return _sparse(idx, w.repeat(2), verts.shape[0])
