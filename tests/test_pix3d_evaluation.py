"""Pix3D AP (box / mask / mesh) on hand-made cases, and the box-frustum placement it uses."""

from __future__ import annotations

import torch

from meshrecon.evaluation.pix3d_evaluation import (
    accumulate_ap,
    format_ap_table,
    place_meshes_in_camera,
    score_image,
    voc_ap,
)
from meshrecon.modeling.roi_heads.box_frustum import (
    box_frustum_to_camera,
    camera_to_box_frustum,
)
from meshrecon.ops import ico_sphere

CLASSES = ["chair", "table"]
H, W = 120, 160
K3 = torch.tensor([150.0, W / 2, H / 2], dtype=torch.float64)


def _gt_object():
    """A sphere of radius 0.3 at depth 3 in the camera frame, its box and mask."""
    sphere = ico_sphere(3)
    verts = sphere.verts_packed() * 0.3 + torch.tensor([0.1, -0.05, 3.0])
    faces = sphere.faces_packed()
    # Its box from the projection Mesh R-CNN's placement assumes (u = W - 1 - px - f X / Z).
    u = W - 1 - K3[1] - K3[0] * verts[:, 0].double() / verts[:, 2].double()
    v = H - 1 - K3[2] - K3[0] * verts[:, 1].double() / verts[:, 2].double()
    box = torch.stack([u.min(), v.min(), u.max(), v.max()]).float()
    mask = torch.zeros(H, W, dtype=torch.bool)
    x0, y0, x1, y1 = box.round().long().tolist()
    mask[y0:y1, x0:x1] = True
    return verts, faces, box, mask


def _prediction(verts, faces, box, mask, shift=0.0, score=0.9, label=0):
    """A prediction that reproduces the ground truth (optionally with its mesh shifted)."""
    zr = torch.stack([verts[:, 2].min(), verts[:, 2].max()]).double()[None]
    coords = camera_to_box_frustum(
        verts.double()[None], box.double()[None], K3[None], zr, torch.tensor([[W, H]]).double()
    )[0]
    coords = coords + torch.tensor([shift, 0.0, 0.0], dtype=torch.float64)
    zc = zr.mean()
    dz_pixels = (zr[0, 1] - zr[0, 0]) / zc * K3[0]
    return {
        "scores": torch.tensor([score]),
        "boxes": box[None],
        "classes": torch.tensor([label]),
        "masks": mask[None],
        "meshes": [(coords.float(), faces)],
        "dz": (dz_pixels / (box[3] - box[1])).float()[None],
    }


def _score(pred, verts, faces, box, mask):
    return score_image(
        pred,
        box[None],
        torch.tensor([0]),
        mask[None],
        [(verts, faces)],
        K3,
        (H, W),
        num_samples=3000,
    )


def test_voc_ap_hand_values():
    # TP, FP, TP with 2 positives: precision envelope 1 up to recall .5, 2/3 up to 1.
    ap = voc_ap(torch.tensor([0.9, 0.8, 0.7]), torch.tensor([1, 0, 1]), 2)
    assert abs(ap - (0.5 * 1.0 + 0.5 * 2 / 3)) < 1e-9
    assert voc_ap(torch.tensor([]), torch.tensor([]), 3) == 0.0
    assert voc_ap(torch.tensor([0.5]), torch.tensor([1]), 1) == 1.0


def test_frustum_roundtrip():
    torch.manual_seed(0)
    pts = torch.randn(1, 50, 3, dtype=torch.float64) * 0.2 + torch.tensor([0.0, 0.0, 2.0])
    boxes = torch.tensor([[30.0, 20.0, 90.0, 100.0]], dtype=torch.float64)
    for K in (K3[None], torch.tensor([[150.0, 140.0, 80.0, 60.0]], dtype=torch.float64)):
        zr = torch.tensor([[1.7, 2.3]], dtype=torch.float64)
        c = camera_to_box_frustum(pts, boxes, K, zr)
        back = box_frustum_to_camera(c, boxes, K, zr)
        torch.testing.assert_close(back, pts)
    # The box's projected corners land on the unit square: the near-left ray is (-1, -1, -1).
    K4 = torch.tensor([[150.0, 140.0, 80.0, 60.0]], dtype=torch.float64)
    corner = box_frustum_to_camera(torch.tensor([[[-1.0, -1.0, -1.0]]]).double(), boxes, K4, zr)
    u = K4[0, 2] - K4[0, 0] * corner[0, 0, 0] / corner[0, 0, 2]
    v = K4[0, 3] - K4[0, 1] * corner[0, 0, 1] / corner[0, 0, 2]
    assert abs(u - 30.0) < 1e-9 and abs(v - 20.0) < 1e-9 and abs(corner[0, 0, 2] - 1.7) < 1e-9


def test_perfect_prediction_scores_100():
    verts, faces, box, mask = _gt_object()
    recs = _score(_prediction(verts, faces, box, mask), verts, faces, box, mask)
    # Sampling noise keeps F1 of identical surfaces below 1 (3000 points).
    assert len(recs) == 1 and recs[0]["f1"] > 0.85 and recs[0]["box_iou"] > 0.999
    res = accumulate_ap([(0, recs)], {0: 1.0}, CLASSES)
    assert res["box_ap@0.5"] == res["mask_ap@0.5"] == res["mesh_ap@0.5"] == 1.0
    assert "chair" in format_ap_table(res, CLASSES)
    assert "box_ap@0.5 - table" not in res  # no ground truth of that class


def test_placement_recovers_the_ground_truth_mesh():
    verts, faces, box, mask = _gt_object()
    pred = _prediction(verts, faces, box, mask)
    zc = (verts[:, 2].min() + verts[:, 2].max()).double() / 2
    dz = pred["dz"].double() * (box[3] - box[1]).double()
    placed = place_meshes_in_camera(pred["meshes"], pred["boxes"], dz, zc, K3, (H, W))
    torch.testing.assert_close(placed.verts_packed(), verts, atol=1e-4, rtol=0)


def test_shifted_mesh_is_a_mesh_false_positive():
    verts, faces, box, mask = _gt_object()
    recs = _score(_prediction(verts, faces, box, mask, shift=0.6), verts, faces, box, mask)
    assert recs[0]["f1"] < 0.5
    res = accumulate_ap([(0, recs)], {0: 1.0}, CLASSES)
    assert res["box_ap@0.5"] == 1.0 and res["mask_ap@0.5"] == 1.0
    assert res["mesh_ap@0.5"] == 0.0


def test_duplicates_and_wrong_class_are_false_positives():
    verts, faces, box, mask = _gt_object()
    first = _score(_prediction(verts, faces, box, mask, score=0.9), verts, faces, box, mask)
    dup = _score(_prediction(verts, faces, box, mask, score=0.8), verts, faces, box, mask)
    wrong = _score(
        _prediction(verts, faces, box, mask, score=0.95, label=1), verts, faces, box, mask
    )
    recs = first + dup + wrong
    res = accumulate_ap([(0, recs)], {0: 1.0, 1: 0.0}, CLASSES)
    # chair list: TP (0.9) then duplicate FP (0.8): AP stays 1; the "table" prediction counts
    # nowhere because table has no ground truth.
    assert res["box_ap@0.5 - chair"] == 1.0
    # With the duplicate ranked first it is the TP and the other the FP: still 1; but a
    # duplicate above a second image's true positive lowers the AP.
    res2 = accumulate_ap([(0, first + dup), (1, [])], {0: 2.0}, CLASSES)
    assert abs(res2["box_ap@0.5"] - 0.5) < 1e-9


def test_low_iou_predictions_are_not_scored():
    verts, faces, box, mask = _gt_object()
    pred = _prediction(verts, faces, box, mask)
    pred["boxes"] = pred["boxes"] + torch.tensor([W / 2, 0.0, W / 2, 0.0])
    assert _score(pred, verts, faces, box, mask) == []
