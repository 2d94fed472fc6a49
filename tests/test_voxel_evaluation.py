"""R2N2Evaluator: IoU at the inclusive 0.4 threshold on hand cases, per view count and per
category, cubified-mesh placement and metrics, and the voxel-box reader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from meshrecon.evaluation import registered_evaluator_types
from meshrecon.evaluation.voxel_evaluation import (
    R2N2Evaluator,
    occupancy_to_mesh,
    read_voxel_box,
)
from meshrecon.ops import sample_points_from_meshes


def _cube_grid(n: int = 4) -> torch.Tensor:
    g = torch.zeros(n, n, n, dtype=torch.bool)
    g[1:3, 1:3, 1:3] = True
    return g


def test_iou_hand_case_threshold_is_inclusive():
    gt = _cube_grid()
    probs = torch.zeros(4, 4, 4)
    probs[gt] = 0.9
    probs[0, 0, :] = 0.4  # 4 false positives exactly at the threshold: counted (>=)
    probs[3, 3, :] = 0.39  # below: not counted
    ev = R2N2Evaluator(iou_thresh=0.4, mesh_samples=0)
    ev.process([{"voxels": gt, "category_id": 0, "images": torch.zeros(1)}], [{"voxels": probs}])
    res = ev.evaluate()
    assert res["voxel"]["IoU@1"] == pytest.approx(8 / 12)
    assert "mesh@1" not in res


def test_iou_per_view_count_and_category():
    gt = _cube_grid()
    half = torch.zeros(4, 4, 4)
    half[1, 1:3, 1:3] = 1.0  # 4 of 8: IoU 0.5
    full = gt.float()
    ev = R2N2Evaluator(iou_thresh=0.4, max_views=2, class_names=["a", "b"], mesh_samples=0)
    inputs = [
        {"voxels": gt, "category_id": 0, "image_id": "x"},
        {"voxels": gt, "category_id": 1, "image_id": "y"},
        {"voxels": gt, "category_id": 1, "image_id": "z"},
    ]
    outputs = [
        # object x: 1 view -> half, 2 views -> full, 3 views (beyond max_views) ignored
        {"voxels": full, "by_num_views": [{"voxels": half}, {"voxels": full}, {"voxels": half}]},
        {"voxels": full, "by_num_views": [{"voxels": full}, {"voxels": full}]},
        {"voxels": half, "by_num_views": [{"voxels": half}]},
    ]
    ev.process(inputs, outputs)
    v = ev.evaluate()["voxel"]
    assert v["IoU@1"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert v["IoU@1-a"] == pytest.approx(0.5) and v["IoU@1-b"] == pytest.approx(0.75)
    assert v["mIoU@1"] == pytest.approx((0.5 + 0.75) / 2)
    assert v["IoU@2"] == pytest.approx(1.0)  # x and y only
    assert "IoU@3" not in v
    ev.reset()
    assert ev.evaluate() == {}


def test_paired_gains_with_more_views_and_their_standard_errors():
    gt = _cube_grid()  # 8 voxels
    quarter, half = torch.zeros(4, 4, 4), torch.zeros(4, 4, 4)
    quarter[1, 1, 1:3] = 1.0  # IoU 0.25
    half[1, 1:3, 1:3] = 1.0  # IoU 0.5
    full = gt.float()  # IoU 1
    grids = {0.25: quarter, 0.5: half, 1.0: full}
    seen = {"a": (0.25, 0.5, 1.0), "b": (0.5, 0.5, 0.5), "c": (0.25, 1.0, 1.0), "d": (1.0,)}
    ev = R2N2Evaluator(iou_thresh=0.4, max_views=3, mesh_samples=0)
    for name, ious in seen.items():
        views = [{"voxels": grids[v]} for v in ious]
        ev.process([{"voxels": gt, "image_id": name}], [{**views[-1], "by_num_views": views}])
    v = ev.evaluate()["voxel"]
    # 2 views against 1 (a, b, c; d has one view): +0.25, 0, +0.75.
    assert v["gain@2"] == pytest.approx(1 / 3) and v["step@2"] == pytest.approx(1 / 3)
    assert v["gain_se@2"] == pytest.approx(np.std([0.25, 0, 0.75], ddof=1) / np.sqrt(3))
    # 3 views against 1: +0.75, 0, +0.75 (mean 0.5, standard error 0.25); against 2: +0.5, 0, 0.
    assert v["gain@3"] == pytest.approx(0.5) and v["gain_se@3"] == pytest.approx(0.25)
    assert v["step@3"] == pytest.approx(1 / 6) and v["step_se@3"] == pytest.approx(1 / 6)
    assert "gain@1" not in v and "step@1" not in v
    # One object seen in several views: no spread to measure, no gain reported.
    ev.reset()
    views = [{"voxels": half}, {"voxels": full}]
    ev.process([{"voxels": gt}], [{**views[-1], "by_num_views": views}])
    v = ev.evaluate()["voxel"]
    assert v["IoU@2"] == 1.0 and "gain@2" not in v


def test_bad_arguments_and_missing_ground_truth():
    with pytest.raises(ValueError, match="iou_thresh"):
        R2N2Evaluator(iou_thresh=1.5)
    ev = R2N2Evaluator(mesh_samples=0)
    with pytest.raises(ValueError, match="LOAD_TEST_ANNOTATIONS"):
        ev.process([{"image_id": "x"}], [{"voxels": torch.zeros(4, 4, 4)}])


def test_occupancy_to_mesh_places_voxel_in_box():
    occ = torch.zeros(2, 2, 2)
    occ[0, 0, 1] = 1.0  # z = 0, y = 0, x = 1
    box = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 4.0]])
    mesh = occupancy_to_mesh(occ, 0.5, box, "corner")
    verts = mesh.verts_list()[0]
    torch.testing.assert_close(verts.min(0).values, torch.tensor([0.5, 0.0, 0.0]))
    torch.testing.assert_close(verts.max(0).values, torch.tensor([1.0, 1.0, 2.0]))
    assert mesh.faces_list()[0].shape[0] == 12
    empty = occupancy_to_mesh(torch.zeros(2, 2, 2), 0.5, box)
    assert empty.faces_list()[0].shape[0] == 0


def test_mesh_metrics_perfect_and_empty_predictions(tmp_path):
    torch.manual_seed(0)
    gt = _cube_grid(8)
    box = torch.tensor([[-0.5] * 3, [0.5] * 3])
    gt_mesh = occupancy_to_mesh(gt.float(), 0.5, box, "corner")
    points, normals = sample_points_from_meshes(gt_mesh, 5000, return_normals=True)
    x = {
        "voxels": gt,
        "category_id": 0,
        "image_id": "m",
        "points": points[0],
        "normals": normals[0],
    }
    path = str(tmp_path / "m.npz")
    np.savez(path, occupancy=gt.numpy(), bounds=box.numpy(), align=np.array("corner"))
    ev = R2N2Evaluator(mesh_samples=5000, voxel_paths={"m": path})
    empty = torch.zeros(8, 8, 8)
    ev.process(
        [x], [{"voxels": gt.float(), "by_num_views": [{"voxels": gt.float()}, {"voxels": empty}]}]
    )
    res = ev.evaluate()
    m1, m2 = res["mesh@1"], res["mesh@2"]
    # Two independent 5000-point samplings of the same surface (longest edge 10) are ~0.07 apart.
    assert m1["Chamfer-L2"] < 0.15 and m1["F1@0.500000"] > 97.0
    assert m1["NormalConsistency"] > 0.95 and m1["EmptyPredictions"] == 0
    assert m2["F1@0.300000"] == 0.0 and m2["EmptyPredictions"] == 1
    assert "mesh_p2m@1" in res and "mesh_category_mean@2" in res
    assert res["voxel"]["IoU@1"] == 1.0 and res["voxel"]["IoU@2"] == 0.0


def test_a_predicted_mesh_is_scored_instead_of_its_cubified_voxels():
    # The recognition baselines answer with a training mesh and its voxels: the mesh is scored
    # (here the GT cube's own surface, against voxels that say "empty").
    torch.manual_seed(0)
    gt = _cube_grid(8)
    box = torch.tensor([[-0.5] * 3, [0.5] * 3])
    gt_mesh = occupancy_to_mesh(gt.float(), 0.5, box, "corner")
    points, normals = sample_points_from_meshes(gt_mesh, 5000, return_normals=True)
    x = {"voxels": gt, "image_id": "m", "points": points[0], "normals": normals[0]}
    mesh = (gt_mesh.verts_list()[0], gt_mesh.faces_list()[0])
    ev = R2N2Evaluator(mesh_samples=5000, max_views=1)
    ev.process([x], [{"voxels": torch.zeros(8, 8, 8), "mesh": mesh}])
    res = ev.evaluate()
    assert res["voxel"]["IoU@1"] == 0.0  # the voxels are still what the IoU scores
    assert res["mesh@1"]["F1@0.500000"] > 97.0 and res["mesh@1"]["EmptyPredictions"] == 0
    # The other protocols come along per view count.
    assert res["mesh_fscore@1"]["F-score@1%"] > 0.0 and res["mesh_onet@1"]["Chamfer-L1"] < 0.5


def test_read_voxel_box_npz(tmp_path):
    path = str(tmp_path / "v.npz")
    bounds = np.array([[-1, -2, -3], [1, 2, 3]], dtype=np.float32)
    np.savez(path, occupancy=np.zeros((2, 2, 2), bool), bounds=bounds, align=np.array("center"))
    box, align = read_voxel_box(path)
    torch.testing.assert_close(box, torch.from_numpy(bounds))
    assert align == "center"


def test_multiview_evaluator_type_is_registered():
    assert "multiview" in registered_evaluator_types()


def test_box_comes_with_the_inputs_not_the_dataset(monkeypatch):
    """The mapper gives each item's voxel box; the evaluator places cubified predictions with
    it, and building it from the config does not read the dataset's records again."""
    from meshrecon.config import get_cfg
    from meshrecon.data import DatasetCatalog

    torch.manual_seed(0)
    gt = _cube_grid(8)
    box = torch.tensor([[-0.5] * 3, [0.5] * 3])
    gt_mesh = occupancy_to_mesh(gt.float(), 0.5, box, "corner")
    points, normals = sample_points_from_meshes(gt_mesh, 2000, return_normals=True)
    base = {"voxels": gt, "category_id": 0, "points": points[0], "normals": normals[0]}

    def chamfer(voxel_box):
        ev = R2N2Evaluator(mesh_samples=2000, max_views=1)
        x = {**base, "image_id": "m", "voxel_box": voxel_box, "voxel_align": "corner"}
        ev.process([x], [{"voxels": gt.float()}])
        return ev.evaluate()["mesh@1"]["Chamfer-L2"]

    assert chamfer(box) < 0.5
    assert chamfer(box + 1.0) > 10.0  # the mesh goes where the inputs' box says

    def no_records(name):
        raise AssertionError(f"DatasetCatalog.get({name!r}) called")

    monkeypatch.setattr(DatasetCatalog, "get", no_records)
    args = R2N2Evaluator.from_config(get_cfg(), "synthetic_shapenet_test_multiview")
    assert "voxel_paths" not in args


def test_multiview_mapper_gives_the_voxel_files_box(tmp_path):
    from meshrecon.data.mappers import MultiViewMapper
    from meshrecon.io import load_voxels
    from meshrecon.render.cameras import r2n2_camera

    S = 32
    grid = torch.zeros(6, 6, 6, dtype=torch.bool)
    grid[1:5, 1:5, 1:5] = True
    bounds = np.array([[-0.4, -0.3, -0.2], [0.4, 0.5, 0.6]], dtype=np.float32)
    voxel = str(tmp_path / "v.npz")
    np.savez(voxel, occupancy=grid.numpy(), bounds=bounds, align=np.array("center"))
    image = str(tmp_path / "im.png")
    from PIL import Image

    Image.fromarray(np.full((S, S, 3), 128, np.uint8)).save(image)
    K, R, t = r2n2_camera(30.0, 20.0, 2.0, S)
    view = {"file_name": image, "height": S, "width": S, "K": K.tolist(), "R": R.tolist()}
    view["t"] = t.tolist()
    record = {"image_id": "c/m", "voxel": voxel, "views": [view, dict(view)], "category_id": 0}
    mapper = MultiViewMapper(is_train=False, crop_size=0, num_samples=50, voxel_size=6)
    out = mapper(record)
    assert torch.equal(out["voxels"], grid)
    assert torch.equal(out["voxel_box"], load_voxels(voxel).boxes()[0])
    assert out["voxel_align"] == "center"
