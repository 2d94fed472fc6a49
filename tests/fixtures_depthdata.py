"""Writers of tiny NYU Depth v2 and KITTI raw fixtures in the official on-disk formats.

Reusable by any test: ``from fixtures_depthdata import write_nyu_dataset, write_kitti_calib``.

- NYU: ``nyu_depth_v2_labeled.mat`` as MATLAB v7.3 writes it (HDF5 behind a 512-byte MATLAB
  header, arrays with reversed dimensions: images ``(N, 3, W, H)`` uint8, depths ``(N, W, H)``
  single), and ``splits.mat`` as an ordinary v5 .mat with 1-based ``K x 1`` uint16 columns.
- KITTI: ``calib_cam_to_cam.txt`` / ``calib_velo_to_cam.txt`` with every key of the real files
  (``calib_time`` included, colons and all), headerless little-endian float32 ``N x 4`` Velodyne
  scans, and PNG images whose size equals ``S_rect_02``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

# ---------------------------------------------------------------------------------------------
# NYU Depth v2
# ---------------------------------------------------------------------------------------------

_MATLAB_73_HEADER = (
    b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 "
    b"HDF5 schema 1.00 ."
)


def make_nyu_frames(
    num: int = 6, height: int = 12, width: int = 16, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return random ``images (N,H,W,3) uint8``, ``depths (N,H,W)`` and ``raw (N,H,W)`` float32.

    Raw depths have holes (0) where the filled ones have values, as in the real data.
    """
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(num, height, width, 3), dtype=np.uint8)
    depths = rng.uniform(0.5, 9.5, size=(num, height, width)).astype(np.float32)
    raw = depths * rng.uniform(0.98, 1.02, size=depths.shape).astype(np.float32)
    raw[rng.random(size=depths.shape) < 0.2] = 0.0
    return images, depths, raw


def write_nyu_labeled_mat(
    path: str, images: np.ndarray, depths: np.ndarray, raw_depths: np.ndarray | None = None
) -> None:
    """Write ``images (N,H,W,3)``, ``depths (N,H,W)`` as a v7.3 ``nyu_depth_v2_labeled.mat``.

    MATLAB stores ``H x W x 3 x N`` column-major; through HDF5 that is ``(N, 3, W, H)``
    row-major, so each array is written with its axes reversed from MATLAB's order.
    """
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset("images", data=np.ascontiguousarray(images.transpose(0, 3, 2, 1)))
        f["images"].attrs["MATLAB_class"] = np.bytes_("uint8")
        f.create_dataset("depths", data=np.ascontiguousarray(depths.transpose(0, 2, 1)))
        f["depths"].attrs["MATLAB_class"] = np.bytes_("single")
        if raw_depths is not None:
            f.create_dataset("rawDepths", data=np.ascontiguousarray(raw_depths.transpose(0, 2, 1)))
            f["rawDepths"].attrs["MATLAB_class"] = np.bytes_("single")
    # The MATLAB header: 116 bytes of text, 8 bytes of subsystem offset, version 0x0200, 'IM'.
    header = _MATLAB_73_HEADER.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as f:
        f.write(header)


def write_nyu_splits_mat(
    path: str, train_1based: Sequence[int], test_1based: Sequence[int]
) -> None:
    """Write ``splits.mat`` (v5) with ``trainNdxs`` and ``testNdxs`` as 1-based K x 1 uint16."""
    from scipy.io import savemat

    savemat(
        path,
        {
            "trainNdxs": np.asarray(train_1based, dtype=np.uint16).reshape(-1, 1),
            "testNdxs": np.asarray(test_1based, dtype=np.uint16).reshape(-1, 1),
        },
        format="5",
    )


def write_nyu_dataset(
    root: str,
    num: int = 6,
    height: int = 12,
    width: int = 16,
    train_1based: Sequence[int] = (1, 3, 4, 6),
    test_1based: Sequence[int] = (2, 5),
    seed: int = 0,
) -> dict:
    """Write ``<root>/nyu_depth_v2/{nyu_depth_v2_labeled.mat, splits.mat}``.

    The default 12 x 16 frames are 480 x 640 scaled by 1/40. Returns the paths and arrays:
    ``mat``, ``splits``, ``images``, ``depths``, ``raw``.
    """
    base = os.path.join(root, "nyu_depth_v2")
    os.makedirs(base, exist_ok=True)
    images, depths, raw = make_nyu_frames(num, height, width, seed)
    mat = os.path.join(base, "nyu_depth_v2_labeled.mat")
    splits = os.path.join(base, "splits.mat")
    write_nyu_labeled_mat(mat, images, depths, raw)
    write_nyu_splits_mat(splits, train_1based, test_1based)
    return {"mat": mat, "splits": splits, "images": images, "depths": depths, "raw": raw}


# ---------------------------------------------------------------------------------------------
# KITTI raw
# ---------------------------------------------------------------------------------------------

# Values of the shape and magnitude of 2011_09_26's calibration (1242 x 375 images).
KITTI_P_RECT_02 = np.array(
    [
        [721.5377, 0.0, 609.5593, 44.85728],
        [0.0, 721.5377, 172.854, 0.2163791],
        [0, 0, 1, 0.002745884],
    ]
)
KITTI_P_RECT_03 = np.array(
    [
        [721.5377, 0.0, 609.5593, -339.5242],
        [0.0, 721.5377, 172.854, 2.199936],
        [0, 0, 1, 0.002729905],
    ]
)
KITTI_R_RECT_00 = np.array(
    [
        [0.9999239, 0.0098378, -0.007445048],
        [-0.009869795, 0.9999421, -0.004278459],
        [0.007402527, 0.004351614, 0.9999631],
    ]
)
KITTI_VELO_R = np.array(
    [
        [0.007533745, -0.9999714, -0.000616602],
        [0.01480249, 0.0007280733, -0.9998902],
        [0.9998621, 0.00752379, 0.01480755],
    ]
)
KITTI_VELO_T = np.array([-0.004069766, -0.07631618, -0.2717806])
KITTI_SIZE = (1242, 375)  # (width, height), the order S_rect_02 stores


def _numbers(values: np.ndarray | Sequence[float]) -> str:
    return " ".join(f"{float(v):.6e}" for v in np.asarray(values, dtype=np.float64).ravel())


def write_kitti_calib(
    date_dir: str,
    size: tuple[int, int] = KITTI_SIZE,
    P_rect_02: np.ndarray = KITTI_P_RECT_02,
    P_rect_03: np.ndarray = KITTI_P_RECT_03,
    R_rect_00: np.ndarray = KITTI_R_RECT_00,
    velo_R: np.ndarray = KITTI_VELO_R,
    velo_T: np.ndarray = KITTI_VELO_T,
) -> None:
    """Write ``calib_cam_to_cam.txt`` and ``calib_velo_to_cam.txt`` into ``date_dir``.

    ``size`` is ``(width, height)``, written as ``S_rect_xx`` in that order. Cameras 00/01 get
    P_rect_02's intrinsics with no baseline; their values do not matter to the loaders.
    """
    os.makedirs(date_dir, exist_ok=True)
    width, height = size
    P0 = np.asarray(P_rect_02, dtype=np.float64).copy()
    P0[:, 3] = 0.0
    rect = {
        0: (R_rect_00, P0),
        1: (np.eye(3), P0),
        2: (np.eye(3), P_rect_02),
        3: (np.eye(3), P_rect_03),
    }
    lines = ["calib_time: 09-Jan-2012 13:57:47", "corner_dist: 9.950000e-02"]
    for cam, (R_rect, P) in rect.items():
        P = np.asarray(P, dtype=np.float64)
        K = P[:, :3]
        lines += [
            f"S_0{cam}: {_numbers([width + 150, height + 137])}",
            f"K_0{cam}: {_numbers(K)}",
            f"D_0{cam}: {_numbers([-0.37, 0.2, 0.001, 0.0013, -0.07])}",
            f"R_0{cam}: {_numbers(np.eye(3))}",
            f"T_0{cam}: {_numbers([-0.06 * cam, 0.0, 0.0])}",
            f"S_rect_0{cam}: {_numbers([width, height])}",
            f"R_rect_0{cam}: {_numbers(R_rect)}",
            f"P_rect_0{cam}: {_numbers(P)}",
        ]
    with open(os.path.join(date_dir, "calib_cam_to_cam.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    velo_lines = [
        "calib_time: 15-Mar-2012 11:37:16",
        f"R: {_numbers(velo_R)}",
        f"T: {_numbers(velo_T)}",
        "delta_f: 0.000000e+00 0.000000e+00",
        "delta_c: 0.000000e+00 0.000000e+00",
    ]
    with open(os.path.join(date_dir, "calib_velo_to_cam.txt"), "w") as f:
        f.write("\n".join(velo_lines) + "\n")


def write_velodyne_bin(path: str, points: np.ndarray) -> None:
    """Write ``points`` ``(N, 3)`` or ``(N, 4)`` as a headerless little-endian float32 scan."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape[1] == 3:
        points = np.concatenate([points, np.full((len(points), 1), 0.3)], axis=1)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    points.astype("<f4").tofile(path)


def write_kitti_frame(
    root: str,
    folder: str,
    frame: int,
    size: tuple[int, int],
    points: np.ndarray | None = None,
    cams: Sequence[int] = (2, 3),
    ext: str = "png",
) -> dict:
    """Write one frame of drive ``folder`` (``<date>/<drive>``): images and a Velodyne scan.

    Images are RGB PNGs of ``size`` ``(width, height)``. ``points=None`` writes no scan.
    Returns ``{"images": {cam: path}, "velodyne": path or None}``.
    """
    rng = np.random.default_rng(frame)
    width, height = size
    paths: dict = {"images": {}, "velodyne": None}
    for cam in cams:
        image_dir = os.path.join(root, folder, f"image_0{cam}", "data")
        os.makedirs(image_dir, exist_ok=True)
        path = os.path.join(image_dir, f"{frame:010d}.{ext}")
        pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
        paths["images"][cam] = path
    if points is not None:
        velo = os.path.join(root, folder, "velodyne_points", "data", f"{frame:010d}.bin")
        write_velodyne_bin(velo, points)
        paths["velodyne"] = velo
    return paths
