"""OptimizeMVS evaluation: single-view, best-of-N and multi-view predictions, one metric set.

The head (:class:`~meshrecon.modeling.heads.optimize_mvs.OptimizeMVSHead`) returns, per
object with V views, world-frame clouds; this evaluator scores them with the points-based
metrics of :class:`ShapeNetEvaluator` (Mesh R-CNN's protocol: each pair scaled so the ground
truth's box has a longest edge of 10, Chamfer-L2, F1 at 0.1 .. 0.5), in the camera frame of
every view of the object in turn, exactly as single-view PSGN is scored on each view:

* ``single`` (a): one view, one random r: each view's cloud for the first candidate draw;
* ``oracle`` (b): one view, the best of the C candidate draws against the ground truth (an
  upper bound of what choosing r can give; it looks at the answer);
* ``multiview`` (c): the union of the V views' clouds after the consistency refinement (as
  the head returns it), and ``multiview_fps<N>`` the same thinned to N points by farthest-point
  sampling (a point budget equal to the single-view one);
* ``multiview_random`` / ``multiview_selected`` (ablations): the union of the first candidate
  draw (no selection, no refinement) and of the most consistent draw before refinement;
* ``multiview@k``: the refined union of the first k views, when the head returns them.

The ground-truth mesh is read from the dataset's records (the multi-view mapper does not load
it) and moved into each view's frame with that view's ``R, t``.

Registered as evaluator type ``"optimize_mvs"``, which ``OptimizeMVSHead`` declares as its
``evaluator_type``: the engine passes it to :func:`~meshrecon.evaluation.build_evaluator` in place
of the ``"multiview"`` dataset's default.
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
from meshrecon.data import DatasetCatalog
from meshrecon.data.readers import read_mesh
from meshrecon.ops import sample_farthest_points, set_distance
from meshrecon.render.cameras import transform_points
from meshrecon.utils import comm

from .evaluator import DatasetEvaluator, register_evaluator
from .shape_metrics import threshold_key
from .shapenet_evaluation import ShapeNetEvaluator
from .testing import create_small_table

__all__ = ["OptimizeMVSEvaluator", "build_optimize_mvs_evaluator", "mesh_paths_from_dataset"]

logger = logging.getLogger(__name__)


def mesh_paths_from_dataset(dataset_name: str) -> dict[str, str]:
    """Model name (the multi-view mapper's ``image_id``) -> mesh file, from the records."""
    out = {}
    for r in DatasetCatalog.get(dataset_name):
        name = r.get("image_id") or f"{r.get('synset_id')}/{r.get('model_id')}"
        mesh = r.get("mesh") or (r.get("views") or [{}])[0].get("mesh")
        if mesh:
            out[str(name)] = mesh
    return out


class OptimizeMVSEvaluator(DatasetEvaluator):
    """Scores (a) single-view, (b) best-of-N and (c) multi-view predictions; see the module
    docstring. Needs ``INPUT.LOAD_TEST_ANNOTATIONS True`` for the oracle (``points``).

    Args:
        mesh_paths: model name -> ground-truth mesh file (model frame); without one the item's
            ``points`` are the ground truth.
        fps_points: also score the union thinned to each of these point counts.
        shapenet_args: arguments of the per-protocol :class:`ShapeNetEvaluator` (num_samples,
            thresholds, gt_scale, seed, class_names, ...).
        output_dir: where to write ``optimize_mvs_results.txt``.
    """

    logs_own_tables = True

    @configurable
    def __init__(
        self,
        *,
        mesh_paths: dict[str, str] | None = None,
        fps_points: Sequence[int] = (),
        shapenet_args: dict[str, Any] | None = None,
        output_dir: str | None = None,
    ) -> None:
        self.mesh_paths = dict(mesh_paths or {})
        self.fps_points = [int(k) for k in fps_points]
        self.shapenet_args = {**(shapenet_args or {}), "output_dir": None, "p2m_protocol": False}
        self.output_dir = output_dir
        self._meshes: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.reset()

    @classmethod
    def from_config(cls, cfg, dataset_name: str | None = None, output_dir: str | None = None):
        args = ShapeNetEvaluator.from_config(cfg, dataset_name)
        args.pop("output_dir", None)
        return {
            "mesh_paths": mesh_paths_from_dataset(dataset_name) if dataset_name else {},
            "fps_points": cfg.TEST.OPTIMIZE_MVS.FPS_POINTS,
            "shapenet_args": args,
            "output_dir": output_dir,
        }

    def reset(self) -> None:
        self._evaluators: dict[str, ShapeNetEvaluator] = {}
        self._consistency: dict[str, list[float]] = defaultdict(list)

    def _evaluator(self, protocol: str) -> ShapeNetEvaluator:
        if protocol not in self._evaluators:
            self._evaluators[protocol] = ShapeNetEvaluator(**self.shapenet_args)
        return self._evaluators[protocol]

    def _mesh(self, name: str):
        path = self.mesh_paths.get(name)
        if path is None:
            return None
        if path not in self._meshes:
            self._meshes[path] = read_mesh(path)
        return self._meshes[path]

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for x, out in zip(inputs, outputs):
            name = str(x.get("image_id"))
            if "hypotheses_world" not in out:
                raise ValueError(
                    f"item {name!r}: the output has no 'hypotheses_world'; OptimizeMVSEvaluator "
                    "scores OptimizeMVSHead predictions"
                )
            R, t = x["R"].float().cpu(), x["t"].float().cpu()
            hyp = out["hypotheses_world"].detach().float().cpu()  # (V, C, P, 3)
            V, C = hyp.shape[:2]
            mesh = self._mesh(name)
            if mesh is None and x.get("points") is None:
                raise ValueError(
                    f"item {name!r} has neither a mesh in the dataset nor 'points': set "
                    "INPUT.LOAD_TEST_ANNOTATIONS True"
                )
            # Oracle: per view, the candidate nearest to the ground truth.
            if x.get("points") is not None:
                gt = torch.as_tensor(x["points"]).float().cpu()[None].expand(V * C, -1, -1)
                d = set_distance(hyp.reshape(V * C, -1, 3), gt).view(V, C)
                oracle = hyp[torch.arange(V), d.argmin(dim=1)]
            else:
                oracle = None
            union = out["points_world"].detach().float().cpu()
            preds: dict[str, torch.Tensor | list[torch.Tensor]] = {
                "single": list(hyp[:, 0]),
                "multiview": union,
                "multiview_random": hyp[:, 0].reshape(-1, 3),
                "multiview_selected": out["selected_world"].detach().float().cpu().reshape(-1, 3),
            }
            if oracle is not None:
                preds["oracle"] = list(oracle)
            for k in self.fps_points:
                if k < union.shape[0]:
                    preds[f"multiview_fps{k}"] = sample_farthest_points(union[None], K=k)[0][0]
            for res in out.get("by_num_views", []):
                k = res["views_world"].shape[0]
                preds[f"multiview@{k}"] = res["points_world"].detach().float().cpu()
            for key, value in (out.get("consistency") or {}).items():
                self._consistency[key].append(float(value))
            for v in range(V):
                gt_in: dict[str, Any] = {
                    "image_id": f"{name}/{v}",
                    "category_id": x.get("category_id"),
                }
                if mesh is not None:
                    gt_in["mesh"] = (transform_points(mesh[0], R[v], t[v]), mesh[1])
                else:
                    gt_in["points"] = transform_points(torch.as_tensor(x["points"]), R[v], t[v])
                for protocol, pred in preds.items():
                    pts = pred[v] if isinstance(pred, list) else pred
                    cam = transform_points(pts, R[v], t[v])
                    self._evaluator(protocol).process([gt_in], [{"points": cam}])

    def evaluate(self) -> dict[str, Any] | None:
        results: dict[str, Any] = {}
        for protocol, ev in self._evaluators.items():
            res = ev.evaluate() or {}
            for task, metrics in res.items():
                if task.startswith("shapenet"):
                    results[task.replace("shapenet", protocol, 1)] = metrics
        gathered = comm.gather(dict(self._consistency))
        if not comm.is_main_process():
            return None
        cons: dict[str, list[float]] = defaultdict(list)
        for part in gathered:
            for k, v in part.items():
                cons[k] += v
        if cons:
            results["consistency"] = {k: sum(v) / len(v) for k, v in cons.items()}
        text = self.table(results, cons)
        logger.info("OptimizeMVS evaluation:\n%s", text)
        if self.output_dir:
            os.makedirs(self.output_dir, exist_ok=True)
            with open(os.path.join(self.output_dir, "optimize_mvs_results.txt"), "w") as f:
                f.write(text + "\n")
        return results

    def table(self, results: dict[str, Any], consistency: dict[str, list[float]]) -> str:
        """The protocols as one table (instance means over (object, view frame) pairs)."""
        thresholds = [0.1, 0.3, 0.5]
        rows = []
        for protocol in self._evaluators:
            m = results.get(protocol, {})
            rows.append(
                [protocol, int(m.get("num_instances", 0)), m.get("Chamfer-L2", math.nan)]
                + [m.get(threshold_key("F1", t), math.nan) for t in thresholds]
            )
        heads = ["protocol", "# (object, view)", "Chamfer-L2"] + [f"F1@{t:g}" for t in thresholds]
        text = (
            "OptimizeMVS: Mesh R-CNN protocol (GT box longest edge 10, points-based metrics), "
            "scored in every view's camera frame\n" + create_small_table(rows, headers=heads)
        )
        if consistency:
            text += "\nmean pairwise-view consistency (Chamfer, world frame): " + ", ".join(
                f"{k} {sum(v) / len(v):.5f}" for k, v in consistency.items()
            )
        return text


@register_evaluator("optimize_mvs")
def build_optimize_mvs_evaluator(
    cfg, dataset_name: str, output_dir: str | None = None
) -> OptimizeMVSEvaluator:
    """Builder of the ``"optimize_mvs"`` evaluator type (declared by ``OptimizeMVSHead``)."""
    return OptimizeMVSEvaluator(cfg, dataset_name, output_dir)
