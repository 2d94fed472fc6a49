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
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Any

from meshrecon.data.catalog import DatasetCatalog, MetadataCatalog
from meshrecon.data.depth_io import (
    generate_depth_map,
    kitti_image_size,
    load_velodyne_points,
    read_calib_file,
)

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
    if not os.path.isfile(path):
        raise FileNotFoundError(f"KITTI split file {path!r} does not exist")
    entries, skipped = [], 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            entry = parse_split_line(line, where=f"{path}:{lineno}")
            if entry is not None:
                entries.append(entry)
            elif line.strip():
                skipped += 1
    return entries, skipped


def kitti_eigen_protocol(gt: str = "velodyne") -> dict[str, Any]:
    """Return the KITTI Eigen protocol: Garg crop, 1e-3..80 m, ground truth ``gt``."""
    return {
        "name": "kitti_eigen",
        "crop": list(KITTI_GARG_CROP),
        "min_depth": KITTI_MIN_DEPTH,
        "max_depth": KITTI_MAX_DEPTH,
        "gt": gt,
    }


def _find_image(root: str, entry: KittiSplitEntry) -> str | None:
    """Return the entry's image path, trying the listed extension first, then png / jpg."""
    stem = os.path.join(root, entry.folder, f"image_0{entry.cam}", "data", f"{entry.frame:010d}")
    # monodepth's lists say .jpg while the raw download is .png; accept whichever is on disk.
    for ext in dict.fromkeys([entry.ext, "png", "jpg"]):
        if os.path.isfile(f"{stem}.{ext}"):
            return f"{stem}.{ext}"
    return None


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
    entries, no_gt = read_split_file(split_file)
    protocol = kitti_eigen_protocol(gt)
    calib_cache: dict[str, tuple[tuple[int, int], dict[str, Any]] | None] = {}
    records: list[dict[str, Any]] = []
    missing: list[str] = []
    for entry in entries:
        calib_dir = os.path.join(root, entry.date)
        if calib_dir not in calib_cache:
            calib_cache[calib_dir] = _load_calib(calib_dir, check_files)
        calib = calib_cache[calib_dir]
        if calib is None:
            missing.append(os.path.join(calib_dir, "calib_cam_to_cam.txt"))
            continue
        (height, width), cam2cam = calib
        listed_image = os.path.join(
            root, entry.folder, f"image_0{entry.cam}", "data", f"{entry.frame:010d}.{entry.ext}"
        )
        image = _find_image(root, entry) if check_files else listed_image
        if image is None:
            missing.append(listed_image)
            continue
        if gt == "velodyne":
            gt_file = os.path.join(root, entry.folder, "velodyne_points", "data")
            gt_file = os.path.join(gt_file, f"{entry.frame:010d}.bin")
            depth = {
                "kind": "velodyne",
                "path": gt_file,
                "calib_dir": calib_dir,
                "cam": entry.cam,
                "vel_depth": bool(vel_depth),
            }
        else:
            if entry.gt_path is not None:
                gt_file = os.path.join(annotated_root, entry.gt_path)
            else:
                gt_file = os.path.join(
                    root, entry.folder, "proj_depth", "groundtruth", f"image_0{entry.cam}"
                )
                gt_file = os.path.join(gt_file, f"{entry.frame:010d}.png")
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
