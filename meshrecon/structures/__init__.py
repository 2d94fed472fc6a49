"""Data structures: PyTorch3D-compatible Meshes/Pointclouds, Detectron2-compatible boxes etc."""

# --- section: meshes/pointclouds (owner: structures) ---
from .meshes import Meshes, join_meshes_as_batch, join_meshes_as_scene
from .pointclouds import Pointclouds, join_pointclouds_as_batch, join_pointclouds_as_scene
from .utils import (
    list_to_packed,
    list_to_padded,
    packed_to_list,
    padded_to_list,
    padded_to_packed,
)

__all__ = [
    "Meshes",
    "Pointclouds",
    "join_meshes_as_batch",
    "join_meshes_as_scene",
    "join_pointclouds_as_batch",
    "join_pointclouds_as_scene",
    "list_to_packed",
    "list_to_padded",
    "packed_to_list",
    "padded_to_list",
    "padded_to_packed",
]
# --- end section ---
# --- section: detection structures (owner: framework) ---
from .boxes import Boxes, pairwise_intersection, pairwise_iou  # noqa: E402
from .image_list import ImageList  # noqa: E402
from .instances import Instances  # noqa: E402

__all__ += ["Boxes", "ImageList", "Instances", "pairwise_intersection", "pairwise_iou"]
# --- end section ---
# --- section: masks and per-instance shapes (owner: data) ---
from .masks import BitMasks  # noqa: E402
from .shape_database import ShapeDatabase  # noqa: E402
from .shape_instances import MeshInstances, VoxelInstances  # noqa: E402
from .voxels import Voxels  # noqa: E402

__all__ += ["BitMasks", "MeshInstances", "ShapeDatabase", "VoxelInstances", "Voxels"]
# --- end section ---
# --- section: single-view cameras and targets (owner: modeling) ---
from .view_batch import ViewBatch  # noqa: E402

__all__ += ["ViewBatch"]
# --- end section ---
