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

# --- section: box / mask heads and the standard ROI stage (owner: detection heads) ---
from meshrecon.modeling.roi_heads.box_head import FastRCNNConvFCHead  # noqa: E402
from meshrecon.modeling.roi_heads.fast_rcnn import (  # noqa: E402
    FastRCNNOutputLayers,
    fast_rcnn_inference,
)
from meshrecon.modeling.roi_heads.mask_head import (  # noqa: E402
    BaseMaskRCNNHead,
    MaskRCNNConvUpsampleHead,
    mask_rcnn_inference,
    mask_rcnn_loss,
)
from meshrecon.modeling.roi_heads.roi_heads import (  # noqa: E402
    ROIHeads,
    StandardROIHeads,
    pooler_from_config,
    select_foreground_proposals,
)

__all__ += [
    "FastRCNNConvFCHead",
    "FastRCNNOutputLayers",
    "fast_rcnn_inference",
    "BaseMaskRCNNHead",
    "MaskRCNNConvUpsampleHead",
    "mask_rcnn_inference",
    "mask_rcnn_loss",
    "ROIHeads",
    "StandardROIHeads",
    "pooler_from_config",
    "select_foreground_proposals",
]
# --- end section ---
