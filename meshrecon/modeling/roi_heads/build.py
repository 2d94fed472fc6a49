"""ROI-head registries (one per head kind) and their builders.

``ROI_HEADS_REGISTRY`` holds the whole per-region stage (StandardROIHeads, MeshRCNNROIHeads);
each kind of per-region head it runs has its own registry, chosen by ``MODEL.ROI_<KIND>_HEAD.NAME``.
Every registered class is called as ``cls(cfg, input_shape)``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from meshrecon.utils.registry import Registry

__all__ = [
    "ROI_HEADS_REGISTRY",
    "ROI_BOX_HEAD_REGISTRY",
    "ROI_MASK_HEAD_REGISTRY",
    "ROI_VOXEL_HEAD_REGISTRY",
    "ROI_MESH_HEAD_REGISTRY",
    "ROI_Z_HEAD_REGISTRY",
    "build_roi_heads",
    "build_box_head",
    "build_mask_head",
    "build_voxel_head",
    "build_mesh_head",
    "build_z_head",
]

ROI_HEADS_REGISTRY = Registry("ROI_HEADS")
ROI_HEADS_REGISTRY.__doc__ = "Per-region stages; ``cls(cfg, input_shape: dict[str, ShapeSpec])``."
ROI_BOX_HEAD_REGISTRY = Registry("ROI_BOX_HEAD")
ROI_BOX_HEAD_REGISTRY.__doc__ = "Box heads; ``cls(cfg, input_shape: ShapeSpec)``."
ROI_MASK_HEAD_REGISTRY = Registry("ROI_MASK_HEAD")
ROI_MASK_HEAD_REGISTRY.__doc__ = "Mask heads; ``cls(cfg, input_shape: ShapeSpec)``."
ROI_VOXEL_HEAD_REGISTRY = Registry("ROI_VOXEL_HEAD")
ROI_VOXEL_HEAD_REGISTRY.__doc__ = "Voxel heads (Mesh R-CNN); ``cls(cfg, input_shape: ShapeSpec)``."
ROI_MESH_HEAD_REGISTRY = Registry("ROI_MESH_HEAD")
ROI_MESH_HEAD_REGISTRY.__doc__ = "Mesh refinement heads; ``cls(cfg, input_shape: ShapeSpec)``."
ROI_Z_HEAD_REGISTRY = Registry("ROI_Z_HEAD")
ROI_Z_HEAD_REGISTRY.__doc__ = "Depth-extent (z) heads; ``cls(cfg, input_shape: ShapeSpec)``."


def _build(registry: Registry, cfg_key: str, cfg, input_shape: Any) -> nn.Module:
    node = cfg
    for part in cfg_key.split("."):
        node = node[part]
    return registry.get(node, cfg_key=cfg_key)(cfg, input_shape)


def build_roi_heads(cfg, input_shape: Any) -> nn.Module:
    """Build ``cfg.MODEL.ROI_HEADS.NAME``."""
    return _build(ROI_HEADS_REGISTRY, "MODEL.ROI_HEADS.NAME", cfg, input_shape)


def build_box_head(cfg, input_shape: Any) -> nn.Module:
    """Build ``cfg.MODEL.ROI_BOX_HEAD.NAME``."""
    return _build(ROI_BOX_HEAD_REGISTRY, "MODEL.ROI_BOX_HEAD.NAME", cfg, input_shape)


def build_mask_head(cfg, input_shape: Any) -> nn.Module:
    """Build ``cfg.MODEL.ROI_MASK_HEAD.NAME``."""
    return _build(ROI_MASK_HEAD_REGISTRY, "MODEL.ROI_MASK_HEAD.NAME", cfg, input_shape)


def build_voxel_head(cfg, input_shape: Any) -> nn.Module:
    """Build ``cfg.MODEL.ROI_VOXEL_HEAD.NAME``."""
    return _build(ROI_VOXEL_HEAD_REGISTRY, "MODEL.ROI_VOXEL_HEAD.NAME", cfg, input_shape)


def build_mesh_head(cfg, input_shape: Any) -> nn.Module:
    """Build ``cfg.MODEL.ROI_MESH_HEAD.NAME``."""
    return _build(ROI_MESH_HEAD_REGISTRY, "MODEL.ROI_MESH_HEAD.NAME", cfg, input_shape)


def build_z_head(cfg, input_shape: Any) -> nn.Module:
    """Build ``cfg.MODEL.ROI_Z_HEAD.NAME``."""
    return _build(ROI_Z_HEAD_REGISTRY, "MODEL.ROI_Z_HEAD.NAME", cfg, input_shape)
