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

# --- section: Mesh R-CNN shape heads (owner: Mesh R-CNN Pix3D) ---
from meshrecon.modeling.roi_heads.mesh_head import (  # noqa: E402
    MeshRCNNGraphConvHead,
    MeshRCNNGraphConvSubdHead,
    mesh_rcnn_inference,
    mesh_rcnn_loss,
)
from meshrecon.modeling.roi_heads.mesh_rcnn_roi_heads import MeshRCNNROIHeads  # noqa: E402
from meshrecon.modeling.roi_heads.voxel_head import (  # noqa: E402
    VoxelRCNNConvUpsampleHead,
    voxel_rcnn_inference,
    voxel_rcnn_loss,
)
from meshrecon.modeling.roi_heads.z_head import (  # noqa: E402
    FastRCNNFCHead,
    z_rcnn_inference,
    z_rcnn_loss,
)

__all__ += [
    "MeshRCNNGraphConvHead",
    "MeshRCNNGraphConvSubdHead",
    "mesh_rcnn_inference",
    "mesh_rcnn_loss",
    "MeshRCNNROIHeads",
    "VoxelRCNNConvUpsampleHead",
    "voxel_rcnn_inference",
    "voxel_rcnn_loss",
    "FastRCNNFCHead",
    "z_rcnn_inference",
    "z_rcnn_loss",
]
# --- end section ---
