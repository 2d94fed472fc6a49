"""ShapeNetEvaluator: analytic cases of both protocols, category means, voxels, registration."""

from __future__ import annotations

import math

import pytest
import torch

from meshrecon.config import get_cfg
from meshrecon.data import MetadataCatalog
from meshrecon.evaluation import build_evaluator
from meshrecon.evaluation.shapenet_evaluation import ShapeNetEvaluator
from meshrecon.ops import ico_sphere

# The 8 corners of a unit cube: after Mesh R-CNN's rescaling (longest GT edge -> 10) a shift
# by d moves every point by 10 d, and no corner comes closer to another corner than that.
CORNERS = torch.tensor([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)]).float()


def _evaluator(**kw):
    args = dict(class_names=["chair", "table"], num_samples=2000, thresholds=(0.1, 0.3, 0.5))
    args.update(kw)
    return ShapeNetEvaluator(**args)


def _shifted_points_item(d: float, category_id: int = 0):
    inp = {"image_id": "x", "category_id": category_id, "points": CORNERS.clone()}
    out = {"points": CORNERS + torch.tensor([d, 0.0, 0.0])}
    return inp, out


def test_identical_meshes():
    ev = _evaluator(num_samples=10000)
    sphere = ico_sphere(3)
    mesh = (sphere.verts_packed() + torch.tensor([0.0, 0.0, 2.0]), sphere.faces_packed())
    ev.process([{"category_id": 0, "mesh": mesh}], [{"mesh": mesh}])
    res = ev.evaluate()
    r = res["shapenet"]
    # Two independent samplings of one surface: for N points on area A, each direction's
    # mean squared nearest distance is about A / (pi N) = 0.01 (sphere of diameter 10).
    assert 0.01 < r["Chamfer-L2"] < 0.03
    assert r["F1@0.300000"] > 99.9 and r["F1@0.500000"] == pytest.approx(100.0)
    assert r["AbsNormalConsistency"] > 0.99
    # Same samples, scaled by 0.57 instead of 10 / 2 (the unit sphere's box edge is 2).
    want = r["Chamfer-L2"] * (0.57 / 5.0) ** 2
    assert res["shapenet_p2m"]["Chamfer-L2"] == pytest.approx(want, rel=1e-4)


def test_one_search_serves_every_protocol():
    """The evaluator searches nearest neighbours once, on Mesh R-CNN's rescaled samples; the
    Pixel2Mesh, Tatarchenko and Occupancy Networks metrics rescale those distances. Each must
    equal its own search on its own scale."""
    from meshrecon.evaluation.protocols import (
        fscore_metrics,
        onet_metrics,
        reference_length,
        surface_distances,
    )
    from meshrecon.evaluation.shape_metrics import compute_sampling_metrics
    from meshrecon.evaluation.shapenet_evaluation import _pair_metrics_and_distances

    g = torch.Generator().manual_seed(0)
    gt = torch.rand(700, 3, generator=g) * torch.tensor([0.6, 1.0, 0.4])
    pred = gt[:500] + 0.03 * torch.randn(500, 3, generator=g)
    gn = torch.nn.functional.normalize(torch.randn(700, 3, generator=g), dim=1)
    pn = torch.nn.functional.normalize(torch.randn(500, 3, generator=g), dim=1)
    extent = reference_length(gt, "side")
    p2m_ts = (0.01, 0.014142, 0.02)
    metrics, d = _pair_metrics_and_distances(
        pred, pn, gt, gn, gt_scale=10.0, thresholds=(0.1, 0.3, 0.5), p2m_scale=0.57,
        p2m_thresholds=p2m_ts, gt_extent=extent,
    )  # fmt: skip
    for name, scale, ts in (("meshrcnn", 10.0 / extent, (0.1, 0.3, 0.5)), ("p2m", 0.57, p2m_ts)):
        want = compute_sampling_metrics(
            (pred * scale)[None], pn[None], (gt * scale)[None], gn[None], thresholds=ts
        )
        assert set(metrics[name]) == set(want)
        for k, v in want.items():
            assert metrics[name][k] == pytest.approx(float(v[0]), rel=1e-5, abs=1e-6), (name, k)
    # The p2m thresholds are met by some points and not others: the check is not vacuous.
    assert 0 < metrics["p2m"]["F1@0.014142"] < 100
    ref = surface_distances(pred, gt, pn, gn)
    for field in ("pred_to_gt", "gt_to_pred", "pred_cos", "gt_cos"):
        assert torch.allclose(getattr(d, field), getattr(ref, field), rtol=1e-5, atol=1e-6)
    assert fscore_metrics(d, extent, (0.05,)) == pytest.approx(fscore_metrics(ref, extent, (0.05,)))
    assert onet_metrics(d, extent) == pytest.approx(onet_metrics(ref, extent), nan_ok=True)


def test_shifted_points_give_known_values():
    ev = _evaluator()
    ev.process(*map(list, zip(_shifted_points_item(0.02))))
    res = ev.evaluate()
    r = res["shapenet"]
    # Shift 0.02 of a unit box -> 0.2 after scaling to 10: Chamfer 2 * 0.2^2.
    assert r["Chamfer-L2"] == pytest.approx(2 * 0.2**2, rel=1e-4)
    assert r["F1@0.100000"] == 0.0
    assert r["F1@0.300000"] == pytest.approx(100.0)
    assert r["Precision@0.300000"] == pytest.approx(100.0)
    assert "NormalConsistency" not in r  # points have no normals
    # Pixel2Mesh protocol: x0.57 -> 0.0114, between its thresholds 0.01 and 0.014142.
    p = res["shapenet_p2m"]
    assert p["Chamfer-L2"] == pytest.approx(2 * (0.02 * 0.57) ** 2, rel=1e-4)
    assert p["F1@0.010000"] == 0.0
    assert p["F1@0.014142"] == pytest.approx(100.0)


def test_equal_density_protocol():
    # Same point count on both sides: for 8 corners against 8 shifted corners it is Mesh
    # R-CNN's protocol exactly; for a sparse cloud on the GT surface it removes the recall
    # penalty that 10k dense GT samples give a 1024-point prediction.
    ev = _evaluator(equal_points=8)
    ev.process(*map(list, zip(_shifted_points_item(0.02))))
    res = ev.evaluate()
    for k in ("Chamfer-L2", "F1@0.100000", "F1@0.300000"):
        assert res["shapenet_points"][k] == pytest.approx(res["shapenet"][k])
    # A mesh and 1000 points sampled on that same mesh, each scored against the mesh: with 5k
    # samples per surface the mesh wins by density alone; at 1000 points each they tie (up to
    # sampling noise, which is smaller at 0.3 than at 0.1).
    from meshrecon.ops import sample_points_from_meshes

    sphere = ico_sphere(4)
    mesh = (sphere.verts_packed(), sphere.faces_packed())
    torch.manual_seed(0)
    cloud = sample_points_from_meshes(sphere, 1000)[0]
    scores = {}
    for name, pred in (("mesh", {"mesh": mesh}), ("points", {"points": cloud})):
        ev = _evaluator(num_samples=5000, equal_points=1000)
        ev.process([{"category_id": 0, "mesh": mesh}], [pred])
        scores[name] = ev.evaluate()
    dense = {k: scores[k]["shapenet"]["F1@0.100000"] for k in scores}
    equal = {k: scores[k]["shapenet_points"]["F1@0.300000"] for k in scores}
    assert dense["points"] < 0.7 * dense["mesh"]
    assert equal["points"] == pytest.approx(equal["mesh"], rel=0.1)
    with pytest.raises(ValueError, match="equal_points"):
        _evaluator(equal_points=-1)


def test_category_mean_differs_from_instance_mean():
    ev = _evaluator()
    items = [
        _shifted_points_item(0.02, 0),
        _shifted_points_item(0.02, 0),
        _shifted_points_item(0.04, 1),
    ]
    ev.process([i for i, _ in items], [o for _, o in items])
    res = ev.evaluate()
    chair, table = 2 * 0.2**2, 2 * 0.4**2
    assert res["shapenet"]["Chamfer-L2"] == pytest.approx((2 * chair + table) / 3, rel=1e-4)
    assert res["shapenet_category_mean"]["Chamfer-L2"] == pytest.approx(
        (chair + table) / 2, rel=1e-4
    )
    assert res["shapenet_per_category"]["table/Chamfer-L2"] == pytest.approx(table, rel=1e-4)
    assert res["shapenet"]["num_instances"] == 3


def test_voxel_iou_and_empty_prediction():
    ev = _evaluator()
    gt = torch.zeros(4, 4, 4, dtype=torch.bool)
    gt[:2] = True
    pred = torch.zeros(4, 4, 4)
    pred[:1] = 0.9
    pred[3, 0, 0] = 0.3  # below the 0.4 threshold
    empty = (torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.int64))
    ev.process(
        [{"category_id": 1, "points": CORNERS, "voxels": gt}],
        [{"voxels": pred, "mesh": empty}],
    )
    res = ev.evaluate()
    assert res["voxels"]["IoU"] == pytest.approx(0.5)
    assert res["shapenet"]["F1@0.300000"] == 0.0
    assert res["shapenet"]["EmptyPredictions"] == 1
    assert math.isnan(res["shapenet"]["Chamfer-L2"])


def test_missing_ground_truth_is_a_clear_error():
    ev = _evaluator()
    with pytest.raises(ValueError, match="LOAD_TEST_ANNOTATIONS"):
        ev.process([{"image_id": "a"}], [{"points": CORNERS}])


def test_registered_for_shapenet_datasets(tmp_path):
    name = "test_shapenet_evaluation_dummy"
    MetadataCatalog.get(name).set(evaluator_type="shapenet", thing_classes=["a", "b"])
    cfg = get_cfg()
    cfg.TEST.SHAPENET.NUM_SAMPLES = 123
    ev = build_evaluator(cfg, name, str(tmp_path))
    assert isinstance(ev, ShapeNetEvaluator)
    assert ev.num_samples == 123 and ev.class_names == ["a", "b"]
    ev.process(*map(list, zip(_shifted_points_item(0.02, 1))))
    ev.evaluate()
    text = (tmp_path / "shapenet_results.txt").read_text()
    assert "b" in text and "Mesh R-CNN protocol" in text and "Pixel2Mesh protocol" in text


def test_tables_written_once_and_points_have_no_normal_column(tmp_path, capsys):
    """The tables go to the log (and shapenet_results.txt), not to stdout a second time; the
    equal-density table shows "—" for the normals that point clouds do not have."""
    sphere = ico_sphere(2)
    mesh = (sphere.verts_packed(), sphere.faces_packed())
    ev = _evaluator(num_samples=500, equal_points=100, output_dir=str(tmp_path))
    ev.process([{"category_id": 0, "mesh": mesh}], [{"mesh": mesh}])
    ev.evaluate()
    assert capsys.readouterr().out == ""
    text = (tmp_path / "shapenet_results.txt").read_text()
    assert "nan" not in text
    mesh_table, points_table = text.split("Equal-density")[0], text.split("Equal-density")[1]
    header = points_table.splitlines()[1].split("|")
    normal = header.index(" Normal ")
    rows = [line.split("|") for line in points_table.splitlines()[3:] if line.startswith("|")]
    assert rows and all(row[normal].strip() == "\u2014" for row in rows)
    assert "\u2014" not in mesh_table  # a mesh has normals: numbers there
    # A predicted point cloud has no normals in any protocol.
    ev = _evaluator(output_dir=str(tmp_path))
    ev.process(*map(list, zip(_shifted_points_item(0.02))))
    ev.evaluate()
    text = (tmp_path / "shapenet_results.txt").read_text()
    # 3 rows x (Normal in Mesh R-CNN's, Pixel2Mesh's and Occupancy Networks' tables, and the
    # last one's IoU of solids, which points do not have).
    assert "nan" not in text and text.count("\u2014") == 3 * 4
