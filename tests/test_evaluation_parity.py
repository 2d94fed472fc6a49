"""meshrecon's evaluators against Mesh R-CNN's on the same predictions
(tests/data/golden/meshrcnn_training, recorded by tools/golden/record_training.py).

Pix3D: a seven-image dataset in Mesh R-CNN's COCO-style Pix3D format
(``meshrcnn_training/pix3d_eval/``; bed, chair and sofa objects) and fixed predictions in which
every case of the AP bookkeeping occurs (a perfect match, a mesh failing F1@0.3 > 0.5, a
duplicate, a wrong class, a box-IoU-filtered prediction, missed objects, box and mask failing
separately; see tools/golden/_evaluation.py). AP^box, AP^mask and AP^mesh per category and
their means must equal the original's to 1e-6, the per-prediction box and mask IoUs too. The
F1 of each mesh comes from 10k random surface samples on each side in both implementations, so
it is compared with a Monte-Carlo tolerance (0.03) and must fall on the same side of 0.5; the
predictions are far from that threshold (exact meshes score 1.0, the blob 0.0, in both).

ShapeNet: ``compare_meshes`` on a batch of three pairs with both protocols (Mesh R-CNN's and
Pixel2Mesh's), with the original's surface draws replayed: every metric to 1e-6.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch

from meshrecon.data.catalog import DatasetCatalog
from meshrecon.data.datasets.pix3d import register_pix3d
from meshrecon.evaluation import compare_meshes
from meshrecon.evaluation.pix3d_evaluation import Pix3DEvaluator
from meshrecon.ops import replay_samples
from meshrecon.structures import Boxes, Instances, Meshes, MeshInstances

GOLDEN = Path(__file__).parent / "data" / "golden" / "meshrcnn_training"
DATASET = "pix3d_eval_parity"
REL = 1e-6
F1_TOL = 0.03


@functools.cache
def load(name: str) -> dict:
    return torch.load(GOLDEN / name, weights_only=True)


def instances(pred: dict, image_size) -> Instances:
    H, W = image_size
    inst = Instances((H, W))
    inst.pred_boxes = Boxes(pred["boxes"].clone())
    inst.scores = pred["scores"].clone()
    inst.pred_classes = pred["classes"].clone()
    masks = np.unpackbits(pred["masks_packed"].numpy(), axis=-1)[..., :W]
    inst.pred_masks = torch.from_numpy(masks.astype(bool))
    inst.pred_dz = pred["dz"][:, None].clone()
    if pred["meshes"]:
        inst.pred_meshes = MeshInstances([(v.clone(), f.clone()) for v, f in pred["meshes"]])
    return inst


@pytest.fixture(scope="module")
def pix3d_evaluated():
    rec = load("pix3d_eval.pt")
    root = GOLDEN / "pix3d_eval"
    if DATASET not in DatasetCatalog.list():
        register_pix3d(DATASET, str(root / "pix3d_eval.json"), str(root))
    evaluator = Pix3DEvaluator(DATASET)
    evaluator.reset()
    for image_id, pred in rec["predictions"].items():
        inst = instances(pred, rec["image_size"])
        evaluator.process([{"image_id": image_id}], [{"instances": inst}])
    return rec, evaluator, evaluator.evaluate()["shape"]


def test_pix3d_ap_matches_original(pix3d_evaluated):
    rec, _, results = pix3d_evaluated
    want = rec["results"]
    assert set(results) == set(want)
    for key, value in want.items():
        assert abs(results[key] - value) <= REL, f"{key}: {results[key]} vs the original's {value}"


def test_pix3d_per_prediction_quantities_match_original(pix3d_evaluated):
    rec, evaluator, _ = pix3d_evaluated
    scored = {image_id: recs for image_id, recs in evaluator._per_image}
    for image_id, want in rec["per_prediction"].items():
        keep = torch.nonzero(want["box_iou"] > 0.3).flatten().tolist()
        got = scored[image_id]
        assert len(got) == len(keep), f"image {image_id}: {len(got)} scored, original {len(keep)}"
        for r, i in zip(got, keep):
            assert abs(r["box_iou"] - float(want["box_iou"][i])) <= REL, f"image {image_id}"
            assert abs(r["mask_iou"] - float(want["mask_iou"][i])) <= REL, f"image {image_id}"
            f1 = float(want["f1"][i])
            assert abs(r["f1"] - f1) <= F1_TOL, f"image {image_id}: F1 {r['f1']} vs {f1}"
            assert (r["f1"] > 0.5) == (f1 > 0.5)


def test_pix3d_eval_record_covers_every_case(pix3d_evaluated):
    """The fixture is not degenerate: exact meshes pass F1@0.3 clearly, the blob fails, one
    prediction is filtered by box IoU, and the APs are neither all 0 nor all 1."""
    rec, _, _ = pix3d_evaluated
    f1 = torch.cat([p["f1"] for p in rec["per_prediction"].values()])
    assert (f1 > 0.9).sum() >= 5 and (f1 < 0.2).sum() >= 1
    box_iou = torch.cat([p["box_iou"] for p in rec["per_prediction"].values()])
    assert (box_iou <= 0.3).sum() == 1 and ((box_iou > 0.3) & (box_iou < 0.5)).sum() == 1
    means = [rec["results"][f"{t}_ap@0.5"] for t in ("box", "mask", "mesh")]
    assert all(0.0 < m < 1.0 for m in means) and len(set(means)) == 3


def _meshes(pairs) -> Meshes:
    return Meshes(verts=[v for v, _ in pairs], faces=[f for _, f in pairs])


@pytest.mark.parametrize("protocol", ["meshrcnn", "pixel2mesh"])
def test_shapenet_compare_meshes_matches_original(protocol):
    rec = load("shapenet_eval.pt")
    proto = rec["protocols"][protocol]
    kwargs = dict(proto["kwargs"])
    if "scale" in kwargs:
        kwargs["scale"] = float(kwargs["scale"])
    with replay_samples(proto["draws"]) as left:
        got = compare_meshes(
            _meshes(rec["pred_meshes"]),
            _meshes(rec["gt_meshes"]),
            num_samples=rec["num_samples"],
            reduce=False,
            **kwargs,
        )
    assert not left
    assert set(got) == set(proto["metrics"])
    for key, want in proto["metrics"].items():
        err = (got[key].double() - want).abs().max().item() / max(want.abs().max().item(), 1e-12)
        assert err <= REL, f"{protocol} {key}: relative error {err:.3g}"
