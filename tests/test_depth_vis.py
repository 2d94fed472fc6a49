"""Depth pictures and back-projected point clouds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from meshrecon.io.pointcloud_io import load_pointcloud_ply
from meshrecon.utils.depth_vis import (
    depth_panel,
    depth_to_colored_points,
    image_to_rgb_uint8,
    save_depth_visualization,
    scale_intrinsics,
)

K = [60.0, 62.0, 41.0, 29.0]  # fx, fy, cx, cy of an 80 x 60 image
NORMAL = np.array([0.2, -0.5, 1.0]) / np.linalg.norm([0.2, -0.5, 1.0])
OFFSET = 3.0  # the plane n . X = 3 (metres), in the camera frame


def _plane_depth(k, h: int, w: int) -> np.ndarray:
    """Z at each pixel centre of the plane NORMAL . X = OFFSET, seen with intrinsics k."""
    fx, fy, cx, cy = k
    u = np.arange(w) + 0.5
    v = np.arange(h) + 0.5
    rx = (cx - u)[None, :] / fx  # X / Z, camera +X left
    ry = (cy - v)[:, None] / fy  # Y / Z, camera +Y up
    return OFFSET / (NORMAL[0] * rx + NORMAL[1] * ry + NORMAL[2])


def _fit_plane(points: np.ndarray) -> tuple[np.ndarray, float, float]:
    centre = points.mean(0)
    _, s, vt = np.linalg.svd(points - centre, full_matrices=False)
    n = vt[-1]
    return n, float(n @ centre), float(s[-1] / np.sqrt(len(points)))


def test_back_projected_plane_is_that_plane():
    depth = _plane_depth(K, 60, 80)
    assert depth.min() > 0
    depth[10:14, 20:30] = 0.0  # holes are skipped
    points, colors = depth_to_colored_points(depth, K)
    assert points.shape == (60 * 80 - 40, 3) and colors.dtype == torch.uint8
    pts = points.double().numpy()
    n, c, rms = _fit_plane(pts)
    assert rms < 1e-5
    if n @ NORMAL < 0:
        n, c = -n, -c
    assert np.allclose(n, NORMAL, atol=1e-5) and c == pytest.approx(OFFSET, abs=1e-4)
    assert np.allclose(pts @ NORMAL, OFFSET, atol=1e-4)


def test_scaled_intrinsics_give_the_same_plane_at_half_size():
    k_half = scale_intrinsics(K, (60, 80), (30, 40)).tolist()
    assert k_half == pytest.approx([30.0, 31.0, 20.5, 14.5])
    points, _ = depth_to_colored_points(_plane_depth(k_half, 30, 40), k_half)
    assert np.allclose(points.double().numpy() @ NORMAL, OFFSET, atol=1e-4)


def test_points_take_the_image_colours():
    depth = np.ones((2, 3))
    image = np.zeros((2, 3, 3), dtype=np.uint8)
    image[1, 2] = (255, 10, 20)
    points, colors = depth_to_colored_points(depth, [1.0, 1.0, 1.5, 1.0], image)
    assert colors[-1].tolist() == [255, 10, 20] and colors[0].tolist() == [0, 0, 0]
    # Pixel (row 1, col 2) has centre u = 2.5, v = 1.5: X = (1.5 - 2.5), Y = (1 - 1.5).
    assert points[-1].tolist() == pytest.approx([-1.0, -0.5, 1.0])


def test_panel_layout_and_invalid_gt_is_black():
    image = np.full((12, 16, 3), 200, dtype=np.uint8)
    pred = np.linspace(1, 5, 6 * 8).reshape(6, 8)
    gt = pred.copy()
    gt[0, 0] = 0.0
    panel = depth_panel(image, pred, gt)
    assert panel.shape == (6, 32, 3) and panel.dtype == np.uint8
    assert panel[0, 8].tolist() == [0, 0, 0]  # GT panel, missing pixel
    assert panel[0, 24].tolist() == [0, 0, 0]  # error panel, missing pixel
    assert panel[3, 3].tolist() == [200, 200, 200]  # the image, resized
    assert np.array_equal(panel[:, 8:16][1:], panel[:, 16:24][1:])  # GT == pred: same colours
    assert depth_panel(image, pred).shape == (6, 16, 3)
    with pytest.raises(ValueError, match="same shape"):
        depth_panel(image, pred, gt[:5])


def test_image_format_conversion():
    bgr = torch.zeros(3, 2, 2)
    bgr[0] = 255.0  # blue in BGR order
    assert image_to_rgb_uint8(bgr, "BGR")[0, 0].tolist() == [0, 0, 255]
    with pytest.raises(ValueError, match="image_format"):
        image_to_rgb_uint8(bgr, "HSV")


def test_save_writes_png_and_readable_plys(tmp_path):
    depth = _plane_depth(K, 60, 80)
    gt = depth.copy()
    gt[:30] = 0.0
    image = np.full((60, 80, 3), 90, dtype=np.uint8)
    paths = save_depth_visualization(str(tmp_path), "frame", image, depth, K, gt)
    assert set(paths) == {"panel", "pred_ply", "gt_ply"}
    pred_cloud = load_pointcloud_ply(paths["pred_ply"])
    gt_cloud = load_pointcloud_ply(paths["gt_ply"])
    assert pred_cloud.points.shape == (4800, 3) and gt_cloud.points.shape == (2400, 3)
    assert torch.allclose(pred_cloud.colors, torch.full((4800, 3), 90 / 255), atol=1e-6)
    with pytest.raises(ValueError, match="file-name stem"):
        save_depth_visualization(str(tmp_path), "a/b", image, depth, K)
