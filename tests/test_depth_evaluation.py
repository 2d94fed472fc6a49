"""Depth metrics on hand-computed cases; protocol crops, caps, clipping, median scaling."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from meshrecon.evaluation import registered_evaluator_types
from meshrecon.evaluation.depth_evaluation import (
    DEPTH_METRICS,
    DepthEvaluator,
    compute_depth_errors,
    prepare_depth_pair,
)


def test_metrics_on_a_hand_computed_case():
    pred = np.array([1.0, 1.2, 1.5, 1.9])
    gt = np.ones(4)
    m = compute_depth_errors(pred, gt)
    # ratios 1, 1.2, 1.5, 1.9 against thresholds 1.25, 1.5625, 1.953125
    assert (m["delta1"], m["delta2"], m["delta3"]) == (0.5, 0.75, 1.0)
    assert m["AbsRel"] == pytest.approx(0.4)
    assert m["SqRel"] == pytest.approx((0.04 + 0.25 + 0.81) / 4)
    assert m["RMSE"] == pytest.approx(math.sqrt(1.1 / 4))
    logs = np.log(pred)
    assert m["RMSElog"] == pytest.approx(math.sqrt(np.mean(logs**2)))
    assert m["SIlog"] == pytest.approx(math.sqrt(np.mean(logs**2) - np.mean(logs) ** 2))


def test_metrics_relative_to_gt_and_symmetric_ratio():
    gt = np.array([2.0, 4.0])
    m = compute_depth_errors(np.array([1.0, 8.0]), gt)  # half and double: both fail delta1..2
    assert (m["delta1"], m["delta2"], m["delta3"]) == (0.0, 0.0, 0.0)
    assert m["AbsRel"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["SqRel"] == pytest.approx((1.0 / 2 + 16.0 / 4) / 2)
    assert m["RMSElog"] == pytest.approx(math.log(2.0))
    assert m["SIlog"] == pytest.approx(math.log(2.0))  # d = -log2, +log2: variance log2^2
    perfect = compute_depth_errors(gt, gt)
    assert perfect["delta1"] == 1.0 and perfect["RMSE"] == 0.0 and perfect["SIlog"] == 0.0


def test_silog_is_scale_invariant_and_others_are_not():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.5, 8, 500)
    pred = gt * rng.uniform(0.7, 1.4, 500)
    a, b = compute_depth_errors(pred, gt), compute_depth_errors(3.0 * pred, gt)
    assert b["SIlog"] == pytest.approx(a["SIlog"])
    assert b["AbsRel"] > a["AbsRel"] + 0.5


def test_metric_inputs_are_checked():
    with pytest.raises(ValueError, match="no valid pixels"):
        compute_depth_errors(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="positive"):
        compute_depth_errors(np.array([0.0, 1.0]), np.ones(2))


def test_crop_caps_and_clipping():
    gt = np.full((4, 4), 2.0)
    gt[0, :] = 50.0  # above the cap: not ground truth
    gt[3, 3] = 0.0  # missing
    pred = np.full((4, 4), 2.0)
    pred[1, 1] = 100.0  # clipped to the cap (10)
    protocol = {"name": "toy", "crop": None, "min_depth": 1e-3, "max_depth": 10.0}
    pv, gv, info = prepare_depth_pair(pred, gt, protocol)
    assert info["num_valid"] == 16 - 4 - 1
    assert pv.max() == 10.0 and np.all(gv == 2.0)
    # A pixel crop [top, bottom, left, right] keeps rows 1:3, cols 1:3 only.
    protocol["crop"] = [1, 3, 1, 3]
    pv, gv, info = prepare_depth_pair(pred, gt, protocol)
    assert info["num_valid"] == 4 and sorted(pv.tolist()) == [2.0, 2.0, 2.0, 10.0]
    # Fractions (KITTI's Garg crop style): rows int(0.5 * 4) = 2 to 4, all columns.
    protocol["crop"] = [0.5, 1.0, 0.0, 1.0]
    assert prepare_depth_pair(pred, gt, protocol)[2]["num_valid"] == 7


def test_nyu_eigen_crop_at_full_and_half_size():
    protocol = {"name": "nyu_eigen", "crop": [45, 471, 41, 601], "max_depth": 10.0}
    gt = np.full((480, 640), 3.0)
    assert prepare_depth_pair(gt, gt, protocol)[2]["num_valid"] == 426 * 560
    half = np.full((240, 320), 3.0)
    assert prepare_depth_pair(half, half, protocol)[2]["num_valid"] == 213 * 280


def test_prediction_resized_to_gt_and_median_scaling():
    gt = torch.full((6, 8), 4.0)
    gt[:, :4] = 2.0
    pred = torch.tensor([[1.0, 2.0]])  # left half 1, right half 2: half the GT, (1, 2) -> (6, 8)
    pv, gv, info = prepare_depth_pair(pred, gt, {"max_depth": 80.0})
    assert pv.shape == (48,) and pv.min() >= 1.0 and pv.max() <= 2.0
    pv, gv, info = prepare_depth_pair(0.5 * gt, gt, {"max_depth": 80.0}, median_scaling=True)
    assert info["scale"] == pytest.approx(2.0)
    assert compute_depth_errors(pv, gv)["AbsRel"] == pytest.approx(0.0)


def test_evaluator_means_over_images_and_reports_gt_kind(tmp_path, caplog):
    assert "depth" in registered_evaluator_types()
    protocol = {"name": "synthetic_nyu", "crop": None, "min_depth": 1e-3, "max_depth": 10.0}
    protocol["gt"] = "rendered"
    ev = DepthEvaluator("toy", str(tmp_path), num_vis=1)
    gt = torch.full((6, 8), 2.0)
    inputs = [
        {
            "image_id": i,
            "image": torch.full((3, 12, 16), 100.0),
            "depth": gt,
            "K": torch.tensor([10.0, 10.0, 8.0, 6.0]),
            "protocol": protocol,
        }
        for i in range(2)
    ]
    outputs = [
        {"depth": torch.full((6, 8), 2.0), "depth_coarse": torch.full((3, 4), 2.5)},
        {"depth": torch.full((6, 8), 4.0), "depth_coarse": torch.full((3, 4), 2.5)},
    ]
    ev.reset()
    ev.process(inputs, outputs)
    with caplog.at_level("INFO"):
        results = ev.evaluate()
    assert set(results) == {"depth", "depth_coarse"}
    assert list(results["depth"]) == list(DEPTH_METRICS)
    assert results["depth"]["AbsRel"] == pytest.approx(0.5)  # images at 0 and 1
    assert results["depth"]["delta1"] == pytest.approx(0.5)
    assert results["depth_coarse"]["AbsRel"] == pytest.approx(0.25)
    assert "GT rendered" in ev.summary and "GT rendered" in caplog.text
    saved = json.loads((tmp_path / "depth_metrics.json").read_text())
    assert saved["num_images"] == {"depth": 2, "depth_coarse": 2}
    assert any("GT rendered" in p for p in saved["protocols"])
    assert sorted(p.name for p in (tmp_path / "vis").iterdir()) == [
        "0_gt.ply",
        "0_panel.png",
        "0_pred.ply",
    ]
    with pytest.raises(KeyError, match="no 'depth'"):
        ev.process([{"image_id": 9}], [{"depth": gt}])
