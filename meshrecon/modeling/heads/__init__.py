"""Whole-image heads (voxel, mesh, point, depth, multi-view), one registry per kind."""

from meshrecon.modeling.heads.build import (
    DEPTH_HEAD_REGISTRY,
    HEAD_REGISTRIES,
    MESH_HEAD_REGISTRY,
    MULTIVIEW_HEAD_REGISTRY,
    POINT_HEAD_REGISTRY,
    VOXEL_HEAD_REGISTRY,
    build_head,
    declared_evaluator_type,
    register_head_kind,
)
from meshrecon.modeling.heads.shared import (
    MeshRefinementHead,
    MeshRefinementStage,
    VoxelConvHead,
)

__all__ = [
    "VOXEL_HEAD_REGISTRY",
    "MESH_HEAD_REGISTRY",
    "POINT_HEAD_REGISTRY",
    "DEPTH_HEAD_REGISTRY",
    "MULTIVIEW_HEAD_REGISTRY",
    "HEAD_REGISTRIES",
    "build_head",
    "register_head_kind",
    "declared_evaluator_type",
    "VoxelConvHead",
    "MeshRefinementStage",
    "MeshRefinementHead",
]

# --- section: single-view heads (owner: single-view) ---
from meshrecon.modeling.heads.mean_shape import MeanShapeHead  # noqa: E402
from meshrecon.modeling.heads.pixel2mesh import Pixel2MeshGResNetHead  # noqa: E402
from meshrecon.modeling.heads.psgn import PSGNHead  # noqa: E402
from meshrecon.modeling.heads.sphere_init import Pixel2MeshHead, SphereInitHead  # noqa: E402
from meshrecon.modeling.heads.voxmesh import VoxelHead, VoxMeshHead  # noqa: E402

__all__ += [
    "MeanShapeHead",
    "Pixel2MeshGResNetHead",
    "PSGNHead",
    "Pixel2MeshHead",
    "SphereInitHead",
    "VoxelHead",
    "VoxMeshHead",
]
# --- end section ---
from meshrecon.modeling.heads.depth_eigen import EigenMultiScaleHead  # noqa: E402

__all__ += ["EigenMultiScaleHead"]
from meshrecon.modeling.heads.r2n2 import R2N2Head  # noqa: E402

__all__ += ["R2N2Head"]
from meshrecon.modeling.heads.optimize_mvs import OptimizeMVSHead  # noqa: E402

__all__ += ["OptimizeMVSHead"]
# --- section: recognition baselines (Retrieval, Clustering, Oracle NN) ---
from meshrecon.modeling.heads.recognition import (  # noqa: E402
    ClusteringHead,
    OracleNNHead,
    RetrievalHead,
)
from meshrecon.modeling.heads.recognition_multiview import (  # noqa: E402
    MultiViewClusteringHead,
    MultiViewOracleNNHead,
    MultiViewRetrievalHead,
)

__all__ += [
    "ClusteringHead",
    "OracleNNHead",
    "RetrievalHead",
    "MultiViewClusteringHead",
    "MultiViewOracleNNHead",
    "MultiViewRetrievalHead",
]
# --- end section ---
