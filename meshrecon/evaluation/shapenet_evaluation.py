"""Single-object (ShapeNet-style) evaluation: Mesh R-CNN's and Pixel2Mesh's protocols.

For each (input, output) pair the prediction (``mesh`` (verts, faces), or ``points`` (P, 3))
and the ground truth (the input's ``mesh``, or its ``points`` / ``normals`` samples) are
compared on surface samples, both in the view's camera frame:

* **Mesh R-CNN** (its Table 2): both are scaled so that the ground truth's bounding box has a
  longest edge of ``gt_scale`` (10); ``num_samples`` (10k) points with normals are sampled on
  each surface; Chamfer-L2 (sum of both mean squared nearest-neighbour distances), normal and
  absolute normal consistency, and precision / recall / F1 (%) at the unsquared distance
  ``thresholds`` (0.1 .. 0.5), from :func:`compute_sampling_metrics`. Mesh R-CNN's "Normal"
  column is ``AbsNormalConsistency``.
* **Pixel2Mesh** (Mesh R-CNN's Table 1): the same samples scaled by ``p2m_scale`` (0.57);
  F1 at unsquared distances 0.01 and 0.014142, i.e. Pixel2Mesh's squared 1e-4 and 2e-4.
* **Tatarchenko et al.** (``fscore``): precision, recall and F-score (%) at ``fscore_thresholds``
  (fractions, 0.01 = 1%) of the ground truth's size, its bounding box's longest edge
  (``fscore_reference="side"``, what3d's unit cube) or diagonal; see :mod:`.protocols`.
* **Occupancy Networks** (``onet``): Chamfer-L1 in units of 1/10 of the GT box's longest edge,
  normal consistency (mean |cos|), and the volumetric IoU of the solids on an ``onet_iou_size``^3
  grid over the GT's padded bounding cube when both meshes are closed (``IoU`` is NaN for point
  clouds and open meshes; ``NumIoU`` counts the pairs that have one).

Point-cloud predictions have no normals: they get every metric but the normal ones, on their
own points. A predicted mesh without faces has no surface: it scores precision = recall =
F1 = 0 and is left out of the distance and normal means (``EmptyPredictions`` counts them).
When the output also has ``voxels`` and the input has a ground-truth grid of the same shape,
the voxel IoU is reported (3D-R2N2's rule: occupied at probability ``>= voxel_iou_thresh``).

Every metric is given as the mean over instances and the mean over categories (the mean of
the per-category means), plus a per-category table.
"""

from __future__ import annotations

import logging
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch

from meshrecon.config import configurable
from meshrecon.data.catalog import MetadataCatalog
from meshrecon.ops import sample_points_from_meshes, voxel_iou
from meshrecon.structures import Meshes
from meshrecon.utils import comm

from .evaluator import DatasetEvaluator, register_evaluator
from .protocols import (
    SurfaceDistances,
    fscore_key,
    fscore_metrics,
    is_closed,
    onet_metrics,
    reference_length,
    volumetric_iou,
)
from .shape_metrics import (
    DEFAULT_THRESHOLDS,
    metrics_from_nearest,
    nearest_neighbours,
    threshold_key,
)
from .testing import create_small_table

__all__ = ["ShapeNetEvaluator", "shapenet_pair_metrics"]

logger = logging.getLogger(__name__)

_P2M_THRESHOLDS = (0.01, 0.014142)
# A table cell whose metric does not apply (e.g. the normals of a point cloud).
NOT_APPLICABLE = "\u2014"


def _subsample(points: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` of ``points`` drawn without replacement (all of them when there are <= n)."""
    if len(points) <= n:
        return points
    return points[torch.randperm(len(points), device=points.device)[:n]]


def _surface(
    mesh: Any, num_samples: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(points, normals) (S, 3) sampled on a (verts, faces) mesh; None if it has no faces."""
    verts, faces = (torch.as_tensor(mesh[0]), torch.as_tensor(mesh[1]))
    if faces.numel() == 0 or verts.numel() == 0:
        return None
    m = Meshes(verts=[verts.to(device).float()], faces=[faces.to(device).long()])
    pts, nrm = sample_points_from_meshes(m, num_samples, return_normals=True)
    return pts[0], nrm[0]


def shapenet_pair_metrics(
    pred_points: torch.Tensor,
    pred_normals: torch.Tensor | None,
    gt_points: torch.Tensor,
    gt_normals: torch.Tensor | None,
    *,
    gt_scale: float = 10.0,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    p2m_scale: float | None = 0.57,
    p2m_thresholds: Sequence[float] = _P2M_THRESHOLDS,
    gt_extent: float | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics of one prediction under both protocols.

    Args:
        pred_points, pred_normals: (S1, 3) samples of the prediction (normals may be None).
        gt_points, gt_normals: (S2, 3) samples of the ground truth (normals may be None).
        gt_scale: the ground truth's bounding-box longest edge after rescaling (Mesh R-CNN).
        thresholds: F1 distance thresholds after that rescaling.
        p2m_scale: Pixel2Mesh protocol scale (None: skip that protocol).
        p2m_thresholds: its unsquared thresholds.
        gt_extent: longest edge of the ground truth's bounding box (Mesh R-CNN takes the
            mesh's); None: that of ``gt_points``.

    Returns:
        ``{"meshrcnn": {metric: value}, "p2m": {...}}`` (keys as :func:`compute_sampling_metrics`).
    """
    return _pair_metrics_and_distances(
        pred_points,
        pred_normals,
        gt_points,
        gt_normals,
        gt_scale=gt_scale,
        thresholds=thresholds,
        p2m_scale=p2m_scale,
        p2m_thresholds=p2m_thresholds,
        gt_extent=gt_extent,
    )[0]


def _pair_metrics_and_distances(
    pred_points: torch.Tensor,
    pred_normals: torch.Tensor | None,
    gt_points: torch.Tensor,
    gt_normals: torch.Tensor | None,
    *,
    gt_scale: float,
    thresholds: Sequence[float],
    p2m_scale: float | None,
    p2m_thresholds: Sequence[float],
    gt_extent: float | None,
) -> tuple[dict[str, dict[str, float]], SurfaceDistances]:
    """:func:`shapenet_pair_metrics` and the samples' :class:`SurfaceDistances` in their own
    units, from one nearest-neighbour search (on Mesh R-CNN's rescaled samples, as it does;
    the other protocols rescale those distances)."""
    if gt_extent is None:
        gt_extent = float((gt_points.max(dim=0).values - gt_points.min(dim=0).values).max())
    extent = float(gt_extent)
    if not extent > 0:
        raise ValueError("ground truth with a degenerate bounding box cannot be rescaled")
    scale = gt_scale / extent
    one = torch.ones(1, dtype=torch.int64, device=pred_points.device)
    len_pred, len_gt = one * len(pred_points), one * len(gt_points)
    nearest = nearest_neighbours(
        (pred_points * scale)[None],
        None if pred_normals is None else pred_normals[None],
        (gt_points * scale)[None],
        None if gt_normals is None else gt_normals[None],
        len_pred,
        len_gt,
    )
    protocols = [("meshrcnn", 1.0, thresholds)]
    if p2m_scale is not None:
        protocols.append(("p2m", float(p2m_scale) / scale, p2m_thresholds))
    out = {}
    for name, rescale, ts in protocols:
        metrics = metrics_from_nearest(nearest, ts, 1e-8, len_pred, len_gt, rescale)
        out[name] = {k: float(v[0]) for k, v in metrics.items()}
    cos_pred, cos_gt = nearest.cos_pred, nearest.cos_gt
    distances = SurfaceDistances(
        nearest.pred_to_gt2[0].sqrt() / scale,
        nearest.gt_to_pred2[0].sqrt() / scale,
        None if cos_pred is None else cos_pred[0],
        None if cos_gt is None else cos_gt[0],
    )
    return out, distances


def _empty_metrics(thresholds: Sequence[float]) -> dict[str, float]:
    out = {"Chamfer-L2": math.nan, "NormalConsistency": math.nan, "AbsNormalConsistency": math.nan}
    for t in thresholds:
        for n in ("Precision", "Recall", "F1"):
            out[threshold_key(n, t)] = 0.0
    return out


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


@register_evaluator("shapenet")
class ShapeNetEvaluator(DatasetEvaluator):
    """Mesh R-CNN's ShapeNet protocol, Pixel2Mesh's protocol and voxel IoU (module docstring).

    Needs the ground truth in the inputs: set ``INPUT.LOAD_TEST_ANNOTATIONS True``.
    """

    logs_own_tables = True

    @configurable
    def __init__(
        self,
        *,
        class_names: Sequence[str] = (),
        num_samples: int = 10000,
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        gt_scale: float = 10.0,
        p2m_protocol: bool = True,
        p2m_scale: float = 0.57,
        p2m_thresholds: Sequence[float] = _P2M_THRESHOLDS,
        voxel_iou_thresh: float = 0.4,
        seed: int = 0,
        output_dir: str | None = None,
        equal_points: int = 0,
        fscore_protocol: bool = True,
        fscore_thresholds: Sequence[float] = (0.01,),
        fscore_reference: str = "side",
        onet_protocol: bool = True,
        onet_iou_size: int = 32,
        onet_iou_padding: float = 0.1,
    ) -> None:
        """
        Args:
            class_names: ``thing_classes`` of the dataset (category_id -> name).
            num_samples: points per surface (Mesh R-CNN: 10k).
            thresholds, gt_scale: Mesh R-CNN's protocol.
            p2m_protocol, p2m_scale, p2m_thresholds: Pixel2Mesh's protocol.
            voxel_iou_thresh: occupancy threshold of predicted voxel probabilities.
            seed: seed of the surface sampling (item i uses seed + its running index).
            output_dir: where to write the per-category table (``shapenet_results.txt``).
            equal_points: > 0 adds the equal-density protocol (results ``shapenet_points``):
                prediction and GT both as this many points (a mesh sampled, a larger cloud
                randomly subsampled), otherwise as Mesh R-CNN's protocol, without normals. A
                1024-point cloud against 10k GT samples cannot reach the recall of a densely
                sampled mesh at small thresholds; this protocol compares point-set and mesh
                methods at the same density.
            fscore_protocol, fscore_thresholds, fscore_reference: Tatarchenko et al.'s
                protocol (results ``shapenet_fscore``); thresholds are fractions of the GT's
                size, its box's longest edge (``"side"``) or diagonal (``"diagonal"``).
            onet_protocol, onet_iou_size, onet_iou_padding: Occupancy Networks' protocol
                (results ``shapenet_onet``): Chamfer-L1, normal consistency, and the IoU of
                closed meshes' solids on that grid over the GT's bounding cube, enlarged by
                that fraction.
        """
        self.class_names = list(class_names)
        self.num_samples = int(num_samples)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.gt_scale = float(gt_scale)
        self.p2m_scale = float(p2m_scale) if p2m_protocol else None
        self.p2m_thresholds = tuple(float(t) for t in p2m_thresholds)
        self.voxel_iou_thresh = float(voxel_iou_thresh)
        self.seed = int(seed)
        self.output_dir = output_dir
        self.equal_points = int(equal_points)
        if self.equal_points < 0:
            raise ValueError(f"equal_points must be >= 0, got {equal_points}")
        self.fscore_thresholds = (
            tuple(float(t) for t in fscore_thresholds) if fscore_protocol else ()
        )
        if fscore_reference not in ("side", "diagonal"):
            raise ValueError(
                f"fscore_reference must be 'side' or 'diagonal', got {fscore_reference!r}"
            )
        self.fscore_reference = fscore_reference
        self.onet_protocol = bool(onet_protocol)
        self.onet_iou_size = int(onet_iou_size)
        self.onet_iou_padding = float(onet_iou_padding)
        if self.onet_iou_size < 1 or self.onet_iou_padding < 0:
            raise ValueError(
                f"onet_iou_size must be >= 1 and onet_iou_padding >= 0, got {onet_iou_size}, "
                f"{onet_iou_padding}"
            )
        self.reset()

    @classmethod
    def from_config(cls, cfg, dataset_name: str | None = None, output_dir: str | None = None):
        s = cfg.TEST.SHAPENET
        names = MetadataCatalog.get(dataset_name).get("thing_classes", []) if dataset_name else []
        return {
            "class_names": names,
            "num_samples": s.NUM_SAMPLES,
            "thresholds": s.THRESHOLDS,
            "gt_scale": s.GT_SCALE,
            "p2m_protocol": s.P2M_PROTOCOL,
            "p2m_scale": s.P2M_SCALE,
            "p2m_thresholds": s.P2M_THRESHOLDS,
            "voxel_iou_thresh": s.VOXEL_IOU_THRESH,
            "seed": s.SEED,
            "output_dir": output_dir,
            "equal_points": s.EQUAL_POINTS,
            "fscore_protocol": s.FSCORE_PROTOCOL,
            "fscore_thresholds": s.FSCORE_THRESHOLDS,
            "fscore_reference": s.FSCORE_REFERENCE,
            "onet_protocol": s.ONET_PROTOCOL,
            "onet_iou_size": s.ONET_IOU_SIZE,
            "onet_iou_padding": s.ONET_IOU_PADDING,
        }

    def reset(self) -> None:
        self._records: list[dict] = []
        self._count = 0

    def _category(self, inp: dict) -> str:
        if inp.get("category"):
            return str(inp["category"])
        cid = inp.get("category_id")
        if cid is None:
            return "all"
        return self.class_names[cid] if 0 <= cid < len(self.class_names) else str(cid)

    def _gt_surface(self, inp: dict, device: torch.device):
        if inp.get("mesh") is not None:
            surf = _surface(inp["mesh"], self.num_samples, device)
            if surf is not None:
                return surf
        if inp.get("points") is not None:
            nrm = inp.get("normals")
            return torch.as_tensor(inp["points"]).to(device).float(), (
                None if nrm is None else torch.as_tensor(nrm).to(device).float()
            )
        raise ValueError(
            f"input {inp.get('image_id')!r} has no ground-truth 'mesh' or 'points': set "
            "INPUT.LOAD_TEST_ANNOTATIONS True to evaluate"
        )

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for inp, out in zip(inputs, outputs):
            index = self._count
            self._count += 1
            rec: dict[str, Any] = {"image_id": inp.get("image_id"), "category": self._category(inp)}
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed + index)
                self._score_shape(inp, out, rec)
            pv, gv = out.get("voxels"), inp.get("voxels")
            if pv is not None and gv is not None and tuple(pv.shape) == tuple(gv.shape):
                # 3D-R2N2's rule: occupied at probability >= the threshold.
                occupied = pv[None].float().cpu() >= self.voxel_iou_thresh
                rec["IoU"] = float(voxel_iou(occupied, torch.as_tensor(gv)[None].cpu())[0])
            self._records.append(rec)

    def _score_shape(self, inp: dict, out: dict, rec: dict) -> None:
        if "mesh" not in out and "points" not in out:
            return
        device = torch.device("cpu")
        gt_pts, gt_nrm = self._gt_surface(inp, device)
        extent = None
        if inp.get("mesh") is not None and len(inp["mesh"][0]):
            v = torch.as_tensor(inp["mesh"][0]).float()
            extent = float((v.max(dim=0).values - v.min(dim=0).values).max())
        if "mesh" in out:
            pred = _surface(out["mesh"], self.num_samples, device)
        else:
            pred = (torch.as_tensor(out["points"]).detach().to(device).float(), None)
        if pred is None:
            rec["empty"] = True
            rec["meshrcnn"] = _empty_metrics(self.thresholds)
            if self.p2m_scale is not None:
                rec["p2m"] = _empty_metrics(self.p2m_thresholds)
            self._score_other_protocols(inp, out, None, gt_pts, extent, rec)
            return
        metrics, distances = _pair_metrics_and_distances(
            pred[0],
            pred[1],
            gt_pts,
            gt_nrm,
            gt_scale=self.gt_scale,
            thresholds=self.thresholds,
            p2m_scale=self.p2m_scale,
            p2m_thresholds=self.p2m_thresholds,
            gt_extent=extent,
        )
        rec.update(metrics)
        self._score_other_protocols(inp, out, distances, gt_pts, extent, rec)
        if self.equal_points:
            n = self.equal_points
            pred_n = _subsample(pred[0], n)
            if "mesh" in out:
                pred_n = _surface(out["mesh"], n, device)[0]
            gt_n = _subsample(gt_pts, n)
            if inp.get("mesh") is not None:
                surf = _surface(inp["mesh"], n, device)
                gt_n = gt_n if surf is None else surf[0]
            equal = shapenet_pair_metrics(
                pred_n,
                None,
                gt_n,
                None,
                gt_scale=self.gt_scale,
                thresholds=self.thresholds,
                p2m_scale=None,
                gt_extent=extent,
            )
            rec["points"] = equal["meshrcnn"]

    def _score_other_protocols(self, inp, out, d, gt_pts, extent, rec) -> None:
        """Tatarchenko et al.'s and Occupancy Networks' metrics from the nearest-neighbour
        distances of the same samples (``d``; None: an empty prediction)."""
        if not self.fscore_thresholds and not self.onet_protocol:
            return
        gt_ref = gt_pts
        if inp.get("mesh") is not None and len(inp["mesh"][0]):
            gt_ref = torch.as_tensor(inp["mesh"][0]).float()
        if self.fscore_thresholds:
            length = reference_length(gt_ref, self.fscore_reference)
            rec["fscore"] = fscore_metrics(d, length, self.fscore_thresholds)
        if self.onet_protocol:
            gt_extent = extent if extent is not None else reference_length(gt_ref, "side")
            rec["onet"] = onet_metrics(d, gt_extent)
            iou = None
            if "mesh" in out and inp.get("mesh") is not None:
                pv, pf = (torch.as_tensor(x) for x in out["mesh"])
                gv, gf = (torch.as_tensor(x) for x in inp["mesh"])
                # An empty prediction has no volume in common with a closed GT.
                iou = 0.0 if pf.numel() == 0 and is_closed(torch.as_tensor(gf)) else None
                if pf.numel():
                    iou = volumetric_iou(
                        pv.detach().float().cpu(),
                        pf.cpu(),
                        gv.float().cpu(),
                        gf.cpu(),
                        self.onet_iou_size,
                        self.onet_iou_padding,
                    )
            rec["onet"]["IoU"] = math.nan if iou is None else float(iou)

    # ------------------------------------------------------------------ results
    @staticmethod
    def _means(records: list[dict], protocol: str) -> tuple[dict, dict, dict]:
        """(instance means, category means, {category: means}) of one protocol."""
        by_cat: dict[str, list[dict]] = defaultdict(list)
        for r in records:
            if protocol in r:
                by_cat[r["category"]].append(r[protocol])
        if not by_cat:
            return {}, {}, {}
        keys = list(next(iter(by_cat.values()))[0])
        every = [m for ms in by_cat.values() for m in ms]
        inst = {k: _nanmean([m.get(k, math.nan) for m in every]) for k in keys}
        per_cat = {
            c: {k: _nanmean([m.get(k, math.nan) for m in ms]) for k in keys}
            for c, ms in sorted(by_cat.items())
        }
        cat_mean = {k: _nanmean([pc[k] for pc in per_cat.values()]) for k in keys}
        return inst, cat_mean, per_cat

    def evaluate(self) -> dict[str, Any] | None:
        records = self._records
        if comm.get_world_size() > 1:
            gathered = comm.gather(records, dst=0)
            if not comm.is_main_process():
                return None
            records = [r for part in gathered for r in part]
        if not records:
            logger.warning("ShapeNetEvaluator received no predictions")
            return {}
        results: dict[str, Any] = {}
        counts: dict[str, int] = defaultdict(int)
        for r in records:
            counts[r["category"]] += 1
        tables = []
        for protocol, task in (
            ("meshrcnn", "shapenet"),
            ("p2m", "shapenet_p2m"),
            ("fscore", "shapenet_fscore"),
            ("onet", "shapenet_onet"),
            ("points", "shapenet_points"),
        ):
            inst, cat_mean, per_cat = self._means(records, protocol)
            if not inst:
                continue
            inst["num_instances"] = float(sum(1 for r in records if protocol in r))
            inst["EmptyPredictions"] = float(sum(1 for r in records if r.get("empty")))
            if protocol == "onet":
                inst["NumIoU"] = float(
                    sum(1 for r in records if protocol in r and math.isfinite(r[protocol]["IoU"]))
                )
            results[task] = inst
            results[f"{task}_category_mean"] = cat_mean
            results[f"{task}_per_category"] = {
                f"{c}/{k}": v for c, ms in per_cat.items() for k, v in ms.items()
            }
            tables.append(self._table(protocol, inst, cat_mean, per_cat, counts))
        ious = [r for r in records if "IoU" in r]
        if ious:
            by_cat: dict[str, list[float]] = defaultdict(list)
            for r in ious:
                by_cat[r["category"]].append(r["IoU"])
            results["voxels"] = {
                "IoU": sum(r["IoU"] for r in ious) / len(ious),
                "IoU_category_mean": _nanmean([sum(v) / len(v) for v in by_cat.values()]),
            }
            results["voxels_per_category"] = {
                f"{c}/IoU": sum(v) / len(v) for c, v in sorted(by_cat.items())
            }
            tables.append(
                f"Voxel IoU (occupied at p >= {self.voxel_iou_thresh:.2f})\n"
                + create_small_table(
                    [[c, len(v), 100 * sum(v) / len(v)] for c, v in sorted(by_cat.items())]
                    + [["instance mean", len(ious), 100 * results["voxels"]["IoU"]]],
                    headers=["category", "#", "IoU (%)"],
                )
            )
        text = "\n\n".join(tables)
        logger.info("ShapeNet evaluation:\n%s", text)
        if self.output_dir:
            os.makedirs(self.output_dir, exist_ok=True)
            with open(os.path.join(self.output_dir, "shapenet_results.txt"), "w") as f:
                f.write(text + "\n")
        return results

    def _table(self, protocol, inst, cat_mean, per_cat, counts) -> str:
        if protocol in ("fscore", "onet"):
            if protocol == "fscore":
                size = "longest edge" if self.fscore_reference == "side" else "diagonal"
                title = (
                    "Tatarchenko et al.'s protocol: precision / recall / F-score in % at "
                    + ", ".join(f"{100 * t:g}%" for t in self.fscore_thresholds)
                    + f" of the GT bounding box's {size}"
                )
                cols, heads = [], []
                for t in self.fscore_thresholds:
                    for name, short in (("F-score", "F"), ("Precision", "P"), ("Recall", "R")):
                        cols.append(fscore_key(name, t))
                        heads.append(fscore_key(short, t))
            else:
                title = (
                    "Occupancy Networks' protocol: Chamfer-L1 in units of 1/10 of the GT box's "
                    "longest edge; Normal = mean |cos|; IoU of closed meshes' solids on a "
                    f"{self.onet_iou_size}^3 grid over the GT's bounding cube + "
                    f"{100 * self.onet_iou_padding:g}%"
                )
                cols = ["Chamfer-L1", "NormalConsistency", "IoU"]
                heads = ["Chamfer-L1", "Normal", f"IoU {self.onet_iou_size}^3"]
            heads = ["category", "#", *heads]
        elif protocol == "meshrcnn":
            ts = [t for t in self.thresholds if t in (0.1, 0.3, 0.5)] or list(self.thresholds)
            title = (
                "Mesh R-CNN protocol: pairs scaled so the GT box's longest edge is "
                f"{self.gt_scale:g}; {self.num_samples} samples per surface. Chamfer-L2 in "
                "squared units of that scale (lower is better); Normal = mean |cos| (0..1); "
                "F1 in % at unsquared distance thresholds"
            )
        elif protocol == "points":
            ts = [t for t in self.thresholds if t in (0.1, 0.3, 0.5)] or list(self.thresholds)
            title = (
                f"Equal-density protocol: prediction and GT as {self.equal_points} points each, "
                f"scaled as Mesh R-CNN's (GT longest edge {self.gt_scale:g}); no normals"
            )
        else:
            ts = list(self.p2m_thresholds)
            title = (
                f"Pixel2Mesh protocol: both scaled by {self.p2m_scale:g}. Chamfer-L2 in squared "
                "units (x1000 is Pixel2Mesh's CD); F1 in % at unsquared thresholds "
                + ", ".join(f"{t:g} (squared {t * t:.0e})" for t in ts)
            )
        if protocol not in ("fscore", "onet"):
            cols = ["Chamfer-L2", "AbsNormalConsistency"] + [threshold_key("F1", t) for t in ts]
            heads = ["category", "#", "Chamfer", "Normal"] + [f"F1@{t:g}" for t in ts]

        def row(name, n, m):
            # NaN means no value: the normals of a point cloud (predicted, or the
            # equal-density protocol's samples), or a mean over no non-empty prediction.
            values = [m.get(c, math.nan) for c in cols]
            return [name, n] + [NOT_APPLICABLE if math.isnan(v) else v for v in values]

        rows = [row(c, counts[c], m) for c, m in per_cat.items()]
        rows.append(row("category mean", len(per_cat), cat_mean))
        rows.append(row("instance mean", int(inst["num_instances"]), inst))
        return title + "\n" + create_small_table(rows, headers=heads)
