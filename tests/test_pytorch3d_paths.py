"""Every public PyTorch3D name meshrecon carries imports from PyTorch3D's module paths with
``pytorch3d`` replaced by ``meshrecon`` (the table in docs/PYTORCH3D_COMPAT.md)."""

import importlib

import pytest

# (PyTorch3D package, defining module inside it, name): the package exports the name, and the
# module path works too, as in PyTorch3D.
CARRIED = [
    ("ops", "cubify", "cubify"),
    ("ops", "graph_conv", "GraphConv"),
    ("ops", "knn", "knn_gather"),
    ("ops", "knn", "knn_points"),
    ("ops", "laplacian_matrices", "cot_laplacian"),
    ("ops", "laplacian_matrices", "laplacian"),
    ("ops", "laplacian_matrices", "norm_laplacian"),
    ("ops", "mesh_face_areas_normals", "mesh_face_areas_normals"),
    ("ops", "packed_to_padded", "packed_to_padded"),
    ("ops", "packed_to_padded", "padded_to_packed"),
    ("ops", "points_normals", "estimate_pointcloud_local_coord_frames"),
    ("ops", "points_normals", "estimate_pointcloud_normals"),
    ("ops", "sample_farthest_points", "sample_farthest_points"),
    ("ops", "sample_points_from_meshes", "sample_points_from_meshes"),
    ("ops", "subdivide_meshes", "SubdivideMeshes"),
    ("ops", "utils", "convert_pointclouds_to_tensor"),
    ("ops", "utils", "eyes"),
    ("ops", "utils", "get_point_covariances"),
    ("ops", "utils", "is_pointclouds"),
    ("ops", "utils", "wmean"),
    ("ops", "vert_align", "vert_align"),
    ("loss", "chamfer", "chamfer_distance"),
    ("loss", "mesh_edge_loss", "mesh_edge_loss"),
    ("loss", "mesh_laplacian_smoothing", "mesh_laplacian_smoothing"),
    ("loss", "mesh_normal_consistency", "mesh_normal_consistency"),
    ("structures", "meshes", "Meshes"),
    ("structures", "meshes", "join_meshes_as_batch"),
    ("structures", "meshes", "join_meshes_as_scene"),
    ("structures", "pointclouds", "Pointclouds"),
    ("structures", "pointclouds", "join_pointclouds_as_batch"),
    ("structures", "pointclouds", "join_pointclouds_as_scene"),
    ("structures", "utils", "list_to_packed"),
    ("structures", "utils", "list_to_padded"),
    ("structures", "utils", "packed_to_list"),
    ("structures", "utils", "padded_to_list"),
    ("utils", "ico_sphere", "ico_sphere"),
    ("io", "obj_io", "load_obj"),
    ("io", "obj_io", "load_objs_as_meshes"),
    ("io", "obj_io", "save_obj"),
]

# Public names of PyTorch3D modules that are not exported by the package (reachable only by
# the module path).
MODULE_ONLY = [
    ("ops.graph_conv", "gather_scatter"),
    ("ops.graph_conv", "gather_scatter_python"),
    ("ops.utils", "masked_gather"),
    ("structures.utils", "padded_to_packed"),
    ("io.mtl_io", "load_mtl"),
    ("io.mtl_io", "make_mesh_texture_atlas"),
    ("io.mtl_io", "make_material_atlas"),
]


@pytest.mark.parametrize("package, module, name", CARRIED)
def test_pytorch3d_import_paths(package, module, name):
    from_package = getattr(importlib.import_module(f"meshrecon.{package}"), name)
    from_module = getattr(importlib.import_module(f"meshrecon.{package}.{module}"), name)
    assert from_package is from_module
    assert callable(from_package)


@pytest.mark.parametrize("module, name", MODULE_ONLY)
def test_module_only_paths(module, name):
    assert callable(getattr(importlib.import_module(f"meshrecon.{module}"), name))


def test_losses_are_the_ops_and_ico_sphere_is_the_function():
    import meshrecon.ops as ops
    from meshrecon import loss, utils

    assert loss.chamfer_distance is ops.chamfer_distance
    assert loss.mesh_normal_consistency is ops.mesh_normal_consistency
    # The package attribute is the function, not the submodule of the same name.
    assert utils.ico_sphere is ops.ico_sphere
    assert len(utils.ico_sphere(0).verts_packed()) == 12
