"""Multi-view voxel evaluation (3D-R2N2's protocol), plus mesh metrics of the cubified voxels.

For every object and every view count k = 1 .. ``max_views`` the evaluator reads the model's
prediction from the first k views (``outputs[i]["by_num_views"][k - 1]["voxels"]``, or the
single ``voxels`` for k = V when the model gives no prefixes) and scores:

* voxel IoU with R2N2's rule, a voxel is occupied when its probability is ``>= iou_thresh``
  (0.4), against the ground-truth grid ``inputs[i]["voxels"]``;
* the ShapeNet mesh metrics of the mesh that :func:`~meshrecon.ops.cubify` makes of the
  thresholded grid, placed in the model frame by the grid's box (``inputs[i]["voxel_box"]`` and
  ``["voxel_align"]``, which the multi-view mapper reads with the grid), or of the prediction's
  own model-frame ``mesh`` when it gives one (the recognition baselines answer with a training
  mesh), against the ground-truth surface samples ``inputs[i]["points"]`` / ``["normals"]``.
  They are computed by one :class:`~meshrecon.evaluation.shapenet_evaluation.ShapeNetEvaluator`
  per view count, so the protocol (Mesh R-CNN's: ground truth scaled to a longest box edge of
  10; and Pixel2Mesh's), the keys and the handling of empty predictions (precision = recall =
  F1 = 0, left out of Chamfer / normal consistency, counted in ``EmptyPredictions``) are the
  single-view table's.

Registered as evaluator type ``"r2n2"`` (what the multi-view heads but OptimizeMVS declare as
their ``evaluator_type``) and as the default of datasets whose metadata has
``evaluator_type = "multiview"``.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from meshrecon.config import configurable
from meshrecon.data import DatasetCatalog, MetadataCatalog
from meshrecon.io.voxels_io import VOXEL_EXTENSIONS, load_voxels
from meshrecon.ops import voxel_iou
from meshrecon.structures import Meshes, Voxels
from meshrecon.utils import comm

from .evaluator import DatasetEvaluator, register_evaluator
from .shapenet_evaluation import ShapeNetEvaluator
from .testing import create_small_table

__all__ = [
    "R2N2Evaluator",
    "occupancy_to_mesh",
    "read_voxel_box",
    "voxel_boxes_from_dataset",
]

logger = logging.getLogger(__name__)

# Box of a grid whose file gives none: ShapeNet models are normalized into the unit cube.
_DEFAULT_BOX = (torch.tensor([[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]]), "corner")


def read_voxel_box(path: str) -> tuple[torch.Tensor, str]:
    """Return the model-frame box (2, 3) that a voxel file's grid tiles, and its ``align``.

    ``.npz`` (synthetic): its ``bounds`` and ``align`` (default "corner"); ``.binvox``:
    ``[translate, translate + scale]``, "corner". Other formats: the unit cube around the origin.
    """
    if os.path.splitext(str(path))[1].lower() not in VOXEL_EXTENSIONS:
        return _DEFAULT_BOX
    voxels = load_voxels(path)
    return voxels.boxes()[0], voxels.align


def voxel_boxes_from_dataset(dataset_name: str) -> dict[str, str]:
    """Map each model of a ShapeNet-style dataset to its voxel file, keyed as the multi-view
    mapper names items (``"<synset_id>/<model_id>"``)."""
    # The multi-view mapper now gives each item's box with its grid (voxel_box); this look-up
    # serves R2N2Evaluator(voxel_paths=...) for inputs mapped without one.
    paths: dict[str, str] = {}
    for record in DatasetCatalog.get(dataset_name):
        voxel = record.get("voxel") or (record.get("views") or [{}])[0].get("voxel")
        if voxel and "synset_id" in record and "model_id" in record:
            paths.setdefault(f"{record['synset_id']}/{record['model_id']}", voxel)
    return paths


def occupancy_to_mesh(
    probs: torch.Tensor, thresh: float, box: torch.Tensor, align: str = "corner"
) -> Meshes:
    """Cubify one grid of occupancy probabilities (D, H, W) ``[z, y, x]`` at ``>= thresh`` and
    place the mesh in ``box`` (2, 3) ``[min_xyz, max_xyz]`` as :mod:`meshrecon.ops.voxels`
    places voxels (same ``align``). Returns a one-mesh :class:`Meshes` (empty when no voxel is
    occupied)."""
    if probs.dim() != 3:
        raise ValueError(f"probs must be (D, H, W), got {tuple(probs.shape)}")
    box = torch.as_tensor(box)
    if box.shape != (2, 3):
        raise ValueError(f"box must be (2, 3), got {tuple(box.shape)}")
    return Voxels([probs.float()], box.to(probs.device), align).cubify(thresh)


class R2N2Evaluator(DatasetEvaluator):
    """Voxel IoU and cubified-mesh metrics for view counts 1 .. ``max_views``.

    Results: ``{"voxel": {"IoU@k": mean over objects, "mIoU@k": mean over categories,
    "IoU@k-<category>": ..., "gain@k" / "gain_se@k": the mean over objects of IoU@k − IoU@1 of
    the same object and its standard error, "step@k" / "step_se@k": the same of IoU@k −
    IoU@(k−1)}}`` (the paired differences, for k ≥ 2 over the objects seen in at least k
    views, with at least two such objects; they say whether more views help beyond the spread
    between objects) plus, per view count k, the tasks of a
    :class:`ShapeNetEvaluator` with ``shapenet`` renamed ``mesh`` and ``@k`` appended
    (``"mesh@k"``: Chamfer-L2, NormalConsistency, AbsNormalConsistency, Precision / Recall / F1
    at each threshold, EmptyPredictions, ...; ``"mesh_category_mean@k"``, ``"mesh_p2m@k"``, ...).

    Args:
        iou_thresh: occupied when probability ``>= iou_thresh`` (R2N2: 0.4); also cubifies.
        max_views: largest view count scored.
        class_names: names of the ``category_id`` values (metadata ``thing_classes``).
        voxel_paths: item ``image_id`` -> voxel file, whose box places the cubified mesh of
            an item whose inputs carry no ``voxel_box``; items with neither use the unit cube
            around the origin.
        mesh_samples: points sampled on each surface; 0 disables the mesh metrics.
        mesh_evaluator_args: further arguments of the per-view-count
            :class:`ShapeNetEvaluator` (thresholds, gt_scale, p2m_protocol, seed, ...).
    """

    logs_own_tables = True

    @configurable
    def __init__(
        self,
        *,
        iou_thresh: float = 0.4,
        max_views: int = 5,
        class_names: Sequence[str] | None = None,
        voxel_paths: dict[str, str] | None = None,
        mesh_samples: int = 10000,
        mesh_evaluator_args: dict[str, Any] | None = None,
    ) -> None:
        if not 0.0 < iou_thresh < 1.0:
            raise ValueError(f"iou_thresh must be in (0, 1), got {iou_thresh}")
        if max_views < 1:
            raise ValueError(f"max_views must be >= 1, got {max_views}")
        self.iou_thresh, self.max_views = float(iou_thresh), int(max_views)
        self.class_names = list(class_names) if class_names is not None else None
        self.voxel_paths = dict(voxel_paths or {})
        self.mesh_samples = int(mesh_samples)
        self._mesh_evaluators: dict[int, ShapeNetEvaluator] = {}
        if self.mesh_samples > 0:
            args = {**(mesh_evaluator_args or {}), "num_samples": self.mesh_samples}
            args.update(class_names=self.class_names or (), output_dir=None)
            self._mesh_evaluators = {
                k: ShapeNetEvaluator(**args) for k in range(1, self.max_views + 1)
            }
        self._boxes: dict[str, tuple[torch.Tensor, str]] = {}
        self._missing_box = False
        self.reset()

    @classmethod
    def from_config(cls, cfg, dataset_name: str | None = None) -> dict[str, Any]:
        mesh_args = ShapeNetEvaluator.from_config(cfg, dataset_name)
        for key in ("class_names", "num_samples", "output_dir"):
            mesh_args.pop(key, None)
        args: dict[str, Any] = {
            "iou_thresh": cfg.TEST.R2N2.IOU_THRESH,
            "max_views": cfg.INPUT.MULTIVIEW.NUM_VIEWS,
            "mesh_samples": cfg.TEST.R2N2.MESH_SAMPLES,
            "mesh_evaluator_args": mesh_args,
        }
        if dataset_name is not None:
            args["class_names"] = MetadataCatalog.get(dataset_name).get("thing_classes")
        return args

    def reset(self) -> None:
        self._rows: list[dict[str, Any]] = []
        self._per_object: list[list[float]] = []
        for ev in self._mesh_evaluators.values():
            ev.reset()

    def _box(self, x: dict) -> tuple[torch.Tensor, str]:
        if "voxel_box" in x:
            return torch.as_tensor(x["voxel_box"]).cpu(), str(x.get("voxel_align", "corner"))
        image_id = x.get("image_id")
        path = self.voxel_paths.get(str(image_id))
        if path is None:
            if not self._missing_box:
                logger.warning(
                    "no voxel box (inputs' voxel_box) or voxel file known for %s: cubified "
                    "meshes use the unit cube around the origin",
                    image_id,
                )
                self._missing_box = True
            return _DEFAULT_BOX
        if path not in self._boxes:
            self._boxes[path] = read_voxel_box(path)
        return self._boxes[path]

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for x, out in zip(inputs, outputs):
            if "voxels" not in x:
                raise ValueError(
                    f"item {x.get('image_id')!r} has no ground-truth 'voxels': map the test set "
                    "with annotations (INPUT.LOAD_TEST_ANNOTATIONS True)"
                )
            gt = x["voxels"].cpu()
            preds = out.get("by_num_views") or [out]
            first = 1 if "by_num_views" in out else len(x["images"]) if "images" in x else 1
            gt_surface = {k: x[k] for k in ("points", "normals", "category_id") if k in x}
            gt_surface["image_id"] = x.get("image_id")
            ious: list[float] = []
            for k, pred in enumerate(preds, start=first):
                if k > self.max_views:
                    break
                probs = pred["voxels"].detach().float().cpu()
                if probs.shape != gt.shape:
                    raise ValueError(
                        f"item {x.get('image_id')!r}: predicted voxels {tuple(probs.shape)} vs "
                        f"ground truth {tuple(gt.shape)}"
                    )
                occupied = probs >= self.iou_thresh
                ious.append(float(voxel_iou(occupied[None], gt[None])[0]))
                self._rows.append(
                    {"category_id": x.get("category_id"), "num_views": k, "IoU": ious[-1]}
                )
                if self._mesh_evaluators and "points" in x:
                    if pred.get("mesh") is not None:
                        # A method that gives a model-frame mesh is scored on its mesh.
                        pred_mesh = {"mesh": pred["mesh"]}
                    else:
                        box, align = self._box(x)
                        mesh = occupancy_to_mesh(occupied.float(), 0.5, box, align)
                        pred_mesh = {"mesh": (mesh.verts_list()[0], mesh.faces_list()[0])}
                    self._mesh_evaluators[k].process([gt_surface], [pred_mesh])
            if first == 1 and len(ious) > 1:
                # IoU after 1, 2, ... views of one object: the paired gains of evaluate().
                self._per_object.append(ious)

    def _category(self, cid: Any) -> str:
        if cid is None:
            return "unknown"
        if self.class_names is not None and 0 <= int(cid) < len(self.class_names):
            return self.class_names[int(cid)]
        return str(cid)

    def evaluate(self) -> dict[str, Any] | None:
        rows = [r for part in comm.gather(self._rows) for r in part]
        per_object = [r for part in comm.gather(self._per_object) for r in part]
        mesh_results = {k: ev.evaluate() for k, ev in self._mesh_evaluators.items()}
        if not comm.is_main_process():
            return None
        if not rows:
            logger.warning("R2N2Evaluator got no predictions")
            return {}
        by_k: dict[int, list[dict]] = defaultdict(list)
        for r in rows:
            by_k[r["num_views"]].append(r)
        voxel: dict[str, float] = {}
        results: dict[str, Any] = {"voxel": voxel}
        for k in sorted(by_k):
            group = by_k[k]
            voxel[f"IoU@{k}"] = float(np.mean([r["IoU"] for r in group]))
            per_cat: dict[str, list[float]] = defaultdict(list)
            for r in group:
                per_cat[self._category(r["category_id"])].append(r["IoU"])
            voxel[f"mIoU@{k}"] = float(np.mean([np.mean(v) for v in per_cat.values()]))
            for name in sorted(per_cat):
                voxel[f"IoU@{k}-{name}"] = float(np.mean(per_cat[name]))
            voxel.update(_paired_gains(per_object, k))

        def gain(name: str, k: int) -> str:
            if f"{name}@{k}" not in voxel:
                return ""
            return f"{100 * voxel[f'{name}@{k}']:+.2f} ± {100 * voxel[f'{name}_se@{k}']:.2f}"

        logger.info(
            "R2N2 evaluation, voxel IoU by number of views (%%; gains paired over the objects, "
            "± their standard error):\n%s",
            create_small_table(
                [
                    [k, len(by_k[k]), 100 * voxel[f"IoU@{k}"], 100 * voxel[f"mIoU@{k}"]]
                    + [gain("gain", k), gain("step", k)]
                    for k in sorted(by_k)
                ],
                headers=["views", "#", "IoU", "category mean IoU", "vs 1 view", "vs k-1 views"],
            ),
        )
        for k, res in mesh_results.items():
            for task, metrics in (res or {}).items():
                if task.startswith("shapenet"):
                    results[task.replace("shapenet", "mesh", 1) + f"@{k}"] = metrics
        return results


def _paired_gains(per_object: Sequence[Sequence[float]], k: int) -> dict[str, float]:
    """``gain@k`` / ``gain_se@k`` (IoU after k views minus after 1, mean over the objects and
    its standard error) and ``step@k`` / ``step_se@k`` (k minus k−1 views), over the objects
    with at least k views; {} for k < 2 or fewer than two such objects."""
    seen = np.array([r[:k] for r in per_object if len(r) >= k], dtype=np.float64)
    if k < 2 or len(seen) < 2:
        return {}
    out: dict[str, float] = {}
    for name, base in (("gain", 0), ("step", k - 2)):
        diff = seen[:, k - 1] - seen[:, base]
        out[f"{name}@{k}"] = float(diff.mean())
        out[f"{name}_se@{k}"] = float(diff.std(ddof=1) / np.sqrt(len(diff)))
    return out


@register_evaluator("r2n2")
def build_r2n2_evaluator(cfg, dataset_name: str, output_dir: str | None = None) -> R2N2Evaluator:
    """Builder of the ``"r2n2"`` evaluator type: an :class:`R2N2Evaluator` (voxel IoU per view
    count). Also the default of ``"multiview"`` datasets; a head scored otherwise declares its
    own ``evaluator_type`` (OptimizeMVS: ``"optimize_mvs"``), which the engine passes on."""
    return R2N2Evaluator(cfg, dataset_name)


register_evaluator("multiview", build_r2n2_evaluator)
