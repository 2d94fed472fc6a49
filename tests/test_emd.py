import itertools

import pytest
import torch

from meshrecon.ops import earth_movers_distance, emd_assignment


def _naive_emd(x, y, squared):
    """Exhaustive search over all permutations: per-set optimal total cost (tiny P only)."""
    totals = []
    for a, b in zip(x, y):
        best = None
        for perm in itertools.permutations(range(a.shape[0])):
            d = (a - b[list(perm)]).square().sum(-1)
            cost = (d if squared else d.sqrt()).sum()
            best = cost if best is None or cost < best else best
        totals.append(best)
    return torch.stack(totals)


def _sets(seed, N=3, P=6, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(N, P, 3, generator=g, dtype=dtype), torch.rand(
        N, P, 3, generator=g, dtype=dtype
    )


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("method", ["exact", "auction"])
def test_matches_permutation_search(method, squared):
    x, y = _sets(seed=1)
    got = earth_movers_distance(
        x, y, method=method, squared=squared, point_reduction="sum", batch_reduction=None
    )
    ref = _naive_emd(x, y, squared)
    assert (got >= ref - 1e-12).all()
    assert (got <= ref * 1.01 + 1e-12).all()
    if method == "exact":
        torch.testing.assert_close(got, ref)


@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("rel_tol", [1e-2, 3e-2])
def test_auction_within_tolerance_of_exact(squared, rel_tol):
    x, y = _sets(seed=2, N=4, P=48, dtype=torch.float32)
    kw = dict(squared=squared, batch_reduction=None)
    exact = earth_movers_distance(x, y, method="exact", **kw)
    approx = earth_movers_distance(x, y, method="auction", rel_tol=rel_tol, **kw)
    assert (approx >= exact * (1 - 1e-6)).all()
    assert (approx <= exact * (1 + rel_tol) + 1e-6).all()


def test_assignment_is_a_permutation():
    x, y = _sets(seed=3, N=2, P=40)
    for method in ("auction", "exact"):
        phi = emd_assignment(x, y, method=method)
        assert phi.shape == (2, 40) and phi.dtype == torch.int64
        assert (phi.sort(1).values == torch.arange(40)).all()


def test_identical_and_permuted_sets_give_zero():
    x, _ = _sets(seed=4, N=2, P=30)
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    for method in ("auction", "exact"):
        assert earth_movers_distance(x, x, method=method).item() == 0
        assert earth_movers_distance(x, x[:, perm], method=method).item() == 0
        assert (emd_assignment(x, x[:, perm], method=method) == perm.argsort()).all()


@pytest.mark.parametrize("method", ["exact", "auction"])
def test_translation_gives_translation_norm(method):
    x, _ = _sets(seed=5, N=2, P=25)
    shift = torch.tensor([0.3, -0.4, 1.2], dtype=x.dtype)  # norm 1.3
    tol = 1e-10 if method == "exact" else 1e-2
    plain = earth_movers_distance(x, x + shift, method=method, batch_reduction=None)
    torch.testing.assert_close(plain, torch.full((2,), 1.3, dtype=x.dtype), rtol=tol, atol=0)
    sq = earth_movers_distance(x, x + shift, method=method, squared=True, point_reduction="sum")
    torch.testing.assert_close(sq, torch.tensor(25 * 1.69, dtype=x.dtype), rtol=tol, atol=0)


def test_reductions_and_gradients_match_fixed_matching():
    x, y = _sets(seed=6, N=3, P=12)
    a, b = x.clone().requires_grad_(), y.clone().requires_grad_()
    c, d = x.clone().requires_grad_(), y.clone().requires_grad_()
    per_point = earth_movers_distance(
        a, b, method="exact", point_reduction=None, batch_reduction=None
    )
    phi = emd_assignment(x, y, method="exact")
    ref = torch.stack([(c[n] - d[n][phi[n]]).norm(dim=-1) for n in range(3)])
    torch.testing.assert_close(per_point, ref)
    per_point.sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(a.grad, c.grad)
    torch.testing.assert_close(b.grad, d.grad)
    mean = earth_movers_distance(x, y, method="exact")
    torch.testing.assert_close(mean, ref.mean())
    total = earth_movers_distance(
        x, y, method="exact", point_reduction="sum", batch_reduction="sum"
    )
    torch.testing.assert_close(total, ref.sum())


def test_gradcheck():
    x, y = _sets(seed=7, N=2, P=5)
    x.requires_grad_()
    y.requires_grad_()
    for squared in (False, True):
        assert torch.autograd.gradcheck(
            lambda a, b, s=squared: earth_movers_distance(a, b, method="exact", squared=s),
            (x, y),
        )


def test_coincident_points_have_finite_gradient():
    x, _ = _sets(seed=8, N=1, P=6)
    x.requires_grad_()
    earth_movers_distance(x, x.detach().clone()).backward()
    assert torch.isfinite(x.grad).all() and (x.grad == 0).all()


def test_empty_and_single_point_sets():
    assert earth_movers_distance(torch.zeros(2, 0, 3), torch.zeros(2, 0, 3)).item() == 0
    x, y = torch.zeros(1, 1, 3), torch.ones(1, 1, 3)
    torch.testing.assert_close(earth_movers_distance(x, y), torch.tensor(3.0).sqrt())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"y": torch.zeros(2, 4, 3)}, "same shape"),
        ({"x": torch.zeros(5, 3), "y": torch.zeros(5, 3)}, "x must be"),
        ({"method": "sinkhorn"}, "method"),
        ({"rel_tol": 0.0}, "rel_tol"),
        ({"point_reduction": "max"}, "point_reduction"),
        ({"batch_reduction": "max"}, "batch_reduction"),
        ({"point_reduction": None}, "batch_reduction must be None"),
    ],
)
def test_invalid_inputs(kwargs, match):
    args = {"x": torch.zeros(2, 5, 3), "y": torch.zeros(2, 5, 3), **kwargs}
    with pytest.raises(ValueError, match=match):
        earth_movers_distance(**args)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_auction_matches_cpu_exact():
    x, y = _sets(seed=9, N=4, P=64, dtype=torch.float32)
    exact = earth_movers_distance(x, y, method="exact", batch_reduction=None)
    approx = earth_movers_distance(x.cuda(), y.cuda(), batch_reduction=None).cpu()
    assert (approx <= exact * 1.01 + 1e-6).all() and (approx >= exact * (1 - 1e-6)).all()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["auction", "exact"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_input_gives_nan_never_a_number_and_returns_fast(bad, method):
    # Before: NaN pairs counted as distance 0 and the auction bid to its round limit (minutes),
    # then returned a finite loss with NaN gradients. The timeout marker bounds the call.
    x, y = _sets(seed=10, N=3, P=64, dtype=torch.float32)
    y[1, 17, 2] = bad
    x.requires_grad_()
    per_set = earth_movers_distance(x, y, method=method, batch_reduction=None)
    assert torch.isnan(per_set[1]) and torch.isfinite(per_set[[0, 2]]).all()
    good = earth_movers_distance(x[[0, 2]], y[[0, 2]], method=method, batch_reduction=None)
    torch.testing.assert_close(per_set[[0, 2]], good)  # the other sets are untouched
    terms = earth_movers_distance(x, y, method=method, point_reduction=None, batch_reduction=None)
    assert torch.isnan(terms[1]).all() and torch.isfinite(terms[[0, 2]]).all()
    loss = earth_movers_distance(x, y, method=method)
    assert torch.isnan(loss)
    loss.backward()
    assert torch.isfinite(x.grad).all() and (x.grad[1] == 0).all() and x.grad[0].abs().sum() > 0
    with pytest.raises(ValueError, match=r"NaN or infinite coordinates in set\(s\) \[1\]"):
        emd_assignment(x, y, method=method)


def test_auction_rounds_are_bounded_in_total_and_a_shortfall_warns():
    import meshrecon.ops.emd as emd_module

    x, y = _sets(seed=11, N=2, P=48, dtype=torch.float32)
    allowed, used = [], []
    phase = emd_module._auction_phase

    def counting(*args):
        allowed.append(args[-1])
        used.append(phase(*args))
        return used[-1]

    emd_module._auction_phase = counting
    try:
        with pytest.warns(RuntimeWarning, match="did not converge within max_rounds=40 "):
            phi = emd_assignment(x, y, max_rounds=40)
        # Each phase gets what the previous ones left; the last one runs out.
        assert allowed[0] == 40 and used[-1] == -1
        assert all(a == 40 - sum(used[:k]) for k, a in enumerate(allowed))
        allowed.clear(), used.clear()
        emd_assignment(x, y)  # the default bound is far above what 48 points need
        assert len(allowed) > 1 and all(u >= 0 for u in used) and sum(used) < 100_000
    finally:
        emd_module._auction_phase = phase
    assert (phi.sort(1).values == torch.arange(48)).all()  # still a matching
    with pytest.raises(ValueError, match="max_rounds"):
        earth_movers_distance(x, y, max_rounds=0)


def test_huge_float64_coordinates_keep_the_matching():
    x, y = _sets(seed=12, N=2, P=7)
    scale = 2.0**700  # squared differences overflow float64 (~1e421)
    phi = emd_assignment(x, y, method="exact")
    assert torch.equal(emd_assignment(x * scale, y * scale, method="exact"), phi)
    assert torch.equal(emd_assignment(x * scale, y * scale), emd_assignment(x, y))
