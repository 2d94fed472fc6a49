"""3D operations with PyTorch3D's names, arguments and semantics, in vectorized PyTorch."""

# --- section: knn/chamfer/emd (owner: B) ---
# isort: split
from .chamfer import chamfer_distance as chamfer_distance
from .distance_field import descriptor_lattice as descriptor_lattice
from .distance_field import distance_field_descriptors as distance_field_descriptors
from .emd import earth_movers_distance as earth_movers_distance
from .emd import emd_assignment as emd_assignment
from .knn import KNN as KNN
from .knn import knn_gather as knn_gather
from .knn import knn_points as knn_points
from .point_set_distance import set_distance as set_distance
from .sample_farthest_points import sample_farthest_points as sample_farthest_points

# --- end section ---
# --- section: cubify/ico_sphere/ellipsoid/subdivide/voxels (owner: C) ---
# isort: split
from .cubify import cubify as cubify
from .cubify import cubify_packed as cubify_packed
from .ellipsoid import PIXEL2MESH_AXES as PIXEL2MESH_AXES
from .ellipsoid import PIXEL2MESH_CENTER as PIXEL2MESH_CENTER
from .ellipsoid import ellipsoid as ellipsoid
from .ico_sphere import ico_sphere as ico_sphere
from .subdivide_meshes import SubdivideMeshes as SubdivideMeshes
from .voxels import points_to_voxel_coords as points_to_voxel_coords
from .voxels import voxel_coords_to_points as voxel_coords_to_points
from .voxels import voxel_iou as voxel_iou
from .voxels import voxelize_meshes as voxelize_meshes

# --- end section ---
# --- section: graph_conv/vert_align/sampling/mesh losses (owner: D) ---
# isort: split
from .graph_conv import GraphConv as GraphConv
from .graph_conv import gather_scatter as gather_scatter
from .graph_conv import gather_scatter_python as gather_scatter_python
from .laplacian_matrices import cot_laplacian as cot_laplacian
from .laplacian_matrices import laplacian as laplacian
from .laplacian_matrices import norm_laplacian as norm_laplacian
from .mesh_losses import mesh_edge_loss as mesh_edge_loss
from .mesh_losses import mesh_laplacian_smoothing as mesh_laplacian_smoothing
from .mesh_losses import mesh_normal_consistency as mesh_normal_consistency
from .sample_points_from_meshes import replay_samples as replay_samples
from .sample_points_from_meshes import sample_points_from_meshes as sample_points_from_meshes
from .vert_align import vert_align as vert_align

# --- end section ---
# --- section: PyTorch3D names carried for compatibility (owner: p3d-compat) ---
# isort: split
from .mesh_face_areas_normals import mesh_face_areas_normals as mesh_face_areas_normals
from .packed_to_padded import packed_to_padded as packed_to_padded
from .packed_to_padded import padded_to_packed as padded_to_packed
from .points_normals import (
    estimate_pointcloud_local_coord_frames as estimate_pointcloud_local_coord_frames,
)
from .points_normals import estimate_pointcloud_normals as estimate_pointcloud_normals
from .utils import convert_pointclouds_to_tensor as convert_pointclouds_to_tensor
from .utils import eyes as eyes
from .utils import get_point_covariances as get_point_covariances
from .utils import is_pointclouds as is_pointclouds
from .utils import wmean as wmean

# --- end section ---
