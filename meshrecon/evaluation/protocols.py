"""The field's other metric protocols, on one (prediction, ground truth) pair.

Mesh R-CNN's protocol lives in :mod:`.shape_metrics` (:func:`compute_sampling_metrics`); the
protocols here are the ones papers compare against it, each with its own normalization:

* **Tatarchenko et al.** ("What Do Single-view 3D Reconstruction Networks Learn?", CVPR 2019;
  their code *what3d*): precision, recall and F-score at a distance threshold that is a fraction
  of the object's size. what3d normalizes every object into a unit cube and uses thresholds
  ``CUBE_SIDE_LEN / 100`` etc., so 1% means 1% of the *side* of the cube the ground truth fits
  in, i.e. of the longest edge of its bounding box (``reference="side"``); the bounding-box
  *diagonal* is available for papers that normalize that way (``reference="diagonal"``).
  Precision is the share of predicted points within the threshold of the ground truth, recall
  the share of ground-truth points within it of the prediction, as the paper defines them
  (what3d's ``calculate_fscore`` labels the two the other way round; the F-score is symmetric).
* **Occupancy Networks** (Mescheder et al., CVPR 2019): Chamfer-L1, the mean of accuracy (mean
  distance from the predicted points to the ground truth) and completeness (the reverse), with
  unsquared Euclidean distances in units of 1/10 of the ground truth's longest bounding-box edge
  (their "1/10 times the maximal edge length of the current object's bounding box as unit 1";
  the missing factor of 10 is occupancy_networks#61); normal consistency, the mean absolute
  cosine between each point's normal and its nearest neighbour's, averaged over both
  directions; and volumetric IoU of the solids, for closed meshes. The IoU here is taken on a
  ``size``^3 grid of voxel centres over the ground truth's bounding cube enlarged by
  ``padding`` (Occupancy Networks: random points in the unit cube padded by 0.1).

3D-R2N2's voxel IoU (occupied at probability >= 0.4) is :func:`meshrecon.ops.voxel_iou`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from meshrecon.ops import knn_gather, knn_points, voxelize_meshes
from meshrecon.structures import Meshes

__all__ = [
    "SurfaceDistances",
    "fscore_key",
    "fscore_metrics",
    "is_closed",
    "onet_metrics",
    "reference_length",
    "solid_occupancy",
    "surface_distances",
    "volumetric_iou",
]


@dataclass
class SurfaceDistances:
    """Nearest-neighbour distances between two point sets (unsquared, in their units).

    Attributes:
        pred_to_gt: (S1,) distance from each predicted point to the nearest ground-truth point.
        gt_to_pred: (S2,) distance from each ground-truth point to the nearest predicted point.
        pred_cos, gt_cos: (S1,), (S2,) cosine between each point's normal and its nearest
            neighbour's in the other set; None without normals.
    """

    pred_to_gt: torch.Tensor
    gt_to_pred: torch.Tensor
    pred_cos: torch.Tensor | None = None
    gt_cos: torch.Tensor | None = None


def _check_points(name: str, pts: torch.Tensor) -> None:
    if pts.dim() != 2 or pts.shape[1] != 3 or pts.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (S, 3) tensor, got {tuple(pts.shape)}")


@torch.no_grad()
def surface_distances(
    pred_points: torch.Tensor,
    gt_points: torch.Tensor,
    pred_normals: torch.Tensor | None = None,
    gt_normals: torch.Tensor | None = None,
) -> SurfaceDistances:
    """Return :class:`SurfaceDistances` of (S1, 3) predicted and (S2, 3) ground-truth points.

    Normals, (S1, 3) and (S2, 3), are optional; the cosines need both.
    """
    _check_points("pred_points", pred_points)
    _check_points("gt_points", gt_points)
    for name, nrm, pts in (
        ("pred_normals", pred_normals, pred_points),
        ("gt_normals", gt_normals, gt_points),
    ):
        if nrm is not None and nrm.shape != pts.shape:
            raise ValueError(f"{name} must have shape {tuple(pts.shape)}, got {tuple(nrm.shape)}")
    p, g = pred_points.float()[None], gt_points.float()[None]
    knn_p = knn_points(p, g, K=1)
    knn_g = knn_points(g, p, K=1)
    out = SurfaceDistances(knn_p.dists[0, :, 0].sqrt(), knn_g.dists[0, :, 0].sqrt())
    if pred_normals is not None and gt_normals is not None:
        pn, gn = pred_normals.float()[None], gt_normals.float()[None]
        out.pred_cos = F.cosine_similarity(pn[0], knn_gather(gn, knn_p.idx)[0, :, 0], dim=1)
        out.gt_cos = F.cosine_similarity(gn[0], knn_gather(pn, knn_g.idx)[0, :, 0], dim=1)
    return out


def reference_length(gt_points: torch.Tensor, reference: str = "side") -> float:
    """Size of the ground truth: its bounding box's longest edge (``"side"``) or diagonal.

    Args:
        gt_points: (P, 3) ground-truth points or mesh vertices.
        reference: ``"side"`` or ``"diagonal"``.
    """
    _check_points("gt_points", gt_points)
    edges = gt_points.max(dim=0).values - gt_points.min(dim=0).values
    if reference == "side":
        length = float(edges.max())
    elif reference == "diagonal":
        length = float(edges.norm())
    else:
        raise ValueError(f"reference must be 'side' or 'diagonal', got {reference!r}")
    if not length > 0:
        raise ValueError("ground truth with a degenerate bounding box has no reference length")
    return length


def fscore_key(name: str, fraction: float) -> str:
    """Result key of a relative threshold: ``fscore_key("F-score", 0.01) == "F-score@1%"``."""
    return f"{name}@{100.0 * fraction:g}%"


def fscore_metrics(
    d: SurfaceDistances | None, length: float, thresholds: Sequence[float] = (0.01,)
) -> dict[str, float]:
    """Tatarchenko et al.'s precision, recall and F-score (%) at relative thresholds.

    Args:
        d: the pair's distances; None for an empty prediction (everything 0).
        length: the ground truth's :func:`reference_length`.
        thresholds: fractions of ``length`` (0.01: 1%).

    Returns:
        ``{"Precision@1%": p, "Recall@1%": r, "F-score@1%": f}`` per threshold, in percent.
    """
    out: dict[str, float] = {}
    for frac in thresholds:
        if not frac > 0:
            raise ValueError(f"F-score thresholds must be positive fractions, got {frac}")
        if d is None:
            p = r = 0.0
        else:
            tau = frac * length
            p = 100.0 * float((d.pred_to_gt < tau).float().mean())
            r = 100.0 * float((d.gt_to_pred < tau).float().mean())
        out[fscore_key("Precision", frac)] = p
        out[fscore_key("Recall", frac)] = r
        out[fscore_key("F-score", frac)] = 2.0 * p * r / (p + r) if p + r > 0 else 0.0
    return out


def onet_metrics(d: SurfaceDistances | None, gt_extent: float) -> dict[str, float]:
    """Occupancy Networks' surface metrics of one pair.

    Args:
        d: the pair's distances (unscaled); None for an empty prediction (NaN distances).
        gt_extent: longest edge of the ground truth's bounding box; a tenth of it is unit 1.

    Returns:
        ``Chamfer-L1`` = (``Accuracy`` + ``Completeness``) / 2 in units of ``gt_extent / 10``,
        and ``NormalConsistency`` (mean |cos|, both directions averaged; NaN without normals).
    """
    if not gt_extent > 0:
        raise ValueError(f"gt_extent must be positive, got {gt_extent}")
    if d is None:
        return {
            k: math.nan for k in ("Chamfer-L1", "Accuracy", "Completeness", "NormalConsistency")
        }
    unit = gt_extent / 10.0
    acc = float(d.pred_to_gt.mean()) / unit
    comp = float(d.gt_to_pred.mean()) / unit
    normal = math.nan
    if d.pred_cos is not None and d.gt_cos is not None:
        normal = 0.5 * (float(d.pred_cos.abs().mean()) + float(d.gt_cos.abs().mean()))
    return {
        "Chamfer-L1": 0.5 * (acc + comp),
        "Accuracy": acc,
        "Completeness": comp,
        "NormalConsistency": normal,
    }


def is_closed(faces: torch.Tensor) -> bool:
    """Whether a triangle mesh (F, 3) bounds a solid: it has faces and every edge is shared by
    an even number of them (each triangle's boundary cancels mod 2), the condition under which
    the parity inside test of :func:`~meshrecon.ops.voxelize_meshes` is well defined."""
    if faces.dim() != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must be (F, 3), got {tuple(faces.shape)}")
    if faces.shape[0] == 0:
        return False
    f = faces.long()
    edges = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]).sort(dim=1).values
    _, counts = torch.unique(edges, dim=0, return_counts=True)
    return bool((counts % 2 == 0).all())


def _components(num_verts: int, faces: torch.Tensor) -> torch.Tensor:
    """(F,) connected-component label of each face (faces sharing a vertex are connected)."""
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    f = faces.long().cpu().numpy()
    rows = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    cols = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(num_verts, num_verts))
    _, labels = connected_components(graph, directed=False)
    return torch.from_numpy(labels[f[:, 0]])


def solid_occupancy(
    verts: torch.Tensor, faces: torch.Tensor, box: torch.Tensor, size: int = 32
) -> torch.Tensor:
    """(size, size, size) occupancy of a closed mesh's solid: ``size``^3 voxels tile ``box``
    (``align="corner"``) and a voxel is occupied when its centre is inside.

    Each connected component is filled by parity and the fills are united, so overlapping
    closed parts (a chair's legs through its seat) count once, not cancel.

    Args:
        verts: (V, 3); faces: (F, 3) of a closed mesh (see :func:`is_closed`).
        box: (2, 3) ``[min_xyz, max_xyz]``.
        size: grid side.
    """
    labels = _components(verts.shape[0], faces)
    parts = [faces[labels == c] for c in labels.unique()]
    meshes = Meshes(verts=[verts.float()] * len(parts), faces=parts)
    grids = voxelize_meshes(meshes, size, box=box, align="corner")
    return grids.any(dim=0)


def volumetric_iou(
    pred_verts: torch.Tensor,
    pred_faces: torch.Tensor,
    gt_verts: torch.Tensor,
    gt_faces: torch.Tensor,
    size: int = 32,
    padding: float = 0.1,
) -> float | None:
    """IoU of the solids of two closed meshes on a ``size``^3 grid (None if either is open).

    The grid covers the ground truth's bounding cube (side: its longest bounding-box edge),
    enlarged by ``padding`` of that side and centred on the box; a prediction reaching outside
    it loses the outside part of its volume, as in Occupancy Networks' padded unit cube.
    """
    if not is_closed(gt_faces) or not is_closed(pred_faces):
        return None
    lo, hi = gt_verts.min(dim=0).values, gt_verts.max(dim=0).values
    half = 0.5 * float((hi - lo).max()) * (1.0 + padding)
    center = 0.5 * (lo + hi)
    box = torch.stack([center - half, center + half]).float()
    pred = solid_occupancy(pred_verts, pred_faces, box, size)
    gt = solid_occupancy(gt_verts, gt_faces, box, size)
    union = int((pred | gt).sum())
    if union == 0:
        return 0.0
    return int((pred & gt).sum()) / union
