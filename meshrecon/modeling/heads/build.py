"""Registries of whole-image heads (one per kind) and ``build_head``, the one head builder.

Single- and multi-view reconstructors (VoxMesh, Pixel2Mesh, PSGN, R2N2, the depth network, ...)
run heads on whole-image features rather than on regions. Each kind of head has a registry and
a config key ``MODEL.<NODE>.NAME``, listed in :data:`HEAD_REGISTRIES`; the per-region kinds of
the ROI heads (``"roi_heads"``, ``"roi_box"``, ...) are added there by
``meshrecon.modeling.roi_heads.build``. ``build_head(cfg, kind, ...)`` looks the configured name
up and calls the registered class with the remaining arguments (by convention
``cfg, input_shape``); Detectron2's ``build_roi_heads`` / ``build_box_head`` / ... are one-line
calls of it.
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
    "register_head_kind",
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

# kind -> (registry, config node under MODEL holding NAME); the ROI kinds join in
# meshrecon.modeling.roi_heads.build (register_head_kind).
HEAD_REGISTRIES: dict[str, tuple[Registry, str]] = {
    "voxel": (VOXEL_HEAD_REGISTRY, "VOXEL_HEAD"),
    "mesh": (MESH_HEAD_REGISTRY, "MESH_HEAD"),
    "point": (POINT_HEAD_REGISTRY, "POINT_HEAD"),
    "depth": (DEPTH_HEAD_REGISTRY, "DEPTH_HEAD"),
    "multiview": (MULTIVIEW_HEAD_REGISTRY, "MULTIVIEW_HEAD"),
}


def register_head_kind(kind: str, registry: Registry, node: str) -> None:
    """Make ``kind`` buildable by :func:`build_head`: its heads are in ``registry`` and the
    config names one at ``MODEL.<node>.NAME``.

    Raises:
        ValueError: ``kind`` is taken by another registry or config node.
    """
    known = HEAD_REGISTRIES.get(kind)
    if known is not None and (known[0] is not registry or known[1] != node):
        raise ValueError(
            f"head kind {kind!r} is already the {known[0]._name} registry at MODEL.{known[1]}.NAME"
        )
    HEAD_REGISTRIES[kind] = (registry, node)


def build_head(
    cfg, kind: str, *args: Any, default_name: str | None = None, **kwargs: Any
) -> nn.Module:
    """Build the ``kind`` head named by ``cfg.MODEL.<NODE>.NAME`` (:data:`HEAD_REGISTRIES`).

    Args:
        cfg: the config, passed on as the first argument.
        kind: a key of :data:`HEAD_REGISTRIES`: ``"voxel"``, ``"mesh"``, ``"point"``,
            ``"depth"``, ``"multiview"``, and the ROI heads' ``"roi_heads"``, ``"roi_box"``,
            ``"roi_mask"``, ``"roi_voxel"``, ``"roi_mesh"``, ``"roi_z"``.
        *args, **kwargs: passed on after ``cfg`` (usually ``input_shape``).
        default_name: the head to build when the config's name is empty (e.g. Mesh R-CNN's
            ShapeNet configs name no voxel head: theirs is the only one); None: an empty name
            is an error.

    Raises:
        ValueError: ``kind`` is unknown, or the config names no head and there is no default.
        KeyError: the config's name is not registered; the message names the config key and
            lists the registered names.
    """
    if kind not in HEAD_REGISTRIES:
        raise ValueError(f"Unknown head kind {kind!r}; expected one of {sorted(HEAD_REGISTRIES)}")
    registry, node = HEAD_REGISTRIES[kind]
    cfg_key = f"MODEL.{node}.NAME"
    name = cfg.MODEL[node].NAME or default_name
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
