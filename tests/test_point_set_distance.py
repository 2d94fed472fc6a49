"""meshrecon.ops.set_distance against per-set references."""

import pytest
import torch

from meshrecon.ops import earth_movers_distance, set_distance


def _chamfer_loop(x, y):
    out = []
    for a, b in zip(x, y):
        d = ((a[:, None] - b[None]) ** 2).sum(-1)
        out.append(d.min(1).values.mean() + d.min(0).values.mean())
    return torch.stack(out)


def test_chamfer_matches_the_loop_and_respects_lengths():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 12, 3, generator=g, dtype=torch.float64)
    y = torch.rand(3, 9, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(set_distance(x, y), _chamfer_loop(x, y))
    xl, yl = torch.tensor([12, 4, 7]), torch.tensor([9, 9, 2])
    ref = _chamfer_loop([x[i, : xl[i]] for i in range(3)], [y[i, : yl[i]] for i in range(3)])
    torch.testing.assert_close(set_distance(x, y, x_lengths=xl, y_lengths=yl), ref)


def test_emd_of_equal_sizes_is_the_op_and_of_unequal_sizes_resamples():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 16, 3, generator=g)
    y = torch.rand(2, 16, 3, generator=g)
    torch.testing.assert_close(
        set_distance(x, y, "emd"), earth_movers_distance(x, y, batch_reduction=None)
    )
    # Unequal sizes: both sets are drawn to emd_points points (uniform index per draw, with
    # replacement, x first), then matched.
    z = torch.rand(2, 10, 3, generator=g)
    w = torch.rand(2, 7, 3, generator=g)
    torch.manual_seed(3)
    d = set_distance(z, w, "emd", emd_points=32)
    torch.manual_seed(3)
    ux, uy = torch.rand(2, 32), torch.rand(2, 32)
    xs = torch.stack([z[n, (ux[n] * 10).long()] for n in range(2)])
    ys = torch.stack([w[n, (uy[n] * 7).long()] for n in range(2)])
    torch.testing.assert_close(d, earth_movers_distance(xs, ys, batch_reduction=None))


def test_bad_distance_is_named():
    with pytest.raises(ValueError, match="distance"):
        set_distance(torch.rand(1, 3, 3), torch.rand(1, 3, 3), "hausdorff")
