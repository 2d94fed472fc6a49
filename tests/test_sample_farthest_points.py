"""meshrecon.ops.sample_farthest_points against a per-cloud loop (PyTorch3D's semantics)."""

import pytest
import torch

from meshrecon.ops import sample_farthest_points


def _fps_loop(points, lengths, K, start):
    """One cloud at a time, one point at a time: PyTorch3D's naive reference, written out."""
    N = points.shape[0]
    max_K = max(K)
    idx = torch.full((N, max_K), -1, dtype=torch.long)
    for n in range(N):
        L, k_n = int(lengths[n]), min(int(lengths[n]), K[n])
        if k_n == 0:
            continue
        chosen = [int(start[n])]
        while len(chosen) < k_n:
            best, best_d = None, -1.0
            for p in range(L):
                d = min(float(((points[n, p] - points[n, c]) ** 2).sum()) for c in chosen)
                if d > best_d:
                    best, best_d = p, d
            chosen.append(best)
        idx[n, :k_n] = torch.tensor(chosen)
    pts = torch.zeros(N, max_K, points.shape[2], dtype=points.dtype)
    for n in range(N):
        for k in range(max_K):
            if idx[n, k] >= 0:
                pts[n, k] = points[n, idx[n, k]]
    return pts, idx


def test_equal_lengths_match_the_loop():
    x = torch.rand(3, 40, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    pts, idx = sample_farthest_points(x, K=7)
    ref_pts, ref_idx = _fps_loop(x, [40] * 3, [7] * 3, [0] * 3)
    assert torch.equal(idx, ref_idx)
    assert torch.equal(pts, ref_pts)


def test_lengths_and_per_cloud_K_pad_with_minus_one_and_zeros():
    x = torch.rand(3, 20, 2, generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([20, 5, 12])
    K = [4, 8, 12]
    pts, idx = sample_farthest_points(x, lengths=lengths, K=K)
    ref_pts, ref_idx = _fps_loop(x, lengths, K, [0, 0, 0])
    assert idx.shape == (3, 12) and pts.shape == (3, 12, 2)
    assert torch.equal(idx, ref_idx)
    assert torch.equal(pts, ref_pts)
    assert (idx[1, 5:] == -1).all() and (pts[1, 5:] == 0).all()  # 5 points: 5 chosen of 8
    assert int(idx[1, :5].max()) < 5  # never a padded point
    # K as a tensor gives the same.
    assert torch.equal(sample_farthest_points(x, lengths, torch.tensor(K))[1], idx)


def test_random_start_point_uses_pytorch3d_draws():
    x = torch.rand(4, 30, 3, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(5)
    _, idx = sample_farthest_points(x, K=6, random_start_point=True)
    torch.manual_seed(5)
    start = torch.randint(30, (4,))
    assert torch.equal(idx, _fps_loop(x, [30] * 4, [6] * 4, start)[1])
    lengths = torch.tensor([30, 10, 3, 17])
    torch.manual_seed(6)
    _, idx = sample_farthest_points(x, lengths=lengths, K=6, random_start_point=True)
    torch.manual_seed(6)
    start = (lengths * torch.rand(4)).long()
    assert torch.equal(idx, _fps_loop(x, lengths, [6] * 4, start)[1])


def test_gradient_flows_to_the_chosen_points():
    x = torch.rand(1, 10, 3, dtype=torch.float64, requires_grad=True)
    pts, idx = sample_farthest_points(x, K=4)
    pts.sum().backward()
    expected = torch.zeros(10, dtype=torch.float64)
    expected[idx[0]] = 1.0
    assert torch.equal(x.grad[0, :, 0], expected)


def test_the_heads_older_signature_keeps_its_behaviour():
    from meshrecon.modeling.heads.optimize_mvs_losses import sample_farthest_points as old

    x = torch.rand(2, 15, 3, generator=torch.Generator().manual_seed(3))
    assert torch.equal(old(x, 5)[1], sample_farthest_points(x, K=5)[1])
    pts, idx = old(x, 20)  # K >= P: every point, in order
    assert torch.equal(pts, x) and torch.equal(idx[0], torch.arange(15))


def test_bad_arguments_are_named():
    x = torch.rand(2, 5, 3)
    with pytest.raises(ValueError, match="points"):
        sample_farthest_points(x[0], K=2)
    with pytest.raises(ValueError, match="lengths"):
        sample_farthest_points(x, lengths=torch.tensor([5, 6]), K=2)
    with pytest.raises(ValueError, match="lengths"):
        sample_farthest_points(x, lengths=torch.tensor([5]), K=2)
    with pytest.raises(ValueError, match="K"):
        sample_farthest_points(x, K=[1, 2, 3])
    with pytest.raises(ValueError, match="K"):
        sample_farthest_points(x, K=0)
