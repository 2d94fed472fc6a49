import os

import h5py
import numpy as np
import pytest
from fixtures_depthdata import (
    KITTI_P_RECT_02,
    KITTI_P_RECT_03,
    KITTI_VELO_T,
    write_kitti_calib,
    write_velodyne_bin,
)
from PIL import Image

from meshrecon.data.depth_io import (
    crop_mask,
    generate_depth_map,
    load_velodyne_points,
    read_calib_file,
    read_container_image,
    read_depth,
    write_depth_png16,
)

# ---------------------------------------------------------------------------------------------
# png16 / npy / h5
# ---------------------------------------------------------------------------------------------


def test_png16_roundtrip_marks_invalid_as_zero(tmp_path):
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.1, 60.0, size=(5, 7))
    depth[0, 0], depth[1, 1], depth[2, 2] = 0.0, np.nan, -3.0
    path = str(tmp_path / "d.png")
    write_depth_png16(path, depth, scale=1000.0)
    with Image.open(path) as img:
        assert img.mode.startswith("I;16") and img.size == (7, 5)
    out = read_depth({"kind": "png16", "path": path, "scale": 1000.0})
    assert out.dtype == np.float32 and out.shape == (5, 7)
    expected = np.round(np.nan_to_num(depth, nan=0.0).clip(min=0) * 1000) / 1000
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert out[0, 0] == out[1, 1] == out[2, 2] == 0.0


def test_png16_kitti_annotated_scale(tmp_path):
    # A KITTI annotated map: uint16 values, depth = value / 256.
    values = np.array([[0, 256, 512], [65535, 1, 12800]], dtype=np.uint16)
    path = str(tmp_path / "gt.png")
    Image.fromarray(values).save(path)
    out = read_depth({"kind": "png16", "path": path, "scale": 256})
    np.testing.assert_array_equal(out, values.astype(np.float32) / 256)


def test_png16_rejects_8bit_and_overflow(tmp_path):
    path = str(tmp_path / "eight.png")
    Image.fromarray(np.full((3, 3), 7, dtype=np.uint8)).save(path)
    with pytest.raises(ValueError, match="eight.png"):
        read_depth({"kind": "png16", "path": path, "scale": 1000})
    with pytest.raises(ValueError, match="big.png"):
        write_depth_png16(str(tmp_path / "big.png"), np.full((2, 2), 70.0), scale=1000.0)
    assert not os.path.exists(tmp_path / "big.png")


def test_npy_source(tmp_path):
    depth = np.arange(12, dtype=np.float64).reshape(3, 4)
    depth[0, 1] = np.inf
    path = str(tmp_path / "d.npy")
    np.save(path, depth)
    out = read_depth({"kind": "npy", "path": path})
    assert out.dtype == np.float32
    expected = depth.copy()
    expected[0, 1] = 0.0
    np.testing.assert_array_equal(out, expected)
    np.save(str(tmp_path / "bad.npy"), np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="bad.npy"):
        read_depth({"kind": "npy", "path": str(tmp_path / "bad.npy")})


def test_h5_depth_and_image_are_transposed(tmp_path):
    rng = np.random.default_rng(1)
    depths = rng.uniform(0, 10, size=(3, 5, 4)).astype(np.float32)  # (N, H, W)
    images = rng.integers(0, 256, size=(3, 5, 4, 3), dtype=np.uint8)
    path = str(tmp_path / "c.h5")
    with h5py.File(path, "w") as f:
        f["depths"] = depths.transpose(0, 2, 1)  # stored (N, W, H)
        f["images"] = images.transpose(0, 3, 2, 1)  # stored (N, 3, W, H)
    for i in range(3):
        np.testing.assert_array_equal(
            read_depth({"kind": "h5", "path": path, "key": "depths", "index": i}), depths[i]
        )
        image = read_container_image({"kind": "h5", "path": path, "key": "images", "index": i})
        assert image.dtype == np.uint8
        np.testing.assert_array_equal(image, images[i])
    with pytest.raises(IndexError, match="c.h5"):
        read_depth({"kind": "h5", "path": path, "key": "depths", "index": 3})
    with pytest.raises(KeyError, match="rawDepths"):
        read_depth({"kind": "h5", "path": path, "key": "rawDepths", "index": 0})
    with pytest.raises(ValueError, match="image"):
        read_depth({"kind": "h5", "path": path, "key": "images", "index": 0})
    with pytest.raises(ValueError, match="c.h5"):
        read_container_image({"kind": "h5", "path": path, "key": "depths", "index": 0})


def test_bad_sources_name_the_fault(tmp_path):
    missing = str(tmp_path / "nope.png")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_depth({"kind": "png16", "path": missing, "scale": 1000})
    with pytest.raises(ValueError, match="exr"):
        read_depth({"kind": "exr", "path": missing})
    with pytest.raises(KeyError, match="scale"):
        read_depth({"kind": "png16", "path": missing})
    not_h5 = tmp_path / "v5.mat"
    not_h5.write_bytes(b"MATLAB 5.0 MAT-file" + b"\x00" * 200)
    with pytest.raises(ValueError, match="v5.mat"):
        read_depth({"kind": "h5", "path": str(not_h5), "key": "depths", "index": 0})
    with pytest.raises(ValueError, match="kind 'h5'"):
        read_container_image({"kind": "png16", "path": missing})


# ---------------------------------------------------------------------------------------------
# KITTI calibration and Velodyne projection
# ---------------------------------------------------------------------------------------------


def test_read_calib_file_splits_on_first_colon(tmp_path):
    write_kitti_calib(str(tmp_path))
    cam = read_calib_file(str(tmp_path / "calib_cam_to_cam.txt"))
    assert cam["calib_time"] == "09-Jan-2012 13:57:47"
    np.testing.assert_allclose(cam["P_rect_02"].reshape(3, 4), KITTI_P_RECT_02, rtol=1e-6)
    np.testing.assert_allclose(cam["S_rect_02"], [1242, 375])
    assert cam["K_03"].shape == (9,) and cam["D_00"].shape == (5,)
    velo = read_calib_file(str(tmp_path / "calib_velo_to_cam.txt"))
    assert velo["calib_time"] == "15-Mar-2012 11:37:16"
    np.testing.assert_allclose(velo["T"], KITTI_VELO_T, rtol=1e-6)
    bad = tmp_path / "bad.txt"
    bad.write_text("P_rect_02 1 2 3\n")
    with pytest.raises(ValueError, match="bad.txt:1"):
        read_calib_file(str(bad))


def test_velodyne_bin_must_hold_rows_of_four(tmp_path):
    path = tmp_path / "scan.bin"
    np.arange(8, dtype="<f4").tofile(path)
    np.testing.assert_array_equal(load_velodyne_points(str(path))[1], [4, 5, 6, 7])
    np.arange(7, dtype="<f4").tofile(path)
    with pytest.raises(ValueError, match="scan.bin"):
        load_velodyne_points(str(path))


# A hand-checkable calibration: the Velodyne's x forward / y left / z up become the camera's
# z / -x / -y, the camera sits 0.5 m behind the Velodyne, no rectifying rotation, and P has a
# horizontal offset of 20 px*m like KITTI's stereo baselines.
_AXES = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
_T = np.array([0.0, 0.0, -0.5])
_F, _CX, _CY, _TX = 100.0, 30.2, 10.3, 20.0
_P = np.array([[_F, 0, _CX, _TX], [0, _F, _CY, 0], [0, 0, 1, 0]])


def _simple_calib(tmp_path):
    write_kitti_calib(
        str(tmp_path), size=(64, 24), P_rect_02=_P, P_rect_03=_P,
        R_rect_00=np.eye(3), velo_R=_AXES, velo_T=_T,
    )  # fmt: skip
    return str(tmp_path)


@pytest.mark.parametrize("vel_depth", [False, True])
def test_point_lands_in_hand_computed_pixel(tmp_path, vel_depth):
    calib = _simple_calib(tmp_path)
    # Velodyne (10, -1, 0.5) is camera (1, -0.5, 9.5):
    #   u = (100 * 1 + 30.2 * 9.5 + 20) / 9.5 = 42.83 -> round 43 - 1 = column 42
    #   v = (100 * -0.5 + 10.3 * 9.5) / 9.5 = 5.04 -> round 5 - 1 = row 4
    velo = str(tmp_path / "scan.bin")
    write_velodyne_bin(velo, np.array([[10.0, -1.0, 0.5]]))
    depth = generate_depth_map(calib, velo, cam=2, vel_depth=vel_depth)
    assert depth.shape == (24, 64) and depth.dtype == np.float32  # S_rect_02 is width height
    assert np.count_nonzero(depth) == 1
    assert depth[4, 42] == pytest.approx(10.0 if vel_depth else 9.5)
    assert read_depth(
        {"kind": "velodyne", "path": velo, "calib_dir": calib, "cam": 2, "vel_depth": vel_depth}
    )[4, 42] == pytest.approx(10.0 if vel_depth else 9.5)


def _velodyne_point_at(u, v, z):
    """The Velodyne point whose camera depth is z and which projects to (u, v) under _P."""
    x_cam, y_cam = ((u - _CX) * z - _TX) / _F, (v - _CY) * z / _F
    return [z + 0.5, -x_cam, -y_cam]  # inverse of _AXES and _T


def test_collisions_keep_minimum_and_behind_points_drop(tmp_path):
    calib = _simple_calib(tmp_path)
    # u = 42.8 -> column 42, v = 5.3 -> row 4 for every depth below.
    points = [
        _velodyne_point_at(42.8, 5.3, 9.5),
        _velodyne_point_at(42.8, 5.3, 4.75),  # the nearest of the three
        _velodyne_point_at(42.8, 5.3, 19.0),
        # Velodyne x = -10 (behind the sensor): it would project into the same pixel with a
        # negative depth and zero it, so it must be dropped before projecting.
        _velodyne_point_at(42.8, 5.3, -10.5),
        # Velodyne x = 0.2 >= 0 but camera z = -0.3: projected to row 11, col 9; its negative
        # camera depth becomes 0, while its forward range 0.2 is kept with vel_depth.
        _velodyne_point_at(10.4, 12.2, -0.3),
    ]
    assert points[3][0] < 0 and points[4][0] > 0
    velo = str(tmp_path / "scan.bin")
    write_velodyne_bin(velo, np.array(points))
    depth = generate_depth_map(calib, velo, cam=2, vel_depth=False)
    assert depth[4, 42] == pytest.approx(4.75, rel=1e-5)
    assert np.count_nonzero(depth) == 1
    depth_x = generate_depth_map(calib, velo, cam=2, vel_depth=True)
    assert depth_x[4, 42] == pytest.approx(4.75 + 0.5, rel=1e-5)
    assert depth_x[11, 9] == pytest.approx(0.2, rel=1e-5)
    assert np.count_nonzero(depth_x) == 2


def _naive_depth_map(calib_dir, velo_path, cam, vel_depth):
    """Point-by-point reference of monodepth2's projection (with a correct pixel index)."""
    cam2cam = read_calib_file(os.path.join(calib_dir, "calib_cam_to_cam.txt"))
    velo2cam = read_calib_file(os.path.join(calib_dir, "calib_velo_to_cam.txt"))
    width, height = (int(x) for x in cam2cam["S_rect_02"])
    Tr = np.eye(4)
    Tr[:3, :3] = velo2cam["R"].reshape(3, 3)
    Tr[:3, 3] = velo2cam["T"]
    R_rect = np.eye(4)
    R_rect[:3, :3] = cam2cam["R_rect_00"].reshape(3, 3)
    P = cam2cam[f"P_rect_0{cam}"].reshape(3, 4) @ R_rect @ Tr
    best = {}
    for x, y, z, _ in np.fromfile(velo_path, dtype=np.float32).reshape(-1, 4):
        if x < 0:
            continue
        p = P @ np.array([x, y, z, 1.0])
        if p[2] == 0:
            continue
        col, row = int(np.round(p[0] / p[2]) - 1), int(np.round(p[1] / p[2]) - 1)
        if 0 <= col < width and 0 <= row < height:
            value = float(x) if vel_depth else p[2]
            best[row, col] = min(best.get((row, col), np.inf), value)
    depth = np.zeros((height, width))
    for (row, col), value in best.items():
        depth[row, col] = max(value, 0.0)
    return depth


@pytest.mark.parametrize("cam,vel_depth", [(2, True), (2, False), (3, True)])
def test_generate_depth_map_matches_naive_reference(tmp_path, cam, vel_depth):
    write_kitti_calib(str(tmp_path))  # realistic 2011_09_26-like calibration, 1242 x 375
    rng = np.random.default_rng(cam + 10 * vel_depth)
    points = np.stack(
        [rng.uniform(-5, 60, 4000), rng.uniform(-15, 15, 4000), rng.uniform(-2, 1, 4000)], 1
    )
    points = np.concatenate([points, points[:300] * 1.0001])  # plenty of shared pixels
    velo = str(tmp_path / "scan.bin")
    write_velodyne_bin(velo, points)
    depth = generate_depth_map(str(tmp_path), velo, cam=cam, vel_depth=vel_depth)
    expected = _naive_depth_map(str(tmp_path), velo, cam, vel_depth)
    assert depth.shape == (375, 1242)
    assert np.count_nonzero(expected) > 1000
    np.testing.assert_array_equal(depth > 0, expected > 0)
    np.testing.assert_allclose(depth, expected, rtol=1e-6)


def test_realistic_calibration_values_are_used(tmp_path):
    # A point 20 m ahead on the Velodyne's axis lands near the principal point of camera 2,
    # and camera 3 (the right camera, baseline ~0.54 m) sees it shifted left by f*b/z px.
    write_kitti_calib(str(tmp_path))
    velo = str(tmp_path / "scan.bin")
    write_velodyne_bin(velo, np.array([[20.0, 0.0, 0.0]]))
    left = generate_depth_map(str(tmp_path), velo, cam=2)
    right = generate_depth_map(str(tmp_path), velo, cam=3)
    (r2,), (c2,) = np.nonzero(left)
    (r3,), (c3,) = np.nonzero(right)
    assert abs(c2 - 609.6) < 10 and abs(r2 - 172.9) < 10
    baseline_px = (KITTI_P_RECT_02[0, 3] - KITTI_P_RECT_03[0, 3]) / left[r2, c2]
    assert abs((c2 - c3) - baseline_px) <= 1.0


def test_missing_calibration_names_file(tmp_path):
    velo = str(tmp_path / "scan.bin")
    write_velodyne_bin(velo, np.array([[10.0, 0.0, 0.0]]))
    with pytest.raises(FileNotFoundError, match="calib_cam_to_cam.txt"):
        generate_depth_map(str(tmp_path), velo)
    write_kitti_calib(str(tmp_path))
    text = (tmp_path / "calib_cam_to_cam.txt").read_text()
    (tmp_path / "calib_cam_to_cam.txt").write_text(
        "\n".join(line for line in text.splitlines() if not line.startswith("P_rect_02"))
    )
    with pytest.raises(KeyError, match="P_rect_02"):
        generate_depth_map(str(tmp_path), velo)


# ---------------------------------------------------------------------------------------------
# Crop masks
# ---------------------------------------------------------------------------------------------


def _box(mask):
    rows, cols = np.nonzero(mask)
    assert mask.sum() == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


def test_garg_crop_fractions():
    protocol = {"name": "kitti_eigen", "crop": [0.40810811, 0.99189189, 0.03594771, 0.96405229]}
    assert _box(crop_mask(protocol, 375, 1242)) == (153, 371, 44, 1197)
    assert _box(crop_mask(protocol, 370, 1226)) == (151, 366, 44, 1181)  # 366.99 -> 366


def test_nyu_absolute_crop_scales_with_size():
    protocol = {"name": "nyu_eigen", "crop": [45, 471, 41, 601]}
    mask = crop_mask(protocol, 480, 640)
    assert mask.shape == (480, 640) and mask.dtype == bool
    assert _box(mask) == (45, 471, 41, 601)
    # Half size: 22.5 -> 23, 235.5 -> 236, 20.5 -> 21, 300.5 -> 301 (rounded half up).
    assert _box(crop_mask(protocol, 240, 320)) == (23, 236, 21, 301)


def test_crop_mask_none_and_errors():
    assert crop_mask({"name": "x", "crop": None}, 4, 5).all()
    assert _box(crop_mask({"name": "custom", "crop": [1, 3, 2, 5]}, 4, 5)) == (1, 3, 2, 5)
    with pytest.raises(ValueError, match="custom"):
        crop_mask({"name": "custom", "crop": [1, 30, 2, 5]}, 4, 5)
    with pytest.raises(ValueError, match="top, bottom, left, right"):
        crop_mask({"name": "custom", "crop": [1, 2]}, 4, 5)
