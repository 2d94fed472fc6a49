"""Benchmarks of the ShapeNet evaluator's per-item scoring (validation and test passes).

``ShapeNetEvaluator.process`` on one predicted mesh against one ground-truth mesh, as the
synthetic single-view configs score them: 10k samples with normals on each surface, Mesh
R-CNN's and Pixel2Mesh's protocols, Tatarchenko's F-score and Occupancy Networks' metrics with
its volumetric IoU (both meshes are closed). The second case is the same scores from a
nearest-neighbour search per protocol (two ``compute_sampling_metrics`` calls and one
``surface_distances``), the way the evaluator searched before it shared one search among them.
"""

import torch

from meshrecon.evaluation.protocols import (
    fscore_metrics,
    onet_metrics,
    surface_distances,
    volumetric_iou,
)
from meshrecon.evaluation.shape_metrics import compute_sampling_metrics
from meshrecon.evaluation.shapenet_evaluation import ShapeNetEvaluator
from meshrecon.ops import ico_sphere
from meshrecon.utils.benchmark import BenchCase

SUITE = "eval"
SAMPLES = 10000


def _meshes(device: torch.device):
    sphere = ico_sphere(4, device)
    v, f = sphere.verts_packed(), sphere.faces_packed()
    gt = (v * torch.tensor([0.3, 0.5, 0.2], device=device), f)
    pred = (v * torch.tensor([0.32, 0.45, 0.2], device=device) + 0.01, f)
    return pred, gt


def _evaluator_case(device: torch.device):
    pred, gt = _meshes(device)
    ev = ShapeNetEvaluator(num_samples=SAMPLES)

    def run(backward: bool):
        ev.reset()
        ev.process([{"image_id": "x", "category_id": 0, "mesh": gt}], [{"mesh": pred}])

    return run


def _per_protocol_case(device: torch.device):
    from meshrecon.evaluation.shapenet_evaluation import _surface

    pred, gt = _meshes(device)

    def run(backward: bool):
        p, pn = _surface(pred, SAMPLES, device)
        g, gn = _surface(gt, SAMPLES, device)
        extent = float((gt[0].max(0).values - gt[0].min(0).values).max())
        for scale in (10.0 / extent, 0.57):
            compute_sampling_metrics((p * scale)[None], pn[None], (g * scale)[None], gn[None])
        d = surface_distances(p, g, pn, gn)
        fscore_metrics(d, extent)
        onet_metrics(d, extent)
        volumetric_iou(pred[0], pred[1], gt[0], gt[1], 32, 0.1)

    return run


CASES = [
    BenchCase(
        op="ShapeNetEvaluator.process",
        size="10k x 10k samples, 4 protocols",
        make=_evaluator_case,
        backward=False,
    ),
    BenchCase(
        op="a search per protocol (before)",
        size="10k x 10k samples, 4 protocols",
        make=_per_protocol_case,
        backward=False,
    ),
]
