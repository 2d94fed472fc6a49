"""Registries of whole-image heads (one per kind) and ``build_head``.

Single- and multi-view reconstructors (VoxMesh, Pixel2Mesh, PSGN, R2N2, the depth network, ...)
run heads on whole-image features rather than on regions. Each kind has a registry and a config
key ``MODEL.<KIND>_HEAD.NAME``; ``build_head(cfg, kind, ...)`` looks the name up and calls the
registered class with the remaining arguments (by convention ``cfg, input_shape``).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from meshrecon.utils.registry import Registry

__all__ = [
    "VOXEL_HEAD_REGISTRY",
    "MESH_HEAD_REGISTRY",
    "POINT_HEAD_REGISTRY",
    "DEPTH_HEAD_REGISTRY",
    "MULTIVIEW_HEAD_REGISTRY",
    "HEAD_REGISTRIES",
    "build_head",
    "declared_evaluator_type",
]

VOXEL_HEAD_REGISTRY = Registry("VOXEL_HEAD")
VOXEL_HEAD_REGISTRY.__doc__ = "Whole-image voxel heads (image features -> occupancy grid)."
MESH_HEAD_REGISTRY = Registry("MESH_HEAD")
MESH_HEAD_REGISTRY.__doc__ = "Whole-image mesh heads (VoxMesh refinement, Pixel2Mesh G-ResNet)."
POINT_HEAD_REGISTRY = Registry("POINT_HEAD")
POINT_HEAD_REGISTRY.__doc__ = "Point-set heads (PSGN, conditional point generators)."
DEPTH_HEAD_REGISTRY = Registry("DEPTH_HEAD")
DEPTH_HEAD_REGISTRY.__doc__ = "Depth heads (Eigen et al. coarse/fine)."
MULTIVIEW_HEAD_REGISTRY = Registry("MULTIVIEW_HEAD")
MULTIVIEW_HEAD_REGISTRY.__doc__ = """Multi-view fusion heads (R2N2 3D conv-GRU/LSTM, OptimizeMVS).

A multi-view head class declares what scores its predictions as a class attribute
``evaluator_type`` (an evaluator type registered with
:func:`meshrecon.evaluation.register_evaluator`, e.g. ``"r2n2"``, ``"optimize_mvs"``); see
:func:`declared_evaluator_type`."""

# kind -> (registry, config node under MODEL holding NAME)
HEAD_REGISTRIES: dict[str, tuple[Registry, str]] = {
    "voxel": (VOXEL_HEAD_REGISTRY, "VOXEL_HEAD"),
    "mesh": (MESH_HEAD_REGISTRY, "MESH_HEAD"),
    "point": (POINT_HEAD_REGISTRY, "POINT_HEAD"),
    "depth": (DEPTH_HEAD_REGISTRY, "DEPTH_HEAD"),
    "multiview": (MULTIVIEW_HEAD_REGISTRY, "MULTIVIEW_HEAD"),
}


def build_head(cfg, kind: str, *args: Any, **kwargs: Any) -> nn.Module:
    """Build the ``kind`` head named by ``cfg.MODEL.<KIND>_HEAD.NAME``.

    Args:
        cfg: the config, passed on as the first argument.
        kind: one of ``"voxel"``, ``"mesh"``, ``"point"``, ``"depth"``, ``"multiview"``.
        *args, **kwargs: passed on after ``cfg`` (usually ``input_shape``).
    """
    if kind not in HEAD_REGISTRIES:
        raise ValueError(f"Unknown head kind {kind!r}; expected one of {sorted(HEAD_REGISTRIES)}")
    registry, node = HEAD_REGISTRIES[kind]
    cfg_key = f"MODEL.{node}.NAME"
    name = cfg.MODEL[node].NAME
    if not name:
        raise ValueError(f"{cfg_key} is empty: the config names no {kind} head to build")
    return registry.get(name, cfg_key=cfg_key)(cfg, *args, **kwargs)


def declared_evaluator_type(cfg) -> str | None:
    """The evaluator type the config's multi-view head declares (``evaluator_type``), or None.

    Evaluation never imports modeling, so it cannot ask the model which evaluator fits its
    predictions; the engine asks here and passes the answer to
    :func:`meshrecon.evaluation.build_evaluator`, where it takes the place of the dataset's
    ``evaluator_type`` metadata. None (no multi-view head named, or its class declares nothing)
    leaves the dataset's metadata in charge.

    Raises:
        KeyError: ``MODEL.MULTIVIEW_HEAD.NAME`` names no registered head.
        ValueError: the head's ``evaluator_type`` is not a non-empty string.
    """
    name = cfg.MODEL.MULTIVIEW_HEAD.NAME
    if not name:
        return None
    head = MULTIVIEW_HEAD_REGISTRY.get(name, cfg_key="MODEL.MULTIVIEW_HEAD.NAME")
    kind = getattr(head, "evaluator_type", None)
    if kind is not None and (not isinstance(kind, str) or not kind):
        raise ValueError(
            f"{head.__name__}.evaluator_type must be a registered evaluator type (a non-empty "
            f"string) or None, got {kind!r}"
        )
    return kind
