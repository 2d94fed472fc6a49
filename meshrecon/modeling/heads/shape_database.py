"""The searchable space of the recognition baselines: PCA and k-means of shape descriptors.

Tatarchenko et al. ("What Do Single-view 3D Reconstruction Networks Learn?", CVPR 2019) answer
single-view reconstruction with recognition: find the training shape nearest to what the
image shows. The database of training shapes is data
(:class:`~meshrecon.structures.ShapeDatabase`, built from a training split by
:func:`meshrecon.data.shape_statistics.build_shape_database`): entries (a model in its frame,
or a model in one training view's camera frame) and their distance-field descriptors
(:func:`meshrecon.ops.distance_field_descriptors`). This module holds what the heads compute
from it: a **PCA** of the descriptors (:func:`fit_pca`), the low-dimensional space in which
Retrieval regresses and searches, and **k-means** with **medoids** in that space
(:func:`kmeans`, :func:`cluster_medoids`) for Clustering.

Everything is deterministic for a given seed. ``FRAMES``, ``ShapeDatabase``,
``descriptor_lattice`` and ``distance_field_descriptors`` are re-exported from their homes
(they lived here until the database became data); ``build_shape_database`` moved to
:mod:`meshrecon.data.shape_statistics`.
"""

from __future__ import annotations

import torch

from meshrecon.ops.distance_field import descriptor_lattice, distance_field_descriptors
from meshrecon.structures.shape_database import FRAMES, ShapeDatabase

__all__ = [
    "FRAMES",
    "ShapeDatabase",
    "cluster_medoids",
    "descriptor_lattice",
    "distance_field_descriptors",
    "fit_pca",
    "kmeans",
]


@torch.no_grad()
def fit_pca(
    x: torch.Tensor, dim: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Principal components of the rows of ``x`` (N, F), by a seeded randomized SVD.

    Returns:
        ``(mean (F,), basis (D, F), variance (D,))`` with D = min(dim, N - 1, F): orthonormal
        rows in decreasing order of variance, each signed so that its largest entry is
        positive (the sign an SVD returns is arbitrary).
    """
    n, f = x.shape
    d = min(int(dim), n - 1, f)
    if d < 1:
        raise ValueError(f"PCA needs at least 2 rows and dim >= 1, got {n} rows, dim {dim}")
    mean = x.float().mean(0)
    centred = x.float() - mean
    q = min(d + 10, n, f)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        _, s, v = torch.svd_lowrank(centred, q=q, niter=6)
    basis = v[:, :d].T.contiguous()
    idx = basis.abs().argmax(dim=1)
    signs = torch.sign(basis[torch.arange(d), idx])
    basis = basis * signs[:, None]
    variance = s[:d] ** 2 / max(n - 1, 1)
    return mean, basis, variance


@torch.no_grad()
def kmeans(
    x: torch.Tensor, k: int, seed: int = 0, iters: int = 100
) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means (Lloyd) with k-means++ initialisation, seeded.

    Args:
        x: (N, D) points; k: clusters (1 <= k <= N); iters: at most this many Lloyd steps
            (it stops when no assignment changes).

    Returns:
        ``(centres (k, D), labels (N,))``. A cluster that empties takes the point farthest from
        its centre, so all k are used.
    """
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= N = {n}, got k = {k}")
    g = torch.Generator().manual_seed(int(seed))
    x = x.double()
    centres = [x[int(torch.randint(n, (1,), generator=g))]]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        probs = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full((n,), 1.0 / n)
        i = int(torch.multinomial(probs.float(), 1, generator=g))
        centres.append(x[i])
        d2 = torch.minimum(d2, ((x - x[i]) ** 2).sum(1))
    c = torch.stack(centres)
    labels = torch.full((n,), -1, dtype=torch.long)
    for _ in range(max(1, iters)):
        dist = torch.cdist(x, c)
        new = dist.argmin(1)
        counts = torch.bincount(new, minlength=k)
        for empty in torch.nonzero(counts == 0).flatten().tolist():
            far = int(dist[torch.arange(n), new].argmax())
            new[far] = empty
            dist[far] = 0.0
        if torch.equal(new, labels):
            break
        labels = new
        c = torch.zeros_like(c).index_add_(0, labels, x)
        c = c / torch.bincount(labels, minlength=k).clamp(min=1)[:, None].double()
    return c.float(), labels


@torch.no_grad()
def cluster_medoids(x: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """(k,) index of each cluster's medoid: the member with the least summed distance to the
    other members (a real training shape, unlike the centroid)."""
    out = torch.empty(k, dtype=torch.long)
    for c in range(k):
        members = torch.nonzero(labels == c).flatten()
        if members.numel() == 0:
            raise ValueError(f"cluster {c} has no member")
        d = torch.cdist(x[members].double(), x[members].double()).sum(1)
        out[c] = members[int(d.argmin())]
    return out
