"""KITTI raw data on the Eigen split as depth records, with Velodyne ground truth.

Layout of the KITTI root (``<datasets root>/kitti``)::

    <date>/calib_cam_to_cam.txt, calib_velo_to_cam.txt
    <date>/<date>_drive_<dddd>_sync/image_02/data/<10 digits>.png     (03 = right colour camera)
    <date>/<date>_drive_<dddd>_sync/velodyne_points/data/<10 digits>.bin
    splits/eigen/test_files.txt                 (monodepth2's split files)
    splits/eigen_zhou/train_files.txt

Split files in three formats are understood, line by line:

- monodepth2: ``2011_09_26/2011_09_26_drive_0002_sync 0000000069 l`` (``l`` = camera 2,
  ``r`` = camera 3; the frame number may be unpadded);
- monodepth: ``<date>/<drive>/image_02/data/<frame>.jpg <date>/<drive>/image_03/data/<frame>.jpg``
  (the left image is used);
- BTS: ``<date>/<drive>/image_02/data/<frame>.png <gt path | None> <focal>``; lines whose ground
  truth is ``None`` are skipped and counted.

Ground truth is the Velodyne scan projected as monodepth2 does
(:func:`meshrecon.data.depth_io.generate_depth_map`, re-exported here).

Every path built from a split line (drive folder, frame, BTS ground-truth path) is joined under
:mod:`meshrecon.utils.path_policy`: it may not leave the KITTI root (or the ground-truth root) by
``..``, an absolute path or a symlink below the root leading out. Such a line is skipped, named
and counted in a warning, like a frame with missing files.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from meshrecon.data.catalog import DatasetCatalog, MetadataCatalog
from meshrecon.data.depth_io import (
    generate_depth_map,
    kitti_image_size,
    load_velodyne_points,
    read_calib_file,
)
from meshrecon.utils.path_policy import DatasetRoot, UnsafePathError
from meshrecon.utils.text_io import read_text

__all__ = [
    "KITTI_GARG_CROP",
    "KittiSplitEntry",
    "generate_depth_map",
    "kitti_eigen_protocol",
    "kitti_image_size",
    "load_kitti_eigen",
    "load_velodyne_points",
    "parse_split_line",
    "read_calib_file",
    "read_split_file",
    "register_all",
    "register_kitti_eigen",
]

logger = logging.getLogger(__name__)

KITTI_GARG_CROP = [0.40810811, 0.99189189, 0.03594771, 0.96405229]
"""Garg et al.'s crop as fractions ``[top, bottom, left, right]`` of the image size."""

KITTI_MIN_DEPTH = 1e-3
KITTI_MAX_DEPTH = 80.0

KITTI_DIRNAME = "kitti"
EIGEN_TEST_SPLIT = os.path.join("splits", "eigen", "test_files.txt")
EIGEN_TRAIN_SPLITS = (
    os.path.join("splits", "eigen_zhou", "train_files.txt"),
    os.path.join("splits", "eigen", "train_files.txt"),
)

_SIDE_TO_CAM = {"l": 2, "r": 3}
# <optional date>/<drive>/image_0<cam>/data/<frame>.<ext>
_IMAGE_PATH = re.compile(
    r"^(?:(?P<date>[^/]+)/)?(?P<drive>[^/]+)/image_0(?P<cam>[0-3])/data/(?P<frame>\d+)\.(?P<ext>\w+)$"
)


@dataclass(frozen=True)
class KittiSplitEntry:
    """One frame of a split file.

    Attributes:
        folder: ``<date>/<drive>``, relative to the KITTI root.
        frame: frame number.
        cam: 2 (left colour) or 3 (right colour).
        gt_path: the BTS-format annotated-depth path, relative to its ground-truth root, or None.
        ext: the image extension the split file names (``png`` when it names none).
    """

    folder: str
    frame: int
    cam: int
    gt_path: str | None = None
    ext: str = "png"

    @property
    def date(self) -> str:
        return self.folder.split("/")[0]

    @property
    def drive(self) -> str:
        return self.folder.split("/")[-1]


def _parse_image_path(path: str, where: str) -> tuple[str, int, int, str]:
    match = _IMAGE_PATH.match(path)
    if match is None:
        raise ValueError(f"{where}: {path!r} is not a <date>/<drive>/image_0X/data/<frame> path")
    drive = match["drive"]
    # A BTS path may omit the date directory; every raw drive name starts with its date.
    date = match["date"] or drive[:10]
    return f"{date}/{drive}", int(match["frame"]), int(match["cam"]), match["ext"]


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def parse_split_line(line: str, where: str = "<line>") -> KittiSplitEntry | None:
    """Parse one split-file line of any of the three formats.

    Returns None for a blank line or a BTS line without ground truth (``None``).

    Raises:
        ValueError: naming ``where`` (``file:line``) when the line matches no format.
    """
    tokens = line.split()
    if not tokens:
        return None
    if len(tokens) == 3 and tokens[1].isdigit() and tokens[2] in _SIDE_TO_CAM:
        folder = tokens[0].strip("/")
        if folder.count("/") != 1:
            raise ValueError(f"{where}: expected <date>/<drive>, got {tokens[0]!r}")
        return KittiSplitEntry(folder, int(tokens[1]), _SIDE_TO_CAM[tokens[2]])
    if len(tokens) == 2 and "/image_0" in tokens[0] and "/image_0" in tokens[1]:
        folder, frame, cam, ext = _parse_image_path(tokens[0], where)
        return KittiSplitEntry(folder, frame, cam, ext=ext)
    if len(tokens) == 3 and "/image_0" in tokens[0] and _is_number(tokens[2]):
        if tokens[1] == "None":
            return None
        folder, frame, cam, ext = _parse_image_path(tokens[0], where)
        return KittiSplitEntry(folder, frame, cam, gt_path=tokens[1], ext=ext)
    raise ValueError(
        f"{where}: {line.strip()!r} matches no KITTI split format (monodepth2 "
        f"'<date>/<drive> <frame> l|r', monodepth '<left image> <right image>', or BTS "
        f"'<image> <gt|None> <focal>')"
    )


def read_split_file(path: str) -> tuple[list[KittiSplitEntry], int]:
    """Return the entries of a split file and the number of BTS lines skipped for lacking GT."""
    entries, lines = _read_split_entries(path)
    return entries, lines.count(None)


def kitti_eigen_protocol(gt: str = "velodyne") -> dict[str, Any]:
    """Return the KITTI Eigen protocol: Garg crop, 1e-3..80 m, ground truth ``gt``."""
    return {
        "name": "kitti_eigen",
        "crop": list(KITTI_GARG_CROP),
        "min_depth": KITTI_MIN_DEPTH,
        "max_depth": KITTI_MAX_DEPTH,
        "gt": gt,
    }


def _image_path(root: DatasetRoot, entry: KittiSplitEntry, ext: str, where: str) -> str:
    name = f"image_0{entry.cam}/data/{entry.frame:010d}.{ext}"
    return root.join(name, where, under=entry.folder)


def _find_image(root: DatasetRoot, entry: KittiSplitEntry, where: str) -> str | None:
    """Return the entry's image path, trying the listed extension first, then png / jpg."""
    # monodepth's lists say .jpg while the raw download is .png; accept whichever is on disk.
    for ext in dict.fromkeys([entry.ext, "png", "jpg"]):
        path = _image_path(root, entry, ext, where)
        if os.path.isfile(path):
            return path
    return None


def _read_split_entries(path: str) -> tuple[list[KittiSplitEntry], list[int | None]]:
    """Entries of a split file and, per non-blank line, its number (None: skipped for no GT)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"KITTI split file {path!r} does not exist")
    entries: list[KittiSplitEntry] = []
    lines: list[int | None] = []
    for lineno, line in enumerate(read_text(path, "KITTI split file").split("\n"), start=1):
        entry = parse_split_line(line, where=f"{path}:{lineno}")
        if entry is not None:
            entries.append(entry)
            lines.append(lineno)
        elif line.strip():
            lines.append(None)
    return entries, lines


def _entry_paths(
    root: DatasetRoot,
    gt_root: DatasetRoot,
    entry: KittiSplitEntry,
    gt: str,
    check_files: bool,
    where: str,
) -> dict[str, Any]:
    """The calibration folder, image and ground truth of a split entry, under the path policy.

    Raises:
        UnsafePathError: a path of the entry leaves ``root`` (or ``gt_root``).
    """
    calib_dir = os.path.dirname(root.join("calib_cam_to_cam.txt", where, under=entry.date))
    listed_image = _image_path(root, entry, entry.ext, where)
    image = _find_image(root, entry, where) if check_files else listed_image
    frame = f"{entry.frame:010d}"
    if gt == "velodyne":
        gt_file = root.join(f"velodyne_points/data/{frame}.bin", where, under=entry.folder)
    elif entry.gt_path is not None:
        gt_file = gt_root.join(entry.gt_path, f"{where} (ground-truth path)")
    else:
        name = f"proj_depth/groundtruth/image_0{entry.cam}/{frame}.png"
        gt_file = root.join(name, where, under=entry.folder)
    return {"calib_dir": calib_dir, "listed_image": listed_image, "image": image, "gt": gt_file}


def load_kitti_eigen(
    root: str,
    split_file: str,
    vel_depth: bool = True,
    gt: str = "velodyne",
    annotated_root: str | None = None,
    check_files: bool = True,
) -> list[dict[str, Any]]:
    """Return the depth records of the frames a KITTI split file lists.

    Args:
        root: the KITTI raw root (date directories).
        split_file: a split file in any of the three formats.
        vel_depth: store the Velodyne forward range (True, the evaluation protocol) instead of
            camera z (False, used for training) in the projected ground truth.
        gt: ``"velodyne"`` (projected scans) or ``"annotated"`` (KITTI's 16-bit PNG depth,
            value / 256 m): for a BTS line its GT path under ``annotated_root``, otherwise
            ``<root>/<date>/<drive>/proj_depth/groundtruth/image_0X/<frame>.png``.
        annotated_root: the root of BTS GT paths; default ``root``.
        check_files: skip (and count, with a warning) frames whose image, scan, GT or
            calibration is missing, instead of failing later in a data loader.

    Records: ``file_name`` the image, ``K`` from ``P_rect_0X`` (fx, fy, cx, cy; OpenCV's values
    equal ours), size from ``S_rect_02``, ``image_id`` ``"<drive>/image_0X/<frame>"``.
    """
    if gt not in ("velodyne", "annotated"):
        raise ValueError(f"KITTI gt must be 'velodyne' or 'annotated', got {gt!r}")
    root = os.path.abspath(root)
    annotated_root = os.path.abspath(annotated_root or root)
    kitti_root, gt_root = DatasetRoot(root), DatasetRoot(annotated_root)
    entries, lines = _read_split_entries(split_file)
    no_gt = lines.count(None)
    protocol = kitti_eigen_protocol(gt)
    calib_cache: dict[str, tuple[tuple[int, int], dict[str, Any]] | None] = {}
    records: list[dict[str, Any]] = []
    missing: list[str] = []
    refused: list[str] = []
    for entry, lineno in zip(entries, (n for n in lines if n is not None)):
        where = f"{split_file}:{lineno}"
        try:
            paths = _entry_paths(kitti_root, gt_root, entry, gt, check_files, where)
        except UnsafePathError as err:
            refused.append(str(err))
            continue
        calib_dir = paths["calib_dir"]
        if calib_dir not in calib_cache:
            calib_cache[calib_dir] = _load_calib(calib_dir, check_files)
        calib = calib_cache[calib_dir]
        if calib is None:
            missing.append(os.path.join(calib_dir, "calib_cam_to_cam.txt"))
            continue
        (height, width), cam2cam = calib
        image = paths["image"]
        if image is None:
            missing.append(paths["listed_image"])
            continue
        gt_file = paths["gt"]
        if gt == "velodyne":
            depth = {
                "kind": "velodyne",
                "path": gt_file,
                "calib_dir": calib_dir,
                "cam": entry.cam,
                "vel_depth": bool(vel_depth),
            }
        else:
            depth = {"kind": "png16", "path": gt_file, "scale": 256.0}
        if check_files and not os.path.isfile(gt_file):
            missing.append(gt_file)
            continue
        P = cam2cam[f"P_rect_0{entry.cam}"].reshape(3, 4)
        records.append(
            {
                "file_name": image,
                "image": None,
                "height": height,
                "width": width,
                "image_id": f"{entry.drive}/image_0{entry.cam}/{entry.frame:010d}",
                "K": [float(P[0, 0]), float(P[1, 1]), float(P[0, 2]), float(P[1, 2])],
                "depth": depth,
                "protocol": dict(protocol, crop=list(protocol["crop"])),
            }
        )
    if refused:
        logger.warning(
            "%s: skipped %d of %d frame(s) whose paths leave the dataset folder, e.g. %s",
            split_file,
            len(refused),
            len(entries),
            refused[0],
        )
    if no_gt:
        logger.info("%s: skipped %d line(s) without ground truth (None)", split_file, no_gt)
    if missing:
        logger.warning(
            "%s: skipped %d of %d frame(s) with missing files, e.g. %s",
            split_file,
            len(missing),
            len(entries),
            ", ".join(sorted(set(missing))[:3]),
        )
    return records


def _load_calib(calib_dir: str, tolerate_missing: bool) -> tuple[tuple[int, int], dict] | None:
    """Return ``((height, width), cam_to_cam)`` for a date, or None if tolerated as missing."""
    path = os.path.join(calib_dir, "calib_cam_to_cam.txt")
    if tolerate_missing and not (
        os.path.isfile(path) and os.path.isfile(os.path.join(calib_dir, "calib_velo_to_cam.txt"))
    ):
        return None
    cam2cam = read_calib_file(path)
    for cam in (2, 3):
        value = cam2cam.get(f"P_rect_0{cam}")
        if value is None or isinstance(value, str) or value.size != 12:
            raise ValueError(f"{path!r}: 'P_rect_0{cam}' should hold 12 numbers, got {value!r}")
        if not np.isfinite(value).all():
            raise ValueError(f"{path!r}: 'P_rect_0{cam}' holds non-finite numbers: {value!r}")
    return kitti_image_size(calib_dir), cam2cam


def register_kitti_eigen(
    name: str, root: str, split_file: str, vel_depth: bool, gt: str = "velodyne"
) -> None:
    """Register ``name`` in the catalogs, loading lazily with :func:`load_kitti_eigen`."""
    DatasetCatalog.register(
        name, lambda: load_kitti_eigen(root, split_file, vel_depth=vel_depth, gt=gt)
    )
    MetadataCatalog.get(name).set(
        evaluator_type="depth",
        image_root=os.path.abspath(root),
        split_file=os.path.abspath(split_file),
        depth_protocol="kitti_eigen",
        min_depth=KITTI_MIN_DEPTH,
        max_depth=KITTI_MAX_DEPTH,
    )


def register_all(root: str) -> list[str]:
    """Register the KITTI Eigen splits whose split files exist under ``<root>/kitti``.

    ``kitti_eigen_test`` (``splits/eigen/test_files.txt``; Velodyne forward range, as evaluated)
    and ``kitti_eigen_train`` (``splits/eigen_zhou/train_files.txt``, else
    ``splits/eigen/train_files.txt``; camera z). Frames are checked when the dataset is loaded.
    Returns the names registered; none when the files are absent.
    """
    kitti_root = os.path.join(root, KITTI_DIRNAME)
    names = []
    test_split = os.path.join(kitti_root, EIGEN_TEST_SPLIT)
    if os.path.isfile(test_split):
        register_kitti_eigen("kitti_eigen_test", kitti_root, test_split, vel_depth=True)
        names.append("kitti_eigen_test")
    for relative in EIGEN_TRAIN_SPLITS:
        train_split = os.path.join(kitti_root, relative)
        if os.path.isfile(train_split):
            register_kitti_eigen("kitti_eigen_train", kitti_root, train_split, vel_depth=False)
            names.append("kitti_eigen_train")
            break
    if not names:
        logger.debug("no KITTI split files under %s; KITTI splits are not registered", kitti_root)
    return names
