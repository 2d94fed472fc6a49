"""PSGN head: point counts, Min-of-N, losses, a few training steps."""

from __future__ import annotations

import pytest
import torch

from meshrecon.modeling.heads.psgn import PSGNHead, chamfer_l1, min_of_n
from meshrecon.modeling.meta_arch.single_view import ViewBatch
from meshrecon.ops import chamfer_distance


def _feats(n=2):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(n, 8, 8, 8, generator=g), torch.randn(n, 16, 4, 4, generator=g)]


def _head(**kw):
    torch.manual_seed(0)
    args = dict(feature_channels=[8, 16], fc_dims=[32], deconv_dim=8, noise_dim=4)
    args.update(kw)
    return PSGNHead(**args)


def _views(points):
    return ViewBatch(
        image_size=(32, 32),
        K=torch.tensor([[40.0, 40, 16, 16]]).repeat(len(points), 1),
        points=points,
    )


def test_point_count_fc_plus_deconv():
    head = _head().eval()
    out = head(_feats(), _views(torch.zeros(2, 10, 3)))
    assert len(out) == 2
    assert out[0]["points"].shape == (1024, 3) == (256 + 24 * 32, 3)
    # Inference is deterministic (r = 0) and centred on CENTER at initialization.
    again = head(_feats(), _views(torch.zeros(2, 10, 3)))
    torch.testing.assert_close(out[0]["points"], again[0]["points"])
    assert torch.allclose(out[0]["points"].mean(0), torch.tensor([0.0, 0.0, 1.4]), atol=0.05)


def test_min_of_n_picks_the_best_of_each_image():
    losses = torch.tensor([3.0, 1.0, 2.0, 5.0, 0.5, 0.7])
    value, idx = min_of_n(losses, 2)
    assert idx.tolist() == [1, 0, 0]
    assert float(value) == pytest.approx((1.0 + 2.0 + 0.5) / 3)
    with pytest.raises(ValueError, match="losses"):
        min_of_n(losses, 4)


def _squared_chamfer(pred, gt):
    return chamfer_distance(pred, gt, batch_reduction=None)[0]


@pytest.mark.parametrize(
    ("loss_name", "per_cloud"), [("chamfer", _squared_chamfer), ("chamfer_l1", chamfer_l1)]
)
def test_training_loss_is_the_min_over_draws(loss_name, per_cloud):
    head = _head(mon_samples=3, loss=loss_name).train()
    gt = torch.randn(2, 300, 3) * 0.2 + torch.tensor([0.0, 0.0, 1.4])
    feats = _feats()
    torch.manual_seed(5)
    loss = head(feats, _views(gt))["loss_points"]
    # Redo by hand with the same draws.
    torch.manual_seed(5)
    noise = torch.randn(6, 4)
    pred = head.decode([f.repeat_interleave(3, 0) for f in feats], noise)
    want = per_cloud(pred, gt.repeat_interleave(3, 0)).view(2, 3).min(1).values.mean()
    torch.testing.assert_close(loss, want)
    # Gradients reach only the chosen draws' noise path, and the network.
    loss.backward()
    assert head.conv_points.weight.grad is not None


def test_chamfer_l1_known_answer_and_gradients():
    # x: two points; y: one point. x -> y: distances 5 and 3 (mean 4); y -> x: 3. Total 7.
    x = torch.tensor([[[3.0, 4.0, 0.0], [0.0, 0.0, 3.0]]])
    y = torch.zeros(1, 1, 3)
    torch.testing.assert_close(chamfer_l1(x, y), torch.tensor([7.0]))
    # Not the squared distances' mean: (25 + 9) / 2 + 9 = 26.
    sq, _ = chamfer_distance(x, y, batch_reduction=None)
    assert float(sq[0]) == pytest.approx(26.0)
    # Its gradient on a point is the unit vector away from its neighbour, whatever the distance
    # (the squared form's fades as 2 d): halving every distance leaves the slope as it was.
    xs = x.clone().requires_grad_(True)
    chamfer_l1(xs, y).sum().backward()
    xh = (x / 2).requires_grad_(True)
    chamfer_l1(xh, y).sum().backward()
    torch.testing.assert_close(xs.grad, xh.grad)
    torch.testing.assert_close(xs.grad[0, 0], torch.tensor([0.6, 0.8, 0.0]) / 2)
    # A point on its neighbour gets a zero gradient, not NaN.
    z = torch.zeros(1, 1, 3, requires_grad=True)
    chamfer_l1(z, y).sum().backward()
    assert torch.equal(z.grad, torch.zeros(1, 1, 3))
    g = torch.Generator().manual_seed(3)
    a = torch.randn(2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(chamfer_l1, (a, b))


def test_emd_loss_and_bad_arguments():
    head = _head(num_fc_points=16, conv_grid=(4, 4), loss="emd", mon_samples=1).train()
    gt = torch.randn(2, 64, 3) * 0.1 + torch.tensor([0.0, 0.0, 1.4])
    loss = head(_feats(), _views(gt))["loss_points"]
    assert loss.dim() == 0 and float(loss) > 0
    with pytest.raises(ValueError, match="loss"):
        _head(loss="l1")
    with pytest.raises(ValueError, match="mon_samples"):
        _head(mon_samples=0)


def test_training_steps_lower_the_loss():
    head = _head(num_fc_points=64, conv_grid=(8, 8)).train()
    g = torch.Generator().manual_seed(1)
    gt = torch.randn(2, 400, 3, generator=g) * torch.tensor([0.3, 0.1, 0.2]) + torch.tensor(
        [0.1, 0.0, 1.3]
    )
    feats, views = _feats(), _views(gt)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)

    def loss():
        torch.manual_seed(0)
        return head(feats, views)["loss_points"]

    with torch.no_grad():
        before = float(loss())
    for step in range(12):
        torch.manual_seed(step)
        opt.zero_grad()
        head(feats, views)["loss_points"].backward()
        opt.step()
    with torch.no_grad():
        after = float(loss())
    assert after < 0.5 * before, (before, after)


def test_init_spread_starts_every_point_at_its_own_place():
    center = torch.tensor([0.0, 0.0, 1.4])
    clumped = _head().eval()
    with torch.no_grad():
        pts = clumped.decode(_feats(), torch.zeros(2, 4))[0]
    assert (pts - center).norm(dim=1).max() < 0.05  # all near CENTER: the old start
    assert "point_offsets" not in clumped.state_dict()
    spread = _head(init_spread=0.3).eval()
    with torch.no_grad():
        pts = spread.decode(_feats(), torch.zeros(2, 4))[0]
    radius = (pts - center).norm(dim=1)
    assert radius.max() < 0.3 + 0.05 and radius.mean() > 0.15  # uniform in the ball: mean 0.225
    fc, grid = pts[:256], pts[256:]
    for part in (fc, grid):  # both branches start spread out, every point apart
        assert torch.cdist(part, part).add(torch.eye(len(part)) * 9).min() > 1e-4
    assert spread.state_dict()["point_offsets"].shape == (1, 3, 24, 32)
    # The offsets are learned: a Chamfer step moves them.
    gt = torch.rand(2, 50, 3) + center
    loss = spread.point_losses(spread.decode(_feats(), torch.zeros(2, 4)), gt).sum()
    loss.backward()
    assert spread.point_offsets.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="init_spread"):
        _head(init_spread=-1.0)
