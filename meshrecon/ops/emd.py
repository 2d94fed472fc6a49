"""Earth Mover's distance between equal-size point sets, as used to train PSGN.

For two sets of P points the EMD is the cost of the best one-to-one matching phi,
``sum_i c(x_i, y_phi(i))`` with ``c`` the Euclidean distance (PSGN's convention) or, with
``squared=True``, its square. The matching is found without autograd; the loss is then computed
in torch from the matched pairs, so gradients flow to both sets through the (fixed) assignment,
exactly as in PSGN's EMD layer.

Two solvers:

- ``"auction"``: Bertsekas' auction algorithm with epsilon scaling, run batched on the inputs'
  device (Jacobi variant: every unassigned point bids at once). Its final epsilon is set from a
  lower bound of the optimum, so the returned matching costs at most ``(1 + rel_tol)`` times
  the optimal one.
- ``"exact"``: the Hungarian method from ``scipy.optimize.linear_sum_assignment``, cloud by
  cloud on CPU; O(P^3), meant for small sets and for testing.
"""

from __future__ import annotations

import warnings

import torch

__all__ = ["earth_movers_distance", "emd_assignment"]

_METHODS = ("auction", "exact")
# Epsilon shrinks by this factor between auction phases (Bertsekas recommends 4 to 10).
_EPS_SCALING = 6.0


def _cost_matrix(x: torch.Tensor, y: torch.Tensor, squared: bool) -> torch.Tensor:
    # float64, and differences rather than the matmul expansion: auction prices accumulate many
    # small increments, and near-equal costs must keep their order.
    sq = (x.double()[:, :, None, :] - y.double()[:, None, :, :]).square().sum(-1)
    return sq if squared else sq.sqrt()


def _auction_phase(
    benefit: torch.Tensor,
    price: torch.Tensor,
    assign: torch.Tensor,
    owner: torch.Tensor,
    eps: torch.Tensor,
    max_rounds: int,
) -> bool:
    """Run bidding rounds until everyone is assigned; returns False if max_rounds ran out."""
    N, P, _ = benefit.shape
    for _ in range(max_rounds):
        b, i = (assign < 0).nonzero(as_tuple=True)
        if b.numel() == 0:
            return True
        values = benefit[b, i] - price[b]
        top = values.topk(2, dim=1)
        j = top.indices[:, 0]
        bid = price[b, j] + (top.values[:, 0] - top.values[:, 1]) + eps[b]
        key = b * P + j
        best = torch.full((N * P,), -torch.inf, dtype=bid.dtype, device=bid.device)
        best = best.scatter_reduce(0, key, bid, "amax")
        won = bid >= best[key]
        # Equal top bids on one object: keep a single winner (the highest person index).
        bidder = torch.where(won, i, torch.full_like(i, -1))
        chosen = torch.full((N * P,), -1, dtype=i.dtype, device=i.device)
        chosen = chosen.scatter_reduce(0, key, bidder, "amax")
        won &= chosen[key] == i
        wb, wj, wi = b[won], j[won], i[won]
        previous = owner[wb, wj]
        evicted = previous >= 0
        assign[wb[evicted], previous[evicted]] = -1
        owner[wb, wj] = wi
        assign[wb, wi] = wj
        price[wb, wj] = bid[won]
    return bool((assign >= 0).all())


@torch.no_grad()
def _auction_assignment(cost: torch.Tensor, rel_tol: float, max_rounds: int) -> torch.Tensor:
    N, P, _ = cost.shape
    if P == 1:
        return torch.zeros((N, 1), dtype=torch.int64, device=cost.device)
    benefit = -cost
    # Each point's cheapest partner bounds the optimum from below (in both directions); an
    # eps-optimal auction is within P * eps of the optimum, hence eps_final = rel_tol * bound / P.
    lower = torch.maximum(cost.min(2).values.sum(1), cost.min(1).values.sum(1))
    cmax = cost.flatten(1).max(1).values
    floor = 1e-9 * cmax + torch.finfo(cost.dtype).tiny
    eps_final = torch.maximum(rel_tol * lower / P, floor)
    eps = torch.maximum(cmax / 4, eps_final)
    price = torch.zeros((N, P), dtype=cost.dtype, device=cost.device)
    assign = torch.full((N, P), -1, dtype=torch.int64, device=cost.device)
    owner = torch.full_like(assign, -1)
    done = torch.zeros(N, dtype=torch.bool, device=cost.device)
    while True:
        # Clouds already solved at their final epsilon keep their matching; the others restart
        # the bidding from the prices of the previous phase.
        assign[~done] = -1
        owner[~done] = -1
        if not _auction_phase(benefit, price, assign, owner, eps, max_rounds):
            warnings.warn(
                "auction did not converge within max_rounds; completing the matching greedily",
                RuntimeWarning,
                stacklevel=3,
            )
            _complete_greedily(assign, owner)
            return assign
        done = eps <= eps_final
        if bool(done.all()):
            return assign
        eps = torch.maximum(eps / _EPS_SCALING, eps_final)


def _complete_greedily(assign: torch.Tensor, owner: torch.Tensor) -> None:
    for n in range(assign.shape[0]):
        free_people = (assign[n] < 0).nonzero().flatten()
        free_objects = (owner[n] < 0).nonzero().flatten()
        assign[n, free_people] = free_objects
        owner[n, free_objects] = free_people


@torch.no_grad()
def _exact_assignment(cost: torch.Tensor) -> torch.Tensor:
    from scipy.optimize import linear_sum_assignment

    out = torch.empty(cost.shape[:2], dtype=torch.int64)
    for n, c in enumerate(cost.cpu().numpy()):
        rows, cols = linear_sum_assignment(c)
        out[n, torch.from_numpy(rows)] = torch.from_numpy(cols)
    return out.to(cost.device)


def _check_sets(x: torch.Tensor, y: torch.Tensor) -> None:
    for name, p in (("x", x), ("y", y)):
        if not torch.is_tensor(p) or p.ndim != 3 or not p.dtype.is_floating_point:
            raise ValueError(f"{name} must be a floating point tensor of shape (N, P, D)")
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same shape (N, P, D), got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if x.device != y.device:
        raise ValueError("x and y must be on the same device")


def emd_assignment(
    x: torch.Tensor,
    y: torch.Tensor,
    method: str = "auction",
    squared: bool = False,
    rel_tol: float = 1e-2,
    max_rounds: int = 100_000,
) -> torch.Tensor:
    """Return the one-to-one matching between x and y that (nearly) minimizes the EMD.

    Args:
        x: (N, P, D) tensor, N sets of P points.
        y: (N, P, D) tensor of the same shape.
        method: "auction" (batched, on x's device, cost within ``1 + rel_tol`` of optimal) or
            "exact" (scipy's Hungarian solver, on CPU).
        squared: match on squared Euclidean distances instead of Euclidean ones.
        rel_tol: relative sub-optimality allowed to the auction; must be positive.
        max_rounds: bidding rounds allowed per auction phase before the matching is completed
            greedily (with a RuntimeWarning).

    Returns:
        (N, P) int64 tensor ``phi`` with ``x[n, i]`` matched to ``y[n, phi[n, i]]``; each row is
        a permutation of range(P).

    Raises:
        ValueError: for inputs of different or wrong shapes, an unknown method, or
            rel_tol <= 0.
    """
    _check_sets(x, y)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if not rel_tol > 0:
        raise ValueError(f"rel_tol must be positive, got {rel_tol!r}")
    N, P, _ = x.shape
    if N == 0 or P == 0:
        return torch.zeros((N, P), dtype=torch.int64, device=x.device)
    with torch.no_grad():
        cost = _cost_matrix(x.detach(), y.detach(), squared)
    if method == "exact":
        return _exact_assignment(cost)
    return _auction_assignment(cost, rel_tol, max_rounds)


def earth_movers_distance(
    x: torch.Tensor,
    y: torch.Tensor,
    method: str = "auction",
    squared: bool = False,
    point_reduction: str | None = "mean",
    batch_reduction: str | None = "mean",
    rel_tol: float = 1e-2,
) -> torch.Tensor:
    """Earth Mover's distance between equal-size point sets x and y.

    The matching ``phi`` comes from :func:`emd_assignment`; the per-point terms are
    ``||x_i - y_phi(i)||_2`` (PSGN's convention), or its square with ``squared=True``, and are
    differentiable with respect to x and y for the fixed matching. PSGN's training loss is the
    sum over points, i.e. ``point_reduction="sum"``.

    Args:
        x: (N, P, D) tensor, N sets of P points.
        y: (N, P, D) tensor of the same shape.
        method: "auction" (approximate, batched, any device) or "exact" (Hungarian, CPU).
        squared: use squared Euclidean distances for both the matching and the loss.
        point_reduction: "mean" or "sum" over the P points, or None.
        batch_reduction: "mean" or "sum" over the N sets, or None; must be None when
            point_reduction is None.
        rel_tol: for "auction", the matching costs at most ``(1 + rel_tol)`` times the optimal
            one.

    Returns:
        A scalar when both reductions are given; (N,) when batch_reduction is None; (N, P)
        per-point terms (point i of x to its partner) when point_reduction is None. Empty sets
        (P = 0) give zeros (with "mean", the mean over no points is taken as 0).

    Raises:
        ValueError: for inputs of different or wrong shapes, an unknown method or reduction,
            or rel_tol <= 0.
    """
    if point_reduction not in (None, "mean", "sum"):
        raise ValueError(f'point_reduction must be "mean", "sum" or None, got {point_reduction!r}')
    if batch_reduction not in (None, "mean", "sum"):
        raise ValueError(f'batch_reduction must be "mean", "sum" or None, got {batch_reduction!r}')
    if point_reduction is None and batch_reduction is not None:
        raise ValueError("batch_reduction must be None when point_reduction is None")
    phi = emd_assignment(x, y, method=method, squared=squared, rel_tol=rel_tol)
    N, P, D = x.shape
    diff = x - y.gather(1, phi[..., None].expand(-1, -1, D))
    sq = diff.square().sum(-1)
    if squared:
        per_point = sq
    else:
        # sqrt has an infinite derivative at 0; coincident pairs get a zero gradient instead.
        positive = sq > 0
        safe = sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt()
        per_point = torch.where(positive, safe, torch.zeros_like(sq))
    if point_reduction is None:
        return per_point
    loss = per_point.sum(1)
    if point_reduction == "mean":
        loss = loss / max(P, 1)
    if batch_reduction is None:
        return loss
    loss = loss.sum()
    return loss / max(N, 1) if batch_reduction == "mean" else loss
