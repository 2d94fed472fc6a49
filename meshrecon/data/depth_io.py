"""Readers for every depth source of a depth record, and evaluation crop masks.

A depth record (``docs/DATA_FORMATS.md``, section 3) names its ground truth with a small dict,
a "depth source". :func:`read_depth` turns any of them into an ``(H, W)`` float32 array of
camera-frame Z in metres with 0 marking a missing measurement:

- ``{"kind": "png16", "path", "scale"}``: 16-bit PNG, metres = value / scale;
- ``{"kind": "npy", "path"}``: float32 ``H x W`` metres;
- ``{"kind": "h5", "path", "key", "index"}``: one frame of an HDF5 / MATLAB v7.3 array stored
  transposed, as MATLAB writes it (NYU Depth v2's ``depths`` and ``rawDepths``);
- ``{"kind": "velodyne", "path", "calib_dir", "cam", "vel_depth"}``: a KITTI Velodyne scan
  projected into a camera by :func:`generate_depth_map`.

The KITTI projection lives here rather than in ``datasets/kitti.py`` so that this low-level
module does not depend on a dataset module; ``datasets/kitti.py`` re-exports it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from meshrecon.utils.image_limits import open_image
from meshrecon.utils.text_io import read_text

__all__ = [
    "DEPTH_SOURCE_KINDS",
    "crop_mask",
    "generate_depth_map",
    "kitti_image_size",
    "load_velodyne_points",
    "read_calib_file",
    "read_container_image",
    "read_depth",
    "write_depth_png16",
]

DEPTH_SOURCE_KINDS = ("png16", "npy", "h5", "velodyne")

# Absolute crops are written for the image size their protocol was defined on; an image of
# another size (a downscaled copy, a tiny test fixture) gets the crop scaled to its own size.
_CROP_REFERENCE_SIZE: dict[str, tuple[int, int]] = {"nyu_eigen": (480, 640)}


def _require(source: Mapping[str, Any], *keys: str) -> list[Any]:
    missing = [k for k in keys if k not in source]
    if missing:
        raise KeyError(
            f"depth source {dict(source)!r} lacks key(s) {missing}; a {source.get('kind')!r} "
            f"source needs {list(keys)}"
        )
    return [source[k] for k in keys]


def _check_file(path: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"depth file {path!r} does not exist")


# --------------------------------------------------------------------------------------------
# Generic readers
# --------------------------------------------------------------------------------------------


def read_depth(source: Mapping[str, Any]) -> np.ndarray:
    """Return the depth map named by ``source``: ``(H, W)`` float32 metres, 0 = invalid.

    Args:
        source: a depth-source dict (see the module docstring).

    Raises:
        ValueError: an unknown ``kind``, or a file whose content is not a depth map.
        KeyError: a key the source's kind needs is missing.
        FileNotFoundError: the file (or a KITTI calibration file) does not exist.
    """
    if not isinstance(source, Mapping) or "kind" not in source:
        raise ValueError(f"depth source {source!r} is not a dict with a 'kind' key")
    kind = source["kind"]
    if kind == "png16":
        path, scale = _require(source, "path", "scale")
        return _read_png16(path, float(scale))
    if kind == "npy":
        (path,) = _require(source, "path")
        return _read_npy(path)
    if kind == "h5":
        path, key, index = _require(source, "path", "key", "index")
        frame = _read_h5_frame(path, key, int(index))
        if frame.ndim != 2:
            raise ValueError(
                f"{path!r}, key {key!r}, frame {index}: expected a 2-D depth frame, got shape "
                f"{frame.shape} (is this an image key?)"
            )
        depth = np.ascontiguousarray(frame.T, dtype=np.float32)
        # MATLAB-side NaNs would poison every metric; they mean "no measurement" here.
        depth[~np.isfinite(depth)] = 0.0
        return depth
    if kind == "velodyne":
        path, calib_dir = _require(source, "path", "calib_dir")
        cam = int(source.get("cam", 2))
        vel_depth = bool(source.get("vel_depth", False))
        return generate_depth_map(calib_dir, path, cam=cam, vel_depth=vel_depth)
    raise ValueError(
        f"depth source {dict(source)!r} has unknown kind {kind!r}; known kinds: "
        f"{', '.join(DEPTH_SOURCE_KINDS)}"
    )


def _read_png16(path: str, scale: float) -> np.ndarray:
    _check_file(path)
    if not scale > 0:
        raise ValueError(f"png16 depth {path!r}: scale must be positive, got {scale}")
    try:
        with open_image(path) as img:
            mode = img.mode
            values = np.asarray(img)
    except OSError as err:
        raise ValueError(f"cannot read {path!r} as a PNG depth map: {err}") from err
    # An 8-bit or colour PNG would give plausible-looking but wrong depths, so refuse it.
    if mode not in ("I;16", "I;16B", "I;16L", "I") or values.ndim != 2:
        raise ValueError(
            f"{path!r} is not a one-channel 16-bit PNG (PIL mode {mode!r}, shape {values.shape})"
        )
    return values.astype(np.float32) / np.float32(scale)


def _read_npy(path: str) -> np.ndarray:
    _check_file(path)
    try:
        depth = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {path!r} as a .npy depth map: {err}") from err
    if depth.ndim != 2:
        raise ValueError(f"{path!r}: expected an H x W depth map, got shape {depth.shape}")
    depth = depth.astype(np.float32)
    depth[~np.isfinite(depth)] = 0.0
    return depth


def _read_h5_frame(path: str, key: str, index: int) -> np.ndarray:
    """Return frame ``index`` (first axis) of dataset ``key`` in HDF5 file ``path``, untransposed.

    The file is opened per call: handles opened before a data-loader fork are not safe to share,
    and opening is cheap next to reading a frame.
    """
    import h5py  # imported here so that users without NYU data do not pay for it

    _check_file(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(
            f"cannot open {path!r} as HDF5 (a MATLAB v7.3 .mat is HDF5; older .mat versions are "
            f"not): {err}"
        ) from err
    with handle:
        if key not in handle:
            raise KeyError(f"{path!r} has no dataset {key!r}; keys: {sorted(handle.keys())}")
        dataset = handle[key]
        if not hasattr(dataset, "shape") or dataset.ndim < 1:
            raise ValueError(f"{path!r}: {key!r} is not an array dataset")
        if not 0 <= index < dataset.shape[0]:
            raise IndexError(
                f"{path!r}: frame index {index} is out of range for {key!r} with "
                f"{dataset.shape[0]} frames (indices are 0-based)"
            )
        return np.asarray(dataset[index])


def read_container_image(source: Mapping[str, Any]) -> np.ndarray:
    """Return the RGB image named by a container source: ``(H, W, 3)`` uint8.

    Args:
        source: ``{"kind": "h5", "path", "key", "index"}``; the dataset is stored as MATLAB
            writes an ``H x W x 3 x N`` array, i.e. ``(N, 3, W, H)`` as h5py sees it.
    """
    if not isinstance(source, Mapping) or source.get("kind") != "h5":
        raise ValueError(f"image source {source!r} is not a dict with kind 'h5'")
    path, key, index = _require(source, "path", "key", "index")
    frame = _read_h5_frame(path, key, int(index))
    if frame.ndim != 3 or frame.shape[0] != 3:
        raise ValueError(
            f"{path!r}, key {key!r}, frame {index}: expected an image frame of shape (3, W, H), "
            f"got {frame.shape}"
        )
    if frame.dtype != np.uint8:
        raise ValueError(f"{path!r}, key {key!r}: expected uint8 pixels, got {frame.dtype}")
    return np.ascontiguousarray(frame.transpose(2, 1, 0))


def write_depth_png16(path: str, depth: np.ndarray, scale: float) -> None:
    """Write ``depth`` (``(H, W)`` metres) as a 16-bit PNG storing ``round(depth * scale)``.

    Non-finite and non-positive depths are written as 0 (invalid), the convention of every
    16-bit depth format we read.

    Raises:
        ValueError: ``depth`` is not 2-D, ``scale`` is not positive, or a depth does not fit in
            16 bits at this scale (saturating would silently corrupt the ground truth).
    """
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"writing {path!r}: depth must be H x W, got shape {depth.shape}")
    if not scale > 0:
        raise ValueError(f"writing {path!r}: scale must be positive, got {scale}")
    valid = np.isfinite(depth) & (depth > 0)
    values = np.zeros(depth.shape, dtype=np.float64)
    values[valid] = np.round(depth[valid] * scale)
    if values.max(initial=0.0) > 65535:
        raise ValueError(
            f"writing {path!r}: depth {depth[valid].max():.4g} m times scale {scale} exceeds "
            f"the 16-bit maximum 65535"
        )
    Image.fromarray(values.astype(np.uint16)).save(path, format="PNG")


# --------------------------------------------------------------------------------------------
# KITTI Velodyne projection (monodepth/monodepth2's ground truth for the Eigen split)
# --------------------------------------------------------------------------------------------


def read_calib_file(path: str) -> dict[str, np.ndarray | str]:
    """Parse a KITTI calibration text file into ``{key: float64 array or str}``.

    Each line is ``key: values``. Only the first ``:`` separates key from value, because
    ``calib_time`` holds a time of day with colons; a value that is not all numbers is kept as
    a string.
    """
    _check_file(path)
    data: dict[str, np.ndarray | str] = {}
    for lineno, line in enumerate(read_text(path, "KITTI calibration file").split("\n"), 1):
        if not line.strip():
            continue
        if ":" not in line:
            raise ValueError(f"{path}:{lineno}: expected 'key: values', got {line.strip()!r}")
        key, value = line.split(":", 1)
        key, value = key.strip(), value.strip()
        try:
            data[key] = np.array([float(x) for x in value.split()], dtype=np.float64)
        except ValueError:
            data[key] = value
    return data


def _calib_array(calib: Mapping[str, Any], key: str, size: int, path: str) -> np.ndarray:
    value = calib.get(key)
    if value is None:
        raise KeyError(f"{path!r} has no key {key!r}")
    if isinstance(value, str) or value.size != size:
        raise ValueError(f"{path!r}: {key!r} should hold {size} numbers, got {value!r}")
    return value


def kitti_image_size(calib_dir: str) -> tuple[int, int]:
    """Return ``(height, width)`` of the rectified colour images, from ``S_rect_02``.

    ``S_rect_02`` stores width then height, hence the reversal.
    """
    path = os.path.join(calib_dir, "calib_cam_to_cam.txt")
    size = _calib_array(read_calib_file(path), "S_rect_02", 2, path)
    return int(size[1]), int(size[0])


def load_velodyne_points(path: str) -> np.ndarray:
    """Return a Velodyne scan as ``(N, 4)`` float32 rows ``(x, y, z, reflectance)``."""
    _check_file(path)
    raw = np.fromfile(path, dtype="<f4")
    if raw.size % 4:
        raise ValueError(
            f"{path!r} holds {raw.size} float32 values, not a multiple of 4: not a Velodyne scan"
        )
    return raw.reshape(-1, 4)


def velodyne_to_image_matrix(calib_dir: str, cam: int = 2) -> np.ndarray:
    """Return the ``(3, 4)`` matrix taking homogeneous Velodyne points to camera ``cam`` pixels.

    ``P_rect_0{cam} @ R_rect_00 @ [R | T]``: every rectified camera shares camera 00's
    rectifying rotation, so ``R_rect_00`` is right for any ``cam``.
    """
    if cam not in (0, 1, 2, 3):
        raise ValueError(f"KITTI camera must be 0..3, got {cam!r}")
    c2c_path = os.path.join(calib_dir, "calib_cam_to_cam.txt")
    v2c_path = os.path.join(calib_dir, "calib_velo_to_cam.txt")
    cam2cam = read_calib_file(c2c_path)
    velo2cam = read_calib_file(v2c_path)
    velo_to_cam = np.eye(4)
    velo_to_cam[:3, :3] = _calib_array(velo2cam, "R", 9, v2c_path).reshape(3, 3)
    velo_to_cam[:3, 3] = _calib_array(velo2cam, "T", 3, v2c_path)
    rectify = np.eye(4)
    rectify[:3, :3] = _calib_array(cam2cam, "R_rect_00", 9, c2c_path).reshape(3, 3)
    projection = _calib_array(cam2cam, f"P_rect_0{cam}", 12, c2c_path).reshape(3, 4)
    return projection @ rectify @ velo_to_cam


def generate_depth_map(
    calib_dir: str, velo_path: str, cam: int = 2, vel_depth: bool = False
) -> np.ndarray:
    """Project a KITTI Velodyne scan into camera ``cam``: ``(H, W)`` float32 metres, 0 = empty.

    Follows monodepth/monodepth2's ``generate_depth_map``, whose output is the Eigen-split
    ground truth everyone reports on:

    1. points with Velodyne ``x < 0`` (behind the sensor) are dropped;
    2. the rest go through :func:`velodyne_to_image_matrix` and are divided by the third
       coordinate;
    3. pixel indices are ``round(u) - 1``, ``round(v) - 1`` (NumPy rounding, half to even; the
       ``- 1`` reproduces the MATLAB devkit's 1-based convention), kept when inside the image
       whose size :func:`kitti_image_size` gives (always ``S_rect_02``, as in monodepth2);
    4. the stored value is camera z, or the Velodyne ``x`` (forward range) when ``vel_depth``
       (the evaluation protocol); several points in one pixel keep the minimum, and negative
       values become 0.

    One deliberate difference: monodepth2 finds shared pixels with a linear index built as
    ``row * (W - 1) + col - 1``, which also makes the last pixel of a row and the first of the
    next one "collide"; here only points in the same pixel do.
    """
    height, width = kitti_image_size(calib_dir)
    matrix = velodyne_to_image_matrix(calib_dir, cam)
    points = load_velodyne_points(velo_path)
    points = points[points[:, 0] >= 0]
    homogeneous = np.concatenate(
        [points[:, :3].astype(np.float64), np.ones((len(points), 1))], axis=1
    )
    projected = homogeneous @ matrix.T
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.round(projected[:, 0] / projected[:, 2]) - 1
        v = np.round(projected[:, 1] / projected[:, 2]) - 1
    values = points[:, 0].astype(np.float64) if vel_depth else projected[:, 2]
    # Points on the camera plane divide by zero; the comparisons reject their inf/nan.
    inside = (u >= 0) & (v >= 0) & (u < width) & (v < height)
    rows, cols, values = v[inside].astype(np.int64), u[inside].astype(np.int64), values[inside]
    depth = np.full((height, width), np.inf)
    np.minimum.at(depth, (rows, cols), values)
    depth[np.isinf(depth)] = 0.0
    depth[depth < 0] = 0.0
    return depth.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Evaluation crops
# --------------------------------------------------------------------------------------------


def crop_mask(protocol: Mapping[str, Any], height: int, width: int) -> np.ndarray:
    """Return the ``(height, width)`` bool mask of the pixels a protocol's crop keeps.

    ``protocol["crop"]`` is ``[top, bottom, left, right]`` (rows ``top:bottom``, columns
    ``left:right``), either

    - as fractions of the image size when every value is at most 1 (KITTI's Garg crop): rows
      ``int(top * H)`` to ``int(bottom * H)``, as monodepth2 computes them; or
    - in pixels. For a protocol defined at a fixed size (``nyu_eigen``: 480 x 640) the pixels
      are scaled to ``(height, width)`` and rounded; otherwise they are used as given.

    A missing or None crop keeps every pixel.
    """
    mask = np.zeros((height, width), dtype=bool)
    crop = protocol.get("crop") if isinstance(protocol, Mapping) else None
    name = protocol.get("name") if isinstance(protocol, Mapping) else None
    if crop is None:
        mask[:] = True
        return mask
    if not isinstance(crop, Sequence) or len(crop) != 4:
        raise ValueError(
            f"protocol {name!r}: crop must be [top, bottom, left, right], got {crop!r}"
        )
    top, bottom, left, right = (float(c) for c in crop)
    if max(top, bottom, left, right) <= 1.0:
        r0, r1 = int(top * height), int(bottom * height)
        c0, c1 = int(left * width), int(right * width)
    elif name in _CROP_REFERENCE_SIZE:
        ref_h, ref_w = _CROP_REFERENCE_SIZE[name]
        # Round half up, so that halving a size moves both edges the same way.
        r0, r1 = math.floor(top * height / ref_h + 0.5), math.floor(bottom * height / ref_h + 0.5)
        c0, c1 = math.floor(left * width / ref_w + 0.5), math.floor(right * width / ref_w + 0.5)
    else:
        r0, r1, c0, c1 = int(top), int(bottom), int(left), int(right)
    if not (0 <= r0 < r1 <= height and 0 <= c0 < c1 <= width):
        raise ValueError(
            f"protocol {name!r}: crop {list(crop)} gives rows {r0}:{r1}, cols {c0}:{c1}, which "
            f"is empty or outside a {height} x {width} image"
        )
    mask[r0:r1, c0:c1] = True
    return mask
