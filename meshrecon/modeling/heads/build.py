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
MULTIVIEW_HEAD_REGISTRY.__doc__ = "Multi-view fusion heads (R2N2 3D conv-GRU/LSTM, OptimizeMVS)."

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
