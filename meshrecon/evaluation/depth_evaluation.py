"""Depth metrics (Eigen et al.'s set) and ``DepthEvaluator`` for ``evaluator_type = "depth"``.

Per image, following the record's ``protocol`` (docs/DATA_FORMATS.md, depth records):

1. the prediction is resized (bilinearly) to the ground truth's size;
2. valid pixels: ``min_depth < gt < max_depth``, finite, inside the protocol's crop
   (:func:`meshrecon.data.depth_io.crop_mask`: NYU's Eigen crop, KITTI's Garg crop, none);
3. optionally (``TEST.DEPTH.MEDIAN_SCALING``; monocular KITTI) the prediction is multiplied by
   ``median(gt) / median(pred)`` over the valid pixels;
4. the prediction is clipped to ``[min_depth, max_depth]``;
5. the metrics of :func:`compute_depth_errors` are computed over the valid pixels.

The dataset's numbers are the means of the per-image metrics (as monodepth2's and BTS's
evaluation scripts compute them). Which ground truth was used (``protocol["gt"]``: filled,
raw, velodyne, rendered) is printed above the table and returned with the results.
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from meshrecon.data.depth_io import crop_mask
from meshrecon.evaluation.evaluator import DatasetEvaluator, register_evaluator
from meshrecon.evaluation.testing import create_small_table
from meshrecon.utils import comm

__all__ = [
    "DEPTH_METRICS",
    "DepthEvaluator",
    "compute_depth_errors",
    "prepare_depth_pair",
]

logger = logging.getLogger(__name__)

# Metric names in the order of the paper's tables (higher is better for the deltas only).
DEPTH_METRICS = ("delta1", "delta2", "delta3", "AbsRel", "SqRel", "RMSE", "RMSElog", "SIlog")


def compute_depth_errors(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Return the depth metrics of matched valid pixels.

    Args:
        pred: (P,) predicted depths, metres, all > 0.
        gt: (P,) ground-truth depths, metres, all > 0.

    Returns:
        ``delta1..3``: fraction of pixels with ``max(pred/gt, gt/pred) < 1.25 ** k``;
        ``AbsRel`` = mean |pred - gt| / gt; ``SqRel`` = mean (pred - gt)^2 / gt;
        ``RMSE`` = sqrt mean (pred - gt)^2; ``RMSElog`` = sqrt mean (log pred - log gt)^2;
        ``SIlog`` = sqrt(mean d^2 - (mean d)^2) with d = log pred - log gt (the square root of
        the scale-invariant error at lambda = 1).
    """
    pred = np.asarray(pred, dtype=np.float64).ravel()
    gt = np.asarray(gt, dtype=np.float64).ravel()
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must have the same size")
    if pred.size == 0:
        raise ValueError("no valid pixels to compute depth errors on")
    if np.any(~(pred > 0)) or np.any(~(gt > 0)):
        raise ValueError("pred and gt must be positive (and finite) at every pixel given")
    ratio = np.maximum(pred / gt, gt / pred)
    diff = pred - gt
    d = np.log(pred) - np.log(gt)
    return {
        "delta1": float(np.mean(ratio < 1.25)),
        "delta2": float(np.mean(ratio < 1.25**2)),
        "delta3": float(np.mean(ratio < 1.25**3)),
        "AbsRel": float(np.mean(np.abs(diff) / gt)),
        "SqRel": float(np.mean(diff**2 / gt)),
        "RMSE": float(np.sqrt(np.mean(diff**2))),
        "RMSElog": float(np.sqrt(np.mean(d**2))),
        "SIlog": float(np.sqrt(max(np.mean(d**2) - np.mean(d) ** 2, 0.0))),
    }


def prepare_depth_pair(
    pred: torch.Tensor | np.ndarray,
    gt: torch.Tensor | np.ndarray,
    protocol: Mapping[str, Any] | None,
    median_scaling: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Apply a protocol to one image: resize, mask, (median-scale), clip.

    Args:
        pred: (h, w) predicted depth, metres (any size; resized to the GT's bilinearly).
        gt: (H, W) ground truth, metres, 0 = invalid.
        protocol: ``{"name", "crop", "min_depth", "max_depth", "gt"}``; None: no crop, depths
            in (1e-3, 80).
        median_scaling: scale the prediction by ``median(gt) / median(pred)`` first.

    Returns:
        ``(pred_valid (P,), gt_valid (P,), info)``, ``info`` with the ``scale`` applied and
        ``num_valid`` pixels.
    """
    protocol = dict(protocol or {})
    min_depth = float(protocol.get("min_depth", 1e-3))
    max_depth = float(protocol.get("max_depth", 80.0))
    if not 0 <= min_depth < max_depth:
        raise ValueError(f"protocol {protocol.get('name')!r}: min_depth {min_depth} >= max_depth")
    g = gt.detach().cpu().double() if isinstance(gt, torch.Tensor) else torch.as_tensor(gt)
    p = pred.detach().cpu().double() if isinstance(pred, torch.Tensor) else torch.as_tensor(pred)
    g, p = g.double(), p.double()
    if g.dim() != 2 or p.dim() != 2:
        raise ValueError(f"pred {tuple(p.shape)} and gt {tuple(g.shape)} must both be (H, W)")
    H, W = g.shape
    if tuple(p.shape) != (H, W):
        p = F.interpolate(p[None, None], size=(H, W), mode="bilinear", align_corners=False)[0, 0]
    g_np, p_np = g.numpy(), p.numpy()
    mask = np.isfinite(g_np) & (g_np > min_depth) & (g_np < max_depth)
    mask &= crop_mask(protocol, H, W)
    mask &= np.isfinite(p_np)
    gv, pv = g_np[mask], p_np[mask]
    scale = 1.0
    if median_scaling and gv.size:
        med = float(np.median(pv))
        scale = float(np.median(gv)) / med if med > 0 else 1.0
        pv = pv * scale
    pv = np.clip(pv, min_depth, max_depth)
    return pv, gv, {"scale": scale, "num_valid": int(gv.size)}


class DepthEvaluator(DatasetEvaluator):
    """Eigen et al.'s depth metrics over a dataset, per protocol, for each predicted map.

    Args:
        dataset_name: for logs and file names.
        output_dir: where ``depth_metrics.json`` and the pictures go (None: nowhere).
        median_scaling: median-scale predictions per image (monocular KITTI protocols).
        num_vis: write pictures and PLYs (:mod:`meshrecon.utils.depth_vis`) of the first
            ``num_vis`` images into ``output_dir/vis``.
        image_format: channel order of the inputs' ``image`` (for the pictures).
        prediction_keys: output keys to evaluate, each as its own task (those present):
            ``depth`` (the final prediction) and ``depth_coarse`` (the coarse network's).

    ``evaluate()`` returns ``{key: {metric: value}}``; the protocol, the ground truth used and
    the image count are logged above the table and written to ``depth_metrics.json``.
    """

    logs_own_tables = True

    def __init__(
        self,
        dataset_name: str,
        output_dir: str | None = None,
        *,
        median_scaling: bool = False,
        num_vis: int = 0,
        image_format: str = "RGB",
        prediction_keys: tuple[str, ...] = ("depth", "depth_coarse"),
    ) -> None:
        self.dataset_name = dataset_name
        self.output_dir = output_dir
        self.median_scaling = bool(median_scaling)
        self.num_vis = int(num_vis)
        self.image_format = image_format
        self.prediction_keys = tuple(prediction_keys)
        self.reset()

    def reset(self) -> None:
        self._per_image: list[dict[str, Any]] = []
        self._num_vis_done = 0

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for item, out in zip(inputs, outputs):
            gt = item.get("depth")
            if gt is None:
                raise KeyError(
                    f"{self.dataset_name}: input {item.get('image_id')!r} has no 'depth'; build "
                    "the test loader with a DepthMapper that keeps annotations"
                )
            protocol = item.get("protocol") or {}
            entry: dict[str, Any] = {
                "image_id": item.get("image_id"),
                "protocol": _describe_protocol(protocol),
            }
            for key in self.prediction_keys:
                if key not in out:
                    continue
                pv, gv, info = prepare_depth_pair(out[key], gt, protocol, self.median_scaling)
                if info["num_valid"] == 0:
                    logger.warning(
                        "%s: image %s has no valid GT pixel",
                        self.dataset_name,
                        item.get("image_id"),
                    )
                    continue
                entry[key] = compute_depth_errors(pv, gv)
            self._per_image.append(entry)
            if self.output_dir and self._num_vis_done < self.num_vis and "depth" in out:
                self._visualize(item, out["depth"], gt)
                self._num_vis_done += 1

    def _visualize(self, item: dict, pred: torch.Tensor, gt: torch.Tensor) -> None:
        from meshrecon.utils.depth_vis import (
            image_to_rgb_uint8,
            save_depth_visualization,
            scale_intrinsics,
        )

        image = item["image"]
        rgb = image_to_rgb_uint8(image, self.image_format)
        H, W = gt.shape[-2:]
        if tuple(pred.shape) != (H, W):
            pred = F.interpolate(pred[None, None].float(), size=(H, W), mode="bilinear")[0, 0]
        K = scale_intrinsics(item["K"], tuple(image.shape[-2:]), (H, W))
        vmax = (item.get("protocol") or {}).get("max_depth")
        gt_shown = gt.detach().float().cpu().clone()
        if vmax is not None:  # beyond the protocol's cap is not ground truth
            gt_shown[gt_shown >= float(vmax)] = 0
        save_depth_visualization(
            os.path.join(self.output_dir, "vis"),
            _safe_name(item.get("image_id")),
            rgb,
            pred.detach().cpu(),
            K,
            gt_shown,
        )

    def evaluate(self) -> dict[str, Any] | None:
        per_image = comm.gather(self._per_image, dst=0)
        if not comm.is_main_process():
            return None
        entries = [e for part in per_image for e in part]
        if not entries:
            logger.warning("%s: no image was evaluated", self.dataset_name)
            return {}
        protocols = sorted({e["protocol"] for e in entries})
        results: OrderedDict[str, dict[str, float]] = OrderedDict()
        counts: dict[str, int] = {}
        for key in self.prediction_keys:
            rows = [e[key] for e in entries if key in e]
            if not rows:
                continue
            results[key] = {m: float(np.mean([r[m] for r in rows])) for m in DEPTH_METRICS}
            counts[key] = len(rows)
        scaling = "median scaling" if self.median_scaling else "no scaling"
        header = (
            f"Depth metrics on {self.dataset_name} ({scaling}; mean over images; "
            f"{'; '.join(protocols)})"
        )
        table_rows = [[k, counts[k], *(v[m] for m in DEPTH_METRICS)] for k, v in results.items()]
        table = create_small_table(table_rows, headers=["prediction", "images", *DEPTH_METRICS])
        logger.info("%s:\n%s", header, table)
        self.summary = f"{header}\n{table}"
        if self.output_dir:
            os.makedirs(self.output_dir, exist_ok=True)
            with open(os.path.join(self.output_dir, "depth_metrics.json"), "w") as f:
                payload = {
                    "dataset": self.dataset_name,
                    "protocols": protocols,
                    "median_scaling": self.median_scaling,
                    "num_images": counts,
                    "results": results,
                }
                json.dump(payload, f, indent=2)
        return dict(results)


def _describe_protocol(protocol: Mapping[str, Any]) -> str:
    """One line naming a protocol, its ground truth, crop and depth caps."""
    crop = protocol.get("crop")
    crop_txt = "none" if crop is None else "[" + ", ".join(f"{c:g}" for c in crop) + "]"
    lo, hi = protocol.get("min_depth", 1e-3), protocol.get("max_depth", 80.0)
    return (
        f"protocol {protocol.get('name', '?')}: GT {protocol.get('gt', '?')}, crop {crop_txt}, "
        f"valid {lo:g} < gt < {hi:g} m, predictions clipped to [{lo:g}, {hi:g}]"
    )


def _safe_name(image_id: Any) -> str:
    text = str(image_id)
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text) or "image"


@register_evaluator("depth")
def build_depth_evaluator(cfg, dataset_name: str, output_dir: str | None = None) -> DepthEvaluator:
    """``evaluator_type = "depth"``: a :class:`DepthEvaluator` configured by ``TEST.DEPTH``."""
    node = cfg.TEST.get("DEPTH", None)
    return DepthEvaluator(
        dataset_name,
        output_dir,
        median_scaling=bool(node.MEDIAN_SCALING) if node is not None else False,
        num_vis=int(node.NUM_VIS) if node is not None else 0,
        image_format=cfg.INPUT.FORMAT,
    )
