"""The benchmark's tasks and methods: one table row per method, one table per task.

A method is one :class:`MethodSpec` in :data:`METHODS`: its name, task, config, whether it
trains, an optional method whose ``model_final.pth`` it starts from (a later stage), and how to
read the task's columns from its evaluator's results. Adding a method to the comparison is
adding an entry here; a method whose config is not in the model zoo yet is skipped with that
reason in the report.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "METHODS",
    "TASKS",
    "Column",
    "MethodSpec",
    "Task",
    "get_method",
    "real_variants",
    "methods_of_task",
]

# A cell is a number, or None for "not applicable to this method" (shown as "—").
Row = dict[str, float | None]
MetricsReader = Callable[[Mapping[str, Any]], Row]


@dataclass(frozen=True)
class Column:
    """One metric column: its key in a row, its header, and which direction is better."""

    key: str
    header: str
    higher_is_better: bool = True
    digits: int = 3


@dataclass(frozen=True)
class Task:
    """One comparison table: methods evaluated on the same test split with the same metrics."""

    key: str
    title: str
    dataset: str
    columns: tuple[Column, ...]
    description: str = ""
    # Real datasets this task is also run on when registered (present under the datasets root).
    real_datasets: tuple[str, ...] = ()


@dataclass(frozen=True)
class MethodSpec:
    """One method of the benchmark.

    Attributes:
        name: unique key (also the folder of its run).
        title: what the report calls it.
        task: key of its :class:`Task`.
        config: model-zoo config path, e.g. ``"synthetic/voxmesh.yaml"``.
        read_metrics: evaluator results -> ``{column key: value or None}``; None marks a
            metric that does not apply to the method (e.g. normals of a point cloud).
        train: False for methods evaluated without training (``--eval-only``).
        init_from: name of a method whose ``model_final.pth`` is this one's ``MODEL.WEIGHTS``
            (a second training stage); it runs first.
        overrides: extra ``KEY VALUE`` config overrides.
        output: what the gallery renders: ``"mesh"``, ``"points"``, ``"voxels"``,
            ``"detections"`` or ``"depth"``.
        reproduces: one line for the model-zoo table.
        val_dataset: its validation split (disjoint from the test split): the one presets
            evaluate periodically (``DATASETS.VAL``).
        val_metric: the flattened validation metric that keeps the best model and decides the
            plateau (``TEST.BEST_METRIC``, higher is better), e.g. ``"shapenet/F1@0.300000"``.
        val_min_delta: the plateau threshold in that metric's units
            (``TEST.PLATEAU_MIN_DELTA``): 1.0 for F1 in %, 0.01 for fractions (IoU, AP, δ).
    """

    name: str
    title: str
    task: str
    config: str
    read_metrics: MetricsReader
    train: bool = True
    init_from: str | None = None
    overrides: tuple[str, ...] = ()
    output: str = "mesh"
    reproduces: str = ""
    # The paper-size config of the same method for the real dataset (run with ``--real``).
    real_config: str = ""
    val_dataset: str = ""
    val_metric: str = ""
    val_min_delta: float = 1.0


def _num(value: Any) -> float:
    """``value`` as a float; NaN when it is missing or not a number (caught by the report)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _section(results: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    section = results.get(key)
    if not isinstance(section, Mapping):
        raise KeyError(
            f"evaluation results have no {key!r} section (sections: {sorted(results)}); is the "
            "run's evaluator the one this method's reader expects?"
        )
    return section


SHAPE_COLUMNS = (
    Column("Chamfer-L2", "Chamfer-L2 ↓", higher_is_better=False, digits=4),
    # Mesh R-CNN's "Normal": mean |cos| between nearest neighbours' normals, both directions.
    Column("AbsNormalConsistency", "Normal ↑"),
    Column("F1@0.1", "F1@0.1 ↑", digits=1),
    Column("F1@0.3", "F1@0.3 ↑", digits=1),
    Column("F1@0.5", "F1@0.5 ↑", digits=1),
    # The equal-density protocol (TEST.SHAPENET.EQUAL_POINTS): prediction and GT as 1024 points
    # each, so point-set methods and meshes compare at the same density.
    Column("F1@0.3/1k", "F1@0.3, 1k pts ↑", digits=1),
)


def shape_metrics_reader(section: str = "shapenet", normals: bool = True) -> MetricsReader:
    """Reader of ShapeNetEvaluator-style metrics (Mesh R-CNN's scale-normalised protocol)."""

    def read(results: Mapping[str, Any]) -> Row:
        m = _section(results, section)
        row: Row = {
            "Chamfer-L2": _num(m.get("Chamfer-L2")),
            "AbsNormalConsistency": _num(m.get("AbsNormalConsistency")) if normals else None,
        }
        for tau in ("0.1", "0.3", "0.5"):
            row[f"F1@{tau}"] = _num(m.get(f"F1@{float(tau):f}"))
        equal = results.get(f"{section}_points")
        row["F1@0.3/1k"] = _num(equal.get("F1@0.300000")) if isinstance(equal, Mapping) else None
        return row

    return read


MULTIVIEW_COLUMNS = (
    Column("IoU@1", "IoU 1 view ↑"),
    Column("IoU@3", "IoU 3 views ↑"),
    Column("IoU@5", "IoU 5 views ↑"),
    Column("Chamfer-L2@1", "Chamfer-L2 1 view ↓", higher_is_better=False, digits=4),
    Column("F1@0.3@1", "F1@0.3 1 view ↑", digits=1),
    Column("Chamfer-L2@all", "Chamfer-L2 all views ↓", higher_is_better=False, digits=4),
    Column("F1@0.3@all", "F1@0.3 all views ↑", digits=1),
)


def multiview_reader(results: Mapping[str, Any]) -> Row:
    """Reader of the multi-view evaluators: R2N2Evaluator (voxel IoU per view count, cubified
    meshes ``mesh@k``) and OptimizeMVSEvaluator (point clouds: ``single`` view, ``multiview``
    union). Voxel IoU does not apply to point-cloud methods."""
    voxel = results.get("voxel")
    row: Row = {
        f"IoU@{k}": _num(voxel.get(f"IoU@{k}")) if isinstance(voxel, Mapping) else None
        for k in (1, 3, 5)
    }
    counts = sorted(int(k[5:]) for k in results if re.fullmatch(r"mesh@\d+", k))
    if counts:
        one, every = _section(results, "mesh@1"), _section(results, f"mesh@{counts[-1]}")
    else:
        one, every = _section(results, "single"), _section(results, "multiview")
    for suffix, m in (("1", one), ("all", every)):
        row[f"Chamfer-L2@{suffix}"] = _num(m.get("Chamfer-L2"))
        row[f"F1@0.3@{suffix}"] = _num(m.get(f"F1@{0.3:f}"))
    return row


DETECTION_COLUMNS = (
    Column("AP_box", "AP^box@0.5 ↑", digits=1),
    Column("AP_mask", "AP^mask@0.5 ↑", digits=1),
    Column("AP_mesh", "AP^mesh@0.5 ↑", digits=1),
)


def pix3d_reader(results: Mapping[str, Any]) -> Row:
    """Reader of Pix3DEvaluator results (AP at IoU / F1 0.5): the evaluator's fractions in %."""
    shape = _section(results, "shape")
    return {
        "AP_box": 100.0 * _num(shape.get("box_ap@0.5")),
        "AP_mask": 100.0 * _num(shape.get("mask_ap@0.5")),
        "AP_mesh": 100.0 * _num(shape.get("mesh_ap@0.5")) if "mesh_ap@0.5" in shape else None,
    }


DEPTH_COLUMNS = (
    Column("delta1", "δ<1.25 ↑"),
    Column("delta2", "δ<1.25² ↑"),
    Column("delta3", "δ<1.25³ ↑"),
    Column("AbsRel", "AbsRel ↓", higher_is_better=False),
    Column("RMSE", "RMSE ↓", higher_is_better=False),
    Column("RMSElog", "RMSE log ↓", higher_is_better=False),
)


def depth_reader(results: Mapping[str, Any]) -> Row:
    """Reader of DepthEvaluator results: the final prediction (``depth``)."""
    depth = _section(results, "depth")
    return {c.key: _num(depth.get(c.key)) for c in DEPTH_COLUMNS}


TASKS: dict[str, Task] = {
    t.key: t
    for t in (
        Task(
            "single_view",
            "Shape from one view",
            "synthetic_shapenet_test",
            SHAPE_COLUMNS,
            "ShapeNet-style objects, one 137×137 view each; Mesh R-CNN's protocol (10k points "
            "sampled, scaled so the GT's longest bounding-box edge is 10; F1 in %). Point-cloud "
            "methods have no normals.",
            real_datasets=("shapenet_meshrcnn_test",),
        ),
        Task(
            "multi_view",
            "Shape from several views",
            "synthetic_shapenet_test_multiview",
            MULTIVIEW_COLUMNS,
            "The same objects seen in several views: 32³ voxel IoU per view count (voxel "
            "methods), and Mesh R-CNN's metrics of the one-view prediction and of the "
            "prediction from all test views (R2N2: cubified voxels; OptimizeMVS: the refined "
            "union of the views' point clouds).",
            real_datasets=("shapenet_r2n2_test",),
        ),
        Task(
            "detection",
            "Detection + shape",
            "synthetic_pix3d_test",
            DETECTION_COLUMNS,
            "Pix3D-style scenes: AP of boxes, masks (IoU 0.5) and meshes (F1@0.3 > 0.5), in %.",
            real_datasets=("pix3d_s1_test",),
        ),
        Task(
            "depth",
            "Depth",
            "synthetic_nyu_test",
            DEPTH_COLUMNS,
            "NYU-style rooms; Eigen et al.'s metrics on valid pixels (metres).",
            real_datasets=("nyu_v2_test",),
        ),
    )
}

# Each task's validation split and the metric its methods follow (README, "Validation, the best
# checkpoint, the plateau"). The validation splits are drawn from their own seed streams: no
# model, scene or room of them is in a train or test split.
_SHAPE_VAL = {
    "val_dataset": "synthetic_shapenet_val",
    "val_metric": "shapenet/F1@0.300000",
    "val_min_delta": 1.0,
}
_R2N2_VAL = {
    "val_dataset": "synthetic_shapenet_val_multiview",
    "val_metric": "voxel/IoU@1",
    "val_min_delta": 0.01,
}
_MVS_VAL = {
    "val_dataset": "synthetic_shapenet_val_multiview",
    "val_metric": "multiview/F1@0.300000",
    "val_min_delta": 1.0,
}
# AP^mesh for the three detectors, also the voxels-only one (its cubified voxels are its mesh).
_PIX3D_VAL = {
    "val_dataset": "synthetic_pix3d_val",
    "val_metric": "shape/mesh_ap@0.5",
    "val_min_delta": 0.01,
}
_NYU_VAL = {"val_dataset": "synthetic_nyu_val", "val_metric": "depth/delta1", "val_min_delta": 0.01}

METHODS: tuple[MethodSpec, ...] = (
    MethodSpec(
        "mean_shape",
        "Mean shape (baseline)",
        "single_view",
        "synthetic/mean_shape.yaml",
        shape_metrics_reader(),
        train=False,
        reproduces="the training models' mean shape in every view (no learning)",
        real_config="shapenet/mean_shape.yaml",
        **_SHAPE_VAL,
    ),
    MethodSpec(
        "psgn",
        "PSGN",
        "single_view",
        "synthetic/psgn.yaml",
        shape_metrics_reader(normals=False),
        output="points",
        reproduces="Fan et al., Point Set Generation (1024 points, Chamfer, Min-of-N)",
        real_config="shapenet/psgn.yaml",
        **_SHAPE_VAL,
    ),
    MethodSpec(
        "pixel2mesh",
        "Pixel2Mesh",
        "single_view",
        "synthetic/pixel2mesh.yaml",
        shape_metrics_reader(),
        reproduces="Wang et al., Pixel2Mesh (ellipsoid, 3 G-ResNet blocks, perceptual pooling)",
        real_config="shapenet/pixel2mesh_R50.yaml",
        **_SHAPE_VAL,
    ),
    MethodSpec(
        "sphereinit",
        "Sphere-Init",
        "single_view",
        "synthetic/sphereinit.yaml",
        shape_metrics_reader(),
        reproduces="Mesh R-CNN's Sphere-Init baseline (ico-sphere refined by graph convs)",
        real_config="shapenet/sphereinit_R50.yaml",
        **_SHAPE_VAL,
    ),
    MethodSpec(
        "voxmesh",
        "Mesh R-CNN (VoxMesh)",
        "single_view",
        "synthetic/voxmesh.yaml",
        shape_metrics_reader(),
        reproduces="Gkioxari et al., Mesh R-CNN's ShapeNet model (voxels, cubify, refine)",
        real_config="shapenet/voxmesh_R50.yaml",
        **_SHAPE_VAL,
    ),
    # The pretraining ablation: VoxMesh's config whole, but its ResNet-18 starts from random
    # weights instead of synthetic://resnet18_pretrained.pth; its own run folder, so that the
    # two runs never overwrite each other.
    MethodSpec(
        "voxmesh_scratch",
        "Mesh R-CNN (VoxMesh), from scratch",
        "single_view",
        "synthetic/voxmesh.yaml",
        shape_metrics_reader(),
        overrides=(
            "MODEL.BACKBONE.PRETRAINED",
            "",
            "OUTPUT_DIR",
            "./output/synthetic_voxmesh_scratch",
        ),
        reproduces="the VoxMesh row with a randomly initialized encoder (pretraining ablation)",
        **_SHAPE_VAL,
    ),
    MethodSpec(
        "r2n2_res_gru",
        "3D-R2N2 (Res3D-GRU)",
        "multi_view",
        "synthetic/r2n2_res_gru.yaml",
        multiview_reader,
        output="voxels",
        reproduces="Choy et al., 3D-R2N2 (residual encoder/decoder, 3D conv-GRU)",
        real_config="shapenet/r2n2_res_gru.yaml",
        **_R2N2_VAL,
    ),
    MethodSpec(
        "optimize_mvs",
        "OptimizeMVS (stage 1)",
        "multi_view",
        "synthetic/optimize_mvs.yaml",
        multiview_reader,
        output="points",
        reproduces="conditional single-view point generation (front constraint, diversity)",
        **_MVS_VAL,
    ),
    MethodSpec(
        "optimize_mvs_stage2",
        "OptimizeMVS",
        "multi_view",
        "synthetic/optimize_mvs_stage2.yaml",
        multiview_reader,
        init_from="optimize_mvs",
        output="points",
        reproduces="conditional single-view generation with multi-view consistency (stage 2: "
        "consistency over all views)",
        **_MVS_VAL,
    ),
    MethodSpec(
        "voxelrcnn_R18_FPN",
        "Voxel R-CNN (voxels only)",
        "detection",
        "synthetic/voxelrcnn_R18_FPN.yaml",
        pix3d_reader,
        output="detections",
        reproduces="Mesh R-CNN's Voxel-Only baseline (cubified voxels, no refinement)",
        real_config="pix3d/voxelrcnn_R50_FPN.yaml",
        **_PIX3D_VAL,
    ),
    MethodSpec(
        "sphereinit_R18_FPN",
        "Sphere-Init R-CNN",
        "detection",
        "synthetic/sphereinit_R18_FPN.yaml",
        pix3d_reader,
        output="detections",
        reproduces="Mesh R-CNN's Sphere-Init baseline on Pix3D-style scenes",
        real_config="pix3d/sphereinit_R50_FPN.yaml",
        **_PIX3D_VAL,
    ),
    MethodSpec(
        "meshrcnn_R18_FPN",
        "Mesh R-CNN",
        "detection",
        "synthetic/meshrcnn_R18_FPN.yaml",
        pix3d_reader,
        output="detections",
        reproduces="Gkioxari et al., Mesh R-CNN on Pix3D (ResNet-18 FPN)",
        real_config="pix3d/meshrcnn_R50_FPN.yaml",
        **_PIX3D_VAL,
    ),
    MethodSpec(
        "eigen_coarse",
        "Eigen et al. (coarse)",
        "depth",
        "synthetic/eigen_coarse.yaml",
        depth_reader,
        output="depth",
        reproduces="Eigen et al. 2014, multi-scale depth: phase 1 (coarse network)",
        real_config="nyu/eigen_coarse.yaml",
        **_NYU_VAL,
    ),
    MethodSpec(
        "eigen_fine",
        "Eigen et al. (coarse + fine)",
        "depth",
        "synthetic/eigen_fine.yaml",
        depth_reader,
        init_from="eigen_coarse",
        output="depth",
        reproduces="Eigen et al. 2014, phase 2 (fine network on the frozen coarse one)",
        real_config="nyu/eigen_fine.yaml",
        **_NYU_VAL,
    ),
)


def real_variants(
    methods: tuple[MethodSpec, ...], registered: set[str]
) -> tuple[tuple[MethodSpec, ...], dict[str, Task], list[tuple[MethodSpec, str]]]:
    """The methods' paper-size configs on the real datasets that are present.

    Returns ``(specs, tasks, missing)``: a spec ``<name>_real`` per method whose ``real_config``
    tests on a registered dataset, the tasks ``<task>_real`` they belong to, and
    ``(spec, dataset)`` of those whose dataset is not there.
    """
    from meshrecon.model_zoo import get_config

    specs, tasks, missing = [], {}, []
    for m in methods:
        if not m.real_config:
            continue
        dataset = get_config(m.real_config).DATASETS.TEST[0]
        if dataset not in registered:
            missing.append((m, dataset))
            continue
        base = TASKS[m.task]
        key = f"{m.task}_real"
        tasks.setdefault(
            key,
            replace(
                base, key=key, title=f"{base.title} — {dataset}", dataset=dataset, real_datasets=()
            ),
        )
        specs.append(
            replace(
                m,
                name=f"{m.name}_real",
                task=key,
                config=m.real_config,
                init_from=f"{m.init_from}_real" if m.init_from else None,
                real_config="",
            )
        )
    return tuple(specs), tasks, missing


def get_method(name: str, methods: tuple[MethodSpec, ...] = METHODS) -> MethodSpec:
    """Return the method called ``name``; the error lists the known names."""
    for m in methods:
        if m.name == name:
            return m
    raise KeyError(f"unknown method {name!r}; known: {', '.join(m.name for m in methods)}")


def methods_of_task(task: str, methods: tuple[MethodSpec, ...] = METHODS) -> list[MethodSpec]:
    """Return the methods of one task, in table order."""
    return [m for m in methods if m.task == task]
