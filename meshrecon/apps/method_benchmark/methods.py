"""The benchmark's tasks and methods: one table row per method, one table per task.

A method is one :class:`MethodSpec` in :data:`METHODS`: its name, task, config, whether it
trains, an optional method whose trained weights it starts from (a later stage), and how to
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

from .per_category import multiview_per_category, shape_per_category

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
    # Column keys whose comparison with the Retrieval baseline decides whether a method
    # reconstructs beyond recognition (one or two per protocol); () for no such paragraph.
    headline: tuple[str, ...] = ()
    # Column keys shown per category in the report's fold (see ``per_category``).
    per_category: tuple[str, ...] = ()


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
        init_from: name of a method whose trained weights are this one's ``MODEL.WEIGHTS`` (a
            second training stage; ``runner.tested_checkpoint``: its best validation checkpoint
            where its test used that, else its ``model_final.pth``); it runs first.
        overrides: extra ``KEY VALUE`` config overrides.
        output: what the gallery renders: ``"mesh"``, ``"points"``, ``"voxels"``,
            ``"detections"`` or ``"depth"``.
        reproduces: one line for the model-zoo table.
        kind: ``"method"`` (a learned reconstruction), ``"baseline"`` (recognition or a fixed
            shape: what a method must beat) or ``"oracle"`` (reads the ground truth: an upper
            bound, shown in its own shaded row and never marked best).
        yardstick: the Retrieval baseline the report compares every method of its task with.
        read_per_category: evaluator results -> ``{column key: {"categories": {name: value},
            "category_mean": value, "instance_mean": value}}`` for the report's per-category
            tables; None: the method has none.
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
    kind: str = "method"
    yardstick: bool = False
    read_per_category: Callable[[Mapping[str, Any]], dict[str, dict[str, Any]]] | None = None
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


# Units in the headers: Mesh R-CNN scales each pair so the GT box's longest edge is 10 (so
# distances are in tenths of that edge, Chamfer-L2 in their squares); Tatarchenko et al.'s
# threshold is 1% of the GT box's longest edge ("side"); Occupancy Networks' Chamfer-L1 is in
# tenths of that edge too. The task descriptions say which column belongs to which protocol.
SHAPE_COLUMNS = (
    Column("Chamfer-L2", "Chamfer-L2 ↓ (edge/10)²", higher_is_better=False, digits=4),
    # Mesh R-CNN's "Normal" and Occupancy Networks' normal consistency (the same definition):
    # mean |cos| between nearest neighbours' normals, both directions averaged.
    Column("AbsNormalConsistency", "Normal ↑ |cos|"),
    Column("F1@0.1", "F1@0.1 ↑ %", digits=1),
    Column("F1@0.3", "F1@0.3 ↑ %", digits=1),
    Column("F1@0.5", "F1@0.5 ↑ %", digits=1),
    # The equal-density protocol (TEST.SHAPENET.EQUAL_POINTS): prediction and GT as 1024 points
    # each, so point-set methods and meshes compare at the same density.
    Column("F1@0.3/1k", "F1@0.3, 1k pts ↑ %", digits=1),
    Column("F@1%", "F@1% side ↑ %", digits=1),
    Column("P@1%", "P@1% side ↑ %", digits=1),
    Column("R@1%", "R@1% side ↑ %", digits=1),
    Column("Chamfer-L1", "Chamfer-L1 ↓ edge/10", higher_is_better=False),
    Column("IoU-32", "IoU 32³ solid ↑"),
    Column("VoxelIoU", "Voxel IoU ↑ p≥0.4"),
)


def _optional(results: Mapping[str, Any], section: str, key: str) -> float | None:
    """A metric of a section that may be absent: None if the section is not there (the
    protocol does not apply to the method), NaN if the key is missing from it."""
    m = results.get(section)
    return _num(m.get(key)) if isinstance(m, Mapping) else None


def shape_metrics_reader(section: str = "shapenet", normals: bool = True) -> MetricsReader:
    """Reader of ShapeNetEvaluator-style metrics: Mesh R-CNN's protocol (``section``),
    Tatarchenko et al.'s (``<section>_fscore``), Occupancy Networks' (``<section>_onet``) and
    3D-R2N2's voxel IoU (``voxels``, for methods that predict voxels)."""

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
        # A run evaluated before these protocols existed has no such sections: NaN, not "—".
        fscore = results.get(f"{section}_fscore") or {}
        for short, name in (("F", "F-score"), ("P", "Precision"), ("R", "Recall")):
            row[f"{short}@1%"] = _num(fscore.get(f"{name}@1%"))
        onet = results.get(f"{section}_onet") or {}
        row["Chamfer-L1"] = _num(onet.get("Chamfer-L1"))
        # IoU of solids: only for methods whose meshes are closed (none: "—").
        closed = onet.get("NumIoU")
        row["IoU-32"] = None if closed == 0 or not normals else _num(onet.get("IoU"))
        row["VoxelIoU"] = _optional(results, "voxels", "IoU")
        return row

    return read


MULTIVIEW_COLUMNS = (
    Column("IoU@1", "IoU 1 view ↑"),
    Column("IoU@3", "IoU 3 views ↑"),
    Column("IoU@5", "IoU 5 views ↑"),
    Column("Chamfer-L2@1", "Chamfer-L2 1 view ↓ (edge/10)²", higher_is_better=False, digits=4),
    Column("F1@0.3@1", "F1@0.3 1 view ↑ %", digits=1),
    Column("Chamfer-L2@all", "Chamfer-L2 all views ↓ (edge/10)²", False, digits=4),
    Column("F1@0.3@all", "F1@0.3 all views ↑ %", digits=1),
    Column("F@1%@1", "F@1% side 1 view ↑ %", digits=1),
    Column("F@1%@all", "F@1% side all views ↑ %", digits=1),
    Column("Chamfer-L1@1", "Chamfer-L1 1 view ↓ edge/10", higher_is_better=False),
    Column("Chamfer-L1@all", "Chamfer-L1 all views ↓ edge/10", higher_is_better=False),
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
        names = {"1": ("mesh", "@1"), "all": ("mesh", f"@{counts[-1]}")}
    else:
        names = {"1": ("single", ""), "all": ("multiview", "")}
    for suffix, (base, at) in names.items():
        m = _section(results, base + at)
        row[f"Chamfer-L2@{suffix}"] = _num(m.get("Chamfer-L2"))
        row[f"F1@0.3@{suffix}"] = _num(m.get(f"F1@{0.3:f}"))
        row[f"F@1%@{suffix}"] = _num((results.get(f"{base}_fscore{at}") or {}).get("F-score@1%"))
        row[f"Chamfer-L1@{suffix}"] = _num(
            (results.get(f"{base}_onet{at}") or {}).get("Chamfer-L1")
        )
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
            "ShapeNet-style objects, one 137×137 view each, scored in the view's camera frame "
            "on 10k points sampled per surface, under four protocols. Mesh R-CNN's: each pair "
            'scaled so the GT\'s longest bounding-box edge ("edge") is 10, Chamfer-L2, Normal '
            "(mean |cos|, also Occupancy Networks' normal consistency), F1 at 0.1-0.5, and F1 "
            "with 1024 points on both sides. Tatarchenko et al.'s: F-score, precision, recall "
            "at 1% of the GT's longest edge (the side of what3d's unit cube, not the "
            "diagonal). Occupancy Networks': Chamfer-L1 in tenths of that edge, and the IoU of "
            "the solids on a 32³ grid over the GT's bounding cube padded by 10% (closed "
            "meshes only: mean over the pairs that have one). 3D-R2N2's: voxel IoU at "
            "p ≥ 0.4 on the method's own grid (voxel methods). Point-cloud methods have no "
            "normals and no solid. Baselines: the mean shape and the recognition baselines of "
            "Tatarchenko et al. (Clustering, Retrieval); Oracle NN reads the ground truth (the "
            "best any retrieval can do), so its row is shaded (italic in Markdown) and never "
            "marked best.",
            real_datasets=("shapenet_meshrcnn_test",),
            headline=("Chamfer-L2", "F1@0.3", "F@1%", "Chamfer-L1"),
            per_category=(
                "Chamfer-L2",
                "AbsNormalConsistency",
                "F1@0.3",
                "F@1%",
                "Chamfer-L1",
                "IoU-32",
            ),
        ),
        Task(
            "multi_view",
            "Shape from several views",
            "synthetic_shapenet_test_multiview",
            MULTIVIEW_COLUMNS,
            "The same objects seen in several views: 3D-R2N2's 32³ voxel IoU (p ≥ 0.4) per "
            "view count (voxel methods), and the one-view and all-views predictions under "
            "Mesh R-CNN's protocol (GT's longest edge 10), Tatarchenko et al.'s F-score at 1% "
            "of that edge and Occupancy Networks' Chamfer-L1 in tenths of it (R2N2: cubified "
            "voxels; OptimizeMVS: the refined union of the views' point clouds; the "
            "recognition baselines: the training model the views vote for).",
            real_datasets=("shapenet_r2n2_test",),
            headline=("IoU@5", "Chamfer-L2@all", "F1@0.3@all", "F@1%@all", "Chamfer-L1@all"),
            per_category=("IoU@5", "Chamfer-L2@all", "F1@0.3@all", "F@1%@all", "Chamfer-L1@all"),
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

_SHAPE_PC = shape_per_category()
_POINTS_PC = shape_per_category(normals=False)
_RECOGNITION = "Tatarchenko et al., What Do Single-view 3D Reconstruction Networks Learn?"
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
        kind="baseline",
        read_per_category=_SHAPE_PC,
        **_SHAPE_VAL,
    ),
    MethodSpec(
        "clustering",
        "Clustering (baseline)",
        "single_view",
        "synthetic/clustering.yaml",
        shape_metrics_reader(),
        reproduces=f"{_RECOGNITION}: Clustering (k-means medoid of the classified cluster)",
        real_config="shapenet/clustering.yaml",
        kind="baseline",
        read_per_category=_SHAPE_PC,
        **_SHAPE_VAL,
    ),
    MethodSpec(
        "retrieval",
        "Retrieval (baseline)",
        "single_view",
        "synthetic/retrieval.yaml",
        shape_metrics_reader(),
        reproduces=f"{_RECOGNITION}: Retrieval (nearest training shape to a regressed embedding)",
        real_config="shapenet/retrieval.yaml",
        kind="baseline",
        yardstick=True,
        read_per_category=_SHAPE_PC,
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
        read_per_category=_POINTS_PC,
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
        read_per_category=_SHAPE_PC,
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
        read_per_category=_SHAPE_PC,
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
        read_per_category=_SHAPE_PC,
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
        read_per_category=_SHAPE_PC,
        **_SHAPE_VAL,
    ),
    MethodSpec(
        "oracle_nn",
        "Oracle NN (upper bound)",
        "single_view",
        "synthetic/oracle_nn.yaml",
        shape_metrics_reader(),
        train=False,
        reproduces=f"{_RECOGNITION}: Oracle NN (the training shape nearest to the ground truth)",
        real_config="shapenet/oracle_nn.yaml",
        kind="oracle",
        read_per_category=_SHAPE_PC,
    ),
    MethodSpec(
        "clustering_multiview",
        "Clustering (baseline)",
        "multi_view",
        "synthetic/clustering_multiview.yaml",
        multiview_reader,
        reproduces=f"{_RECOGNITION}: Clustering, the views' votes summed",
        kind="baseline",
        read_per_category=multiview_per_category,
        **_MVS_VAL,
    ),
    MethodSpec(
        "retrieval_multiview",
        "Retrieval (baseline)",
        "multi_view",
        "synthetic/retrieval_multiview.yaml",
        multiview_reader,
        reproduces=f"{_RECOGNITION}: Retrieval, the views' embeddings averaged",
        kind="baseline",
        yardstick=True,
        read_per_category=multiview_per_category,
        **_MVS_VAL,
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
        read_per_category=multiview_per_category,
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
        read_per_category=multiview_per_category,
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
        read_per_category=multiview_per_category,
        **_MVS_VAL,
    ),
    MethodSpec(
        "oracle_nn_multiview",
        "Oracle NN (upper bound)",
        "multi_view",
        "synthetic/oracle_nn_multiview.yaml",
        multiview_reader,
        train=False,
        reproduces=f"{_RECOGNITION}: Oracle NN, the training model nearest to the ground truth",
        kind="oracle",
        read_per_category=multiview_per_category,
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
