"""The training shapes of a dataset as a searchable database, for the recognition baselines.

Tatarchenko et al. ("What Do Single-view 3D Reconstruction Networks Learn?", CVPR 2019) answer
single-view reconstruction with recognition: find the training shape nearest to what the
image shows. This module holds what those baselines share:

* **entries**: one per training model (``frame="object"``: the model frame, as ShapeNet stores
  it) or one per training view (``frame="viewer"``: the model in that view's camera frame, so an
  entry carries a shape *and* a viewpoint, as in their viewer-centred experiments);
* a **shape descriptor** per entry: the unsigned distance from each point of a
  ``resolution``^3 lattice over a box to the nearest of ``num_points`` surface samples
  (:func:`distance_field_descriptors`). Unlike solid occupancy it needs no watertight mesh, it
  varies smoothly as a surface moves (so it can be regressed), and the Euclidean distance
  between two descriptors grows with the distance between the surfaces;
* a **PCA** of the descriptors (:func:`fit_pca`), the low-dimensional space in which Retrieval
  regresses and searches, and **k-means** with **medoids** in that space (:func:`kmeans`,
  :func:`cluster_medoids`) for Clustering.

Everything is deterministic for a given seed, so a model built again from the same config and
training set has the same database (its checkpoint also stores the parts its weights depend
on).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

__all__ = [
    "FRAMES",
    "ShapeDatabase",
    "build_shape_database",
    "cluster_medoids",
    "descriptor_lattice",
    "distance_field_descriptors",
    "fit_pca",
    "kmeans",
]

logger = logging.getLogger(__name__)

FRAMES = ("object", "viewer")


def descriptor_lattice(box: torch.Tensor, resolution: int) -> torch.Tensor:
    """(resolution^3, 3) centres of the cells that tile ``box`` (2, 3), x fastest."""
    box = torch.as_tensor(box, dtype=torch.float32)
    if box.shape != (2, 3) or not bool((box[1] > box[0]).all()):
        raise ValueError(f"box must be (2, 3) [min_xyz, max_xyz] with min < max, got {box}")
    if resolution < 1:
        raise ValueError(f"resolution must be >= 1, got {resolution}")
    steps = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution
    axes = [box[0, i] + steps * (box[1, i] - box[0, i]) for i in range(3)]
    z, y, x = torch.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    return torch.stack([x, y, z], dim=-1).reshape(-1, 3)


@torch.no_grad()
def distance_field_descriptors(
    points: torch.Tensor | Sequence[torch.Tensor], lattice: torch.Tensor, chunk: int = 16
) -> torch.Tensor:
    """Distance from every lattice point to the nearest point of each cloud.

    Args:
        points: (N, P, 3), or a list of N (P_i, 3) clouds.
        lattice: (L, 3) from :func:`descriptor_lattice`.
        chunk: clouds per nearest-neighbour call (bounds the memory).

    Returns:
        (N, L) float32 descriptors.
    """
    from meshrecon.ops import knn_points

    clouds = list(points) if not torch.is_tensor(points) else list(points.unbind(0))
    if not clouds:
        return torch.zeros(0, lattice.shape[0])
    out = []
    lat = lattice.float()
    for start in range(0, len(clouds), chunk):
        part = clouds[start : start + chunk]
        for i, c in enumerate(part):
            if c.dim() != 2 or c.shape[1] != 3 or c.shape[0] == 0:
                raise ValueError(
                    f"points[{start + i}] must be a non-empty (P, 3) cloud, got {tuple(c.shape)}"
                )
        lengths = torch.tensor([c.shape[0] for c in part], device=lat.device)
        padded = torch.zeros(len(part), int(lengths.max()), 3, device=lat.device)
        for i, c in enumerate(part):
            padded[i, : c.shape[0]] = c.to(lat.device).float()
        query = lat[None].expand(len(part), -1, -1)
        knn = knn_points(query, padded, lengths2=lengths, K=1)
        out.append(knn.dists[..., 0].sqrt())
    return torch.cat(out)


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


@dataclass
class ShapeDatabase:
    """Entries (a training model, posed in the database's frame) and their descriptors.

    Attributes:
        frame: ``"object"`` or ``"viewer"`` (see the module docstring).
        keys: (N,) ``"<synset>/<model>"`` or ``"<synset>/<model>/<view>"`` of each entry.
        mesh_paths, voxel_paths: per distinct model, its mesh file and voxel file (or None).
        entry_model: (N,) index of each entry's model in ``mesh_paths``.
        entry_R, entry_t: (N, 3, 3), (N, 3) model -> database frame of each entry.
        box: (2, 3) region the descriptor lattice tiles.
        resolution: lattice side.
        descriptors: (N, resolution^3) distance-field descriptors.
        categories: (N,) category name of each entry ("" when unknown).
    """

    frame: str
    keys: list[str]
    mesh_paths: list[str]
    voxel_paths: list[str | None]
    entry_model: torch.Tensor
    entry_R: torch.Tensor
    entry_t: torch.Tensor
    box: torch.Tensor
    resolution: int
    descriptors: torch.Tensor
    categories: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)

    def digest(self) -> int:
        """A 60-bit fingerprint of the entries and the descriptor setup (checkpoint check)."""
        text = "\n".join([self.frame, str(self.resolution), *self.keys])
        return int(hashlib.sha256(text.encode()).hexdigest()[:15], 16)

    def lattice(self) -> torch.Tensor:
        return descriptor_lattice(self.box, self.resolution)


def _model_key(record: dict) -> str:
    if record.get("synset_id") is not None and record.get("model_id") is not None:
        return f"{record['synset_id']}/{record['model_id']}"
    if record.get("mesh"):
        return str(record["mesh"])
    raise ValueError(
        f"record {record.get('image_id')!r} names no model (synset_id / model_id or mesh)"
    )


def _group_views(records: Sequence[dict]) -> dict[str, list[dict]]:
    """Model key -> its view records, in record order (multi-view records are expanded)."""
    models: dict[str, list[dict]] = {}
    for r in records:
        model = {k: v for k, v in r.items() if k != "views"}
        for view in r.get("views") or [{}]:
            merged = {**model, **view}
            models.setdefault(_model_key(merged), []).append(merged)
    return models


def _surface_points(view: dict, num_points: int) -> torch.Tensor:
    from meshrecon.data.mapper_utils import sample_surface, samples
    from meshrecon.data.readers import read_mesh

    where = str(view.get("image_id"))
    if view.get("samples"):
        return samples(view["samples"], num_points, where)[0]
    if not view.get("mesh"):
        raise ValueError(f"record {where} has neither 'samples' nor 'mesh' to describe")
    verts, faces = read_mesh(view["mesh"])
    return sample_surface(verts.float(), faces, num_points)[0]


def build_shape_database(
    records: Sequence[dict],
    *,
    frame: str = "object",
    resolution: int = 16,
    num_points: int = 1000,
    views_per_model: int = 0,
    max_models: int = 0,
    box: Sequence[float] | torch.Tensor | None = None,
    seed: int = 0,
) -> ShapeDatabase:
    """Build the database of a dataset's training records.

    Args:
        records: ShapeNet-style view records (``synset_id``, ``model_id``, ``mesh``,
            ``samples``, ``voxel``, ``R``, ``t``) or multi-view model records (``views``).
        frame: ``"object"`` (an entry per model, model frame) or ``"viewer"`` (an entry per
            view: the model moved by the view's ``R``, ``t`` into its camera frame).
        resolution: lattice side of the descriptor.
        num_points: surface samples per entry.
        views_per_model: viewer frame: at most this many views of each model (its first ones);
            0: all.
        max_models: at most this many models (the first ones); 0: all.
        box: the lattice's region as ``[xmin, ymin, zmin, xmax, ymax, zmax]``; None or empty:
            the bounding box of every entry's samples, enlarged by 5% on each side.
        seed: seed of the surface sampling.
    """
    if frame not in FRAMES:
        raise ValueError(f"frame must be one of {FRAMES}, got {frame!r}")
    models = _group_views(records)
    if not models:
        raise ValueError("build_shape_database: no training records")
    keys_m = list(models)[: max_models or None]
    mesh_paths, voxel_paths, keys, categories = [], [], [], []
    entry_model, rots, trans, clouds = [], [], [], []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for m, key in enumerate(keys_m):
            views = models[key]
            first = views[0]
            mesh_paths.append(first.get("mesh"))
            voxel_paths.append(first.get("voxel"))
            pts = _surface_points(first, num_points)
            if frame == "object":
                chosen = [(key, torch.eye(3), torch.zeros(3))]
            else:
                use = views[: views_per_model or None]
                chosen = []
                for i, v in enumerate(use):
                    if v.get("R") is None or v.get("t") is None:
                        raise ValueError(f"view {v.get('image_id')!r} has no R, t for frame viewer")
                    R = torch.as_tensor(v["R"], dtype=torch.float32).reshape(3, 3)
                    t = torch.as_tensor(v["t"], dtype=torch.float32).reshape(3)
                    chosen.append((f"{key}/{v.get('view_index', i)}", R, t))
            for entry_key, R, t in chosen:
                keys.append(entry_key)
                categories.append(str(first.get("category") or first.get("synset_id") or ""))
                entry_model.append(m)
                rots.append(R)
                trans.append(t)
                clouds.append(pts @ R.T + t)
    if box is None or len(box) == 0:
        allpts = torch.cat(clouds)
        lo, hi = allpts.min(0).values, allpts.max(0).values
        pad = 0.05 * (hi - lo).clamp(min=1e-6)
        box_t = torch.stack([lo - pad, hi + pad])
    else:
        box_t = torch.as_tensor(list(box), dtype=torch.float32).reshape(2, 3)
    lattice = descriptor_lattice(box_t, resolution)
    descriptors = distance_field_descriptors(clouds, lattice)
    logger.info(
        "Shape database: %d entries (%s frame) of %d models, %d^3 distance-field descriptors",
        len(keys),
        frame,
        len(mesh_paths),
        resolution,
    )
    return ShapeDatabase(
        frame=frame,
        keys=keys,
        mesh_paths=mesh_paths,
        voxel_paths=voxel_paths,
        entry_model=torch.tensor(entry_model, dtype=torch.long),
        entry_R=torch.stack(rots),
        entry_t=torch.stack(trans),
        box=box_t,
        resolution=int(resolution),
        descriptors=descriptors,
        categories=categories,
    )
