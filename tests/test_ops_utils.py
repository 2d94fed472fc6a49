"""Tests for meshrecon.ops.utils (PyTorch3D's ops.utils helpers) against loops."""

import pytest
import torch

from meshrecon.ops import (
    convert_pointclouds_to_tensor,
    eyes,
    get_point_covariances,
    is_pointclouds,
    wmean,
)
from meshrecon.ops.utils import masked_gather
from meshrecon.structures import Pointclouds


def test_wmean_matches_loop_and_handles_zero_weights():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 3, generator=g)
    w = torch.rand(2, 5, generator=g)
    out = wmean(x, w)
    assert out.shape == (2, 1, 3)
    for n in range(2):
        ref = sum(w[n, i] * x[n, i] for i in range(5)) / w[n].sum()
        assert torch.allclose(out[n, 0], ref, atol=1e-6)
    assert torch.equal(wmean(x), x.mean(-2, keepdim=True))
    assert wmean(x, w, dim=(0, 1), keepdim=False).shape == (3,)
    # All-zero weights give 0, not NaN (the eps clamp).
    assert torch.equal(wmean(x, torch.zeros(2, 5)), torch.zeros(2, 1, 3))
    with pytest.raises(ValueError, match="broadcast"):
        wmean(x, torch.ones(2, 4))


def test_eyes_convert_and_is_pointclouds():
    assert torch.equal(
        eyes(3, 2, dtype=torch.float64), torch.eye(3, dtype=torch.float64).repeat(2, 1, 1)
    )
    clouds = Pointclouds([torch.rand(4, 3), torch.rand(2, 3)])
    x, n = convert_pointclouds_to_tensor(clouds)
    assert torch.equal(x, clouds.points_padded()) and n.tolist() == [4, 2]
    t = torch.rand(3, 5, 3)
    x, n = convert_pointclouds_to_tensor(t)
    assert x is t and n.tolist() == [5, 5, 5] and n.dtype == torch.int64
    assert is_pointclouds(clouds) and not is_pointclouds(t)
    with pytest.raises(ValueError, match="Pointclouds or a tensor"):
        convert_pointclouds_to_tensor([t])


def test_get_point_covariances_matches_loop():
    g = torch.Generator().manual_seed(1)
    points = torch.randn(2, 9, 3, generator=g, dtype=torch.float64)
    sizes = torch.tensor([9, 6])
    cov, nn = get_point_covariances(points, sizes, 4)
    assert cov.shape == (2, 9, 3, 3) and nn.shape == (2, 9, 4, 3)
    for n in range(2):
        real = points[n, : sizes[n]]
        for i in range(int(sizes[n])):
            near = real[((real - real[i]) ** 2).sum(1).argsort()[:4]]
            c = near - near.mean(0)
            assert torch.allclose(cov[n, i], c.T @ c / 4, atol=1e-10)


def test_masked_gather_matches_loop():
    g = torch.Generator().manual_seed(2)
    points = torch.randn(2, 5, 3, generator=g, requires_grad=True)
    idx = torch.tensor([[[0, -1], [4, 2]], [[-1, -1], [3, 3]]])
    out = masked_gather(points, idx)
    for n in range(2):
        for i in range(2):
            for k in range(2):
                j = int(idx[n, i, k])
                ref = torch.zeros(3) if j < 0 else points[n, j]
                assert torch.equal(out[n, i, k], ref)
    out.sum().backward()
    assert points.grad[1, 3].tolist() == [2.0, 2.0, 2.0] and not points.grad[1, 0].any()
    assert masked_gather(points, idx[:, 0]).shape == (2, 2, 3)
    assert masked_gather(torch.zeros(1, 0, 3), torch.full((1, 2), -1)).shape == (1, 2, 3)
    with pytest.raises(ValueError, match="-1 everywhere"):
        masked_gather(torch.zeros(1, 0, 3), torch.zeros(1, 2).long())
    with pytest.raises(ValueError, match="batch"):
        masked_gather(points, idx[:1])
