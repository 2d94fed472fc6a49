"""meshrecon.render.frustum: Blender's constants derived from the camera, the grid maps, and the
old import paths that stay."""

import pytest
import torch

from meshrecon.config import get_cfg
from meshrecon.render import frustum
from meshrecon.render.cameras import blender_projection_matrix, opengl_to_camera, r2n2_camera


def test_f_ndc_is_the_lens_over_half_the_sensor():
    assert frustum.BLENDER_F_NDC == pytest.approx(2.0 * 35.0 / 32.0)
    P = blender_projection_matrix()
    assert P[0, 0].item() == pytest.approx(frustum.BLENDER_F_NDC)
    assert P[1, 1].item() == pytest.approx(frustum.BLENDER_F_NDC)


def test_ndc_depth_coefficients_are_the_projection_matrix_rows():
    P = blender_projection_matrix().double()
    A, B = frustum.blender_ndc_depth_coefficients()
    assert A == pytest.approx(P[2, 2].item(), rel=1e-7)
    assert B == pytest.approx(P[2, 3].item(), rel=1e-7)
    # Mesh R-CNN's rounded literals are these coefficients to its 7 printed digits.
    assert frustum._MESHRCNN_BLENDER_A3 == pytest.approx(A, abs=1e-8)
    assert frustum._MESHRCNN_BLENDER_B1 == pytest.approx(B, abs=1e-8)
    with pytest.raises(ValueError, match="near_far"):
        frustum.blender_ndc_depth_coefficients((1.0, 0.5))


def test_config_defaults_equal_the_frustum_constants():
    cfg = get_cfg()
    assert tuple(cfg.INPUT.SHAPENET.VOXEL_ZRANGE) == frustum.SHAPENET_ZRANGE
    assert tuple(cfg.INPUT.SHAPENET.NEAR_FAR) == frustum.BLENDER_NEAR_FAR


def test_r2n2_camera_uses_blender_focal_length():
    # A 137-pixel R2N2 render: f_px = f_ndc * W / 2.
    K, _, _ = r2n2_camera(30.0, 20.0, 1.0, 137)
    assert K[0].item() == pytest.approx(frustum.BLENDER_F_NDC * 137 / 2, rel=1e-6)


def test_voxel_space_is_the_frustum_grid_of_an_r2n2_render():
    # Mesh R-CNN's K-free voxel space and the K-based frustum grid are one grid for a square
    # R2N2 render with the principal point at the centre.
    V, W = 32, 137
    f = frustum.BLENDER_F_NDC * W / 2.0
    K = torch.tensor([f, f, W / 2.0, W / 2.0], dtype=torch.float64)
    c = torch.rand(200, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    c = 2.0 * c - 1.0
    # voxel_to_camera gives Mesh R-CNN's (OpenGL) camera frame.
    from_voxel_space = opengl_to_camera(frustum.voxel_to_camera(c))
    from_grid = frustum.frustum_voxel_coords_to_camera((c + 1.0) * (V - 1) / 2.0, K, (W, W), V)
    # Mesh R-CNN's 7-digit matrix entries are the only difference.
    torch.testing.assert_close(from_voxel_space, from_grid, rtol=1e-5, atol=1e-6)


def test_voxelize_then_back_lands_in_the_voxel():
    V, W = 16, 64
    K = torch.tensor([70.0, 70.0, 32.0, 32.0])
    idx = torch.randint(0, V, (50, 3), generator=torch.Generator().manual_seed(1))
    pts = frustum.frustum_voxel_coords_to_camera(idx.double(), K.double(), (W, W), V).float()
    grid = frustum.voxelize_in_frustum(pts, K, (W, W), V)
    expected = torch.zeros(V, V, V, dtype=torch.bool)
    expected[idx[:, 2], idx[:, 1], idx[:, 0]] = True
    assert torch.equal(grid, expected)


def test_box_frustum_round_trip():
    boxes = torch.tensor([[10.0, 20.0, 60.0, 90.0]])
    Ks = torch.tensor([[100.0, 100.0, 50.0, 50.0]])
    zr = torch.tensor([[2.0, 3.0]])
    coords = 2.0 * torch.rand(1, 30, 3, generator=torch.Generator().manual_seed(2)) - 1.0
    pts = frustum.box_frustum_to_camera(coords.double(), boxes.double(), Ks.double(), zr)
    back = frustum.camera_to_box_frustum(pts, boxes.double(), Ks.double(), zr)
    torch.testing.assert_close(back, coords.double())


def test_old_import_paths_are_the_same_objects():
    from meshrecon.data import shape_targets
    from meshrecon.modeling.heads import shapenet_geometry
    from meshrecon.modeling.roi_heads import box_frustum
    from meshrecon.render import BLENDER_F_NDC, cameras

    assert shape_targets.voxelize_in_frustum is frustum.voxelize_in_frustum
    assert shape_targets.frustum_voxel_coords_to_camera is frustum.frustum_voxel_coords_to_camera
    assert shape_targets.SHAPENET_ZRANGE == frustum.SHAPENET_ZRANGE
    assert shapenet_geometry.voxel_to_camera is frustum.voxel_to_camera
    assert shapenet_geometry.blender_ndc_to_camera is frustum.blender_ndc_to_camera
    assert (shapenet_geometry.SHAPENET_MIN_ZMIN, shapenet_geometry.SHAPENET_MAX_ZMAX) == (
        frustum.SHAPENET_ZRANGE
    )
    for name in ("box_ray_bounds", "camera_to_box_frustum", "box_frustum_to_camera"):
        assert getattr(box_frustum, name) is getattr(frustum, name)
    assert BLENDER_F_NDC == cameras.BLENDER_F_NDC == frustum.BLENDER_F_NDC
