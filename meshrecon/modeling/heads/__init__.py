"""Whole-image heads (voxel, mesh, point, depth, multi-view), one registry per kind."""

from meshrecon.modeling.heads.build import (
    DEPTH_HEAD_REGISTRY,
    HEAD_REGISTRIES,
    MESH_HEAD_REGISTRY,
    MULTIVIEW_HEAD_REGISTRY,
    POINT_HEAD_REGISTRY,
    VOXEL_HEAD_REGISTRY,
    build_head,
)

__all__ = [
    "VOXEL_HEAD_REGISTRY",
    "MESH_HEAD_REGISTRY",
    "POINT_HEAD_REGISTRY",
    "DEPTH_HEAD_REGISTRY",
    "MULTIVIEW_HEAD_REGISTRY",
    "HEAD_REGISTRIES",
    "build_head",
]
