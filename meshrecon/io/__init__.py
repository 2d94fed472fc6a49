"""Reading and writing meshes, point clouds and voxel grids."""

# --- section: io (owner: E) ---
from meshrecon.io.binvox import (
    binvox_voxel_centers,
    read_binvox,
    read_binvox_coords,
    write_binvox,
)
from meshrecon.io.mesh_io import (
    SUPPORTED_MESH_EXTENSIONS,
    Faces,
    MeshIOError,
    Properties,
    load_mesh,
    load_meshes,
    load_obj,
    load_objs_as_meshes,
    save_mesh,
    save_meshes,
    save_obj,
)
from meshrecon.io.pointcloud_io import (
    PointCloudData,
    load_pointcloud_ply,
    load_pointclouds,
    save_pointcloud_ply,
    save_pointclouds,
)
from meshrecon.io.voxels_io import VOXEL_EXTENSIONS, load_voxels, save_voxels

__all__ = [
    "Faces",
    "MeshIOError",
    "PointCloudData",
    "Properties",
    "SUPPORTED_MESH_EXTENSIONS",
    "VOXEL_EXTENSIONS",
    "binvox_voxel_centers",
    "load_mesh",
    "load_meshes",
    "load_obj",
    "load_objs_as_meshes",
    "load_pointcloud_ply",
    "load_pointclouds",
    "load_voxels",
    "read_binvox",
    "read_binvox_coords",
    "save_mesh",
    "save_meshes",
    "save_obj",
    "save_pointcloud_ply",
    "save_pointclouds",
    "save_voxels",
    "write_binvox",
]
# --- end section ---
