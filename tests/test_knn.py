import pytest
import torch
from conftest import load_golden

import meshrecon.ops.knn as knn_module
from meshrecon.ops import knn_gather, knn_points


def _naive_knn(p1, p2, lengths1, lengths2, K, norm):
    """Loop reference: dists (differentiable) and idx, zero-padded like PyTorch3D."""
    N, P1, _ = p1.shape
    dists = [[None] * P1 for _ in range(N)]
    idx = torch.zeros((N, P1, K), dtype=torch.int64)
    for n in range(N):
        for i in range(P1):
            row = torch.zeros(K, dtype=p1.dtype)
            if i < lengths1[n] and lengths2[n] > 0:
                diff = p1[n, i][None] - p2[n, : lengths2[n]]
                d = diff.square().sum(-1) if norm == 2 else diff.abs().sum(-1)
                k = min(K, int(lengths2[n]))
                order = torch.argsort(d.detach())[:k]
                idx[n, i, :k] = order
                row = torch.cat([d[order], row[k:]])
            dists[n][i] = row
    return torch.stack([torch.stack(r) for r in dists]), idx


@pytest.fixture(params=["kdtree", "bruteforce"])
def search(request, monkeypatch):
    """Run a test once with each CPU neighbour search, whatever the problem size."""
    limit = -1 if request.param == "kdtree" else 1 << 40
    monkeypatch.setattr(knn_module, "_BRUTE_FORCE_MAX_PAIRS", limit)
    return request.param


def _random_batch(seed, N=3, P1=40, P2=30, D=3, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    p1 = torch.randn(N, P1, D, generator=g, dtype=dtype)
    p2 = torch.randn(N, P2, D, generator=g, dtype=dtype)
    lengths1 = torch.tensor([P1, P1 // 2, 0][:N])
    lengths2 = torch.tensor([P2, 2, P2 - 5][:N])
    return p1, p2, lengths1, lengths2


def test_golden_k5():
    g = load_golden("chamfer_knn")
    out = knn_points(g["x"], g["y"], g["x_lengths"], g["y_lengths"], K=5)
    torch.testing.assert_close(out.idx, g["knn_K5_idx"])
    torch.testing.assert_close(out.dists, g["knn_K5_dists"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("K", [1, 4])
def test_matches_naive_forward_backward(search, norm, K):
    p1, p2, lengths1, lengths2 = _random_batch(seed=10 * norm + K)
    a1, a2 = p1.clone().requires_grad_(), p2.clone().requires_grad_()
    b1, b2 = p1.clone().requires_grad_(), p2.clone().requires_grad_()
    out = knn_points(a1, a2, lengths1, lengths2, norm=norm, K=K, return_nn=True)
    ref_dists, ref_idx = _naive_knn(b1, b2, lengths1, lengths2, K, norm)
    torch.testing.assert_close(out.idx, ref_idx)
    torch.testing.assert_close(out.dists, ref_dists, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.knn, knn_gather(p2, ref_idx, lengths2))
    w = torch.rand(out.dists.shape, generator=torch.Generator().manual_seed(1))
    (out.dists * w).sum().backward()
    (ref_dists * w).sum().backward()
    torch.testing.assert_close(a1.grad, b1.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a2.grad, b2.grad, rtol=1e-5, atol=1e-6)


def test_padding_and_empty_clouds(search):
    p1, p2, lengths1, lengths2 = _random_batch(seed=3)
    out = knn_points(p1, p2, lengths1, lengths2, K=4)
    # Cloud 1 has 2 points in p2: neighbours k >= 2 are padding; cloud 2 has no p1 points.
    assert (out.idx[1, :, 2:] == 0).all() and (out.dists[1, :, 2:] == 0).all()
    assert (out.dists[1, :20, :2] > 0).all()
    assert (out.idx[1, 20:] == 0).all() and (out.dists[1, 20:] == 0).all()
    assert (out.idx[2] == 0).all() and (out.dists[2] == 0).all()
    empty = knn_points(p1, p2, lengths1, torch.zeros(3, dtype=torch.int64), K=2)
    assert (empty.idx == 0).all() and (empty.dists == 0).all()


def test_search_methods_agree_on_larger_clouds():
    g = torch.Generator().manual_seed(5)
    p1, p2 = torch.rand(2, 700, 3, generator=g), torch.rand(2, 900, 3, generator=g)
    lengths = [torch.tensor([700, 650]), torch.tensor([900, 3])]
    problems = [(p1, p2, *lengths)]
    for norm in (1, 2):
        tree = knn_module._knn_search(problems, K=5, norm=norm, method="kdtree")[0]
        brute = knn_module._knn_search(problems, K=5, norm=norm, method="bruteforce")[0]
        valid = knn_module._valid_mask(*lengths, 700, 5)
        assert torch.equal(tree[valid], brute[valid])


def test_non_finite_inputs_propagate(search):
    p1, p2, lengths1, lengths2 = _random_batch(seed=4)
    p2[0, 3, 1] = float("nan")
    out = knn_points(p1, p2, K=2)
    assert torch.isfinite(out.dists[1:]).all()


def test_gradcheck():
    g = torch.Generator().manual_seed(7)
    p1 = torch.randn(2, 6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    p2 = torch.randn(2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    lengths2 = torch.tensor([5, 3])
    for norm in (1, 2):
        assert torch.autograd.gradcheck(
            lambda a, b, n=norm: knn_points(a, b, lengths2=lengths2, K=2, norm=n).dists,
            (p1, p2),
        )


def test_knn_gather_matches_loop():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 7, 4, generator=g)
    idx = torch.randint(0, 7, (2, 5, 3), generator=g)
    lengths = torch.tensor([7, 2])
    out = knn_gather(x, idx, lengths)
    assert out.shape == (2, 5, 3, 4)
    for n in range(2):
        for i in range(5):
            for k in range(3):
                expected = x[n, idx[n, i, k]] if k < lengths[n] else torch.zeros(4)
                torch.testing.assert_close(out[n, i, k], expected)
    torch.testing.assert_close(knn_gather(x, idx)[1, :, 2], x[1][idx[1, :, 2]])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"p1": torch.zeros(2, 3, 3), "p2": torch.zeros(3, 3, 3)}, "batch dimension"),
        ({"p1": torch.zeros(2, 3, 3), "p2": torch.zeros(2, 3, 2)}, "point dimension"),
        ({"p1": torch.zeros(3, 3), "p2": torch.zeros(2, 3, 3)}, "p1 must be"),
        ({"norm": 3}, "norm"),
        ({"K": 0}, "K must be"),
        ({"lengths1": torch.tensor([4, 1])}, "lengths1"),
        ({"lengths2": torch.tensor([1])}, "lengths2"),
    ],
)
def test_invalid_inputs(kwargs, match):
    args = {"p1": torch.zeros(2, 3, 3), "p2": torch.zeros(2, 3, 3), **kwargs}
    with pytest.raises(ValueError, match=match):
        knn_points(**args)
    with pytest.raises(ValueError, match="idx"):
        knn_gather(torch.zeros(2, 3, 3), torch.zeros(2, 3))


def test_backend_switch(monkeypatch):
    p1, p2, lengths1, lengths2 = _random_batch(seed=8)
    monkeypatch.setenv("MESHRECON_OPS_BACKEND", "torch")
    ref = knn_points(p1, p2, lengths1, lengths2, K=3)
    monkeypatch.setenv("MESHRECON_OPS_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="MESHRECON_OPS_BACKEND"):
        knn_points(p1, p2)
    monkeypatch.setenv("MESHRECON_OPS_BACKEND", "pytorch3d")
    if not knn_module._pytorch3d_available():
        with pytest.raises(ImportError):
            knn_points(p1, p2)
        return
    out = knn_points(p1, p2, lengths1, lengths2, K=3)
    torch.testing.assert_close(out.idx, ref.idx)
    torch.testing.assert_close(out.dists, ref.dists)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(monkeypatch):
    monkeypatch.setenv("MESHRECON_OPS_BACKEND", "torch")
    g = torch.Generator().manual_seed(9)
    p1, p2 = torch.rand(3, 2000, 3, generator=g), torch.rand(3, 1500, 3, generator=g)
    lengths1, lengths2 = torch.tensor([2000, 10, 0]), torch.tensor([1500, 3, 700])
    for norm in (1, 2):
        cpu = knn_points(p1, p2, lengths1, lengths2, K=4, norm=norm)
        gpu = knn_points(p1.cuda(), p2.cuda(), lengths1.cuda(), lengths2.cuda(), K=4, norm=norm)
        torch.testing.assert_close(gpu.dists.cpu(), cpu.dists, rtol=1e-5, atol=1e-6)
        assert (gpu.idx.cpu() == cpu.idx).float().mean() > 0.999  # exact ties may differ


def test_clouds_without_points_give_pytorch3d_zeros(search):
    # PyTorch3D's kernel leaves zeros where p2 has no point; a P2 = 0 tensor is the same case
    # as lengths2 = 0 (it raised "index 0 is out of bounds" before).
    p1, p2, lengths1, _ = _random_batch(seed=11)
    p1.requires_grad_()
    none = knn_points(p1, p2[:, :0], lengths1, K=2, return_nn=True)
    padded = knn_points(p1, p2, lengths1, torch.zeros(3, dtype=torch.int64), K=2, return_nn=True)
    for got, ref in zip(none, padded):
        assert torch.equal(got, ref) and not got.any()
    assert none.knn.shape == (3, p1.shape[1], 2, 3)
    none.dists.sum().backward()
    assert torch.equal(p1.grad, torch.zeros_like(p1))
    out = knn_points(p1[:, :0], p2, K=3)
    assert out.dists.shape == out.idx.shape == (3, 0, 3)
    x = torch.zeros(2, 0, 4, requires_grad=True)
    gathered = knn_gather(x, torch.zeros(2, 5, 3, dtype=torch.int64))
    assert gathered.shape == (2, 5, 3, 4) and not gathered.any() and gathered.requires_grad
