"""Pix3D evaluation of Mesh R-CNN: AP^box, AP^mask and AP^mesh per category (VOC AP).

Protocol (Mesh R-CNN's ``meshrcnn/evaluation/pix3d_evaluation.py``):

- Only predictions whose box IoU with the ground truth exceeds 0.3 are scored; the others are
  neither true nor false positives.
- Ground-truth masks are every non-zero pixel of the mask image (Mesh R-CNN's ``> 0``).
- Scored predictions are visited by decreasing score. A prediction of class c is appended to
  class c's list, as a true positive for a task when its class is right, the ground truth is
  not yet covered for that task, and its box IoU (box), mask IoU (mask) or F1@0.3 of its mesh
  (mesh) exceeds 0.5; a true positive covers the ground truth.
- The mesh is placed in the camera frame from its box frustum coordinates with the predicted
  box and the predicted dz around the ground-truth depth centre, then compared with
  :func:`compare_meshes` (10k points, the ground truth's longest box edge scaled to 10).
- AP per category is VOC's (all-point interpolation) with the number of ground-truth objects
  of the category as positives; the reported AP is the mean over categories with objects.

Pix3D has one object per image. With several, each prediction is judged against the ground
truth its box overlaps most, which is the same rule for one object.
"""

from __future__ import annotations

import copy
import logging
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from typing import Any

import torch

from meshrecon.data.catalog import DatasetCatalog, MetadataCatalog
from meshrecon.data.readers import read_mask, read_mesh
from meshrecon.evaluation.evaluator import DatasetEvaluator, register_evaluator
from meshrecon.evaluation.shape_metrics import compare_meshes, threshold_key
from meshrecon.ops import ico_sphere
from meshrecon.render.frustum import box_frustum_to_camera
from meshrecon.structures import Boxes, Meshes, pairwise_iou
from meshrecon.utils import comm

__all__ = [
    "Pix3DEvaluator",
    "voc_ap",
    "place_meshes_in_camera",
    "score_image",
    "accumulate_ap",
    "format_ap_table",
]

logger = logging.getLogger(__name__)

# Pix3D images whose masks do not match the image; Mesh R-CNN skips them.
PIX3D_BAD_IMAGES = ("img/table/1749.jpg", "img/table/0045.png")
F1_KEY = threshold_key("F1", 0.3)


def voc_ap(scores: torch.Tensor, labels: torch.Tensor, npos: float) -> float:
    """VOC average precision (area under the monotone precision envelope).

    Args:
        scores: (P,) detection scores; labels: (P,) 1 for true, 0 for false positives.
        npos: number of ground-truth objects.
    """
    if scores.numel() == 0 or npos <= 0:
        return 0.0
    order = torch.argsort(scores, descending=True, stable=True)
    tp = torch.cumsum((labels[order] == 1).double(), 0)
    fp = torch.cumsum((labels[order] == 0).double(), 0)
    rec = torch.cat([tp.new_zeros(1), tp / npos, tp.new_ones(1)])
    prec = torch.cat([tp.new_zeros(1), tp / (tp + fp), tp.new_zeros(1)])
    prec = torch.flip(torch.cummax(torch.flip(prec, [0]), 0).values, [0])
    steps = torch.nonzero(rec[1:] != rec[:-1]).flatten() + 1
    return float(((rec[steps] - rec[steps - 1]) * prec[steps]).sum())


def place_meshes_in_camera(
    meshes: Sequence[tuple[torch.Tensor, torch.Tensor]],
    boxes: torch.Tensor,
    dz: torch.Tensor,
    z_center: torch.Tensor,
    K: torch.Tensor,
    image_size: tuple[int, int],
) -> Meshes:
    """Frustum-frame predicted meshes -> camera frame (Mesh R-CNN's evaluation placement).

    Args:
        meshes: D (verts, faces) in box frustum coordinates; empty ones become a level-3
            ico-sphere, as Mesh R-CNN.
        boxes: (D, 4) predicted boxes in the image's pixels.
        dz: (D,) predicted depth extent in pixels (``pred_dz`` times the box height).
        z_center: scalar depth of the ground-truth object's centre.
        K: (3,) ``[f, px, py]`` or (4,) ``[fx, fy, cx, cy]``.
        image_size: (H, W).
    """
    f = K[0]
    verts_out, faces_out = [], []
    H, W = image_size
    for i, (v, faces) in enumerate(meshes):
        if v.numel() == 0:
            sphere = ico_sphere(3)
            v, faces = sphere.verts_packed(), sphere.faces_packed()
        v = v.double()
        zr = torch.stack(
            [z_center - z_center * dz[i] / 2.0 / f, z_center + z_center * dz[i] / 2.0 / f]
        )
        cam = box_frustum_to_camera(
            v[None],
            boxes[i : i + 1].double(),
            K[None].double(),
            zr[None].double(),
            torch.tensor([[W, H]], dtype=torch.float64),
        )[0]
        verts_out.append(cam.float())
        faces_out.append(faces)
    return Meshes(verts=verts_out, faces=faces_out)


def score_image(
    pred: dict[str, Any],
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    gt_masks: torch.Tensor | None,
    gt_meshes: Sequence[tuple[torch.Tensor, torch.Tensor]] | None,
    K: torch.Tensor,
    image_size: tuple[int, int],
    filter_iou: float = 0.3,
    num_samples: int = 10000,
) -> list[dict[str, Any]]:
    """Per-prediction quantities of one image that the AP needs.

    Args:
        pred: ``scores`` (D,), ``boxes`` (D, 4), ``classes`` (D,), optional ``masks`` (D, H, W)
            bool, ``meshes`` (D (verts, faces) in frustum frame), ``dz`` (D,) in box heights.
        gt_boxes: (G, 4); gt_classes: (G,); gt_masks: (G, H, W) bool or None;
        gt_meshes: G camera-frame (verts, faces) or None.
        K: intrinsics of the image (see :func:`place_meshes_in_camera`).

    Returns:
        One dict per scored prediction (box IoU > ``filter_iou`` with some ground truth):
        ``score``, ``label``, ``gt`` (index), ``box_iou``, ``mask_iou``, ``f1`` (F1@0.3 in
        [0, 1], or -1 without meshes).
    """
    D = len(pred["scores"])
    if D == 0 or len(gt_boxes) == 0:
        return []
    ious = pairwise_iou(Boxes(pred["boxes"].float()), Boxes(gt_boxes.float()))
    best_iou, best_gt = ious.max(dim=1)
    keep = torch.nonzero(best_iou > filter_iou).flatten().tolist()
    records = []
    f1 = {}
    if keep and gt_meshes is not None and "dz" in pred:
        f1 = _mesh_f1(pred, keep, best_gt, gt_meshes, K, image_size, num_samples)
    for i in keep:
        g = int(best_gt[i])
        mask_iou = -1.0
        if gt_masks is not None and pred.get("masks") is not None:
            a, b = pred["masks"][i].bool(), gt_masks[g].bool()
            union = (a | b).sum().item()
            mask_iou = (a & b).sum().item() / union if union else 0.0
        records.append(
            {
                "score": float(pred["scores"][i]),
                "label": int(pred["classes"][i]),
                "gt": g,
                "gt_label": int(gt_classes[g]),
                "box_iou": float(best_iou[i]),
                "mask_iou": mask_iou,
                "f1": f1.get(i, -1.0),
            }
        )
    return records


def _mesh_f1(pred, keep, best_gt, gt_meshes, K, image_size, num_samples) -> dict[int, float]:
    meshes = pred.get("meshes")
    if meshes is None:
        sphere = ico_sphere(4)
        meshes = [(sphere.verts_packed(), sphere.faces_packed())] * len(pred["scores"])
    out = {}
    heights = pred["boxes"][:, 3] - pred["boxes"][:, 1]
    for i in keep:
        gv, gf = gt_meshes[int(best_gt[i])]
        zc = (gv[:, 2].min() + gv[:, 2].max()) / 2.0
        dz = pred["dz"][i : i + 1].double() * heights[i : i + 1].double()
        placed = place_meshes_in_camera(
            [meshes[i]], pred["boxes"][i : i + 1], dz, zc.double(), K, image_size
        )
        gt = Meshes(verts=[gv.float()], faces=[gf])
        metrics = compare_meshes(placed, gt, num_samples=num_samples, reduce=False)
        out[i] = 0.0 if metrics is None else float(metrics[F1_KEY][0]) / 100.0
    return out


def accumulate_ap(
    per_image: Sequence[tuple[Any, list[dict[str, Any]]]],
    npos: dict[int, float],
    class_names: Sequence[str],
    iou_thresh: float = 0.5,
) -> OrderedDict[str, float]:
    """Mesh R-CNN's AP bookkeeping over images (see the module docstring).

    Args:
        per_image: (image_id, records of :func:`score_image`) per image.
        npos: ground-truth objects per category id.
        class_names: names by category id.

    Returns:
        ``box_ap@0.5``, ``mask_ap@0.5``, ``mesh_ap@0.5`` (fractions, means over categories with
        objects) and ``<task>_ap@0.5 - <category>`` for each.
    """
    tasks = {"box": "box_iou", "mask": "mask_iou", "mesh": "f1"}
    scores: dict[str, dict[int, list[float]]] = {t: defaultdict(list) for t in tasks}
    labels: dict[str, dict[int, list[int]]] = {t: defaultdict(list) for t in tasks}
    for _image_id, records in per_image:
        covered: dict[str, set] = {t: set() for t in tasks}
        for rec in sorted(records, key=lambda r: -r["score"]):
            for task, field in tasks.items():
                tp = (
                    rec["label"] == rec["gt_label"]
                    and rec[field] > iou_thresh
                    and rec["gt"] not in covered[task]
                )
                if tp:
                    covered[task].add(rec["gt"])
                scores[task][rec["label"]].append(rec["score"])
                labels[task][rec["label"]].append(int(tp))
    results: OrderedDict[str, float] = OrderedDict()
    sums = dict.fromkeys(tasks, 0.0)
    valid = 0
    for cat, name in enumerate(class_names):
        if npos.get(cat, 0) == 0:
            continue
        valid += 1
        for task in tasks:
            ap = voc_ap(
                torch.tensor(scores[task][cat], dtype=torch.float64),
                torch.tensor(labels[task][cat], dtype=torch.int64),
                npos[cat],
            )
            sums[task] += ap
            results[f"{task}_ap@{iou_thresh:.1f} - {name}"] = ap
    for task in tasks:
        results[f"{task}_ap@{iou_thresh:.1f}"] = sums[task] / valid if valid else 0.0
    return results


def format_ap_table(results: dict[str, float], class_names: Sequence[str]) -> str:
    """A text table of box / mask / mesh AP (in %) per category and their mean."""
    lines = [f"{'category':<12} {'AP^box':>8} {'AP^mask':>8} {'AP^mesh':>8}"]
    for name in [*class_names, None]:
        suffix = f" - {name}" if name is not None else ""
        key = f"box_ap@0.5{suffix}"
        if key not in results:
            continue
        vals = [100.0 * results[f"{t}_ap@0.5{suffix}"] for t in ("box", "mask", "mesh")]
        label = name if name is not None else "mean"
        lines.append(f"{label:<12} " + " ".join(f"{v:8.1f}" for v in vals))
    return "\n".join(lines)


class Pix3DEvaluator(DatasetEvaluator):
    """AP^box, AP^mask, AP^mesh of a detection dataset (``evaluator_type = "pix3d"``).

    Ground truth comes from the dataset's records (docs/DATA_FORMATS.md section 1): boxes,
    classes, mask PNGs and model-frame meshes placed with R, t. Quantities are computed per
    image in ``process`` (nothing image-sized is kept), AP in ``evaluate``.

    Args:
        dataset_name: a registered detection dataset.
        k_convention: ``"meshrcnn"`` (the model was trained with Mesh R-CNN's [f, w/2, h/2]
            K, so meshes are placed with its one-pixel-off projection) or ``"scale_K"``.
        filter_iou: box IoU a prediction needs to be scored (0.3).
        num_samples: points per surface for F1.
        output_dir: unused (kept for the evaluator signature).
    """

    logs_own_tables = True

    def __init__(
        self,
        dataset_name: str,
        k_convention: str = "meshrcnn",
        filter_iou: float = 0.3,
        num_samples: int = 10000,
        output_dir: str | None = None,
    ) -> None:
        if k_convention not in ("meshrcnn", "scale_K"):
            raise ValueError(f"k_convention must be 'meshrcnn' or 'scale_K', got {k_convention!r}")
        self._records = {r["image_id"]: r for r in DatasetCatalog.get(dataset_name)}
        self._class_names = list(MetadataCatalog.get(dataset_name).thing_classes)
        self._k_convention = k_convention
        self._filter_iou = filter_iou
        self._num_samples = num_samples
        self._mesh_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.reset()

    def reset(self) -> None:
        self._per_image: list[tuple[Any, list[dict[str, Any]]]] = []

    def _gt(self, record: dict) -> tuple:
        annos = [a for a in record.get("annotations", []) if not a.get("iscrowd", 0)]
        boxes = torch.tensor([a["bbox"] for a in annos], dtype=torch.float32).reshape(-1, 4)
        classes = torch.tensor([a["category_id"] for a in annos], dtype=torch.int64)
        masks = meshes = None
        if annos and all(a.get("segmentation") for a in annos):
            # Every non-zero pixel is object, as Mesh R-CNN's evaluator binarizes (mask > 0);
            # grey mask borders count.
            masks = torch.stack(
                [torch.from_numpy(read_mask(a["segmentation"], threshold=1)) for a in annos]
            )
        if annos and all(a.get("mesh") for a in annos):
            meshes = []
            for a in annos:
                if a["mesh"] not in self._mesh_cache:
                    self._mesh_cache[a["mesh"]] = read_mesh(a["mesh"])
                v, f = self._mesh_cache[a["mesh"]]
                R = torch.tensor(a["R"], dtype=torch.float32)
                t = torch.tensor(a["t"], dtype=torch.float32)
                meshes.append((v.float() @ R.T + t, f))
        return boxes, classes, masks, meshes, annos

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for inp, out in zip(inputs, outputs):
            record = self._records.get(inp["image_id"])
            if record is None:
                raise KeyError(f"image_id {inp['image_id']!r} is not in the evaluated dataset")
            if str(record["file_name"]).endswith(PIX3D_BAD_IMAGES):
                continue
            inst = out["instances"].to("cpu")
            pred = {
                "scores": inst.scores,
                "boxes": inst.pred_boxes.tensor,
                "classes": inst.pred_classes,
            }
            if inst.has("pred_masks"):
                pred["masks"] = inst.pred_masks.reshape(len(inst), *inst.image_size).bool()
            if inst.has("pred_meshes"):
                pred["meshes"] = list(inst.pred_meshes)
            if inst.has("pred_dz"):
                pred["dz"] = inst.pred_dz[:, 0]
            boxes, classes, masks, meshes, annos = self._gt(record)
            if not annos:
                continue
            K = torch.tensor(annos[0]["K"], dtype=torch.float64)
            if self._k_convention == "meshrcnn":
                K = K[[0, 2, 3]]
            size = (int(record["height"]), int(record["width"]))
            with torch.random.fork_rng():
                torch.manual_seed(0)
                recs = score_image(
                    pred,
                    boxes,
                    classes,
                    masks,
                    meshes,
                    K,
                    size,
                    self._filter_iou,
                    self._num_samples,
                )
            self._per_image.append((inp["image_id"], recs))

    def evaluate(self) -> dict[str, Any] | None:
        per_image = self._per_image
        if comm.get_world_size() > 1:
            comm.synchronize()
            gathered = comm.gather(per_image, dst=0)
            if not comm.is_main_process():
                return None
            per_image = [x for part in gathered for x in part]
        npos: dict[int, float] = defaultdict(float)
        for rec in self._records.values():
            if str(rec["file_name"]).endswith(PIX3D_BAD_IMAGES):
                continue
            for a in rec.get("annotations", []):
                if not a.get("iscrowd", 0):
                    npos[int(a["category_id"])] += 1.0
        results = accumulate_ap(per_image, npos, self._class_names)
        logger.info("Pix3D evaluation (AP in %%):\n%s", format_ap_table(results, self._class_names))
        return {"shape": copy.deepcopy(dict(results))}


@register_evaluator("pix3d")
def build_pix3d_evaluator(cfg, dataset_name: str, output_dir: str | None = None) -> Pix3DEvaluator:
    """``evaluator_type = "pix3d"``: a :class:`Pix3DEvaluator` (K convention from the config)."""
    return Pix3DEvaluator(dataset_name, k_convention=cfg.INPUT.K_CONVENTION, output_dir=output_dir)
