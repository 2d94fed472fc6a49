"""Evaluators, the inference loop, and helpers to present metrics."""

from .evaluator import (
    DatasetEvaluator,
    DatasetEvaluators,
    build_evaluator,
    inference_context,
    inference_on_dataset,
    register_evaluator,
    registered_evaluator_types,
)
from .testing import create_small_table, flatten_results_dict, print_csv_format, verify_results

__all__ = [
    "DatasetEvaluator",
    "DatasetEvaluators",
    "build_evaluator",
    "create_small_table",
    "flatten_results_dict",
    "inference_context",
    "inference_on_dataset",
    "print_csv_format",
    "register_evaluator",
    "registered_evaluator_types",
    "verify_results",
]

# --- section: mesh metrics (compare_meshes, compute_sampling_metrics; owner: metrics) ---
from .shape_metrics import compare_meshes, compute_sampling_metrics  # noqa: E402

__all__ += ["compare_meshes", "compute_sampling_metrics"]
# --- end section ---

# --- section: Pix3D detection + mesh AP (owner: Mesh R-CNN Pix3D) ---
from .pix3d_evaluation import Pix3DEvaluator, voc_ap  # noqa: E402

__all__ += ["Pix3DEvaluator", "voc_ap"]
# --- end section ---

# --- section: ShapeNet single-object evaluation (owner: single-view) ---
from .shapenet_evaluation import ShapeNetEvaluator, shapenet_pair_metrics  # noqa: E402

__all__ += ["ShapeNetEvaluator", "shapenet_pair_metrics"]
# --- end section ---

# --- section: depth (owner: depth) ---
from .depth_evaluation import DepthEvaluator  # noqa: E402

__all__ += ["DepthEvaluator"]
# --- end section ---

# --- section: multi-view voxels (owner: R2N2) ---
from .voxel_evaluation import R2N2Evaluator  # noqa: E402

__all__ += ["R2N2Evaluator"]
# --- end section ---

# --- section: OptimizeMVS point sets (owner: OptimizeMVS) ---
from .optimize_mvs_evaluation import OptimizeMVSEvaluator  # noqa: E402

__all__ += ["OptimizeMVSEvaluator"]
# --- end section ---
