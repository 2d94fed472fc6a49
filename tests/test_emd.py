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
