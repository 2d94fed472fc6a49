"""The metric protocols: hand-computed cases of each, and that all of them rank a clearly better
prediction above a clearly worse one."""

from __future__ import annotations

import math

import pytest
import torch

from meshrecon.evaluation.protocols import (
    fscore_metrics,
    is_closed,
    onet_metrics,
    reference_length,
    solid_occupancy,
    surface_distances,
    volumetric_iou,
)
from meshrecon.evaluation.shape_metrics import compute_sampling_metrics
from meshrecon.evaluation.shapenet_evaluation import ShapeNetEvaluator
from meshrecon.ops import ico_sphere, voxel_iou


def box_mesh(lo, hi) -> tuple[torch.Tensor, torch.Tensor]:
    """A closed axis-aligned box (8 vertices, 12 triangles)."""
    lo, hi = torch.tensor(lo, dtype=torch.float32), torch.tensor(hi, dtype=torch.float32)
    corners = torch.tensor([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)]).float()
    verts = lo + corners * (hi - lo)
    # Index = 4 x + 2 y + z; two triangles per side.
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = [[a, b, c] for a, b, c, _ in quads] + [[a, c, d] for a, _, c, d in quads]
    return verts, torch.tensor(faces)


def join(*meshes):
    """One mesh of several (its connected components)."""
    verts, faces, offset = [], [], 0
    for v, f in meshes:
        verts.append(v)
        faces.append(f + offset)
        offset += v.shape[0]
    return torch.cat(verts), torch.cat(faces)


# ----------------------------------------------------------------------------- Tatarchenko


# GT: the corners of a 1 x 0.5 rectangle: longest edge 1, diagonal sqrt(1.25) = 1.1180.
GT4 = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 0.5, 0], [1, 0.5, 0]])
# Prediction: 0.005 and 0.003 from A, 0.0105 from B, 0.02 from C, and one far point.
PRED5 = torch.tensor(
    [[0.005, 0, 0], [0, 0.003, 0], [1, 0, 0.0105], [0, 0.5, 0.02], [3.0, 3.0, 3.0]]
)


def test_fscore_hand_computed_side_and_diagonal():
    d = surface_distances(PRED5, GT4)
    assert reference_length(GT4, "side") == pytest.approx(1.0)
    assert reference_length(GT4, "diagonal") == pytest.approx(math.sqrt(1.25))
    # 1% of the side = 0.01: predicted points within it: the two near A (2 of 5); GT points
    # within it of the prediction: A only (B is 0.0105 away, D 0.5) -> 1 of 4.
    side = fscore_metrics(d, reference_length(GT4, "side"), (0.01,))
    assert side["Precision@1%"] == pytest.approx(40.0)
    assert side["Recall@1%"] == pytest.approx(25.0)
    assert side["F-score@1%"] == pytest.approx(2 * 40 * 25 / 65)
    # 1% of the diagonal = 0.01118 also takes B's neighbour: 3 of 5 and 2 of 4.
    diag = fscore_metrics(d, reference_length(GT4, "diagonal"), (0.01,))
    assert diag["Precision@1%"] == pytest.approx(60.0)
    assert diag["Recall@1%"] == pytest.approx(50.0)
    assert diag["F-score@1%"] == pytest.approx(2 * 60 * 50 / 110)
    # An empty prediction scores 0; a bad reference or threshold is an error.
    assert fscore_metrics(None, 1.0, (0.01, 0.02)) == {
        k: 0.0
        for k in (
            "Precision@1%",
            "Recall@1%",
            "F-score@1%",
            "Precision@2%",
            "Recall@2%",
            "F-score@2%",
        )
    }
    with pytest.raises(ValueError, match="reference"):
        reference_length(GT4, "radius")
    with pytest.raises(ValueError, match="positive"):
        fscore_metrics(d, 1.0, (0.0,))


def test_fscore_at_one_percent_of_the_side_is_meshrcnn_f1_at_0_1():
    # Mesh R-CNN scales the GT's longest edge to 10; its threshold 0.1 is then 1% of the side.
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(500, 3, generator=g) * torch.tensor([2.0, 1.0, 0.5])
    pred = gt + 0.02 * torch.randn(500, 3, generator=g)
    length = reference_length(gt, "side")
    ours = fscore_metrics(surface_distances(pred, gt), length, (0.01,))
    s = 10.0 / length
    theirs = compute_sampling_metrics((pred * s)[None], None, (gt * s)[None], None, (0.1,))
    assert ours["F-score@1%"] == pytest.approx(float(theirs["F1@0.100000"][0]), abs=0.5)
    assert 5.0 < ours["F-score@1%"] < 95.0  # the case is not trivial


# ----------------------------------------------------------------------------- ONet


def test_onet_chamfer_l1_and_normals_hand_computed():
    gt = torch.tensor([[0.0, 0, 0], [2, 0, 0]])  # longest edge 2: unit 1 = 0.2
    gt_n = torch.tensor([[0.0, 0, 1], [0, 0, 1]])
    pred = torch.tensor([[0.0, 0.1, 0], [2, 0, 0.3], [0.9, 0, 0]])
    pred_n = torch.tensor([[0.0, 0, -1], [1, 0, 0], [0, 0.6, 0.8]])
    m = onet_metrics(surface_distances(pred, gt, pred_n, gt_n), gt_extent=2.0)
    # Accuracy: (0.1 + 0.3 + 0.9) / 3 / 0.2; completeness: (0.1 + 0.3) / 2 / 0.2.
    assert m["Accuracy"] == pytest.approx(1.3 / 3 / 0.2)
    assert m["Completeness"] == pytest.approx(1.0)
    assert m["Chamfer-L1"] == pytest.approx(0.5 * (1.3 / 3 / 0.2 + 1.0))
    # |cos|: predicted side 1, 0, 0.8 (mean 0.6); GT side 1, 0 (mean 0.5).
    assert m["NormalConsistency"] == pytest.approx(0.55)
    no_normals = onet_metrics(surface_distances(pred, gt), gt_extent=2.0)
    assert math.isnan(no_normals["NormalConsistency"])
    assert no_normals["Chamfer-L1"] == pytest.approx(m["Chamfer-L1"])
    assert all(math.isnan(v) for v in onet_metrics(None, 2.0).values())


def test_closed_meshes():
    v, f = box_mesh([0, 0, 0], [1, 1, 1])
    assert is_closed(f)
    assert not is_closed(f[1:])  # a missing triangle opens it
    assert not is_closed(torch.zeros(0, 3, dtype=torch.long))
    # Two boxes sharing an edge: 4 triangles on that edge, still the boundary of a solid.
    assert is_closed(join((v, f), box_mesh([1, 1, 0], [2, 2, 1]))[1])


def test_volumetric_iou_hand_computed():
    gt = box_mesh([0, 0, 0], [1, 1, 1])
    pred = box_mesh([0.5, 0, 0], [1.5, 1, 1])
    # Padding 1 doubles the cube: [-0.5, 1.5]^3, 20 centres per axis at -0.45, ..., 1.45. In
    # x the GT holds 10 of them (0.05 .. 0.95), the prediction 10 (0.55 .. 1.45), both 5.
    assert volumetric_iou(*pred, *gt, size=20, padding=1.0) == pytest.approx(5 / 15)
    # Without padding the grid is the GT's cube: the prediction's outer half is cut off.
    assert volumetric_iou(*pred, *gt, size=10, padding=0.0) == pytest.approx(5 / 10)
    assert volumetric_iou(*gt, *gt, size=8) == pytest.approx(1.0)
    v, f = pred
    assert volumetric_iou(v, f[1:], *gt) is None  # open prediction: no solid
    assert volumetric_iou(*pred, gt[0], gt[1][2:]) is None


def test_overlapping_closed_parts_are_united_not_cancelled():
    # A leg through a seat: parity alone would empty the overlap.
    parts = join(box_mesh([0, 0, 0], [1, 1, 1]), box_mesh([0.5, 0, 0], [1.5, 1, 1]))
    whole = box_mesh([0, 0, 0], [1.5, 1, 1])
    box = torch.tensor([[-0.2, -0.2, -0.2], [1.8, 1.8, 1.8]])  # centres off the faces
    a = solid_occupancy(*parts, box, 20)
    b = solid_occupancy(*whole, box, 20)
    assert torch.equal(a, b) and int(a.sum()) == 15 * 10 * 10
    assert volumetric_iou(*parts, *whole, size=16) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- 3D-R2N2


def test_r2n2_voxel_iou_threshold():
    # 3D-R2N2: occupied at p >= 0.4 (the evaluator thresholds, then takes the IoU).
    probs = torch.tensor([0.39, 0.4, 0.9, 0.1]).view(1, 1, 2, 2)
    gt = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 2, 2)
    assert float(voxel_iou(probs >= 0.4, gt)[0]) == pytest.approx(1 / 3)
    ev = ShapeNetEvaluator(num_samples=100, voxel_iou_thresh=0.4)
    sphere = ico_sphere(1)
    mesh = (sphere.verts_packed(), sphere.faces_packed())
    ev.process([{"mesh": mesh, "voxels": gt[0]}], [{"mesh": mesh, "voxels": probs[0]}])
    res = ev.evaluate()
    assert res["voxels"]["IoU"] == pytest.approx(1 / 3)
    assert res["voxels_per_category"] == {"all/IoU": pytest.approx(1 / 3)}


# ----------------------------------------------------------------------------- ranking


def _sphere(center, radius, level=3):
    s = ico_sphere(level)
    return s.verts_packed() * radius + torch.tensor(center), s.faces_packed()


def test_every_protocol_ranks_a_better_prediction_higher():
    """A slightly enlarged copy of the GT against a box beside it, in every protocol."""
    gt = _sphere([0.0, 0.0, 2.0], 0.5)
    better = _sphere([0.01, 0.0, 2.0], 0.51)
    worse = box_mesh([-0.2, -0.6, 1.6], [0.9, 0.2, 2.2])
    grid = lambda m: solid_occupancy(*m, torch.tensor([[-0.6, -0.6, 1.4], [0.6, 0.6, 2.6]]), 16)  # noqa: E731
    results = {}
    for name, pred in (("better", better), ("worse", worse)):
        ev = ShapeNetEvaluator(num_samples=3000, thresholds=(0.1, 0.3), equal_points=0)
        ev.process(
            [{"category_id": 0, "mesh": gt, "voxels": grid(gt)}],
            [{"mesh": pred, "voxels": grid(pred).float()}],
        )
        results[name] = ev.evaluate()
    b, w = results["better"], results["worse"]
    # Mesh R-CNN's
    assert b["shapenet"]["Chamfer-L2"] < w["shapenet"]["Chamfer-L2"]
    assert b["shapenet"]["AbsNormalConsistency"] > w["shapenet"]["AbsNormalConsistency"]
    assert b["shapenet"]["F1@0.300000"] > w["shapenet"]["F1@0.300000"]
    # Tatarchenko et al.'s
    for key in ("F-score@1%", "Precision@1%", "Recall@1%"):
        assert b["shapenet_fscore"][key] > w["shapenet_fscore"][key], key
    # Occupancy Networks'
    assert b["shapenet_onet"]["Chamfer-L1"] < w["shapenet_onet"]["Chamfer-L1"]
    assert b["shapenet_onet"]["NormalConsistency"] > w["shapenet_onet"]["NormalConsistency"]
    assert b["shapenet_onet"]["IoU"] > w["shapenet_onet"]["IoU"] > 0.0
    # 3D-R2N2's
    assert b["voxels"]["IoU"] > w["voxels"]["IoU"]


def test_evaluator_reports_the_protocols_per_category_and_their_edge_cases():
    sphere = _sphere([0.0, 0.0, 2.0], 0.5, level=2)
    points = sphere[0][:50]
    ev = ShapeNetEvaluator(class_names=["chair", "table"], num_samples=500, equal_points=0)
    ev.process(
        [{"category_id": 0, "mesh": sphere}, {"category_id": 1, "mesh": sphere}] * 2,
        [
            {"mesh": sphere},
            {"mesh": (sphere[0], torch.zeros(0, 3, dtype=torch.long))},  # empty mesh
            {"points": points},  # a point cloud: no IoU
            {"mesh": (sphere[0], sphere[1][1:])},  # an open mesh: no IoU
        ],
    )
    res = ev.evaluate()
    onet, fs = res["shapenet_onet"], res["shapenet_fscore"]
    # IoU of the identical closed mesh (1) and of the empty one (0); the other two have none.
    assert onet["NumIoU"] == 2 and onet["IoU"] == pytest.approx(0.5)
    assert res["shapenet_onet_per_category"]["chair/IoU"] == pytest.approx(1.0)
    assert res["shapenet_onet_per_category"]["table/IoU"] == pytest.approx(0.0)
    assert onet["EmptyPredictions"] == 1
    # Chamfer-L1 leaves the empty prediction out, F-scores count it as 0.
    assert math.isfinite(onet["Chamfer-L1"])
    assert set(res["shapenet_fscore_per_category"]) >= {"chair/F-score@1%", "table/F-score@1%"}
    cats = res["shapenet_fscore_category_mean"]["F-score@1%"]
    per = res["shapenet_fscore_per_category"]
    assert cats == pytest.approx(0.5 * (per["chair/F-score@1%"] + per["table/F-score@1%"]))
    assert fs["num_instances"] == 4
    # Switched off, a protocol leaves no section.
    off = ShapeNetEvaluator(num_samples=200, fscore_protocol=False, onet_protocol=False)
    off.process([{"mesh": sphere}], [{"mesh": sphere}])
    assert not {"shapenet_fscore", "shapenet_onet"} & set(off.evaluate())
    with pytest.raises(ValueError, match="fscore_reference"):
        ShapeNetEvaluator(fscore_reference="radius")
