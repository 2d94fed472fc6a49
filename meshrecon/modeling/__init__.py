"""Models: registries of every extension point, and ``build_model(cfg)``.

A new method registers its classes in these registries and names them in a config; importing
the module that defines them is what registers them.
"""

from meshrecon.modeling.backbone import BACKBONE_REGISTRY, build_backbone
from meshrecon.modeling.heads import (
    DEPTH_HEAD_REGISTRY,
    MESH_HEAD_REGISTRY,
    MULTIVIEW_HEAD_REGISTRY,
    POINT_HEAD_REGISTRY,
    VOXEL_HEAD_REGISTRY,
    build_head,
)
from meshrecon.modeling.meta_arch import META_ARCH_REGISTRY, build_model, resolve_device
from meshrecon.modeling.proposal_generator import (
    PROPOSAL_GENERATOR_REGISTRY,
    build_proposal_generator,
)
from meshrecon.modeling.roi_heads import (
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
    "META_ARCH_REGISTRY",
    "BACKBONE_REGISTRY",
    "PROPOSAL_GENERATOR_REGISTRY",
    "ROI_HEADS_REGISTRY",
    "ROI_BOX_HEAD_REGISTRY",
    "ROI_MASK_HEAD_REGISTRY",
    "ROI_VOXEL_HEAD_REGISTRY",
    "ROI_MESH_HEAD_REGISTRY",
    "ROI_Z_HEAD_REGISTRY",
    "VOXEL_HEAD_REGISTRY",
    "MESH_HEAD_REGISTRY",
    "POINT_HEAD_REGISTRY",
    "DEPTH_HEAD_REGISTRY",
    "MULTIVIEW_HEAD_REGISTRY",
    "build_model",
    "resolve_device",
    "build_backbone",
    "build_proposal_generator",
    "build_roi_heads",
    "build_box_head",
    "build_mask_head",
    "build_voxel_head",
    "build_mesh_head",
    "build_z_head",
    "build_head",
]
