"""Tests for meshrecon.ops.points_normals against a per-point loop."""

import pytest
import torch

from meshrecon.ops import estimate_pointcloud_local_coord_frames, estimate_pointcloud_normals
from meshrecon.structures import Pointclouds


def naive_frames(points, K):
    """Per point: the K nearest points (itself included), their covariance, its eigenvectors."""
    points = points.double()
    out_vals, out_vecs = [], []
    for p in points:
        d = ((points - p) ** 2).sum(1)
        nn = points[d.argsort()[:K]]
        centered = nn - nn.mean(0)
        cov = centered.T @ centered / K
        vals, vecs = torch.linalg.eigh(cov)
        out_vals.append(vals)
        out_vecs.append(vecs)
    return torch.stack(out_vals), torch.stack(out_vecs)


def sphere_points(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1)


def test_frames_match_loop_up_to_sign():
    g = torch.Generator().manual_seed(0)
    clouds = [torch.randn(30, 3, generator=g) * torch.tensor([3.0, 1.0, 0.2]) for _ in range(2)]
    curv, frames = estimate_pointcloud_local_coord_frames(
        torch.stack(clouds), neighborhood_size=10, disambiguate_directions=False
    )
    for n, cloud in enumerate(clouds):
        vals, vecs = naive_frames(cloud, 10)
        assert torch.allclose(curv[n].double(), vals, atol=1e-5)
        # Eigenvectors are defined up to sign: compare |cos| column by column.
        cos = (frames[n].double() * vecs).sum(1).abs()
        assert torch.allclose(cos, torch.ones_like(cos), atol=1e-3)


def test_disambiguated_normals_are_consistent_on_a_sphere():
    points = sphere_points(200, seed=1)
    normals = estimate_pointcloud_normals(points[None], neighborhood_size=12)[0]
    radial = (normals * points).sum(1)
    assert torch.allclose(radial.abs(), torch.ones(200), atol=0.05)
    # Neighbours of a point on a convex surface lie on its inner side: every normal turns in.
    assert (radial < 0).all()
    _, frames = estimate_pointcloud_local_coord_frames(points[None], neighborhood_size=12)
    # Orthonormal frames whose middle axis is normal x main, as in PyTorch3D.
    eye = frames[0].transpose(1, 2) @ frames[0]
    assert torch.allclose(eye, torch.eye(3).expand(200, 3, 3), atol=1e-4)
    cross = torch.linalg.cross(frames[0, :, :, 0], frames[0, :, :, 2], dim=1)
    assert torch.allclose(frames[0, :, :, 1], cross, atol=1e-6)


def test_pointclouds_input_is_padded_with_zeros():
    a, b = sphere_points(50, seed=2), sphere_points(30, seed=3) + 5.0
    clouds = Pointclouds([a, b])
    normals = estimate_pointcloud_normals(clouds, neighborhood_size=8)
    assert normals.shape == (2, 50, 3) and not normals[1, 30:].any()
    alone = estimate_pointcloud_normals(b[None], neighborhood_size=8)[0]
    assert torch.allclose(normals[1, :30], alone, atol=1e-5)
    # use_symeig_workaround selects PyTorch3D's own solver there; the result is the same here.
    again = estimate_pointcloud_normals(clouds, neighborhood_size=8, use_symeig_workaround=False)
    assert torch.equal(again, normals)


def test_gradcheck():
    g = torch.Generator().manual_seed(4)
    points = (torch.randn(1, 12, 3, generator=g, dtype=torch.float64) * 0.3).requires_grad_()
    points.data[..., 2] *= 0.2

    def fn(p):
        return estimate_pointcloud_normals(p, neighborhood_size=5)

    torch.autograd.gradcheck(fn, (points,), eps=1e-6, atol=1e-5)


def test_invalid_inputs():
    points = sphere_points(10, seed=5)[None]
    with pytest.raises(ValueError, match="neighborhood_size.*cloud 0 has 10"):
        estimate_pointcloud_normals(points, neighborhood_size=10)
    with pytest.raises(ValueError, match="cloud 1 has 0"):
        estimate_pointcloud_normals(Pointclouds([points[0], torch.zeros(0, 3)]), 3)
    with pytest.raises(ValueError, match="neighborhood_size"):
        estimate_pointcloud_normals(points, neighborhood_size=0)
    with pytest.raises(ValueError, match=r"\(N, P, 3\)"):
        estimate_pointcloud_normals(torch.zeros(1, 10, 2), neighborhood_size=3)
    with pytest.raises(ValueError, match="Pointclouds or a tensor"):
        estimate_pointcloud_normals([points], neighborhood_size=3)
