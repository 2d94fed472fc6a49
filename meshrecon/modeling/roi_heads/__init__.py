"""Per-region heads (box, mask, voxel, mesh, z) and the stages that run them."""

from meshrecon.modeling.roi_heads.build import (
    ROI_BOX_HEAD_REGISTRY,
    ROI_HEADS_REGISTRY,
    ROI_MASK_HEAD_REGISTRY,
    ROI_MESH_HEAD_REGISTRY,
    ROI_VOXEL_HEAD_REGISTRY,
    ROI_Z_HEAD_REGISTRY,
    build_box_head,
    build_mask_head,
    build_mesh_head,
    build_roi_heads,
    build_voxel_head,
    build_z_head,
)

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
