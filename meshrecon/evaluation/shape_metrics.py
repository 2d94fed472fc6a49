"""Shape metrics on sampled surfaces: Chamfer-L2, normal consistency, precision / recall / F1.

These are the per-sample metrics Mesh R-CNN reports (its ``compare_meshes``), under the same
keys, so tables produced here and there read alike. One module computes them for training logs,
for the ShapeNet evaluator and for Pix3D's AP^mesh.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from meshrecon.ops import knn_gather, knn_points, sample_points_from_meshes
from meshrecon.structures import Meshes

__all__ = [
    "DEFAULT_THRESHOLDS",
    "compare_meshes",
    "compute_sampling_metrics",
    "scale_mesh_pairs",
    "threshold_key",
]

DEFAULT_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)


def threshold_key(name: str, t: float) -> str:
    """Return the result key of a thresholded metric, as Mesh R-CNN writes it: "F1@0.300000"."""
    return f"{name}@{t:f}"


def _lengths(points: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    if lengths is None:
        return torch.full(
            (points.shape[0],), points.shape[1], dtype=torch.int64, device=points.device
        )
    return lengths.to(device=points.device, dtype=torch.int64)


def _masked_mean(values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    mask = torch.arange(values.shape[1], device=values.device)[None] < lengths[:, None]
    total = (values * mask).sum(1)
    return total / lengths.clamp(min=1).to(values.dtype)


@torch.no_grad()
def compute_sampling_metrics(
    pred_points: torch.Tensor,
    pred_normals: torch.Tensor | None,
    gt_points: torch.Tensor,
    gt_normals: torch.Tensor | None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    eps: float = 1e-8,
    *,
    pred_lengths: torch.Tensor | None = None,
    gt_lengths: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Return per-sample metrics between predicted and ground-truth surface samples.

    Args:
        pred_points: (N, S1, 3) points sampled on each predicted surface.
        pred_normals: (N, S1, 3) their normals, or None.
        gt_points: (N, S2, 3) points sampled on each ground-truth surface.
        gt_normals: (N, S2, 3) their normals, or None.
        thresholds: distances (unsquared, in the points' units) for precision / recall / F1.
        eps: added to the F1 denominator so that P = R = 0 gives 0.
        pred_lengths, gt_lengths: (N,) number of valid points per sample when the clouds are
            padded; None means all points are valid.

    Returns:
        A dict of (N,) CPU tensors: ``Chamfer-L2`` (mean squared nearest-neighbour distance in
        both directions, summed), ``NormalConsistency`` and ``AbsNormalConsistency`` (mean
        cosine, and mean absolute cosine, between each point's normal and its nearest
        neighbour's, averaged over both directions; only when both normals are given), and
        ``Precision@t``, ``Recall@t``, ``F1@t`` in percent for each threshold t: the share of
        predicted points within t of the ground truth, of ground-truth points within t of the
        prediction, and their harmonic mean.
    """
    for name, pts in (("pred_points", pred_points), ("gt_points", gt_points)):
        if pts.ndim != 3 or pts.shape[2] != 3:
            raise ValueError(f"{name} must have shape (N, S, 3), got {tuple(pts.shape)}")
    if pred_points.shape[0] != gt_points.shape[0]:
        raise ValueError(
            f"pred_points and gt_points must have the same batch size, got "
            f"{pred_points.shape[0]} and {gt_points.shape[0]}"
        )
    for name, normals, pts in (
        ("pred_normals", pred_normals, pred_points),
        ("gt_normals", gt_normals, gt_points),
    ):
        if normals is not None and normals.shape != pts.shape:
            raise ValueError(
                f"{name} must have shape {tuple(pts.shape)}, got {tuple(normals.shape)}"
            )
    len_pred = _lengths(pred_points, pred_lengths)
    len_gt = _lengths(gt_points, gt_lengths)
    nearest = nearest_neighbours(pred_points, pred_normals, gt_points, gt_normals, len_pred, len_gt)
    return metrics_from_nearest(nearest, thresholds, eps, len_pred, len_gt)


@dataclass
class NearestNeighbours:
    """Squared distances from each point to its nearest neighbour in the other set, both ways.

    Attributes:
        pred_to_gt2: (N, S1) from each predicted point to the ground truth.
        gt_to_pred2: (N, S2) from each ground-truth point to the prediction.
        cos_pred, cos_gt: (N, S1), (N, S2) cosine between each point's normal and its
            neighbour's; None unless both sets have normals.
    """

    pred_to_gt2: torch.Tensor
    gt_to_pred2: torch.Tensor
    cos_pred: torch.Tensor | None = None
    cos_gt: torch.Tensor | None = None


@torch.no_grad()
def nearest_neighbours(
    pred_points: torch.Tensor,
    pred_normals: torch.Tensor | None,
    gt_points: torch.Tensor,
    gt_normals: torch.Tensor | None,
    len_pred: torch.Tensor,
    len_gt: torch.Tensor,
) -> NearestNeighbours:
    """The nearest-neighbour search behind :func:`compute_sampling_metrics`, both ways.

    A distance scales with the points and a neighbour does not change, so one search serves
    several protocols that only rescale the same samples (:func:`metrics_from_nearest`).
    """
    knn_pred = knn_points(pred_points, gt_points, lengths1=len_pred, lengths2=len_gt, K=1)
    knn_gt = knn_points(gt_points, pred_points, lengths1=len_gt, lengths2=len_pred, K=1)
    out = NearestNeighbours(knn_pred.dists[..., 0], knn_gt.dists[..., 0])
    if pred_normals is not None and gt_normals is not None:
        near_gt_normals = knn_gather(gt_normals, knn_pred.idx, len_gt)[..., 0, :]
        near_pred_normals = knn_gather(pred_normals, knn_gt.idx, len_pred)[..., 0, :]
        out.cos_pred = F.cosine_similarity(pred_normals, near_gt_normals, dim=2)
        out.cos_gt = F.cosine_similarity(gt_normals, near_pred_normals, dim=2)
    return out


def metrics_from_nearest(
    nearest: NearestNeighbours,
    thresholds: Sequence[float],
    eps: float,
    len_pred: torch.Tensor,
    len_gt: torch.Tensor,
    scale: float = 1.0,
) -> dict[str, torch.Tensor]:
    """:func:`compute_sampling_metrics`'s results from :func:`nearest_neighbours`' output, for
    both point sets multiplied by ``scale`` (> 0) after the search."""
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    pred_to_gt2, gt_to_pred2 = nearest.pred_to_gt2, nearest.gt_to_pred2
    if scale != 1.0:
        pred_to_gt2, gt_to_pred2 = pred_to_gt2 * scale**2, gt_to_pred2 * scale**2
    metrics = {
        "Chamfer-L2": _masked_mean(pred_to_gt2, len_pred) + _masked_mean(gt_to_pred2, len_gt)
    }
    cos_pred, cos_gt = nearest.cos_pred, nearest.cos_gt
    if cos_pred is not None and cos_gt is not None:
        metrics["NormalConsistency"] = 0.5 * (
            _masked_mean(cos_pred, len_pred) + _masked_mean(cos_gt, len_gt)
        )
        metrics["AbsNormalConsistency"] = 0.5 * (
            _masked_mean(cos_pred.abs(), len_pred) + _masked_mean(cos_gt.abs(), len_gt)
        )

    pred_to_gt = pred_to_gt2.sqrt()
    gt_to_pred = gt_to_pred2.sqrt()
    for t in thresholds:
        precision = 100.0 * _masked_mean((pred_to_gt < t).to(pred_to_gt.dtype), len_pred)
        recall = 100.0 * _masked_mean((gt_to_pred < t).to(gt_to_pred.dtype), len_gt)
        metrics[threshold_key("Precision", t)] = precision
        metrics[threshold_key("Recall", t)] = recall
        metrics[threshold_key("F1", t)] = 2.0 * precision * recall / (precision + recall + eps)
    return {k: v.cpu() for k, v in metrics.items()}


def scale_mesh_pairs(
    pred_meshes: Meshes, gt_meshes: Meshes, scale: float | tuple[float, float] | str
) -> tuple[Meshes, Meshes]:
    """Return both batches rescaled as Mesh R-CNN's protocols do.

    ``scale`` is a float (both batches times it), a pair (pred times the first, GT times the
    second), or ``"gt-S"``: each pair scaled so that its ground-truth bounding box's longest edge
    is S (Mesh R-CNN's ShapeNet protocol uses ``"gt-10"``). A single GT mesh serves every
    prediction.
    """
    if isinstance(scale, (int, float)):
        pred_scale = gt_scale = float(scale)
    elif isinstance(scale, tuple) and len(scale) == 2:
        pred_scale, gt_scale = float(scale[0]), float(scale[1])
    elif isinstance(scale, str) and scale.startswith("gt-"):
        try:
            target = float(scale[3:])
        except ValueError:
            raise ValueError(f"scale must look like 'gt-10', got {scale!r}") from None
        bbox = gt_meshes.get_bounding_boxes()  # (N, 3, 2)
        long_edge = (bbox[:, :, 1] - bbox[:, :, 0]).max(dim=1).values
        if bool((long_edge <= 0).any()):
            raise ValueError("scale='gt-...' needs ground-truth meshes with a non-degenerate box")
        per_pair = target / long_edge
        if per_pair.numel() == 1:
            per_pair = per_pair.expand(len(pred_meshes))
        pred_scale = per_pair
        gt_scale = per_pair if len(gt_meshes) == len(pred_meshes) else per_pair[:1]
    else:
        raise ValueError(f"scale must be a float, a pair of floats or 'gt-S', got {scale!r}")
    return pred_meshes.scale_verts(pred_scale), gt_meshes.scale_verts(gt_scale)


@torch.no_grad()
def compare_meshes(
    pred_meshes: Meshes,
    gt_meshes: Meshes,
    num_samples: int | tuple[int, int] = 10000,
    scale: float | tuple[float, float] | str = "gt-10",
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    reduce: bool = True,
    eps: float = 1e-8,
) -> dict[str, float] | dict[str, torch.Tensor] | None:
    """Sample both surfaces and return :func:`compute_sampling_metrics` of each pair.

    Args:
        pred_meshes: N predicted meshes.
        gt_meshes: N ground-truth meshes, or one that every prediction is compared with.
        num_samples: points per surface, or a (pred, gt) pair.
        scale: see :func:`scale_mesh_pairs`.
        thresholds, eps: see :func:`compute_sampling_metrics`.
        reduce: average each metric over the batch (floats) instead of (N,) tensors.

    Returns:
        The metrics dict, or None when a batch holds a mesh with no faces (there is no surface
        to sample), as Mesh R-CNN returns.
    """
    if len(gt_meshes) not in (1, len(pred_meshes)):
        raise ValueError(
            f"gt_meshes must hold 1 or {len(pred_meshes)} meshes, got {len(gt_meshes)}"
        )
    if not bool(pred_meshes.valid.all()) or not bool(gt_meshes.valid.all()):
        return None
    n_pred, n_gt = num_samples if isinstance(num_samples, tuple) else (num_samples,) * 2
    pred_meshes, gt_meshes = scale_mesh_pairs(pred_meshes, gt_meshes, scale)
    pred_points, pred_normals = sample_points_from_meshes(pred_meshes, n_pred, return_normals=True)
    gt_points, gt_normals = sample_points_from_meshes(gt_meshes, n_gt, return_normals=True)
    if len(gt_meshes) == 1 and len(pred_meshes) > 1:
        gt_points = gt_points.expand(len(pred_meshes), -1, -1)
        gt_normals = gt_normals.expand(len(pred_meshes), -1, -1)
    metrics = compute_sampling_metrics(
        pred_points, pred_normals, gt_points, gt_normals, thresholds, eps
    )
    if reduce:
        return {k: float(v.mean()) for k, v in metrics.items()}
    return metrics
