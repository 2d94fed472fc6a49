"""NYU Depth v2 (labelled subset) as depth records, with the Eigen evaluation protocol.

Files, under ``<root>/nyu_depth_v2/``:

- ``nyu_depth_v2_labeled.mat``: MATLAB v7.3, i.e. HDF5, read with h5py. h5py sees MATLAB's
  dimensions reversed: ``images`` is ``(N, 3, W, H)`` uint8, ``depths`` (in-painted) and
  ``rawDepths`` (holes = 0) are ``(N, W, H)`` metres, with N = 1449, H = 480, W = 640.
- ``splits.mat``: an ordinary (v5) .mat with ``trainNdxs`` (795) and ``testNdxs`` (654), 1-based
  frame numbers.

Images are not extracted: a record points into the container (``file_name`` None and an ``h5``
image source) and :func:`meshrecon.data.depth_io.read_container_image` reads one frame.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from meshrecon.data.catalog import DatasetCatalog, MetadataCatalog
from meshrecon.data.depth_io import crop_mask

__all__ = [
    "NYU_EIGEN_CROP",
    "NYU_IMAGE_SIZE",
    "NYU_KINECT_INTRINSICS",
    "eigen_crop_mask",
    "load_nyu_depth_v2",
    "load_nyu_split_indices",
    "nyu_eigen_protocol",
    "register_all",
    "register_nyu_depth_v2",
]

logger = logging.getLogger(__name__)

NYU_IMAGE_SIZE = (480, 640)
"""(height, width) of the labelled frames."""

NYU_KINECT_INTRINSICS = (518.858, 519.470, 325.582, 253.736)
"""Kinect RGB ``(fx, fy, cx, cy)`` in pixels at 640 x 480.

Unverified: these are the values of the NYU toolbox's ``camera_params.m`` as copied into
third-party code; we have not seen the toolbox file itself.
"""

NYU_EIGEN_CROP = [45, 471, 41, 601]
"""Eigen's evaluation crop at 480 x 640: rows 45..470, columns 41..600 (as in BTS's eval)."""

NYU_MIN_DEPTH = 1e-3
NYU_MAX_DEPTH = 10.0

_GT_KEYS = {"filled": "depths", "raw": "rawDepths"}
_SPLIT_KEYS = {"train": "trainNdxs", "test": "testNdxs"}

# The directory and file names register_all looks for under the datasets root.
NYU_DIRNAME = "nyu_depth_v2"
NYU_LABELED_MAT = "nyu_depth_v2_labeled.mat"
NYU_SPLITS_MAT = "splits.mat"


def nyu_eigen_protocol(gt: str = "filled") -> dict[str, Any]:
    """Return the NYU Eigen evaluation protocol dict for ground truth ``gt`` (filled or raw)."""
    if gt not in _GT_KEYS:
        raise ValueError(f"NYU gt must be one of {sorted(_GT_KEYS)}, got {gt!r}")
    return {
        "name": "nyu_eigen",
        "crop": list(NYU_EIGEN_CROP),
        "min_depth": NYU_MIN_DEPTH,
        "max_depth": NYU_MAX_DEPTH,
        "gt": gt,
    }


def eigen_crop_mask(height: int = 480, width: int = 640) -> np.ndarray:
    """Return the ``(height, width)`` bool mask of Eigen's NYU crop, scaled from 480 x 640."""
    return crop_mask(nyu_eigen_protocol(), height, width)


def load_nyu_split_indices(
    splits_path: str, split: str, num_frames: int | None = None
) -> list[int]:
    """Return the 0-based frame indices of ``split`` (train or test) from ``splits.mat``.

    The file stores 1-based MATLAB indices; they are validated (integers, >= 1, and at most
    ``num_frames`` when given) before the shift.
    """
    from scipy.io import loadmat

    if split not in _SPLIT_KEYS:
        raise ValueError(f"NYU split must be one of {sorted(_SPLIT_KEYS)}, got {split!r}")
    if not os.path.isfile(splits_path):
        raise FileNotFoundError(f"NYU split file {splits_path!r} does not exist")
    key = _SPLIT_KEYS[split]
    try:
        mat = loadmat(splits_path)
    except NotImplementedError as err:  # scipy's answer to a v7.3 (HDF5) file
        raise ValueError(
            f"{splits_path!r} is a MATLAB v7.3 file; splits.mat is expected as an ordinary "
            f"(v5) .mat"
        ) from err
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {splits_path!r} as a .mat file: {err}") from err
    if key not in mat:
        present = sorted(k for k in mat if not k.startswith("__"))
        raise KeyError(f"{splits_path!r} has no variable {key!r}; variables: {present}")
    values = np.asarray(mat[key]).ravel()
    if values.size == 0:
        raise ValueError(f"{splits_path!r}: {key!r} is empty")
    if not np.issubdtype(values.dtype, np.number) or np.any(values != np.round(values)):
        raise ValueError(f"{splits_path!r}: {key!r} must hold integer frame numbers")
    indices = values.astype(np.int64)
    bad = indices[(indices < 1) | ((indices > num_frames) if num_frames is not None else False)]
    if bad.size:
        raise ValueError(
            f"{splits_path!r}: {key!r} holds {bad.size} frame number(s) outside 1..{num_frames} "
            f"(first: {int(bad[0])}); the indices are 1-based"
        )
    return [int(i) - 1 for i in indices]


def _inspect_labeled_mat(mat_path: str, depth_key: str) -> tuple[int, int, int]:
    """Validate the labelled .mat's arrays; return ``(num_frames, height, width)``."""
    import h5py

    if not os.path.isfile(mat_path):
        raise FileNotFoundError(f"NYU labelled file {mat_path!r} does not exist")
    try:
        handle = h5py.File(mat_path, "r")
    except OSError as err:
        raise ValueError(
            f"cannot open {mat_path!r} as HDF5; nyu_depth_v2_labeled.mat must be MATLAB v7.3: {err}"
        ) from err
    with handle:
        for key in ("images", depth_key):
            if key not in handle:
                raise KeyError(f"{mat_path!r} has no dataset {key!r}; keys: {sorted(handle)}")
        images, depths = handle["images"], handle[depth_key]
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"{mat_path!r}: 'images' should be (N, 3, W, H) as h5py sees MATLAB's H x W x 3 "
                f"x N, got {images.shape}"
            )
        num, _, width, height = images.shape
        if depths.shape != (num, width, height):
            raise ValueError(
                f"{mat_path!r}: {depth_key!r} has shape {depths.shape}, expected "
                f"{(num, width, height)} to match 'images' {images.shape}"
            )
    return int(num), int(height), int(width)


def load_nyu_depth_v2(
    mat_path: str, splits_path: str, split: str, gt: str = "filled"
) -> list[dict[str, Any]]:
    """Return the depth records of NYU Depth v2's official ``split`` (train 795, test 654).

    Args:
        mat_path: ``nyu_depth_v2_labeled.mat`` (v7.3 / HDF5).
        splits_path: ``splits.mat`` (v5) with 1-based ``trainNdxs`` / ``testNdxs``.
        split: ``"train"`` or ``"test"``.
        gt: ``"filled"`` reads the in-painted ``depths``, ``"raw"`` the ``rawDepths`` with
            holes (BTS evaluates on raw; most others on filled).

    Each record's ``image_id`` is the 1-based frame number used by ``splits.mat``; its image and
    depth sources hold the 0-based index into the container. ``K`` is the Kinect RGB camera's
    (:data:`NYU_KINECT_INTRINSICS`, unverified), scaled if the frames are not 640 x 480.
    """
    if gt not in _GT_KEYS:
        raise ValueError(f"NYU gt must be one of {sorted(_GT_KEYS)}, got {gt!r}")
    mat_path, splits_path = os.path.abspath(mat_path), os.path.abspath(splits_path)
    depth_key = _GT_KEYS[gt]
    num_frames, height, width = _inspect_labeled_mat(mat_path, depth_key)
    indices = load_nyu_split_indices(splits_path, split, num_frames)
    fx, fy, cx, cy = NYU_KINECT_INTRINSICS
    sx, sy = width / NYU_IMAGE_SIZE[1], height / NYU_IMAGE_SIZE[0]
    K = [fx * sx, fy * sy, cx * sx, cy * sy]
    protocol = nyu_eigen_protocol(gt)
    records = []
    for index in indices:
        records.append(
            {
                "file_name": None,
                "image": {"kind": "h5", "path": mat_path, "key": "images", "index": index},
                "height": height,
                "width": width,
                "image_id": index + 1,
                "K": list(K),
                "depth": {"kind": "h5", "path": mat_path, "key": depth_key, "index": index},
                "protocol": dict(protocol, crop=list(protocol["crop"])),
            }
        )
    return records


def register_nyu_depth_v2(
    name: str, mat_path: str, splits_path: str, split: str, gt: str = "filled"
) -> None:
    """Register ``name`` in the catalogs, loading lazily with :func:`load_nyu_depth_v2`."""
    DatasetCatalog.register(name, lambda: load_nyu_depth_v2(mat_path, splits_path, split, gt))
    MetadataCatalog.get(name).set(
        evaluator_type="depth",
        image_root=os.path.dirname(os.path.abspath(mat_path)),
        depth_protocol="nyu_eigen",
        min_depth=NYU_MIN_DEPTH,
        max_depth=NYU_MAX_DEPTH,
    )


def register_all(root: str) -> list[str]:
    """Register NYU Depth v2's splits when ``<root>/nyu_depth_v2/`` holds both .mat files.

    Registers ``nyu_v2_train`` (795 frames, filled depths), ``nyu_v2_test`` (654, filled) and
    ``nyu_v2_test_raw`` (654, raw depths). Does nothing when a file is missing. Returns the names
    registered.
    """
    base = os.path.join(root, NYU_DIRNAME)
    mat_path = os.path.join(base, NYU_LABELED_MAT)
    splits_path = os.path.join(base, NYU_SPLITS_MAT)
    if not (os.path.isfile(mat_path) and os.path.isfile(splits_path)):
        logger.debug("NYU Depth v2 not found under %s; its splits are not registered", base)
        return []
    splits = {
        "nyu_v2_train": ("train", "filled"),
        "nyu_v2_test": ("test", "filled"),
        "nyu_v2_test_raw": ("test", "raw"),
    }
    for name, (split, gt) in splits.items():
        register_nyu_depth_v2(name, mat_path, splits_path, split, gt)
    return list(splits)
