"""Pix3D: the official ``pix3d.json`` and Mesh R-CNN's COCO-style S1/S2 split files.

Both loaders emit detection records (``docs/DATA_FORMATS.md`` section 1): one dict per image
with absolute paths, XYXY boxes, 0-based category ids over Pix3D's nine classes, ``K`` as
``[fx, fy, cx, cy]`` and ``R``, ``t`` taking the model frame to the camera frame.

Expected layout under a dataset root (``$MESHRECON_DATASETS``, default ``./datasets``)::

    pix3d/pix3d.json
    pix3d/pix3d_s1_train.json, pix3d_s1_test.json, pix3d_s2_train.json, pix3d_s2_test.json
    pix3d/img/<category>/<NNNN>.<ext>, pix3d/mask/<category>/<NNNN>.png
    pix3d/model/<category>/<name>/model.obj, voxel.mat

Every relative path in an annotation file is resolved against the ``pix3d`` folder under
:mod:`meshrecon.utils.path_policy`: a path that is absolute, holds ``..`` or leads out through a
symlink is refused, since a json file must not make the loader read (or a later writer
overwrite) files elsewhere on the machine. An image with a refused path is skipped, named and
counted in a warning, like an image with a missing file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from meshrecon.data.catalog import DatasetCatalog, MetadataCatalog
from meshrecon.render.cameras import pix3d_K
from meshrecon.utils.path_policy import DatasetRoot, UnsafePathError
from meshrecon.utils.text_io import read_json

__all__ = [
    "PIX3D_CLASSES",
    "PIX3D_BAD_IMAGES",
    "PIX3D_SPLITS",
    "load_pix3d_json",
    "load_pix3d_split",
    "pix3d_voxel_to_model_frame",
    "register_pix3d",
    "register_all",
]

logger = logging.getLogger(__name__)

PIX3D_CLASSES: tuple[str, ...] = (
    "bed",
    "bookcase",
    "chair",
    "desk",
    "misc",
    "sofa",
    "table",
    "tool",
    "wardrobe",
)
"""Pix3D's nine categories; ``category_id`` is the index into this tuple."""

PIX3D_BAD_IMAGES: frozenset[str] = frozenset({"img/table/1749.jpg", "img/table/0045.png"})
"""Images whose masks do not match them (Mesh R-CNN skips them too)."""

PIX3D_SPLITS: dict[str, str] = {
    "pix3d_s1_train": "pix3d_s1_train.json",
    "pix3d_s1_test": "pix3d_s1_test.json",
    "pix3d_s2_train": "pix3d_s2_train.json",
    "pix3d_s2_test": "pix3d_s2_test.json",
}
"""Registered name -> Mesh R-CNN split file inside the ``pix3d`` folder."""

PIX3D_FULL_NAME = "pix3d_full"
PIX3D_JSON = "pix3d.json"


# ---------------------------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------------------------


def _safe_join(root: DatasetRoot, rel: Any, where: str, key: str) -> str:
    """Join a dataset-relative path to ``root`` under the one path policy.

    Args:
        root: the ``pix3d`` folder.
        rel: the path found in the annotation file.
        where: description of the record (file and entry) for error messages.
        key: the annotation key holding ``rel``.

    Raises:
        ValueError: ``rel`` is not a non-empty string (a malformed file).
        UnsafePathError: ``rel`` would leave ``root`` (absolute, ``..``, a symlink leading out);
            the loaders skip such a record and count it.
    """
    if not isinstance(rel, str) or not rel:
        raise ValueError(f"{where}: key {key!r} must be a non-empty relative path, got {rel!r}")
    return root.join(rel, f"{where}, key {key!r}")


def _require(entry: dict, key: str, where: str) -> Any:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(entry).__name__}")
    if key not in entry:
        raise KeyError(f"{where}: missing key {key!r} (keys present: {sorted(entry)})")
    return entry[key]


def _float_list(value: Any, length: int, where: str, key: str) -> list[float]:
    try:
        out = [float(v) for v in value]
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: key {key!r} must be {length} numbers, got {value!r}") from err
    if len(out) != length or not all(np.isfinite(out)):
        raise ValueError(f"{where}: key {key!r} must be {length} finite numbers, got {value!r}")
    return out


def _matrix3(value: Any, where: str, key: str) -> list[list[float]]:
    arr = np.asarray(value, dtype=np.float64) if isinstance(value, list) else None
    if arr is None or arr.shape != (3, 3) or not np.isfinite(arr).all():
        raise ValueError(f"{where}: key {key!r} must be a 3x3 list of numbers, got {value!r}")
    return arr.tolist()


def _positive_int(value: Any, where: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ValueError(f"{where}: key {key!r} must be a positive integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"{where}: key {key!r} must be a positive integer, got {value!r}")
    return int(value)


def _read_json(json_file: str) -> Any:
    return read_json(json_file, "Pix3D annotation file")


def _normalized_rel(rel: str) -> str:
    return os.path.normpath(rel.replace("\\", "/")).replace(os.sep, "/")


def _missing_files(paths: Sequence[str | None]) -> list[str]:
    return [p for p in paths if p is not None and not os.path.isfile(p)]


def _finish(
    records: list[dict], json_file: str, n_bad: int, missing: list[str], refused: list[str]
) -> list[dict]:
    """Log what was skipped; fail only when nothing at all could be loaded."""
    if refused:
        if not records:
            raise UnsafePathError(
                f"{json_file}: none of its images could be loaded; {len(refused)} refused for "
                f"paths leaving the dataset folder, first: {refused[0]}"
            )
        logger.warning(
            "%s: skipped %d image(s) whose annotation paths leave the dataset folder, e.g. %s",
            json_file,
            len(refused),
            refused[0],
        )
    if n_bad:
        logger.warning(
            "%s: skipped %d image(s) of Pix3D's known-bad list (masks not matching images: %s)",
            json_file,
            n_bad,
            ", ".join(sorted(PIX3D_BAD_IMAGES)),
        )
    if missing:
        if not records:
            raise FileNotFoundError(
                f"{json_file}: none of its images could be loaded; first missing file: "
                f"{missing[0]} ({len(missing)} missing in all)"
            )
        logger.warning(
            "%s: skipped %d image(s) whose files are missing, e.g. %s",
            json_file,
            len(missing),
            missing[0],
        )
    logger.info("Loaded %d Pix3D images from %s", len(records), json_file)
    return records


def _anno_paths(root: DatasetRoot, anno: dict, where: str, mask_key: str) -> dict[str, Any]:
    """The annotation's ``segmentation``, ``mesh`` and ``voxel`` paths joined onto ``root``."""
    voxel_rel = anno.get("voxel")
    return {
        "segmentation": _safe_join(root, _require(anno, mask_key, where), where, mask_key),
        "mesh": _safe_join(root, _require(anno, "model", where), where, "model"),
        "voxel": _safe_join(root, voxel_rel, where, "voxel") if voxel_rel else None,
    }


# ---------------------------------------------------------------------------------------------
# Loaders
# ---------------------------------------------------------------------------------------------


def load_pix3d_json(json_file: str, image_root: str) -> list[dict]:
    """Load the official ``pix3d.json`` as detection records, one per image.

    Entries naming the same image become annotations of one record. ``image_id`` is the
    position in the json list of the image's first entry, so ids stay stable whatever is
    skipped. ``K = [f, f, W/2, H/2]`` with ``f = focal_length * W / 32`` (focal length in mm
    on a 32 mm sensor).

    Args:
        json_file: path of ``pix3d.json``.
        image_root: the ``pix3d`` folder its relative paths start from.

    Returns:
        Records as in ``docs/DATA_FORMATS.md`` section 1.

    Raises:
        FileNotFoundError: ``json_file`` is missing, or no image could be loaded.
        KeyError, ValueError: an entry lacks a key or holds a malformed value (the message names
            the file, the entry index and the key).
        UnsafePathError: every image was refused for a path leaving ``image_root`` (one such
            image is skipped and counted in a warning).
    """
    root = DatasetRoot(image_root)
    entries = _read_json(json_file)
    if not isinstance(entries, list):
        raise ValueError(f"{json_file}: expected a JSON list of entries, got {type(entries)}")

    by_image: dict[str, dict] = {}
    n_bad = 0
    missing: list[str] = []
    refused: list[str] = []
    broken: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"{json_file} entry {index}"
        img = _require(entry, "img", where)
        where = f"{json_file} entry {index} (img {img!r})"
        try:
            file_name = _safe_join(root, img, where, "img")
        except UnsafePathError as err:
            refused.append(str(err))
            continue
        if _normalized_rel(img) in PIX3D_BAD_IMAGES:
            n_bad += 1
            continue
        category = _require(entry, "category", where)
        if category not in PIX3D_CLASSES:
            raise ValueError(
                f"{where}: unknown category {category!r}; Pix3D's are {list(PIX3D_CLASSES)}"
            )
        size = _require(entry, "img_size", where)
        if not isinstance(size, list) or len(size) != 2:
            raise ValueError(f"{where}: key 'img_size' must be [width, height], got {size!r}")
        width = _positive_int(size[0], where, "img_size[0] (width)")
        height = _positive_int(size[1], where, "img_size[1] (height)")
        focal_mm = float(_require(entry, "focal_length", where))
        if not np.isfinite(focal_mm) or focal_mm <= 0:
            raise ValueError(f"{where}: key 'focal_length' must be positive, got {focal_mm!r}")
        anno = {
            "bbox": _float_list(_require(entry, "bbox", where), 4, where, "bbox"),
            "category_id": PIX3D_CLASSES.index(category),
            "K": [float(v) for v in pix3d_K(focal_mm, width, height)],
            "R": _matrix3(_require(entry, "rot_mat", where), where, "rot_mat"),
            "t": _float_list(_require(entry, "trans_mat", where), 3, where, "trans_mat"),
            "iscrowd": 0,
        }
        try:
            anno.update(_anno_paths(root, entry, where, "mask"))
        except UnsafePathError as err:
            refused.append(str(err))
            broken.add(file_name)
            continue
        gone = _missing_files([file_name, anno["segmentation"], anno["mesh"], anno["voxel"]])
        if gone:
            missing.extend(gone)
            broken.add(file_name)
            continue
        record = by_image.get(file_name)
        if record is None:
            record = by_image[file_name] = {
                "file_name": file_name,
                "height": height,
                "width": width,
                "image_id": index,
                "annotations": [],
            }
        elif (record["height"], record["width"]) != (height, width):
            raise ValueError(
                f"{where}: img_size {size!r} disagrees with an earlier entry for the same image "
                f"([{record['width']}, {record['height']}])"
            )
        record["annotations"].append(anno)
    # An image with one broken annotation is dropped whole: training on it with an object
    # missing would teach the detector that the object is background.
    records = [r for name, r in by_image.items() if name not in broken]
    return _finish(records, json_file, n_bad, missing, refused)


def _split_categories(data: dict, json_file: str) -> dict[int, int]:
    """Map the split file's category ids to indices into :data:`PIX3D_CLASSES`, by name."""
    cats = _require(data, "categories", json_file)
    if not isinstance(cats, list) or not cats:
        raise ValueError(f"{json_file}: 'categories' must be a non-empty list, got {cats!r}")
    id_map: dict[int, int] = {}
    for i, cat in enumerate(cats):
        where = f"{json_file} categories[{i}]"
        name = _require(cat, "name", where)
        if name not in PIX3D_CLASSES:
            raise ValueError(f"{where}: unknown category {name!r}; expected one of Pix3D's")
        id_map[int(_require(cat, "id", where))] = PIX3D_CLASSES.index(name)
    return id_map


def load_pix3d_split(json_file: str, image_root: str) -> list[dict]:
    """Load one of Mesh R-CNN's COCO-style Pix3D split files as detection records.

    The file has ``images`` (``id``, ``file_name``, ``height``, ``width``), ``categories``
    (``id``, ``name``) and ``annotations`` with ``bbox`` as ``[x, y, w, h]`` pixels,
    ``segmentation`` as a mask path, ``K = [f, cx, cy]``, ``rot_mat``, ``trans_mat``, ``model``
    and ``voxel``. Boxes become XYXY, ``K`` becomes ``[f, f, cx, cy]``, categories are mapped by
    name to :data:`PIX3D_CLASSES`. Images come sorted by id.

    Args:
        json_file: path of e.g. ``pix3d_s1_train.json``.
        image_root: the ``pix3d`` folder its relative paths start from.

    Returns:
        Records as in ``docs/DATA_FORMATS.md`` section 1.

    Raises:
        FileNotFoundError: ``json_file`` is missing, or no image could be loaded.
        KeyError, ValueError: a malformed image, category or annotation (named in the message).
        UnsafePathError: every image was refused for a path leaving ``image_root`` (one such
            image is skipped and counted in a warning).
    """
    root = DatasetRoot(image_root)
    data = _read_json(json_file)
    if not isinstance(data, dict):
        raise ValueError(f"{json_file}: expected a COCO-style JSON object, got {type(data)}")
    id_map = _split_categories(data, json_file)

    images: dict[int, dict] = {}
    for i, img in enumerate(_require(data, "images", json_file)):
        where = f"{json_file} images[{i}]"
        image_id = _require(img, "id", where)
        if image_id in images:
            raise ValueError(f"{where}: duplicate image id {image_id!r}")
        images[image_id] = img
    annos_by_image: dict[int, list[tuple[int, dict]]] = {k: [] for k in images}
    for i, anno in enumerate(_require(data, "annotations", json_file)):
        where = f"{json_file} annotations[{i}]"
        image_id = _require(anno, "image_id", where)
        if image_id not in images:
            raise ValueError(f"{where}: image_id {image_id!r} is not in 'images'")
        annos_by_image[image_id].append((i, anno))

    records = []
    n_bad = 0
    missing: list[str] = []
    refused: list[str] = []
    for image_id in sorted(images):
        img = images[image_id]
        where = f"{json_file} image id {image_id}"
        rel = _require(img, "file_name", where)
        try:
            file_name = _safe_join(root, rel, where, "file_name")
        except UnsafePathError as err:
            refused.append(str(err))
            continue
        if _normalized_rel(rel) in PIX3D_BAD_IMAGES:
            n_bad += 1
            continue
        record = {
            "file_name": file_name,
            "height": _positive_int(_require(img, "height", where), where, "height"),
            "width": _positive_int(_require(img, "width", where), where, "width"),
            "image_id": image_id,
            "annotations": [],
        }
        refused_here = False
        for i, anno in annos_by_image[image_id]:
            where = f"{json_file} annotations[{i}] (image {rel!r})"
            cat = _require(anno, "category_id", where)
            if cat not in id_map:
                raise ValueError(
                    f"{where}: category_id {cat!r} is not among the file's categories "
                    f"{sorted(id_map)}"
                )
            x, y, w, h = _float_list(_require(anno, "bbox", where), 4, where, "bbox")
            f, cx, cy = _float_list(_require(anno, "K", where), 3, where, "K")
            converted = {
                "bbox": [x, y, x + w, y + h],
                "category_id": id_map[cat],
                "K": [f, f, cx, cy],
                "R": _matrix3(_require(anno, "rot_mat", where), where, "rot_mat"),
                "t": _float_list(_require(anno, "trans_mat", where), 3, where, "trans_mat"),
                "iscrowd": int(anno.get("iscrowd", 0)),
            }
            try:
                converted.update(_anno_paths(root, anno, where, "segmentation"))
            except UnsafePathError as err:
                refused.append(str(err))
                refused_here = True
                break
            record["annotations"].append(converted)
        if refused_here:
            continue
        paths = [file_name]
        for a in record["annotations"]:
            paths += [a["segmentation"], a["mesh"], a["voxel"]]
        gone = _missing_files(paths)
        if gone:
            missing.extend(gone)
            continue
        records.append(record)
    return _finish(records, json_file, n_bad, missing, refused)


# ---------------------------------------------------------------------------------------------
# Voxels
# ---------------------------------------------------------------------------------------------


def pix3d_voxel_to_model_frame(voxel: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Re-index a Pix3D ``voxel.mat`` grid from the voxel frame into the model (OBJ) frame.

    Pix3D stores voxels with +x left, +y outward (towards the viewer), +z up, while its OBJ
    models use +x left, +y up, +z inward. The two differ by a quarter turn about x; Mesh R-CNN
    applies it as ``np.rot90(voxel, k=3, axes=(1, 2))``, which is
    ``out[i, j, k] = voxel[i, D - 1 - k, j]``: the model's up axis (second index) is the voxel's
    up axis (third), and the model's inward axis (third) is the voxel's outward axis reversed.

    Args:
        voxel: (D, D, D) array or tensor indexed ``[x, y, z]`` in the voxel frame, as read by
            ``scipy.io.loadmat(path)["voxel"]``.

    Returns:
        (D, D, D) grid of the same type and dtype, indexed ``[x, y, z]`` in the model frame.
    """
    if voxel.ndim != 3 or not (voxel.shape[0] == voxel.shape[1] == voxel.shape[2]):
        raise ValueError(f"voxel must be a (D, D, D) grid, got shape {tuple(voxel.shape)}")
    if isinstance(voxel, torch.Tensor):
        return torch.rot90(voxel, k=3, dims=(1, 2))
    return np.ascontiguousarray(np.rot90(voxel, k=3, axes=(1, 2)))


# ---------------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------------


def register_pix3d(name: str, json_file: str, image_root: str) -> None:
    """Register one Pix3D annotation file under ``name`` with its metadata.

    ``pix3d.json`` (a JSON list) is read by :func:`load_pix3d_json`, anything else by
    :func:`load_pix3d_split`; the kind is decided by the file name.

    Raises:
        FileNotFoundError: ``json_file`` or ``image_root`` does not exist (named).
    """
    json_file = os.path.abspath(json_file)
    image_root = os.path.abspath(image_root)
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"cannot register {name!r}: annotation file not found: {json_file}")
    if not os.path.isdir(image_root):
        raise FileNotFoundError(f"cannot register {name!r}: image root not found: {image_root}")
    loader = load_pix3d_json if os.path.basename(json_file) == PIX3D_JSON else load_pix3d_split
    DatasetCatalog.register(name, lambda: loader(json_file, image_root))
    MetadataCatalog.get(name).set(
        thing_classes=list(PIX3D_CLASSES),
        evaluator_type="pix3d",
        image_root=image_root,
        json_file=json_file,
    )


def register_all(root: str) -> list[str]:
    """Register the Pix3D splits whose annotation files exist under ``root/pix3d``.

    Registers ``pix3d_s{1,2}_{train,test}`` from Mesh R-CNN's split files and ``pix3d_full``
    from ``pix3d.json``. Does nothing when ``root/pix3d`` is absent.

    Returns:
        The names registered.
    """
    folder = os.path.join(root, "pix3d")
    if not os.path.isdir(folder):
        return []
    files = dict(PIX3D_SPLITS)
    files[PIX3D_FULL_NAME] = PIX3D_JSON
    registered = []
    for name, file in files.items():
        path = os.path.join(folder, file)
        if os.path.isfile(path):
            register_pix3d(name, path, folder)
            registered.append(name)
    if not registered:
        logger.warning("%s exists but holds no Pix3D annotation file", folder)
    return registered
