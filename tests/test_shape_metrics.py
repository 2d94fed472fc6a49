"""Shape metrics: Mesh R-CNN's golden per-sample values, analytic cases and a loop reference."""

from pathlib import Path

import pytest
import torch

from meshrecon.evaluation.shape_metrics import (
    compare_meshes,
    compute_sampling_metrics,
    scale_mesh_pairs,
)
from meshrecon.ops import ico_sphere
from meshrecon.structures import Meshes

GOLDEN = Path(__file__).parent / "data" / "golden" / "meshrcnn" / "metrics.pt"


def test_matches_meshrcnn_golden_metrics():
    g = torch.load(GOLDEN, weights_only=True)
    ours = compute_sampling_metrics(
        g["pred_points"], g["pred_normals"], g["gt_points"], g["gt_normals"],
        g["thresholds"], g["eps"],
    )  # fmt: skip
    assert set(ours) == set(g["metrics"])
    for key, expected in g["metrics"].items():
        torch.testing.assert_close(ours[key], expected, rtol=1e-5, atol=1e-6, msg=key)


def _reference(pred, pred_n, gt, gt_n, thresholds, eps):
    """One sample at a time, with explicit distance matrices."""
    out = {}
    d2 = torch.cdist(pred.double(), gt.double()) ** 2  # (S1, S2)
    p2g, p_idx = d2.min(1)
    g2p, g_idx = d2.min(0)
    out["Chamfer-L2"] = p2g.mean() + g2p.mean()
    cos_p = torch.nn.functional.cosine_similarity(pred_n.double(), gt_n[p_idx].double(), dim=1)
    cos_g = torch.nn.functional.cosine_similarity(gt_n.double(), pred_n[g_idx].double(), dim=1)
    out["NormalConsistency"] = 0.5 * (cos_p.mean() + cos_g.mean())
    out["AbsNormalConsistency"] = 0.5 * (cos_p.abs().mean() + cos_g.abs().mean())
    for t in thresholds:
        p = 100.0 * (p2g.sqrt() < t).double().mean()
        r = 100.0 * (g2p.sqrt() < t).double().mean()
        out[f"Precision@{t:f}"], out[f"Recall@{t:f}"] = p, r
        out[f"F1@{t:f}"] = 2 * p * r / (p + r + eps)
    return out


def test_padded_batches_match_per_sample_reference():
    torch.manual_seed(0)
    pred, gt = torch.rand(3, 40, 3), torch.rand(3, 55, 3)
    pred_n = torch.nn.functional.normalize(torch.randn(3, 40, 3), dim=2)
    gt_n = torch.nn.functional.normalize(torch.randn(3, 55, 3), dim=2)
    len_pred, len_gt = torch.tensor([40, 17, 25]), torch.tensor([30, 55, 9])
    thresholds = (0.05, 0.1, 0.3)
    ours = compute_sampling_metrics(
        pred, pred_n, gt, gt_n, thresholds, 1e-8, pred_lengths=len_pred, gt_lengths=len_gt
    )
    for i in range(3):
        a, b = int(len_pred[i]), int(len_gt[i])
        ref = _reference(pred[i, :a], pred_n[i, :a], gt[i, :b], gt_n[i, :b], thresholds, 1e-8)
        for key, value in ref.items():
            torch.testing.assert_close(ours[key][i].double(), value, rtol=1e-5, atol=1e-6)


def test_plane_shifted_by_d_gives_known_values():
    # Grid spacing 0.5 > d: every point's nearest neighbour is its twin, exactly d away.
    xs = torch.arange(0, 5, 0.5)
    grid = torch.stack(torch.meshgrid(xs, xs, indexing="ij"), -1).reshape(-1, 2)
    gt = torch.cat([grid, torch.zeros(len(grid), 1)], 1)[None]
    d = 0.2
    pred = gt + torch.tensor([0.0, 0.0, d])
    normals = torch.tensor([0.0, 0.0, 1.0]).expand_as(gt)
    m = compute_sampling_metrics(pred, normals, gt, -normals, (0.1, 0.3), 1e-8)
    torch.testing.assert_close(m["Chamfer-L2"], torch.tensor([2 * d * d]))
    assert m["F1@0.100000"].item() == 0.0
    assert m["F1@0.300000"].item() == pytest.approx(100.0)
    assert m["NormalConsistency"].item() == pytest.approx(-1.0)
    assert m["AbsNormalConsistency"].item() == pytest.approx(1.0)


def test_compare_identical_meshes_is_perfect():
    torch.manual_seed(1)
    sphere = ico_sphere(3)
    m = compare_meshes(sphere, sphere, num_samples=10000)
    # Two independent samplings of the same surface (radius 5 after gt-10 scaling, ~0.18 apart):
    # the Chamfer is the sampling noise, far below the shifted case's > 1.
    assert m["Chamfer-L2"] < 0.1
    assert m["F1@0.300000"] > 99.0
    assert m["NormalConsistency"] > 0.98


def test_compare_meshes_shifted_sphere_fails_tight_threshold():
    torch.manual_seed(2)
    sphere = ico_sphere(3)
    shifted = sphere.offset_verts(torch.tensor([0.4, 0.0, 0.0]))
    # gt-10 scaling: the sphere's box edge (2) becomes 10, so the shift becomes 2.0 units.
    m = compare_meshes(shifted, sphere, num_samples=4000, reduce=False)
    assert m["F1@0.100000"].item() < 30.0
    assert m["Chamfer-L2"].item() > 1.0


def test_scale_gt_longest_edge():
    verts = torch.tensor([[0, 0, 0], [2, 0, 0], [0, 1, 0]], dtype=torch.float32)
    mesh = Meshes([verts], [torch.tensor([[0, 1, 2]])])
    pred, gt = scale_mesh_pairs(mesh, mesh, "gt-10")
    box = gt.get_bounding_boxes()[0]
    assert (box[:, 1] - box[:, 0]).max().item() == pytest.approx(10.0)
    assert torch.equal(pred.verts_packed(), gt.verts_packed())
    with pytest.raises(ValueError, match="scale"):
        scale_mesh_pairs(mesh, mesh, "gt-x")


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="pred_points"):
        compute_sampling_metrics(torch.rand(2, 5), None, torch.rand(2, 5, 3), None)
    with pytest.raises(ValueError, match="batch size"):
        compute_sampling_metrics(torch.rand(2, 5, 3), None, torch.rand(3, 5, 3), None)
