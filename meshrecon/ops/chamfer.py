"""Chamfer distance between batches of point clouds, with PyTorch3D's API and semantics.

The nearest-neighbour indices of both directions come from one call into
:mod:`meshrecon.ops.knn` (one thread pool on CPU); the distances are recomputed in torch from
the matched pairs only, so memory stays O(N * (P1 + P2)) and the backward pass is a gather.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .knn import _knn_search, _valid_mask, _validate_lengths, knn_gather

__all__ = ["chamfer_distance"]

_BATCH_REDUCTIONS = (None, "mean", "sum")
_POINT_REDUCTIONS = (None, "mean", "sum", "max")

LossOrPair = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def _validate_reductions(batch_reduction: str | None, point_reduction: str | None) -> None:
    if batch_reduction not in _BATCH_REDUCTIONS:
        raise ValueError(
            f'batch_reduction must be one of "mean", "sum" or None, got {batch_reduction!r}'
        )
    if point_reduction not in _POINT_REDUCTIONS:
        raise ValueError(
            f'point_reduction must be one of "mean", "sum", "max" or None, got {point_reduction!r}'
        )
    if point_reduction is None and batch_reduction is not None:
        raise ValueError("batch_reduction must be None when point_reduction is None")


def _is_pointclouds(obj: Any) -> bool:
    # Duck-typed so that both meshrecon's and PyTorch3D's Pointclouds are accepted.
    return all(hasattr(obj, a) for a in ("points_padded", "normals_padded", "num_points_per_cloud"))


def _unpack_cloud(
    points: Any, lengths: torch.Tensor | None, normals: torch.Tensor | None, name: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Padded points (N, P, D), lengths (N,) and padded normals (N, P, D) or None."""
    if _is_pointclouds(points):
        # As in PyTorch3D, a Pointclouds' own lengths and normals replace the arguments.
        X = points.points_padded()
        lengths = points.num_points_per_cloud()
        normals = points.normals_padded()
        return X, lengths.long().to(X.device), normals
    if not torch.is_tensor(points):
        raise ValueError(f"{name} must be a Pointclouds or a tensor of shape (N, P, D)")
    if points.ndim != 3:
        raise ValueError(f"{name} must be of shape (N, P, D), got {tuple(points.shape)}")
    if not points.dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating point tensor, got {points.dtype}")
    N, P = points.shape[:2]
    lengths = _validate_lengths(lengths, N, P, f"{name}_lengths").to(points.device)
    if normals is not None and (
        not torch.is_tensor(normals) or normals.ndim != 3 or normals.shape[:2] != (N, P)
    ):
        raise ValueError(f"{name}_normals must be of shape (N, P, 3) = ({N}, {P}, 3)")
    return points, lengths, normals


def _one_direction(
    x: torch.Tensor,
    y: torch.Tensor,
    x_lengths: torch.Tensor,
    y_lengths: torch.Tensor,
    x_normals: torch.Tensor | None,
    y_normals: torch.Tensor | None,
    idx: torch.Tensor,
    weights: torch.Tensor | None,
    point_reduction: str | None,
    norm: int,
    abs_cosine: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-cloud terms from each x point to its nearest y point (idx: (N, P1))."""
    N, P1, D = x.shape
    valid = _valid_mask(x_lengths, y_lengths, P1, 1)[..., 0]  # (N, P1)
    idx = idx.masked_fill(~valid, 0)
    if y.shape[1] > 0:
        nn = y.gather(1, idx[..., None].expand(-1, -1, D))
    else:
        # y holds no point at all (P2 = 0): as for lengths 0, every x term is masked to 0.
        nn = x.new_zeros(x.shape)
    diff = x - nn
    dist = diff.square().sum(-1) if norm == 2 else diff.abs().sum(-1)
    zero = torch.zeros((), dtype=dist.dtype, device=dist.device)
    cham = torch.where(valid, dist, zero)

    cham_norm = None
    if x_normals is not None and y_normals is not None:
        # knn_gather zeroes the neighbour normal of an empty y cloud, so its cosine is 0 and
        # each real x point then costs 1, as in PyTorch3D.
        near = knn_gather(y_normals, idx[..., None], y_lengths)[..., 0, :]
        cos = F.cosine_similarity(x_normals, near, dim=2, eps=1e-6)
        cham_norm = 1 - (cos.abs() if abs_cosine else cos)
        x_real = torch.arange(P1, device=x.device)[None, :] < x_lengths[:, None]
        cham_norm = torch.where(x_real, cham_norm, zero.to(cham_norm.dtype))

    if weights is not None:
        cham = cham * weights.view(N, 1)
        cham_norm = cham_norm * weights.view(N, 1) if cham_norm is not None else None

    if point_reduction == "max":
        # Padded entries are 0 and distances are >= 0, so they never win the max.
        return cham.max(1).values if P1 > 0 else cham.sum(1), None
    if point_reduction is not None:
        cham = cham.sum(1)
        cham_norm = cham_norm.sum(1) if cham_norm is not None else None
        if point_reduction == "mean":
            count = x_lengths.clamp(min=1)
            cham = cham / count
            cham_norm = cham_norm / count if cham_norm is not None else None
    return cham, cham_norm


def _batch_reduce(
    value: torch.Tensor | None, weights: torch.Tensor | None, batch_reduction: str | None
) -> torch.Tensor | None:
    if value is None or batch_reduction is None:
        return value
    total = value.sum()
    if batch_reduction == "mean":
        if weights is None:
            total = total / max(value.shape[0], 1)
        else:
            w = weights.sum()
            total = total / torch.where(w == 0, torch.ones_like(w), w)
    return total


def chamfer_distance(
    x: Any,
    y: Any,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
    x_normals: torch.Tensor | None = None,
    y_normals: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    batch_reduction: str | None = "mean",
    point_reduction: str | None = "mean",
    norm: int = 2,
    single_directional: bool = False,
    abs_cosine: bool = True,
) -> tuple[LossOrPair, LossOrPair | None]:
    """Chamfer distance between two batches of point clouds x and y.

    For each point of x the distance to its nearest point of y (squared Euclidean for norm=2,
    L1 for norm=1) and, when both normal sets are given, ``1 - |cos|`` (or ``1 - cos`` when
    ``abs_cosine`` is False) between its normal and that neighbour's normal; then the same from
    y to x unless ``single_directional``.

    Args:
        x: (N, P1, D) tensor, or a Pointclouds (its lengths and normals are then used and the
            ``x_lengths``/``x_normals`` arguments ignored).
        y: (N, P2, D) tensor or Pointclouds, likewise.
        x_lengths: optional (N,) int64 number of real points per cloud of x, in [0, P1].
        y_lengths: optional (N,) int64 number of real points per cloud of y, in [0, P2].
        x_normals: optional (N, P1, 3) normals of x.
        y_normals: optional (N, P2, 3) normals of y.
        weights: optional (N,) non-negative weights of the clouds; every per-point term of
            cloud n is multiplied by ``weights[n]``, and ``batch_reduction="mean"`` divides by
            ``weights.sum()`` instead of N.
        batch_reduction: "mean", "sum" or None (no reduction over the batch). Must be None when
            point_reduction is None.
        point_reduction: "mean" (over each cloud's real points), "sum", "max" (the largest
            per-point distance: with norm=2 the squared one-sided Hausdorff distance; needs
            no normals) or None.
        norm: 2 (squared Euclidean distances) or 1 (L1 distances).
        single_directional: only the x -> y terms.
        abs_cosine: compare normals regardless of orientation.

    Returns:
        ``(loss, loss_normals)``; ``loss_normals`` is None unless both x_normals and y_normals
        are given (it is always None for point_reduction="max").

        - point_reduction "mean"/"sum": per cloud the reduced x -> y term plus the reduced
          y -> x term, shape (N,); batch_reduction then gives a scalar ("sum", or "mean" as
          described under ``weights``) or keeps (N,) (None).
        - point_reduction "max": per cloud ``max(max_i d_x[i], max_j d_y[j])`` (each direction's
          maximum when single_directional), then batch-reduced the same way.
        - point_reduction None: a pair ``(cham_x (N, P1), cham_y (N, P2))`` of per-point terms,
          or just cham_x (N, P1) when single_directional; padded points hold 0. loss_normals is
          then a pair (or a tensor) of the same shapes.

        If weights sum to zero, both losses are zeros of the shapes above that carry gradients
        (to x and y, and to the normals when given); as in PyTorch3D, ``loss_normals`` is then
        such a zero even without normals (except for point_reduction="max", where it is None).
        PyTorch3D's zeros have shape (N, N) there, by accident of broadcasting; here they have
        the documented shapes.

    Raises:
        ValueError: for an unknown reduction, point_reduction None with a batch_reduction,
            norm not in {1, 2}, normals with point_reduction "max", inputs that are neither
            tensors of shape (N, P, D) nor Pointclouds, lengths out of range, mismatched batch
            sizes or point dimensions, or weights of the wrong shape or with negative entries.
    """
    _validate_reductions(batch_reduction, point_reduction)
    if norm not in (1, 2):
        raise ValueError(f"norm must be 1 or 2, got {norm!r}")
    if point_reduction == "max" and (x_normals is not None or y_normals is not None):
        raise ValueError('x_normals and y_normals must be None when point_reduction is "max"')
    x, x_lengths, x_normals = _unpack_cloud(x, x_lengths, x_normals, "x")
    y, y_lengths, y_normals = _unpack_cloud(y, y_lengths, y_normals, "y")
    return_normals = x_normals is not None and y_normals is not None
    if point_reduction == "max" and return_normals:
        raise ValueError('Pointclouds with normals cannot be used with point_reduction "max"')

    N, P1, D = x.shape
    if y.shape[0] != N or y.shape[2] != D:
        raise ValueError(f"y must be of shape (N, P2, D) = ({N}, P2, {D}), got {tuple(y.shape)}")
    if y.device != x.device:
        raise ValueError("x and y must be on the same device")
    if weights is not None:
        if not torch.is_tensor(weights) or weights.shape != (N,):
            raise ValueError(f"weights must be a tensor of shape (N,) = ({N},)")
        if not bool((weights >= 0).all()):
            raise ValueError("weights must be non-negative")
        if float(weights.sum()) == 0.0:
            normals = (x_normals, y_normals) if return_normals else None
            return _zero_losses(
                x, y, normals, weights, batch_reduction, point_reduction, single_directional
            )

    problems = [(x, y, x_lengths, y_lengths)]
    if not single_directional:
        problems.append((y, x, y_lengths, x_lengths))
    found = _knn_search(problems, K=1, norm=norm)

    def direction(a, b, la, lb, na, nb, idx):
        return _one_direction(
            a, b, la, lb, na, nb, idx[..., 0], weights, point_reduction, norm, abs_cosine
        )

    cham_x, cham_norm_x = direction(x, y, x_lengths, y_lengths, x_normals, y_normals, found[0])
    if single_directional:
        # A NaN point of y is never anyone's nearest neighbour: without the y -> x terms
        # nothing else would carry it, and a NaN input would give a finite distance.
        cham_x = _nan_where_nonfinite(cham_x, y, y_lengths)
        if cham_norm_x is not None:
            cham_norm_x = _nan_where_nonfinite(cham_norm_x, y_normals, y_lengths)
        loss, loss_normals = cham_x, cham_norm_x
    else:
        cham_y, cham_norm_y = direction(y, x, y_lengths, x_lengths, y_normals, x_normals, found[1])
        if point_reduction is None:
            pair_normals = (cham_norm_x, cham_norm_y) if return_normals else None
            return (cham_x, cham_y), pair_normals
        if point_reduction == "max":
            loss, loss_normals = torch.maximum(cham_x, cham_y), None
        else:
            loss = cham_x + cham_y
            loss_normals = cham_norm_x + cham_norm_y if return_normals else None
    if point_reduction is None:
        return loss, loss_normals
    return _batch_reduce(loss, weights, batch_reduction), _batch_reduce(
        loss_normals, weights, batch_reduction
    )


def _nan_where_nonfinite(
    value: torch.Tensor, points: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    """``value`` (N, ...) with the rows of clouds whose real ``points`` are not finite NaN."""
    real = torch.arange(points.shape[1], device=points.device)[None] < lengths[:, None]
    bad = (~torch.isfinite(points).all(-1) & real).any(1)
    if not bool(bad.any()):
        return value
    return value.masked_fill(bad.view((-1,) + (1,) * (value.dim() - 1)), float("nan"))


def _zero_losses(
    x: torch.Tensor,
    y: torch.Tensor,
    normals: tuple[torch.Tensor, torch.Tensor] | None,
    weights: torch.Tensor,
    batch_reduction: str | None,
    point_reduction: str | None,
    single_directional: bool,
) -> tuple[LossOrPair, LossOrPair | None]:
    """Zero losses of the documented shapes, in the graph of the inputs (all weights are 0)."""

    def zeros(points: torch.Tensor, point_normals: torch.Tensor | None) -> torch.Tensor:
        # (N, P) zeros that reach the points (and normals) through a product with the weights.
        total = points.sum((1, 2))
        if point_normals is not None:
            total = total + point_normals.sum((1, 2))
        return (total * weights * 0.0)[:, None].expand(points.shape[0], points.shape[1])

    def losses(with_normals: bool) -> LossOrPair:
        nx, ny = normals if with_normals and normals is not None else (None, None)
        per_x = zeros(x, nx)
        if point_reduction is None:
            return per_x if single_directional else (per_x, zeros(y, ny))
        value = per_x.sum(1) if single_directional else per_x.sum(1) + zeros(y, ny).sum(1)
        return value.sum() if batch_reduction is not None else value

    loss = losses(with_normals=False)
    return loss, None if point_reduction == "max" else losses(with_normals=True)
