"""Record Mesh R-CNN's Pix3D evaluator and ShapeNet ``compare_meshes`` (``record_training.py``).

Pix3D: a seven-image dataset in Mesh R-CNN's COCO-style Pix3D format (images, grey-level mask
PNGs, OBJ models, ``pix3d_eval.json``; three of Pix3D's nine categories hold objects) is
written next to the record, and fixed predictions are scored by the original
``Pix3DEvaluator``. The predictions are chosen so that every case of the AP bookkeeping occurs:

====== ======= ============================================================================
image  object  predictions (score: what happens)
====== ======= ============================================================================
1      bed     0.90 exact box, mask and mesh (TP box / mask / mesh); 0.80 the same object
               again, box shifted (duplicate: FP x 3)
2      bed     0.70 good box and mask, a small blob for a mesh (TP, TP, mesh fails F1 > 0.5)
3      chair   0.95 labelled sofa (wrong class: FP x 3 in sofa); 0.60 chair, exact (TP x 3)
4      chair   0.99 chair with box IoU < 0.3 (filtered: never scored): a missed object
5      sofa    0.50 good box and mesh, mask elsewhere (TP, mask FP, TP)
6      sofa    0.40 box IoU in (0.3, 0.5) (box FP), exact mask and mesh (TP, TP)
7      bed     none (missed)
====== ======= ============================================================================

GT masks have a ring of grey (100/255) pixels around a white core: Mesh R-CNN binarizes them
with ``> 0``. Recorded: AP^box / mask / mesh per category and mean, and per scored
prediction its box IoU, mask IoU and F1@0.3 (the evaluator's own values).

ShapeNet: ``compare_meshes`` on a batch of three (prediction, GT) pairs, with Mesh R-CNN's
protocol (scale gt-10, thresholds 0.1-0.5) and the Pixel2Mesh one (x0.57, thresholds
0.01 / 0.014142), recording the surface draws so a test can replay them.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import shutil
import types

import numpy as np
import torch
from _originals import capture_samples, default_dtype
from PIL import Image

PIX3D_CLASSES = ["bed", "bookcase", "chair", "desk", "misc", "sofa", "table", "tool", "wardrobe"]
EVAL_HW = (48, 64)
EVAL_FOCAL = 60.0
# image id -> (model, category name, pixel centre, depth)
EVAL_IMAGES = {
    1: ("bed_a", "bed", (30.0, 24.0), 3.0),
    2: ("bed_b", "bed", (34.0, 22.0), 3.2),
    3: ("chair_a", "chair", (28.0, 25.0), 2.8),
    4: ("chair_a", "chair", (36.0, 23.0), 3.0),
    5: ("sofa_a", "sofa", (30.0, 24.0), 3.1),
    6: ("sofa_a", "sofa", (33.0, 25.0), 2.9),
    7: ("bed_a", "bed", (31.0, 22.0), 3.3),
}


def _models(gen) -> dict:
    from pytorch3d.utils import ico_sphere

    sphere = ico_sphere(2)
    v0, f = sphere.verts_packed().double(), sphere.faces_packed()
    shapes = {"bed_a": (0.9, 0.35, 0.6), "bed_b": (0.8, 0.4, 0.7), "chair_a": (0.4, 0.8, 0.45)}
    shapes["sofa_a"] = (0.85, 0.45, 0.5)
    out = {}
    for name, axes in shapes.items():
        bump = 1.0 + 0.1 * torch.randn(v0.shape[0], 1, generator=gen)
        out[name] = ((v0 * bump * torch.tensor(axes)).float(), f)
    return out


def _write_obj(path: str, verts: torch.Tensor, faces: torch.Tensor) -> None:
    with open(path, "w") as fh:
        for v in verts.tolist():
            fh.write("v {!r} {!r} {!r}\n".format(*v))
        for a, b, c in (faces + 1).tolist():
            fh.write(f"f {a} {b} {c}\n")


def _rotation_y(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _project(X: torch.Tensor):
    H, W = EVAL_HW
    u = W / 2.0 - 1.0 - EVAL_FOCAL * X[:, 0] / X[:, 2]
    v = H / 2.0 - 1.0 - EVAL_FOCAL * X[:, 1] / X[:, 2]
    return u, v


def _ellipse(box, shrink=0.0, shift=(0.0, 0.0)) -> np.ndarray:
    H, W = EVAL_HW
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    cx, cy = (box[0] + box[2]) / 2 + shift[0], (box[1] + box[3]) / 2 + shift[1]
    rx, ry = (box[2] - box[0]) / 2 - shrink, (box[3] - box[1]) / 2 - shrink
    return ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1.0


def write_pix3d_dataset(root: str) -> dict:
    """Write the images, masks, models and json; return the placed GT per image id."""
    gen = torch.Generator().manual_seed(7)
    H, W = EVAL_HW
    if os.path.isdir(root):
        shutil.rmtree(root)
    for sub in ("img", "mask", "model"):
        os.makedirs(os.path.join(root, sub))
    models = _models(gen)
    for name, (v, f) in models.items():
        _write_obj(os.path.join(root, "model", f"{name}.obj"), v, f)
    images, annotations, gt = [], [], {}
    for image_id, (model, cat, center, depth) in EVAL_IMAGES.items():
        R = _rotation_y(0.4 * image_id)
        t = torch.tensor(
            [
                (W / 2.0 - 1.0 - center[0]) * depth / EVAL_FOCAL,
                (H / 2.0 - 1.0 - center[1]) * depth / EVAL_FOCAL,
                depth,
            ]
        )
        verts = models[model][0] @ R.T + t  # float32, as the evaluator computes it
        u, v = _project(verts)
        box = [float(u.min()), float(v.min()), float(u.max()), float(v.max())]
        core = _ellipse(box, shrink=1.0)
        ring = _ellipse(box) & ~core
        mask = np.where(core, 255, np.where(ring, 100, 0)).astype(np.uint8)
        Image.fromarray(mask, mode="L").save(os.path.join(root, "mask", f"{image_id:04d}.png"))
        Image.fromarray(np.full((H, W, 3), 80, np.uint8)).save(
            os.path.join(root, "img", f"{image_id:04d}.png")
        )
        images.append(
            {"id": image_id, "file_name": f"img/{image_id:04d}.png", "height": H, "width": W}
        )
        annotations.append(
            {
                "id": image_id,
                "image_id": image_id,
                "category_id": PIX3D_CLASSES.index(cat) + 1,
                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                "area": float((box[2] - box[0]) * (box[3] - box[1])),
                "iscrowd": 0,
                "segmentation": f"mask/{image_id:04d}.png",
                "model": f"model/{model}.obj",
                "K": [EVAL_FOCAL, W / 2.0, H / 2.0],
                "rot_mat": R.tolist(),
                "trans_mat": t.tolist(),
            }
        )
        gt[image_id] = {
            "box": box,
            "verts": verts,
            "faces": models[model][1],
            "core": core,
            "class": PIX3D_CLASSES.index(cat),
        }
    data = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(PIX3D_CLASSES)],
    }
    with open(os.path.join(root, "pix3d_eval.json"), "w") as fh:
        json.dump(data, fh, indent=1)
    return gt


def _frustum_mesh(verts, faces, box):
    """GT camera-frame mesh -> the box's frustum frame, with Mesh R-CNN's own crop; and the
    dz (in box heights) that places it back exactly at evaluation."""
    from meshrcnn.structures.mesh import MeshInstances, batch_crop_meshes_within_box

    H, W = EVAL_HW
    K = torch.tensor([[EVAL_FOCAL, W / 2.0, H / 2.0]])
    b = torch.tensor([box])
    m = batch_crop_meshes_within_box(MeshInstances([(verts, faces)]), b, K)
    z = verts[:, 2]
    tc = (z.max() + z.min()) / 2.0
    dz = EVAL_FOCAL * (z.max() - z.min()) / tc / (box[3] - box[1])
    return m.verts_list()[0].float(), dz


def _shift(box, dx, dy=0.0):
    return [box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy]


def pix3d_predictions(gt: dict) -> dict:
    """Per image id, the fixed predictions (see the module docstring)."""
    from pytorch3d.utils import ico_sphere

    blob = ico_sphere(2)
    blob_v, blob_f = (blob.verts_packed() * 0.15).float(), blob.faces_packed()

    def pred(image_id, cls, score, box, mask, mesh="exact"):
        g = gt[image_id]
        if mesh == "exact":
            v, dz = _frustum_mesh(g["verts"], g["faces"], box)
            f = g["faces"]
        else:
            v, f, dz = blob_v, blob_f, 1.0
        return {
            "class": cls,
            "score": score,
            "box": box,
            "mask": mask,
            "verts": v,
            "faces": f,
            "dz": float(dz),
        }

    bed, chair, sofa = 0, 2, 5
    g = gt
    far = [1.0, 1.0, 9.0, 9.0]
    box6 = g[6]["box"]
    w6 = box6[2] - box6[0]
    preds = {
        1: [
            pred(1, bed, 0.90, g[1]["box"], g[1]["core"]),
            pred(1, bed, 0.80, _shift(g[1]["box"], 2.0), g[1]["core"]),
        ],
        2: [pred(2, bed, 0.70, _shift(g[2]["box"], 1.0, 1.0), g[2]["core"], mesh="blob")],
        3: [
            pred(3, sofa, 0.95, g[3]["box"], g[3]["core"]),
            pred(3, chair, 0.60, g[3]["box"], g[3]["core"]),
        ],
        4: [pred(4, chair, 0.99, far, _ellipse(far))],
        5: [pred(5, sofa, 0.50, g[5]["box"], _ellipse(g[5]["box"], shift=(-14.0, 0.0)))],
        6: [pred(6, sofa, 0.40, _shift(box6, 0.45 * w6), g[6]["core"])],
        7: [],
    }
    return preds


def record_pix3d_eval(output_dir: str) -> dict:
    import detectron2.structures as d2s

    pe = importlib.import_module("meshrcnn.evaluation.pix3d_evaluation")
    from detectron2.config import get_cfg
    from detectron2.data import MetadataCatalog
    from meshrcnn.config import get_meshrcnn_cfg_defaults
    from meshrcnn.structures import MeshInstances

    root = os.path.join(output_dir, "pix3d_eval")
    gt = write_pix3d_dataset(root)
    preds = pix3d_predictions(gt)
    name = "pix3d_eval_parity"
    json_file = os.path.join(root, "pix3d_eval.json")
    MetadataCatalog.get(name).set(
        json_file=json_file,
        image_root=root,
        thing_classes=PIX3D_CLASSES,
        thing_dataset_id_to_contiguous_id={i + 1: i for i in range(len(PIX3D_CLASSES))},
    )
    cfg = get_cfg()
    get_meshrcnn_cfg_defaults(cfg)
    cfg.MODEL.MASK_ON = cfg.MODEL.MESH_ON = cfg.MODEL.VOXEL_ON = cfg.MODEL.ZPRED_ON = True
    cfg.MODEL.DEVICE = "cpu"

    # Keep the evaluator's per-prediction quantities: wrap what it calls.
    seen = {"box_iou": [], "mask_iou": [], "f1": []}
    orig_iou, orig_mask_util, orig_compare = pe.pairwise_iou, pe.mask_util, pe.compare_meshes

    def pairwise_iou(a, b):
        out = orig_iou(a, b)
        seen["box_iou"].append(out[:, 0].clone())
        return out

    class MaskUtil:
        def __getattr__(self, k):
            return getattr(orig_mask_util, k)

        def iou(self, *args):
            out = orig_mask_util.iou(*args)
            seen["mask_iou"].append(torch.as_tensor(np.asarray(out)[:, 0], dtype=torch.float64))
            return out

    def compare_meshes(*args, **kwargs):
        out = orig_compare(*args, **kwargs)
        seen["f1"].append(out["F1@0.300000"].clone() / 100.0)
        return out

    # Its results table fails on a category without objects (six of Pix3D's nine here); it
    # only prints, so it is skipped.
    orig_vis = pe.vis_utils
    pe.vis_utils = types.SimpleNamespace(print_instances_class_histogram=lambda *a: None)
    pe.pairwise_iou, pe.mask_util, pe.compare_meshes = pairwise_iou, MaskUtil(), compare_meshes
    H, W = EVAL_HW
    torch.manual_seed(0)
    try:
        evaluator = pe.Pix3DEvaluator(name, cfg, False)
        evaluator.reset()
        stored = {}
        for image_id, plist in preds.items():
            inst = d2s.Instances((H, W))
            inst.pred_boxes = d2s.Boxes(torch.tensor([p["box"] for p in plist]).reshape(-1, 4))
            inst.scores = torch.tensor([p["score"] for p in plist])
            inst.pred_classes = torch.tensor([p["class"] for p in plist], dtype=torch.int64)
            inst.pred_masks = torch.from_numpy(
                np.stack([p["mask"] for p in plist]) if plist else np.zeros((0, H, W), bool)
            )
            if plist:
                inst.pred_meshes = MeshInstances([(p["verts"], p["faces"]) for p in plist])
            inst.pred_dz = torch.tensor([[p["dz"]] for p in plist]).reshape(-1, 1)
            stored[image_id] = {
                "boxes": inst.pred_boxes.tensor.clone(),
                "scores": inst.scores.clone(),
                "classes": inst.pred_classes.clone(),
                "masks_packed": torch.from_numpy(np.packbits(inst.pred_masks.numpy(), axis=-1)),
                # Copies: the evaluator negates the predicted vertices' x, y in place.
                "meshes": [(p["verts"].clone(), p["faces"]) for p in plist],
                "dz": inst.pred_dz[:, 0].clone(),
            }
            evaluator.process([{"image_id": image_id}], [{"instances": inst}])
        results = evaluator.evaluate()["shape"]
    finally:
        pe.pairwise_iou, pe.mask_util, pe.compare_meshes = orig_iou, orig_mask_util, orig_compare
        pe.vis_utils = orig_vis
    # The evaluator visits images in prediction order and skips those with no prediction.
    scored_ids = [i for i, p in preds.items() if p]
    per_image = {i: {k: seen[k][j] for k in seen} for j, i in enumerate(scored_ids)}
    return {
        "image_size": EVAL_HW,
        "predictions": stored,
        "results": {k: float(v) for k, v in results.items()},
        "per_prediction": per_image,
        "class_names": PIX3D_CLASSES,
    }


def record_shapenet_eval() -> dict:
    metrics = importlib.import_module("meshrcnn.utils.metrics")
    from pytorch3d.structures import Meshes
    from pytorch3d.utils import ico_sphere

    gen = torch.Generator().manual_seed(5)
    preds, gts = [], []
    # Predictions near their GT (a rescaled, shifted, bumpy copy), so that precision, recall
    # and F1 land across their range rather than at 0.
    for level, k in ((2, 0), (1, 1), (2, 2)):
        s = ico_sphere(level)
        v, f = s.verts_packed().double(), s.faces_packed()
        gv = v * (0.3 + 0.2 * torch.rand(3, generator=gen))
        bump = 1.0 + 0.03 * (k + 1) * torch.randn(v.shape[0], 1, generator=gen)
        pv = gv * bump * (1.0 + 0.05 * torch.randn(3, generator=gen)) + 0.01 * k
        preds.append((pv, f))
        gts.append((gv, f))
    pred = Meshes(verts=[p[0] for p in preds], faces=[p[1] for p in preds])
    gt = Meshes(verts=[g[0] for g in gts], faces=[g[1] for g in gts])
    out = {"pred_meshes": preds, "gt_meshes": gts, "num_samples": 300, "protocols": {}}
    torch.manual_seed(0)
    for name, kwargs in (
        ("meshrcnn", {}),
        ("pixel2mesh", {"scale": 0.57, "thresholds": [0.01, 0.014142]}),
    ):
        with capture_samples([metrics]) as draws:
            m = metrics.compare_meshes(pred, gt, num_samples=300, reduce=False, **kwargs)
        out["protocols"][name] = {
            "kwargs": kwargs,
            "draws": draws,
            "metrics": {k: v.detach().double() for k, v in m.items()},
        }
    return out


__all__ = ["record_pix3d_eval", "record_shapenet_eval", "default_dtype"]
