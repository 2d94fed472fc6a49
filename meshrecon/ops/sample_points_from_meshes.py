"""Uniform sampling of points on mesh surfaces (PyTorch3D's ``sample_points_from_meshes``).

:func:`replay_samples` is the seam that makes the sampling deterministic for a comparison with
another implementation: inside it, each call takes its face indices and barycentric weights
from a recorded list instead of drawing them, so the same surface points (and, through them,
the same losses and gradients) come out as in the recording.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterable, Iterator

import torch

__all__ = ["replay_samples", "sample_points_from_meshes"]

# Draws queued by ``replay_samples`` (innermost block last); empty outside such a block.
_REPLAYED: list[list[tuple[torch.Tensor, torch.Tensor]]] = []


@contextlib.contextmanager
def replay_samples(
    draws: Iterable[tuple[torch.Tensor, torch.Tensor]],
) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Feed recorded draws to :func:`sample_points_from_meshes` instead of random ones.

    Inside the block, the k-th call of ``sample_points_from_meshes`` uses the k-th entry of
    ``draws``, ``(face_idxs, bary)``:

    - ``face_idxs``: (M, S) indices into the batch's *packed* faces, one row per non-empty mesh
      (in batch order), each inside its own mesh's faces (PyTorch3D's ``sample_face_idxs``
      after its per-mesh offset is added);
    - ``bary``: (3, M, S) weights ``(w0, w1, w2)`` of the face's three corners.

    The points are ``w0 v0 + w1 v1 + w2 v2`` of those faces and the normals the faces'
    normals, exactly as in a random call; nothing is drawn from torch's generator. A call
    with no draw left, or whose draw does not fit the meshes, raises ValueError.

    Yields:
        The list of draws not consumed yet (empty once every call has taken its draw), so a
        caller can check that the code under test sampled exactly as often as recorded.
    """
    queue = list(draws)
    _REPLAYED.append(queue)
    try:
        yield queue
    finally:
        _REPLAYED.remove(queue)


def _replayed_draw(
    first_idx: torch.Tensor, num_faces: torch.Tensor, num_samples: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The next draw of the innermost :func:`replay_samples` block, checked; None outside."""
    if not _REPLAYED:
        return None
    queue = _REPLAYED[-1]
    if not queue:
        raise ValueError("replay_samples: sample_points_from_meshes called with no draw left")
    face_idxs, bary = queue.pop(0)
    M = first_idx.shape[0]
    if tuple(face_idxs.shape) != (M, num_samples) or tuple(bary.shape) != (3, M, num_samples):
        raise ValueError(
            f"replay_samples: a draw of face_idxs {tuple(face_idxs.shape)} and bary "
            f"{tuple(bary.shape)} does not fit {M} non-empty meshes x {num_samples} samples "
            f"(expected ({M}, {num_samples}) and (3, {M}, {num_samples}))"
        )
    face_idxs = face_idxs.to(device=device, dtype=torch.int64)
    lo, hi = first_idx[:, None], (first_idx + num_faces)[:, None]
    if bool(((face_idxs < lo) | (face_idxs >= hi)).any()):
        raise ValueError("replay_samples: face_idxs point outside their own mesh's faces")
    return face_idxs, bary.to(device)


def sample_points_from_meshes(
    meshes,
    num_samples: int = 10000,
    return_normals: bool = False,
    return_textures: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Sample points uniformly on the surface of each mesh of a batch.

    A face is drawn with probability proportional to its area, then a point is drawn uniformly
    inside it from barycentric coordinates ``(1 - sqrt(u), sqrt(u) (1 - v), sqrt(u) v)`` with
    ``u, v ~ U(0, 1)`` (PyTorch3D's scheme). Faces are drawn by inverse-CDF sampling over the
    per-mesh cumulative areas rather than PyTorch3D's ``multinomial``: the distribution is the
    same, the individual draws differ. The result is reproducible under ``torch.manual_seed``.
    Gradients flow to the vertex positions through the barycentric combination; the face
    choice is not differentiable.

    Args:
        meshes: a ``Meshes`` batch of N meshes.
        num_samples: number of points to sample per mesh (a positive integer).
        return_normals: if True, also return the unit normal of the face each point lies on,
            ``(v1 - v0) x (v2 - v1)`` normalised.
        return_textures: must be False; meshrecon's ``Meshes`` carries no textures.

    Returns:
        ``samples`` (N, num_samples, 3), or ``(samples, normals)`` with ``normals`` of shape
        (N, num_samples, 3) when ``return_normals`` is True. Rows of meshes without faces are
        zero. A mesh whose faces all have zero area has its faces drawn uniformly (PyTorch3D
        fails on such a mesh).

    Raises:
        ValueError: if ``meshes`` is empty (no mesh has a face), its vertices are not finite,
            ``num_samples`` is not a positive integer, or ``return_textures`` is True.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples <= 0:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    if return_textures:
        raise ValueError("return_textures=True is not supported: Meshes carry no textures")
    if meshes.isempty():
        raise ValueError(
            f"Meshes are empty: none of the {len(meshes)} meshes has faces to sample points from"
        )
    verts = meshes.verts_packed()
    if not bool(torch.isfinite(verts).all()):
        raise ValueError("meshes contain NaN or infinite vertex coordinates")

    faces = meshes.faces_packed()
    num_meshes = len(meshes)
    valid = meshes.valid
    all_valid = bool(valid.all())
    num_valid = num_meshes if all_valid else int(valid.sum())
    faces_first_idx = meshes.mesh_to_faces_packed_first_idx()
    num_faces = meshes.num_faces_per_mesh()
    if not all_valid:
        faces_first_idx, num_faces = faces_first_idx[valid], num_faces[valid]

    # index_select is several times faster than advanced indexing on CPU.
    tri = verts.index_select(0, faces.reshape(-1)).view(-1, 3, 3)  # (F, 3 corners, 3)
    v0, v1, v2 = tri.unbind(1)
    replayed = _replayed_draw(faces_first_idx, num_faces, num_samples, verts.device)
    if replayed is not None:
        sample_face_idxs, bary = replayed
        w0, w1, w2 = bary.to(verts.dtype).unbind(0)
    else:
        with torch.no_grad():
            sample_face_idxs = _sample_faces(
                v0, v1, v2, faces_first_idx, num_faces, num_samples
            )  # (N_valid, S) into faces_packed
        uv = torch.rand(2, num_valid, num_samples, dtype=verts.dtype, device=verts.device)
        u_sqrt = uv[0].sqrt()
        w0 = 1.0 - u_sqrt
        w1 = u_sqrt * (1.0 - uv[1])
        w2 = u_sqrt * uv[1]
    flat_idx = sample_face_idxs.reshape(-1)
    corners = tri.view(-1, 9).index_select(0, flat_idx).view(num_valid, num_samples, 3, 3)
    points = (
        w0[..., None] * corners[:, :, 0]
        + w1[..., None] * corners[:, :, 1]
        + w2[..., None] * corners[:, :, 2]
    )
    samples = points if all_valid else _scatter_rows(points, valid)

    if not return_normals:
        return samples
    face_normals = torch.linalg.cross(v1 - v0, v2 - v1, dim=1)
    norms = torch.linalg.vector_norm(face_normals, dim=1, keepdim=True)
    if not bool(torch.isfinite(norms).all()):
        # Finite but huge coordinates (float32 cross products overflow from ~1e19): the
        # direction is recomputed from edges scaled per face, in float64.
        face_normals = _scaled_face_normals(v0, v1, v2)
        norms = torch.linalg.vector_norm(face_normals, dim=1, keepdim=True)
    face_normals = face_normals / norms.clamp(min=sys.float_info.epsilon)
    normals = face_normals.index_select(0, flat_idx).view(num_valid, num_samples, 3)
    return samples, (normals if all_valid else _scatter_rows(normals, valid))


def _sample_faces(
    v0: torch.Tensor,
    v1: torch.Tensor,
    v2: torch.Tensor,
    first_idx: torch.Tensor,
    num_faces: torch.Tensor,
    num_samples: int,
) -> torch.Tensor:
    """Draw ``num_samples`` packed face indices per mesh with probability proportional to area.

    Inverse-CDF sampling: one ``rand`` and a search in the per-mesh cumulative areas (a guide
    table on CPU, a binary search elsewhere), several times faster on CPU than ``multinomial``,
    which runs one distribution at a time. The CDF is accumulated in float64 so that small
    faces of large meshes keep their share.

    Returns:
        (M, num_samples) int64 indices into the packed faces.
    """
    areas = torch.linalg.vector_norm(torch.linalg.cross(v1 - v0, v2 - v0, dim=1), dim=1)
    if not bool(torch.isfinite(areas).all()):
        # Finite but huge coordinates overflow the float32 cross products (from ~1e19), and an
        # infinite area made every draw NaN and its int64 face index garbage. Sampling needs
        # only the areas relative to each other: float64 and one common power-of-two scale.
        areas = _scaled_face_areas(v0, v1, v2)
    areas_padded = _faces_to_padded(areas.double(), first_idx, num_faces)  # (M, F_max)
    cdf = areas_padded.cumsum_(1)
    total = cdf[:, -1:]
    # A mesh whose faces all have zero area is sampled uniformly over its faces rather than
    # failing (PyTorch3D's multinomial raises there).
    degenerate = total[:, 0] <= 0
    if bool(degenerate.any()):
        real = _faces_to_padded(torch.ones_like(areas, dtype=cdf.dtype), first_idx, num_faces)
        cdf = torch.where(degenerate[:, None], real.cumsum(1), cdf)
        total = cdf[:, -1:]
    # Dividing by the total makes the last entry exactly 1 > every draw, so every draw lands on
    # a real face; zero-area faces repeat the previous CDF value and are never chosen.
    cdf = cdf / total
    draws = torch.rand(cdf.shape[0], num_samples, dtype=cdf.dtype, device=cdf.device)
    if cdf.device.type == "cpu":
        local = _guided_search(cdf, draws)
    else:
        # On GPUs the binary search is already fast and the guided scan would need syncs.
        local = torch.searchsorted(cdf, draws, right=True)
    local = torch.minimum(local, (num_faces - 1)[:, None])
    return local + first_idx[:, None]


def _power_of_two_scale(*tensors: torch.Tensor) -> torch.Tensor:
    """A power of two near the largest magnitude of ``tensors`` (dividing by it is exact)."""
    largest = max(float(t.abs().max()) for t in tensors)
    return torch.tensor(2.0 ** math.ceil(math.log2(max(largest, 1.0))), dtype=torch.float64)


def _scaled_face_areas(v0: torch.Tensor, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
    """Face areas (F,) in float64, all divided by one common factor (for huge coordinates)."""
    scale = _power_of_two_scale(v0, v1, v2).to(v0.device)
    a, b, c = (v.detach().double() / scale for v in (v0, v1, v2))
    return torch.linalg.vector_norm(torch.linalg.cross(b - a, c - a, dim=1), dim=1)


def _scaled_face_normals(v0: torch.Tensor, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
    """Face normals ``(v1 - v0) x (v2 - v1)``, each up to a positive factor.

    Computed in float64 from edges scaled by their face's largest component, so that they are
    finite for any finite vertices.
    """
    e1, e2 = v1.double() - v0.double(), v2.double() - v1.double()
    scale = torch.maximum(e1.abs().amax(1), e2.abs().amax(1)).clamp_min(1e-300).detach()
    normals = torch.linalg.cross(e1 / scale[:, None], e2 / scale[:, None], dim=1)
    return normals.to(v0.dtype)


def _guided_search(cdf: torch.Tensor, draws: torch.Tensor, max_steps: int = 6) -> torch.Tensor:
    """``searchsorted(cdf, draws, right=True)`` by a guide table (Chen and Asau, 1974).

    For K buckets of [0, 1), ``guide[k]`` is a lower bound of the answer for every draw in
    bucket k; a short forward scan finishes the search. On CPU this is several times faster
    than a binary search per draw. Rows where some draw is still unresolved after
    ``max_steps`` steps (many faces crowded into one bucket) fall back to the binary search.

    Args:
        cdf: (M, F) non-decreasing rows ending in exactly 1.
        draws: (M, S) values in [0, 1).
        max_steps: forward steps from the guide before a row falls back to the binary search.

    Returns:
        (M, S) int64 tensor, equal to ``torch.searchsorted(cdf, draws, right=True)``.
    """
    num_rows, num_buckets = cdf.shape
    # Face i is certainly <= every draw of bucket k once ceil(cdf_i * K) + 1 <= k; the margin of
    # one bucket absorbs the rounding of cdf_i * K.
    first_bucket = (torch.ceil(cdf * num_buckets).long() + 1).clamp_(max=num_buckets)
    counts = torch.zeros(num_rows, num_buckets + 1, dtype=torch.long, device=cdf.device)
    counts.scatter_add_(1, first_bucket, torch.ones_like(first_bucket))
    guide = counts.cumsum_(1)[:, :num_buckets]
    bucket = (draws * num_buckets).long().clamp_(max=num_buckets - 1)
    idx = guide.gather(1, bucket).clamp_(max=num_buckets - 1)
    for _ in range(max_steps):
        behind = cdf.gather(1, idx) <= draws
        if not bool(behind.any()):
            return idx
        idx += behind
    unresolved = (cdf.gather(1, idx) <= draws).any(1)
    if bool(unresolved.any()):
        rows = unresolved.nonzero()[:, 0]
        idx[rows] = torch.searchsorted(cdf[rows], draws[rows], right=True)
    return idx


def _faces_to_padded(
    values: torch.Tensor, first_idx: torch.Tensor, counts: torch.Tensor
) -> torch.Tensor:
    """Scatter the packed per-face ``values`` of the given meshes into (M, max(counts))."""
    max_faces = int(counts.max())
    cols = torch.arange(max_faces, device=values.device)
    inside = cols[None, :] < counts[:, None]
    idx = (first_idx[:, None] + cols[None, :]).clamp(max=max(values.shape[0] - 1, 0))
    return torch.where(inside, values[idx], values.new_zeros(()))


def _scatter_rows(rows: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Place ``rows`` (N_valid, ...) at the True positions of ``valid`` in a zero tensor."""
    out = rows.new_zeros((valid.shape[0],) + tuple(rows.shape[1:]))
    return out.index_put((valid.nonzero()[:, 0],), rows)
