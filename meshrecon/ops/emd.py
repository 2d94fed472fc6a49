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

Non-finite input: a set holding a NaN or infinite coordinate has no matching. Such sets are found
before any solver runs (they would otherwise count as distance 0 and keep the auction bidding to
its round limit); :func:`earth_movers_distance` gives them a NaN distance, so that a diverged
model reaches the trainer's NaN guard, and :func:`emd_assignment` refuses them.

Bounded work: the auction runs at most ``max_rounds`` bidding rounds over all its epsilon phases
(a few thousand for 1024 random points; every round costs O(P^2)). If it runs out, the matching is
completed greedily with a RuntimeWarning that says how far it got.
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
    x, y = x.double(), y.double()
    sq = (x[:, :, None, :] - y[:, None, :, :]).square().sum(-1)
    if not bool(torch.isfinite(sq).all()):
        # Finite float64 coordinates beyond ~1e153 overflow when squared. Scaling each set by a
        # power of two is exact and scales its costs uniformly: the matching is unchanged.
        scale = torch.maximum(x.abs().flatten(1).amax(1), y.abs().flatten(1).amax(1))
        scale = torch.exp2(torch.ceil(torch.log2(scale.clamp_min(1.0))))[:, None, None]
        x, y = x / scale, y / scale
        sq = (x[:, :, None, :] - y[:, None, :, :]).square().sum(-1)
    return sq if squared else sq.sqrt()


def _auction_phase(
    benefit: torch.Tensor,
    price: torch.Tensor,
    assign: torch.Tensor,
    owner: torch.Tensor,
    eps: torch.Tensor,
    max_rounds: int,
) -> int:
    """Run bidding rounds until every point is assigned (updates ``assign`` and ``owner``).

    Returns:
        The number of rounds it took, or -1 if ``max_rounds`` ran out first.
    """
    N, P, _ = benefit.shape
    for rounds in range(max_rounds):
        b, i = (assign < 0).nonzero(as_tuple=True)
        if b.numel() == 0:
            return rounds
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
    return max_rounds if bool((assign >= 0).all()) else -1


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
    rounds_left, phase = max_rounds, 0
    while True:
        # Clouds already solved at their final epsilon keep their matching; the others restart
        # the bidding from the prices of the previous phase.
        assign[~done] = -1
        owner[~done] = -1
        phase += 1
        used = _auction_phase(benefit, price, assign, owner, eps, rounds_left)
        if used < 0:
            unassigned = int((assign < 0).sum())
            warnings.warn(
                f"EMD auction did not converge within max_rounds={max_rounds} bidding rounds "
                f"(P={P}, epsilon phase {phase}, {unassigned} of {N * P} points still "
                f"unassigned, epsilon {float(eps.max()):.3g} for a final "
                f"{float(eps_final.min()):.3g}); the matching is completed greedily and may be "
                "far from optimal. Raise max_rounds or rel_tol.",
                RuntimeWarning,
                stacklevel=4,
            )
            _complete_greedily(assign, owner)
            return assign
        rounds_left -= used
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


def _nonfinite_sets(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N,) bool: the sets n where x[n] or y[n] holds a NaN or infinite coordinate."""
    return ~(torch.isfinite(x).flatten(1).all(1) & torch.isfinite(y).flatten(1).all(1))


def _solve(x, y, method, squared, rel_tol, max_rounds) -> torch.Tensor:
    """The matching (N, P) of sets that are all finite."""
    with torch.no_grad():
        cost = _cost_matrix(x.detach(), y.detach(), squared)
    if method == "exact":
        return _exact_assignment(cost)
    return _auction_assignment(cost, rel_tol, max_rounds)


def _check_args(method: str, rel_tol: float, max_rounds: int) -> None:
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if not rel_tol > 0:
        raise ValueError(f"rel_tol must be positive, got {rel_tol!r}")
    if isinstance(max_rounds, bool) or not isinstance(max_rounds, int) or max_rounds < 1:
        raise ValueError(f"max_rounds must be a positive integer, got {max_rounds!r}")


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
        max_rounds: bidding rounds the auction may run in all (over every epsilon phase);
            if they run out, the matching is completed greedily with a RuntimeWarning.

    Returns:
        (N, P) int64 tensor ``phi`` with ``x[n, i]`` matched to ``y[n, phi[n, i]]``; each row is
        a permutation of range(P).

    Raises:
        ValueError: for inputs of different or wrong shapes, NaN or infinite coordinates (no
            matching is defined; checked before any solver runs), an unknown method,
            rel_tol <= 0 or max_rounds < 1.
    """
    _check_sets(x, y)
    _check_args(method, rel_tol, max_rounds)
    N, P, _ = x.shape
    if N == 0 or P == 0:
        return torch.zeros((N, P), dtype=torch.int64, device=x.device)
    bad = _nonfinite_sets(x, y)
    if bool(bad.any()):
        raise ValueError(
            f"x or y holds NaN or infinite coordinates in set(s) {bad.nonzero()[:, 0].tolist()}: "
            "their matching is not defined"
        )
    return _solve(x, y, method, squared, rel_tol, max_rounds)


def earth_movers_distance(
    x: torch.Tensor,
    y: torch.Tensor,
    method: str = "auction",
    squared: bool = False,
    point_reduction: str | None = "mean",
    batch_reduction: str | None = "mean",
    rel_tol: float = 1e-2,
    max_rounds: int = 100_000,
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
        max_rounds: the auction's bound on bidding rounds (see :func:`emd_assignment`).

    Returns:
        A scalar when both reductions are given; (N,) when batch_reduction is None; (N, P)
        per-point terms (point i of x to its partner) when point_reduction is None. Empty sets
        (P = 0) give zeros (with "mean", the mean over no points is taken as 0). A set holding
        a NaN or infinite coordinate (in x or y) gets NaN for every term, hence a NaN loss; it
        is detected up front and no solver runs on it; its points get a zero gradient.

    Raises:
        ValueError: for inputs of different or wrong shapes, an unknown method or reduction,
            rel_tol <= 0 or max_rounds < 1.
    """
    if point_reduction not in (None, "mean", "sum"):
        raise ValueError(f'point_reduction must be "mean", "sum" or None, got {point_reduction!r}')
    if batch_reduction not in (None, "mean", "sum"):
        raise ValueError(f'batch_reduction must be "mean", "sum" or None, got {batch_reduction!r}')
    if point_reduction is None and batch_reduction is not None:
        raise ValueError("batch_reduction must be None when point_reduction is None")
    _check_sets(x, y)
    _check_args(method, rel_tol, max_rounds)
    N, P, D = x.shape
    bad = _nonfinite_sets(x, y)
    phi = torch.arange(P, device=x.device).expand(N, P).clone()
    if N > 0 and P > 0:
        if bool(bad.any()):
            good = (~bad).nonzero()[:, 0]
            if good.numel():
                phi[good] = _solve(x[good], y[good], method, squared, rel_tol, max_rounds)
        else:
            phi = _solve(x, y, method, squared, rel_tol, max_rounds)
    if bool(bad.any()):
        # Zeroed here and set to NaN below: their terms are NaN and their gradients exactly 0
        # (NaN coordinates would otherwise leak NaN through 0 * NaN in the backward pass).
        x, y = (t.masked_fill(bad[:, None, None], 0.0) for t in (x, y))
    diff = x - y.gather(1, phi[..., None].expand(-1, -1, D))
    sq = diff.square().sum(-1)
    if squared:
        per_point = sq
    else:
        # sqrt has an infinite derivative at 0; coincident pairs get a zero gradient instead.
        positive = sq > 0
        safe = sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt()
        per_point = torch.where(positive, safe, torch.zeros_like(sq))
    # Never a finite distance from non-finite input (NaN pairs above would count as 0).
    per_point = per_point.masked_fill(bad[:, None], float("nan"))
    if point_reduction is None:
        return per_point
    loss = per_point.sum(1)
    if point_reduction == "mean":
        loss = loss / max(P, 1)
    if batch_reduction is None:
        return loss
    loss = loss.sum()
    return loss / max(N, 1) if batch_reduction == "mean" else loss
