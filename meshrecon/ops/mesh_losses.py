"""Mesh regularisers: edge length, Laplacian smoothing and normal consistency.

Each has PyTorch3D's name, arguments and semantics: every mesh of the batch contributes
equally (its terms are averaged within the mesh, then the per-mesh values are averaged over all
N meshes, empty ones included), and a batch with no mesh having faces gives a zero loss of
shape (1,) that requires grad. The Laplacians are applied by scatter instead of building sparse
matrices; the result is the same.
"""

from __future__ import annotations

import torch

from .laplacian_matrices import cot_laplacian_entries

__all__ = ["mesh_edge_loss", "mesh_laplacian_smoothing", "mesh_normal_consistency"]

_LAPLACIAN_METHODS = ("uniform", "cot", "cotcurv")


def _zero_loss(meshes) -> torch.Tensor:
    return torch.tensor([0.0], dtype=torch.float32, device=meshes.device, requires_grad=True)


def _check_meshes(meshes) -> None:
    for attr in ("verts_packed", "faces_packed", "isempty"):
        if not hasattr(meshes, attr):
            raise ValueError(f"meshes must be a Meshes batch, got {type(meshes).__name__}")


def mesh_edge_loss(meshes, target_length: float = 0.0) -> torch.Tensor:
    """Edge length regulariser: mean over meshes of the mean ``(|e| - target_length)^2``.

    Each edge's term is weighted by 1 / (number of edges of its mesh), so a mesh contributes
    the same whatever its size; the sum is divided by the number of meshes N.

    Args:
        meshes: a ``Meshes`` batch.
        target_length: the resting edge length.

    Returns:
        Scalar loss tensor (shape (1,) and zero if no mesh has faces).

    Raises:
        ValueError: if ``meshes`` is not a Meshes batch.
    """
    _check_meshes(meshes)
    if meshes.isempty():
        return _zero_loss(meshes)
    num_meshes = len(meshes)
    verts = meshes.verts_packed()
    edges = meshes.edges_packed()
    edge_to_mesh = meshes.edges_packed_to_mesh_idx()
    weights = 1.0 / meshes.num_edges_per_mesh().gather(0, edge_to_mesh).to(verts.dtype)
    lengths = (verts.index_select(0, edges[:, 0]) - verts.index_select(0, edges[:, 1])).norm(
        dim=1, p=2
    )
    loss = (lengths - target_length) ** 2
    return (loss * weights).sum() / num_meshes


def mesh_laplacian_smoothing(meshes, method: str = "uniform") -> torch.Tensor:
    r"""Laplacian smoothing objective: mean over meshes of the mean ``|(L V)_i|`` per vertex.

    For vertex ``i`` with neighbours ``S(i)``, ``(L V)_i = sum_j w_ij (v_j - v_i)`` with

    - ``"uniform"``: ``w_ij = 1 / |S(i)|`` (a vertex in no edge gives ``-v_i``);
    - ``"cot"``: ``w_ij = (cot a_ij + cot b_ij) / sum_k (cot a_ik + cot b_ik)``, where
      ``a_ij, b_ij`` are the angles opposite edge (i, j) in its two triangles;
    - ``"cotcurv"``: ``w_ij = (cot a_ij + cot b_ij) / (4 A_i)`` with ``A_i`` the summed area of
      the faces at ``i``, so ``|(L V)_i|`` approximates the mean curvature.

    As in PyTorch3D, the weights are treated as constants: the gradient flows only through the
    vertex positions that ``L`` multiplies, not through the cotangents or areas. For ``"cot"``
    a vertex with zero weight sum contributes ``|v_i|`` (PyTorch3D's ``L V * 0 - V``).

    Args:
        meshes: a ``Meshes`` batch.
        method: ``"uniform"``, ``"cot"`` or ``"cotcurv"``.

    Returns:
        Scalar loss tensor (shape (1,) and zero if no mesh has faces).

    Raises:
        ValueError: if ``meshes`` is not a Meshes batch or ``method`` is unknown.
    """
    _check_meshes(meshes)
    if method not in _LAPLACIAN_METHODS:
        raise ValueError(f"method must be one of {_LAPLACIAN_METHODS}, got {method!r}")
    if meshes.isempty():
        return _zero_loss(meshes)
    num_meshes = len(meshes)
    verts = meshes.verts_packed()  # (V, 3)
    num_verts = verts.shape[0]
    vert_to_mesh = meshes.verts_packed_to_mesh_idx()
    weights = 1.0 / meshes.num_verts_per_mesh().gather(0, vert_to_mesh).to(verts.dtype)

    if method == "uniform":
        edges = meshes.edges_packed()
        rows = torch.cat([edges[:, 0], edges[:, 1]])
        cols = torch.cat([edges[:, 1], edges[:, 0]])
        deg = torch.bincount(rows, minlength=num_verts).to(verts.dtype)
        inv_deg = torch.where(deg > 0, 1.0 / deg.clamp(min=1), torch.zeros_like(deg))
        neighbour_sum = verts.new_zeros(verts.shape).index_add(0, rows, verts.index_select(0, cols))
        loss = neighbour_sum * inv_deg[:, None] - verts
    else:
        with torch.no_grad():
            idx, cot, inv_areas = cot_laplacian_entries(verts, meshes.faces_packed())
            rows, cols = idx
            row_sum = verts.new_zeros(num_verts).index_add(0, rows, cot)[:, None]
        weighted_sum = verts.new_zeros(verts.shape).index_add(
            0, rows, cot[:, None] * verts.index_select(0, cols)
        )
        if method == "cot":
            safe = torch.where(row_sum > 0, row_sum, torch.ones_like(row_sum))
            norm_w = torch.where(row_sum > 0, 1.0 / safe, torch.zeros_like(row_sum))
            loss = weighted_sum * norm_w - verts
        else:
            loss = (weighted_sum - row_sum * verts) * (0.25 * inv_areas)
    loss = loss.norm(dim=1)
    return (loss * weights).sum() / num_meshes


def mesh_normal_consistency(meshes) -> torch.Tensor:
    r"""Normal consistency: mean over meshes of the mean ``1 - cos(n0, n1)`` over face pairs.

    For every edge ``e = (v0, v1)`` and every pair of faces sharing it, with ``a`` and ``b``
    their vertices opposite ``e``, ``n0 = (v1 - v0) x (a - v0)`` and
    ``n1 = (b - v0) x (v1 - v0)``; the pair's term is 1 minus their cosine (0 for a flat fold,
    2 for a folded-back one). Edges shared by more than two faces are handled as PyTorch3D
    does: with the faces at edge ``e`` listed in packed order as ``f_0 .. f_{m-1}``, the pairs
    are ``(f_i, f_j)`` for ``i in [0, m-2]``, ``j in [1, m-1]``, ``i != j``. Each pair is
    weighted by 1 / (number of pairs of its mesh), the sum divided by N.

    Args:
        meshes: a ``Meshes`` batch.

    Returns:
        Scalar loss tensor (shape (1,) and zero if no mesh has faces).

    Raises:
        ValueError: if ``meshes`` is not a Meshes batch.
    """
    _check_meshes(meshes)
    if meshes.isempty():
        return _zero_loss(meshes)
    num_meshes = len(meshes)
    verts = meshes.verts_packed()
    faces = meshes.faces_packed()
    edges = meshes.edges_packed()
    face_to_edge = meshes.faces_packed_to_edges_packed()  # (F, 3)
    num_edges = edges.shape[0]

    with torch.no_grad():
        # One row per (face, edge of that face), grouped by edge; the stable sort keeps faces in
        # packed order within each edge's group.
        edge_idx, order = face_to_edge.reshape(-1).sort(stable=True)
        face_idx = order // 3
        counts = torch.bincount(edge_idx, minlength=num_edges)
        group_start = torch.cumsum(counts, 0) - counts
        # Enumerate the (m-1) x (m-1) grid of (i, j) candidates per edge, then drop i == j.
        side = (counts - 1).clamp(min=0)
        grid_size = side * side
        grid_edge = torch.repeat_interleave(torch.arange(num_edges, device=edges.device), grid_size)
        grid_start = torch.cumsum(grid_size, 0) - grid_size
        k = torch.arange(grid_edge.shape[0], device=edges.device) - grid_start[grid_edge]
        side_e = side[grid_edge]
        i = k // side_e
        j = k % side_e + 1
        keep = i != j
        start = group_start[grid_edge[keep]]
        pair0, pair1 = start + i[keep], start + j[keep]
        pair_mesh = meshes.faces_packed_to_mesh_idx()[face_idx[pair0]]
        num_pairs = torch.bincount(pair_mesh, minlength=num_meshes)
        pair_weights = 1.0 / num_pairs[pair_mesh].to(verts.dtype)

    # Column k of faces_packed_to_edges_packed is the edge opposite corner k, so the vertex
    # opposite edge row r is corner r % 3 of its face. (PyTorch3D sums the cross products with
    # all three corners, two of which vanish exactly; this is the same value.)
    opposite = faces.reshape(-1).index_select(0, order)
    edge_verts = edges.index_select(0, edge_idx)
    e0 = verts.index_select(0, edge_verts[:, 0])
    e1 = verts.index_select(0, edge_verts[:, 1])
    normals = torch.linalg.cross(e1 - e0, verts.index_select(0, opposite) - e0, dim=1)
    n0 = normals.index_select(0, pair0)
    n1 = -normals.index_select(0, pair1)
    loss = 1.0 - torch.cosine_similarity(n0, n1, dim=1)
    return (loss * pair_weights).sum() / num_meshes
