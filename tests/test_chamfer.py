import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from conftest import load_golden

import meshrecon.ops.knn as knn_module
from meshrecon.ops import chamfer_distance


def _flat(value):
    if isinstance(value, tuple | list):
        return torch.cat([v.flatten() for v in value])
    return value.flatten()


def _naive_direction(x, y, lx, ly, nx, ny, norm, abs_cosine):
    """Per-point terms (lists of 0-d tensors) from the real points of x to their nearest y."""
    dist, cos = [], []
    for i in range(lx):
        if ly == 0:
            dist.append(x.new_zeros(()))
            cos.append(x.new_ones(()) if nx is not None else None)
            continue
        diff = x[i][None] - y[:ly]
        d = diff.square().sum(-1) if norm == 2 else diff.abs().sum(-1)
        j = int(torch.argmin(d.detach()))
        dist.append(d[j])
        if nx is not None:
            c = F.cosine_similarity(nx[i], ny[j], dim=0, eps=1e-6)
            cos.append(1 - (c.abs() if abs_cosine else c))
    return dist, cos


def _naive_chamfer(
    x, y, lx, ly, nx, ny, weights, batch_reduction, point_reduction, norm, single, abs_cosine
):
    """Loop reference of chamfer_distance for mean/sum/max point reductions."""
    N = x.shape[0]
    w = weights if weights is not None else torch.ones(N)
    losses, normal_losses = [], []
    for n in range(N):
        dirs = [
            (x[n], y[n], lx[n], ly[n], None if nx is None else nx[n], None if ny is None else ny[n])
        ]
        if not single:
            dirs.append(
                (
                    y[n],
                    x[n],
                    ly[n],
                    lx[n],
                    None if ny is None else ny[n],
                    None if nx is None else nx[n],
                )
            )
        terms, normal_terms = [], []
        for a, b, la, lb, na, nb in dirs:
            d, c = _naive_direction(a, b, int(la), int(lb), na, nb, norm, abs_cosine)
            d = torch.stack(d) * w[n] if d else x.new_zeros(0)
            if point_reduction == "max":
                terms.append(d.max() if d.numel() else x.new_zeros(()))
                continue
            denom = max(int(la), 1) if point_reduction == "mean" else 1
            terms.append(d.sum() / denom)
            if na is not None and nb is not None:
                c = torch.stack(c) * w[n] if c else x.new_zeros(0)
                normal_terms.append(c.sum() / denom)
        losses.append(torch.stack(terms).max() if point_reduction == "max" else sum(terms))
        normal_losses.append(sum(normal_terms) if normal_terms else None)
    loss = torch.stack(losses)
    has_normals = normal_losses[0] is not None
    loss_n = torch.stack(normal_losses) if has_normals else None
    if batch_reduction is not None:
        div = (w.sum() if weights is not None else N) if batch_reduction == "mean" else 1
        loss = loss.sum() / div
        loss_n = loss_n.sum() / div if has_normals else None
    return loss, loss_n


@pytest.fixture(params=["kdtree", "bruteforce"])
def search(request, monkeypatch):
    limit = -1 if request.param == "kdtree" else 1 << 40
    monkeypatch.setattr(knn_module, "_BRUTE_FORCE_MAX_PAIRS", limit)
    return request.param


def _clouds(seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x, y = (
        torch.randn(4, 23, 3, generator=g, dtype=dtype),
        torch.randn(4, 17, 3, generator=g, dtype=dtype),
    )
    nx, ny = (
        torch.randn(4, 23, 3, generator=g, dtype=dtype),
        torch.randn(4, 17, 3, generator=g, dtype=dtype),
    )
    lx, ly = torch.tensor([23, 11, 0, 5]), torch.tensor([17, 17, 6, 0])
    weights = torch.tensor([1.0, 0.5, 2.0, 0.0], dtype=dtype)
    return x, y, nx, ny, lx, ly, weights


def test_golden_cases():
    g = load_golden("chamfer_knn")
    assert len(g["chamfer_cases"]) == 80
    for case in g["chamfer_cases"]:
        kwargs = dict(case["kwargs"])
        if kwargs["batch_reduction"] is not None:
            kwargs["weights"] = g["weights"]
        x, y = g["x"].clone().requires_grad_(), g["y"].clone().requires_grad_()
        args = (x, y, g["x_lengths"], g["y_lengths"], g["x_normals"], g["y_normals"])
        if "error" in case:
            with pytest.raises(ValueError):
                chamfer_distance(*args, **kwargs)
            assert case["error"] == "ValueError"
            continue
        loss, loss_normals = chamfer_distance(*args, **kwargs)
        (_flat(loss).sum() + _flat(loss_normals).sum()).backward()
        for got, want in ((loss, case["loss"]), (loss_normals, case["loss_normals"])):
            assert isinstance(got, tuple) == isinstance(want, tuple | list), kwargs
            torch.testing.assert_close(_flat(got), _flat(want), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(x.grad, case["grad_x"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(y.grad, case["grad_y"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("point_reduction", ["mean", "sum", "max"])
@pytest.mark.parametrize("batch_reduction", ["mean", "sum", None])
@pytest.mark.parametrize("single", [False, True])
def test_matches_naive(search, norm, point_reduction, batch_reduction, single):
    x, y, nx, ny, lx, ly, weights = _clouds(seed=norm)
    normals = (None, None) if point_reduction == "max" else (nx, ny)
    for w in (None, weights):
        a, b = x.clone().requires_grad_(), y.clone().requires_grad_()
        c, d = x.clone().requires_grad_(), y.clone().requires_grad_()
        kw = dict(batch_reduction=batch_reduction, point_reduction=point_reduction, norm=norm)
        loss, loss_n = chamfer_distance(
            a, b, lx, ly, *normals, weights=w, single_directional=single, **kw
        )
        ref, ref_n = _naive_chamfer(
            c,
            d,
            lx,
            ly,
            *normals,
            w,
            batch_reduction,
            point_reduction,
            norm,
            single,
            abs_cosine=True,
        )
        torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
        if ref_n is None:
            assert loss_n is None
        else:
            torch.testing.assert_close(loss_n, ref_n, rtol=1e-5, atol=1e-6)
        loss.sum().backward()
        ref.sum().backward()
        torch.testing.assert_close(a.grad, c.grad, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(b.grad, d.grad, rtol=1e-5, atol=1e-6)


def test_point_reduction_none_shapes_and_padding(search):
    x, y, nx, ny, lx, ly, _ = _clouds(seed=5)
    (cx, cy), (cnx, cny) = chamfer_distance(
        x, y, lx, ly, nx, ny, point_reduction=None, batch_reduction=None, abs_cosine=False
    )
    assert cx.shape == cnx.shape == (4, 23) and cy.shape == cny.shape == (4, 17)
    assert (cx[1, 11:] == 0).all() and (cx[2] == 0).all() and (cy[3] == 0).all()
    # Cloud 3 has no y points: x's distance terms are 0 and its normal terms are 1 (PyTorch3D).
    assert (cx[3, :5] == 0).all() and (cnx[3, :5] == 1).all()
    total, _ = chamfer_distance(x, y, lx, ly, point_reduction="sum", batch_reduction=None)
    torch.testing.assert_close(total, cx.sum(1) + cy.sum(1))
    single, _ = chamfer_distance(
        x, y, lx, ly, point_reduction=None, batch_reduction=None, single_directional=True
    )
    torch.testing.assert_close(single, cx)


def test_zero_weights_give_connected_zeros():
    x, y, nx, ny, lx, ly, _ = _clouds(seed=6)
    x.requires_grad_()
    y.requires_grad_()
    # As in PyTorch3D, loss_normals is a zero that carries gradients, with or without normals.
    loss, normals = chamfer_distance(x, y, lx, ly, weights=torch.zeros(4))
    assert loss.shape == () and loss.item() == 0
    assert torch.is_tensor(normals) and normals.shape == () and normals.item() == 0
    (loss + normals).backward()
    assert (x.grad == 0).all() and (y.grad == 0).all()
    nx.requires_grad_()
    _, normals = chamfer_distance(x, y, lx, ly, nx, ny, weights=torch.zeros(4))
    normals.backward()
    assert nx.grad is not None and (nx.grad == 0).all()
    per_cloud, per_cloud_n = chamfer_distance(x, y, weights=torch.zeros(4), batch_reduction=None)
    assert per_cloud.shape == per_cloud_n.shape == (4,)
    (cx, cy), (ncx, ncy) = chamfer_distance(
        x, y, weights=torch.zeros(4), batch_reduction=None, point_reduction=None
    )
    assert cx.shape == ncx.shape == x.shape[:2] and cy.shape == ncy.shape == y.shape[:2]
    assert all(t.requires_grad and not t.any() for t in (cx, cy, ncx, ncy))
    single, single_n = chamfer_distance(
        x,
        y,
        weights=torch.zeros(4),
        batch_reduction=None,
        point_reduction=None,
        single_directional=True,
    )
    assert single.shape == single_n.shape == x.shape[:2]
    # point_reduction "max" takes no normals: PyTorch3D returns None there too.
    _, none = chamfer_distance(x, y, weights=torch.zeros(4), point_reduction="max")
    assert none is None


def test_gradcheck():
    x, y, nx, ny, lx, ly, _ = _clouds(seed=7, dtype=torch.float64)
    x, y = x[:, :6].requires_grad_(), y[:, :5].requires_grad_()
    nx, ny = nx[:, :6], ny[:, :5]
    lx, ly = lx.clamp(max=6), ly.clamp(max=5)
    weights = torch.tensor([1.0, 0.5, 2.0, 3.0], dtype=torch.float64)
    for norm in (1, 2):

        def fn(a, b, n=norm):
            loss, loss_n = chamfer_distance(a, b, lx, ly, nx, ny, weights=weights, norm=n)
            return loss + loss_n

        assert torch.autograd.gradcheck(fn, (x, y))


class _FakePointclouds:
    """Minimal stand-in with PyTorch3D's Pointclouds accessors."""

    def __init__(self, points, lengths, normals=None):
        self._points, self._lengths, self._normals = points, lengths, normals

    def points_padded(self):
        return self._points

    def normals_padded(self):
        return self._normals

    def num_points_per_cloud(self):
        return self._lengths


def _pointclouds(points, lengths, normals):
    try:
        from meshrecon.structures import Pointclouds
    except ImportError:
        return _FakePointclouds(points, lengths, normals)
    clouds = [p[:n] for p, n in zip(points, lengths.tolist())]
    return Pointclouds(clouds, normals=[v[:n] for v, n in zip(normals, lengths.tolist())])


def test_pointclouds_input():
    x, y, nx, ny, lx, ly, _ = _clouds(seed=8)
    lx, ly = lx.clamp(min=1), ly.clamp(min=1)
    ref = chamfer_distance(x, y, lx, ly, nx, ny)
    px, py = _pointclouds(x, lx, nx), _pointclouds(y, ly, ny)
    out = chamfer_distance(px, py)
    torch.testing.assert_close(out[0], ref[0])
    torch.testing.assert_close(out[1], ref[1])
    with pytest.raises(ValueError, match="max"):
        chamfer_distance(px, py, point_reduction="max")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_reduction": "max"}, "batch_reduction"),
        ({"point_reduction": "median"}, "point_reduction"),
        ({"point_reduction": None}, "batch_reduction must be None"),
        ({"norm": 3}, "norm"),
        ({"x": torch.zeros(4, 3)}, "x must be"),
        ({"x": [1, 2]}, "x must be"),
        ({"y": torch.zeros(3, 5, 3)}, "y must be"),
        ({"x_lengths": torch.tensor([1, 2, 3, 9])}, "x_lengths"),
        ({"weights": torch.ones(3)}, "weights"),
        ({"weights": -torch.ones(4)}, "non-negative"),
        ({"x_normals": torch.zeros(4, 6, 3)}, "x_normals"),
        (
            {
                "x_normals": torch.zeros(4, 8, 3),
                "y_normals": torch.zeros(4, 5, 3),
                "point_reduction": "max",
            },
            "max",
        ),
    ],
)
def test_invalid_inputs(kwargs, match):
    args = {"x": torch.zeros(4, 8, 3), "y": torch.zeros(4, 5, 3), **kwargs}
    with pytest.raises(ValueError, match=match):
        chamfer_distance(**args)


_MEMORY_PROBE = textwrap.dedent(
    """
    import resource, sys, torch
    from meshrecon.ops import chamfer_distance
    P = int(sys.argv[1])
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, P, 3, generator=g, requires_grad=True)
    y = torch.rand(1, P, 3, generator=g, requires_grad=True)
    chamfer_distance(x[:, :100], y[:, :100])  # load lazily imported modules first
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    loss, _ = chamfer_distance(x, y)
    loss.backward()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert torch.isfinite(loss) and x.grad is not None
    print((after - before) / 1024.0)
    """
)


def _peak_growth_mb(P):
    # A fresh process: ru_maxrss is a high-water mark, which earlier tests would have raised.
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, str(P)], capture_output=True, text=True, check=True
    )
    return float(result.stdout.strip().splitlines()[-1])


def test_memory_is_bounded_20k():
    # A materialized 20k x 20k float32 distance matrix alone would take 1.6 GB.
    assert _peak_growth_mb(20_000) < 200


@pytest.mark.slow
def test_memory_is_bounded_100k():
    # 100k x 100k would be 40 GB materialized.
    assert _peak_growth_mb(100_000) < 500


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(monkeypatch):
    monkeypatch.setenv("MESHRECON_OPS_BACKEND", "torch")
    x, y, nx, ny, lx, ly, weights = _clouds(seed=9)
    ref = chamfer_distance(x, y, lx, ly, nx, ny, weights=weights)
    out = chamfer_distance(
        x.cuda(), y.cuda(), lx.cuda(), ly.cuda(), nx.cuda(), ny.cuda(), weights=weights.cuda()
    )
    torch.testing.assert_close(out[0].cpu(), ref[0])
    torch.testing.assert_close(out[1].cpu(), ref[1])


@pytest.mark.parametrize("point_reduction", ["mean", "sum", None])
def test_clouds_without_points_match_zero_lengths(search, point_reduction):
    # A (N, 0, D) cloud is the lengths-0 case PyTorch3D defines: no x -> y distance, and a
    # normal term of 1 per x point (the missing neighbour's normal is zero). It raised
    # "index 0 is out of bounds" before.
    x, y, nx, ny, lx, _, _ = _clouds(seed=12)
    x.requires_grad_()
    batch = None if point_reduction is None else "mean"
    kwargs = dict(point_reduction=point_reduction, batch_reduction=batch)
    got = chamfer_distance(x, y[:, :0], lx, None, nx, ny[:, :0], **kwargs)
    ref = chamfer_distance(x, y, lx, torch.zeros(4, dtype=torch.int64), nx, ny, **kwargs)
    for a, b in zip(got, ref):
        if point_reduction is None:  # per-point pairs: the y part has P2 = 0 columns
            assert a[1].shape == (4, 0) and not b[1].any()
            a, b = a[0], b[0]
        assert a.shape == b.shape and torch.allclose(a, b)
    _flat(got[0]).sum().backward()
    assert x.grad is not None and not x.grad.any()
    # Both clouds empty, and an empty x: zero losses.
    loss, _ = chamfer_distance(x[:, :0], y[:, :0])
    assert loss.item() == 0
    loss, normals = chamfer_distance(x[:, :0], y, None, None, nx[:, :0], ny)
    assert loss.item() == 0 and normals.item() == 1  # y -> x: distance 0, normal cost 1
