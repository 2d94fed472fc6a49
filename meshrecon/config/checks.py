"""Value checks of a config, in one place, run when a training or an evaluation starts.

A value of the right type can still be meaningless: ``SOLVER.CHECKPOINT_PERIOD 0`` divides by
zero inside fvcore, ``SOLVER.MAX_ITER 0`` "trains" and writes no model, ``DATASETS.TRAIN ()``
fails far away with an error about ``INPUT.MAPPER``. Each rule below names the key, what it
means and the value given, so that the error says what to change.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

__all__ = ["check_config"]

_MISSING = object()
logger = logging.getLogger(__name__)

# (key, rule, what the key means); rule is "positive", "non-negative" (integers) or a callable
# (value) -> error text or None.
_Rule = tuple[str, "str | Callable[[Any], str | None]", str]


def _finite_number(minimum: float, strict: bool) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and math.isfinite(value) and (value > minimum if strict else value >= minimum):
            return None
        relation = ">" if strict else ">="
        return f"must be a finite number {relation} {minimum:g}"

    return check


def _positive_iterations(value: Any) -> str | None:
    if not isinstance(value, (list, tuple)):
        return "must be a list of iterations"
    bad = [v for v in value if isinstance(v, bool) or not isinstance(v, int) or v <= 0]
    return f"must hold positive iterations (bad: {bad})" if bad else None


_TRAINING_RULES: list[_Rule] = [
    ("SOLVER.MAX_ITER", "positive", "the number of training iterations; 0 or less ends at once"),
    (
        "SOLVER.CHECKPOINT_PERIOD",
        "positive",
        "save every this many iterations; a value >= SOLVER.MAX_ITER saves the final model only",
    ),
    (
        "SOLVER.CHECKPOINT_MAX_KEEP",
        "non-negative",
        "periodic checkpoints kept, the most recent; 0 keeps them all",
    ),
    ("SOLVER.IMS_PER_BATCH", "positive", "images per batch, summed over all processes"),
    ("SOLVER.WARMUP_ITERS", "non-negative", "iterations of learning-rate warm-up"),
    ("SOLVER.STEPS", _positive_iterations, "iterations at which the learning rate decays"),
    ("SOLVER.BASE_LR", _finite_number(0.0, strict=False), "the learning rate"),
    ("SOLVER.GAMMA", _finite_number(0.0, strict=True), "the factor of each learning-rate step"),
    ("SOLVER.WEIGHT_DECAY", _finite_number(0.0, strict=False), "the weight decay"),
    ("TEST.EVAL_PERIOD", "non-negative", "evaluate every this many iterations; 0: at the end"),
    (
        "TEST.PLATEAU_START_ITER",
        "non-negative",
        "the plateau rule judges the validations after this iteration",
    ),
    ("VIS_PERIOD", "non-negative", "visualize every this many iterations; 0: never"),
    ("DATALOADER.NUM_WORKERS", "non-negative", "loader processes; 0 loads in the main process"),
    ("MODEL.RPN.BATCH_SIZE_PER_IMAGE", "positive", "anchors sampled per image for the RPN loss"),
    ("MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "positive", "proposals sampled per image"),
    ("INPUT.SHAPENET.NUM_SAMPLES", "positive", "points sampled from each ground-truth mesh"),
    ("MODEL.ROI_MESH_HEAD.GT_NUM_SAMPLES", "positive", "points sampled from each target mesh"),
    ("MODEL.MESH_HEAD.GT_NUM_SAMPLES", "positive", "points sampled from each target mesh"),
    ("MODEL.VOXEL_HEAD.VOXEL_ONLY_ITERS", "non-negative", "iterations of voxel-only training"),
]

# Values that shape the model or the evaluation: checked for training and evaluation alike.
_MODEL_RULES: list[_Rule] = [
    ("MODEL.ROI_HEADS.NUM_CLASSES", "positive", "the number of object classes"),
    ("MODEL.RPN.PRE_NMS_TOPK_TRAIN", "positive", "proposals kept before NMS"),
    ("MODEL.RPN.PRE_NMS_TOPK_TEST", "positive", "proposals kept before NMS"),
    ("MODEL.RPN.POST_NMS_TOPK_TRAIN", "positive", "proposals kept after NMS"),
    ("MODEL.RPN.POST_NMS_TOPK_TEST", "positive", "proposals kept after NMS"),
    ("TEST.DETECTIONS_PER_IMAGE", "positive", "detections kept per image"),
    ("MODEL.ROI_MESH_HEAD.PRED_NUM_SAMPLES", "positive", "points sampled from predicted meshes"),
    ("MODEL.MESH_HEAD.PRED_NUM_SAMPLES", "positive", "points sampled from predicted meshes"),
    ("MODEL.ROI_VOXEL_HEAD.NUM_DEPTH", "positive", "the voxel grid's side"),
    ("MODEL.VOXEL_HEAD.VOXEL_SIZE", "positive", "the voxel grid's side"),
    ("MODEL.R2N2.VOXEL_SIZE", "positive", "the voxel grid's side"),
    ("TEST.R2N2.MESH_SAMPLES", "non-negative", "surface points of the mesh metrics; 0: IoU only"),
    ("MODEL.MEAN_SHAPE.VOXEL_SIZE", "positive", "the voxel grid's side"),
    ("INPUT.SHAPENET.VOXEL_SIZE", "non-negative", "the ground-truth voxel grid's side; 0: none"),
    ("INPUT.MULTIVIEW.NUM_VIEWS", "positive", "views per item"),
    ("MODEL.OPTIMIZE_MVS.NUM_CANDIDATES", "positive", "candidate point sets at inference"),
    ("MODEL.OPTIMIZE_MVS.ZBUFFER_SIZE", "positive", "the side of the z-buffer"),
    ("MODEL.OPTIMIZE_MVS.REFINE_STEPS", "non-negative", "refinement steps at inference"),
    ("TEST.SHAPENET.NUM_SAMPLES", "positive", "points sampled per surface for the metrics"),
    ("TEST.DEPTH.NUM_VIS", "non-negative", "test images written as pictures"),
    ("DATASETS.SYNTHETIC.SHAPENET_VIEWS", "positive", "views rendered per synthetic model"),
    ("DATASETS.SYNTHETIC.SCALE", _finite_number(0.0, strict=True), "the synthetic data's size"),
]


def _get(cfg: Any, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        try:
            node = node[part]
        except (KeyError, TypeError):
            return _MISSING
    return node


def _problem(cfg: Any, key: str, rule: Any, meaning: str) -> str | None:
    value = _get(cfg, key)
    if value is _MISSING:
        return None  # a config without this section (a user's own subset): nothing to check
    if callable(rule):
        error = rule(value)
    else:
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if rule == "positive" and not (is_int and value > 0):
            error = "must be a positive integer"
        elif rule == "non-negative" and not (is_int and value >= 0):
            error = "must be an integer >= 0"
        else:
            error = None
    return None if error is None else f"{key} {error}, got {value!r} ({meaning})"


def check_config(cfg: Any, *, training: bool = True, context: str = "") -> None:
    """Raise ``ValueError`` listing every meaningless value of ``cfg``, each by its key.

    Args:
        cfg: a full config (``get_cfg()`` merged with a file and overrides).
        training: also check what only training reads (schedule, batch sizes, DATASETS.TRAIN);
            otherwise check that DATASETS.TEST names something to evaluate.
        context: appended to the message (e.g. that values were auto-scaled).
    """
    problems: list[str] = []
    rules = (_TRAINING_RULES if training else []) + _MODEL_RULES
    for key, rule, meaning in rules:
        problem = _problem(cfg, key, rule, meaning)
        if problem:
            problems.append(problem)
    datasets = _get(cfg, "DATASETS.TRAIN" if training else "DATASETS.TEST")
    if datasets is not _MISSING and (not isinstance(datasets, (list, tuple)) or not datasets):
        key, example = (
            ("DATASETS.TRAIN", "synthetic_shapenet_train")
            if training
            else ("DATASETS.TEST", "synthetic_shapenet_test")
        )
        problems.append(
            f"{key} is empty ({datasets!r}): name at least one registered dataset, e.g. "
            f"{key} \"('{example}',)\""
            + ("" if training else "; an evaluation without one has nothing to evaluate")
        )
    precise_bn = _get(cfg, "TEST.PRECISE_BN.ENABLED")
    if training and precise_bn is True:
        problem = _problem(cfg, "TEST.PRECISE_BN.NUM_ITER", "positive", "batches for PreciseBN")
        if problem:
            problems.append(problem)
    if training:
        _warn_voxel_only_schedule(cfg)
    if problems:
        suffix = f" ({context})" if context else ""
        raise ValueError(
            "Invalid config value"
            + ("s" if len(problems) > 1 else "")
            + suffix
            + ":\n  "
            + "\n  ".join(problems)
        )


def _warn_voxel_only_schedule(cfg: Any) -> None:
    """Warn when a voxel + mesh model would train its voxel branch alone for the whole run.

    ``MODEL.VOXEL_HEAD.VOXEL_ONLY_ITERS`` counts iterations, not a fraction of the schedule: a
    short run (``SOLVER.MAX_ITER`` at or below it) never trains the mesh head, and its meshes
    are the untrained refinement of the cubes. Allowed (a quick voxel test is legitimate), but
    said, with the key to change.
    """
    voxel_only = _get(cfg, "MODEL.VOXEL_HEAD.VOXEL_ONLY_ITERS")
    max_iter = _get(cfg, "SOLVER.MAX_ITER")
    both_heads = _get(cfg, "MODEL.VOXEL_ON") is True and _get(cfg, "MODEL.MESH_ON") is True
    if not both_heads or not all(isinstance(v, int) for v in (voxel_only, max_iter)):
        return
    if voxel_only > 0 and voxel_only >= max_iter:
        logger.warning(
            "MODEL.VOXEL_HEAD.VOXEL_ONLY_ITERS=%d >= SOLVER.MAX_ITER=%d: every step trains the "
            "voxel branch alone and the mesh head is never trained; for a short run lower it, "
            "e.g. MODEL.VOXEL_HEAD.VOXEL_ONLY_ITERS %d (two thirds of the steps, as the "
            "synthetic VoxMesh config)",
            voxel_only,
            max_iter,
            (2 * max_iter) // 3,
        )
