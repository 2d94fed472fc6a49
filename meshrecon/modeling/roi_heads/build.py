"""ROI-head registries (one per head kind) and Detectron2's names for building them.

``ROI_HEADS_REGISTRY`` holds the whole per-region stage (StandardROIHeads, MeshRCNNROIHeads);
each kind of per-region head it runs has its own registry, chosen by ``MODEL.ROI_<KIND>_HEAD.NAME``.
Every registered class is called as ``cls(cfg, input_shape)``. The kinds join the whole-image
ones in :data:`~meshrecon.modeling.heads.build.HEAD_REGISTRIES`, so that
:func:`~meshrecon.modeling.heads.build.build_head` builds them all; ``build_roi_heads``,
``build_box_head``, ... are Detectron2's names for those calls.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from meshrecon.modeling.heads.build import build_head, register_head_kind
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


for _kind, _registry, _node in (
    ("roi_heads", ROI_HEADS_REGISTRY, "ROI_HEADS"),
    ("roi_box", ROI_BOX_HEAD_REGISTRY, "ROI_BOX_HEAD"),
    ("roi_mask", ROI_MASK_HEAD_REGISTRY, "ROI_MASK_HEAD"),
    ("roi_voxel", ROI_VOXEL_HEAD_REGISTRY, "ROI_VOXEL_HEAD"),
    ("roi_mesh", ROI_MESH_HEAD_REGISTRY, "ROI_MESH_HEAD"),
    ("roi_z", ROI_Z_HEAD_REGISTRY, "ROI_Z_HEAD"),
):
    register_head_kind(_kind, _registry, _node)


def build_roi_heads(cfg, input_shape: Any) -> nn.Module:
    """Build ``cfg.MODEL.ROI_HEADS.NAME``: ``build_head(cfg, "roi_heads", input_shape)``."""
    return build_head(cfg, "roi_heads", input_shape)


def build_box_head(cfg, input_shape: Any) -> nn.Module:
    """Build ``cfg.MODEL.ROI_BOX_HEAD.NAME``: ``build_head(cfg, "roi_box", input_shape)``."""
    return build_head(cfg, "roi_box", input_shape)


def build_mask_head(cfg, input_shape: Any) -> nn.Module:
    """Build ``cfg.MODEL.ROI_MASK_HEAD.NAME``: ``build_head(cfg, "roi_mask", input_shape)``."""
    return build_head(cfg, "roi_mask", input_shape)


def build_voxel_head(cfg, input_shape: Any) -> nn.Module:
    """Build ``cfg.MODEL.ROI_VOXEL_HEAD.NAME``: ``build_head(cfg, "roi_voxel", input_shape)``."""
    return build_head(cfg, "roi_voxel", input_shape)


def build_mesh_head(cfg, input_shape: Any) -> nn.Module:
    """Build ``cfg.MODEL.ROI_MESH_HEAD.NAME``: ``build_head(cfg, "roi_mesh", input_shape)``."""
    return build_head(cfg, "roi_mesh", input_shape)


def build_z_head(cfg, input_shape: Any) -> nn.Module:
    """Build ``cfg.MODEL.ROI_Z_HEAD.NAME``: ``build_head(cfg, "roi_z", input_shape)``."""
    return build_head(cfg, "roi_z", input_shape)
