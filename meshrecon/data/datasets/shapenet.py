"""ShapeNet as rendered by 3D-R2N2, raw or after Mesh R-CNN's preprocessing.

Both loaders emit single-object view records (``docs/DATA_FORMATS.md`` section 2): one dict per
(model, view) with the view's image, its camera (``K``, ``R``, ``t`` in our frame, plus R2N2's
azimuth / elevation / distance) and the model's shape files.

Expected layout under a dataset root (``$MESHRECON_DATASETS``, default ``./datasets``)::

    shapenet/ShapeNetRendering/<synset>/<model>/rendering/{00..23.png, renderings.txt,
                                                         rendering_metadata.txt}
    shapenet/ShapeNetVox32/<synset>/<model>/model.binvox
    shapenet/ShapeNetCore.v1/<synset>/<model>/model.obj            (optional)
    shapenet/ShapeNetV1processed/summary.json                        (Mesh R-CNN's output)
    shapenet/ShapeNetV1processed/<synset>/<model>/{metadata.pt, mesh.pt, voxels.pt,
                                                   samples.pt, images/NN.png}
    shapenet/pix2mesh_splits_val05.json

Image sizes are not read from disk (that would open about a million files): R2N2 renders are
137 x 137, and Mesh R-CNN's preprocessing copies them unchanged.

Paths taken from the data (model ids of a split file or a folder listing, image names of
``renderings.txt`` or ``metadata.pt``) are joined under :mod:`meshrecon.utils.path_policy`:
each of ``ShapeNetRendering``, ``ShapeNetVox32``, ``ShapeNetCore.v1`` and
``ShapeNetV1processed`` is a root (it may be a symlink itself) that such a path may not leave,
by ``..``, an absolute path or a symlink below the root leading out. A model with such a path is
skipped, named and counted in the loader's warning, like a model with corrupt metadata.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable
from typing import Any

import torch

from meshrecon.data.catalog import DatasetCatalog, MetadataCatalog
from meshrecon.render.cameras import (
    R2N2_MAX_CAMERA_DISTANCE,
    camera_center,
    camera_from_opengl,
    r2n2_camera,
)
from meshrecon.utils.path_policy import DatasetRoot, UnsafePathError
from meshrecon.utils.text_io import read_json, read_text

__all__ = [
    "CATEGORY_TABLE",
    "SHAPENET_SYNSETS",
    "SYNSET_TO_R2N2_NAME",
    "SYNSET_TO_MESHRCNN_NAME",
    "R2N2_CLASSES",
    "R2N2_IMAGE_SIZE",
    "R2N2_MAX_CAMERA_DISTANCE",
    "R2N2_SPLIT_PORTIONS",
    "MODEL_LEVEL_KEYS",
    "r2n2_split_model_ids",
    "load_r2n2",
    "load_meshrcnn_shapenet",
    "group_views_by_model",
    "register_all",
]

logger = logging.getLogger(__name__)

CATEGORY_TABLE: tuple[tuple[str, str, str], ...] = (
    # synset, R2N2 / PyTorch3D name, Mesh R-CNN evaluation name
    ("02691156", "airplane", "plane"),
    ("02828884", "bench", "bench"),
    ("02933112", "cabinet", "cabinet"),
    ("02958343", "car", "car"),
    ("03001627", "chair", "chair"),
    ("03211117", "display", "monitor"),
    ("03636649", "lamp", "lamp"),
    ("03691459", "loudspeaker", "speaker"),
    ("04090263", "rifle", "firearm"),
    ("04256520", "sofa", "couch"),
    ("04379243", "table", "table"),
    ("04401088", "telephone", "cellphone"),
    ("04530566", "watercraft", "watercraft"),
)
"""The 13 categories rendered by 3D-R2N2 with both naming schemes, in ``category_id`` order."""

SHAPENET_SYNSETS: tuple[str, ...] = tuple(row[0] for row in CATEGORY_TABLE)
SYNSET_TO_R2N2_NAME: dict[str, str] = {sid: name for sid, name, _ in CATEGORY_TABLE}
"""Synset -> the R2N2 / PyTorch3D category name (what records' ``category`` holds)."""
SYNSET_TO_MESHRCNN_NAME: dict[str, str] = {sid: name for sid, _, name in CATEGORY_TABLE}
"""Synset -> the name Mesh R-CNN's ShapeNet evaluation prints."""
R2N2_CLASSES: tuple[str, ...] = tuple(SYNSET_TO_R2N2_NAME[s] for s in SHAPENET_SYNSETS)
"""``thing_classes`` of every ShapeNet dataset here; ``category_id`` indexes it."""

R2N2_IMAGE_SIZE = 137
"""Side of R2N2's square renders; records' ``height`` and ``width``."""

R2N2_SPLIT_PORTIONS: dict[str, tuple[float, float]] = {"train": (0.0, 0.8), "test": (0.8, 1.0)}
"""3D-R2N2's split: fractions of each category's sorted model ids."""

MODEL_LEVEL_KEYS: tuple[str, ...] = (
    "synset_id",
    "model_id",
    "category",
    "category_id",
    "mesh",
    "samples",
    "voxel",
)
"""Keys that describe the model rather than one view; :func:`group_views_by_model` keeps them."""

SHAPENET_DIR = "shapenet"
R2N2_RENDERING_DIR = "ShapeNetRendering"
R2N2_VOX32_DIR = "ShapeNetVox32"
SHAPENET_CORE_DIR = "ShapeNetCore.v1"
MESHRCNN_PROCESSED_DIR = "ShapeNetV1processed"
MESHRCNN_SPLIT_FILE = "pix2mesh_splits_val05.json"
# The skip reason of a model whose paths would leave its dataset folder.
PATH_REFUSED = "path leaves the dataset folder"


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


def _metadata(name: str, **extra: Any) -> None:
    MetadataCatalog.get(name).set(
        thing_classes=list(R2N2_CLASSES),
        evaluator_type="shapenet",
        synset_to_name=dict(SYNSET_TO_R2N2_NAME),
        synset_to_meshrcnn_name=dict(SYNSET_TO_MESHRCNN_NAME),
        **extra,
    )


def _subdirs(path: str) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir())


def _synsets(requested: Iterable[str] | None) -> list[str]:
    if requested is None:
        return list(SHAPENET_SYNSETS)
    out = list(requested)
    unknown = [s for s in out if s not in SYNSET_TO_R2N2_NAME]
    if unknown:
        raise ValueError(f"unknown synset id(s) {unknown}; R2N2's are {list(SHAPENET_SYNSETS)}")
    return out


def _as_floats(values: torch.Tensor) -> list:
    return values.detach().to(torch.float64).cpu().tolist()


def _view_record(
    *,
    file_name: str,
    synset_id: str,
    model_id: str,
    view_index: int,
    camera: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    viewpoint: tuple[float, float, float],
    mesh: str | None,
    samples: str | None,
    voxel: str | None,
) -> dict:
    K, R, t = camera
    azimuth, elevation, distance = viewpoint
    return {
        "file_name": file_name,
        "height": R2N2_IMAGE_SIZE,
        "width": R2N2_IMAGE_SIZE,
        "image_id": f"{synset_id}/{model_id}/{view_index:02d}",
        "synset_id": synset_id,
        "model_id": model_id,
        "category": SYNSET_TO_R2N2_NAME[synset_id],
        "category_id": SHAPENET_SYNSETS.index(synset_id),
        "view_index": view_index,
        "K": _as_floats(K),
        "R": _as_floats(R),
        "t": _as_floats(t),
        "azimuth": float(azimuth),
        "elevation": float(elevation),
        "distance": float(distance),
        "mesh": mesh,
        "samples": samples,
        "voxel": voxel,
        "depth": None,
    }


def _file_or_none(path: str) -> str | None:
    return path if os.path.isfile(path) else None


def _log_skips(source: str, skipped: dict[str, list[str]]) -> None:
    for reason, items in skipped.items():
        if items:
            logger.warning(
                "%s: skipped %d model(s) (%s), e.g. %s", source, len(items), reason, items[0]
            )


# ---------------------------------------------------------------------------------------------
# 3D-R2N2 layout
# ---------------------------------------------------------------------------------------------


def r2n2_split_model_ids(model_ids: Iterable[str], split: str) -> list[str]:
    """Return the model ids of one category that fall in R2N2's ``split``.

    R2N2 sorts a category's model ids and takes ``ids[int(n * a):int(n * b)]`` with
    ``(a, b) = (0, 0.8)`` for train and ``(0.8, 1)`` for test.
    """
    if split not in R2N2_SPLIT_PORTIONS:
        raise ValueError(f"R2N2 split must be one of {list(R2N2_SPLIT_PORTIONS)}, got {split!r}")
    ids = sorted(model_ids)
    lo, hi = R2N2_SPLIT_PORTIONS[split]
    return ids[int(len(ids) * lo) : int(len(ids) * hi)]


def _read_rendering_dir(
    render_root: DatasetRoot, model_rel: str
) -> list[tuple[str, tuple[float, float, float]]]:
    """Return ``(image path, (azimuth, elevation, distance))`` per view of one model.

    Args:
        render_root: the ``ShapeNetRendering`` folder.
        model_rel: ``<synset>/<model>``.

    Raises:
        UnsafePathError: a path (the model folder or an image name) leaves ``render_root``.
        ValueError: the two text files disagree or a metadata line is malformed (named).
    """
    rendering = f"{model_rel}/rendering"
    list_file = render_root.join(f"{rendering}/renderings.txt", "R2N2 model folder")
    meta_file = render_root.join(f"{rendering}/rendering_metadata.txt", "R2N2 model folder")
    names = [line.strip() for line in read_text(list_file).splitlines() if line.strip()]
    lines = [line.strip() for line in read_text(meta_file).splitlines() if line.strip()]
    if len(names) != len(lines):
        raise ValueError(
            f"{list_file} lists {len(names)} images but {meta_file} has {len(lines)} lines"
        )
    views = []
    for i, (name, line) in enumerate(zip(names, lines)):
        try:
            values = [float(v) for v in line.split()]
        except ValueError:
            values = []
        # azimuth, elevation, in-plane rotation (always 0), distance ratio, field of view
        if len(values) != 5 or not all(math.isfinite(v) for v in values):
            raise ValueError(
                f"{meta_file} line {i + 1}: expected 5 numbers "
                f"(azimuth elevation inplane distance_ratio fov), got {line!r}"
            )
        path = render_root.join(name, f"{list_file} line {i + 1}", under=rendering)
        azimuth, elevation, _, ratio, _ = values
        views.append((path, (azimuth, elevation, ratio * R2N2_MAX_CAMERA_DISTANCE)))
    return views


def load_r2n2(shapenet_root: str, split: str, synsets: Iterable[str] | None = None) -> list[dict]:
    """Load 3D-R2N2's renderings as view records, one per (model, view).

    Models are listed from ``ShapeNetVox32/<synset>`` (R2N2's query path; from
    ``ShapeNetRendering/<synset>`` when the voxels are absent) and split with
    :func:`r2n2_split_model_ids`. ``distance = ratio * 1.75``; ``K``, ``R``, ``t`` come from
    :func:`meshrecon.render.cameras.r2n2_camera`. ``voxel`` is the model's ``model.binvox`` and
    ``mesh`` its ``ShapeNetCore.v1`` OBJ, each None when absent; ``samples`` is None.

    Args:
        shapenet_root: folder holding ``ShapeNetRendering`` (and optionally ``ShapeNetVox32``,
            ``ShapeNetCore.v1``).
        split: ``"train"``, ``"test"`` or ``"all"``.
        synsets: restrict to these synsets (default: R2N2's 13).

    Raises:
        FileNotFoundError: ``ShapeNetRendering`` is missing, or nothing could be loaded.
    """
    root = os.path.abspath(shapenet_root)
    render_root = os.path.join(root, R2N2_RENDERING_DIR)
    if not os.path.isdir(render_root):
        raise FileNotFoundError(f"R2N2 renderings not found: {render_root}")
    if split != "all" and split not in R2N2_SPLIT_PORTIONS:
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")

    renders = DatasetRoot(render_root)
    voxels = DatasetRoot(os.path.join(root, R2N2_VOX32_DIR))
    meshes = DatasetRoot(os.path.join(root, SHAPENET_CORE_DIR))
    records: list[dict] = []
    skipped: dict[str, list[str]] = {
        "no renderings": [],
        "bad rendering metadata": [],
        PATH_REFUSED: [],
    }
    for synset in _synsets(synsets):
        vox_dir = os.path.join(voxels.root, synset)
        list_dir = vox_dir if os.path.isdir(vox_dir) else os.path.join(render_root, synset)
        if not os.path.isdir(list_dir):
            continue
        models = _subdirs(list_dir)
        if split != "all":
            models = r2n2_split_model_ids(models, split)
        for model in models:
            model_rel = f"{synset}/{model}"
            if not os.path.isdir(os.path.join(render_root, synset, model, "rendering")):
                skipped["no renderings"].append(model_rel)
                continue
            try:
                views = _read_rendering_dir(renders, model_rel)
                mesh = _file_or_none(meshes.join("model.obj", "R2N2 model", under=model_rel))
                voxel = _file_or_none(voxels.join("model.binvox", "R2N2 model", under=model_rel))
            except UnsafePathError as err:
                skipped[PATH_REFUSED].append(f"{model_rel}: {err}")
                continue
            except (OSError, ValueError) as err:
                skipped["bad rendering metadata"].append(f"{model_rel}: {err}")
                continue
            # One batched call per model: a million scalar calls would dominate loading time.
            angles = torch.tensor([viewpoint for _, viewpoint in views], dtype=torch.float64)
            Ks, Rs, ts = r2n2_camera(*angles.unbind(1), image_size=R2N2_IMAGE_SIZE)
            for view_index, (path, viewpoint) in enumerate(views):
                camera = (Ks[view_index], Rs[view_index], ts[view_index])
                records.append(
                    _view_record(
                        file_name=path,
                        synset_id=synset,
                        model_id=model,
                        view_index=view_index,
                        camera=camera,
                        viewpoint=viewpoint,
                        mesh=mesh,
                        samples=None,
                        voxel=voxel,
                    )
                )
    _log_skips(render_root, skipped)
    if not records:
        raise FileNotFoundError(f"no R2N2 views found for split {split!r} under {render_root}")
    logger.info("Loaded %d R2N2 views (%s) from %s", len(records), split, render_root)
    return records


# ---------------------------------------------------------------------------------------------
# Mesh R-CNN's preprocessed layout
# ---------------------------------------------------------------------------------------------


def _viewpoint_from_extrinsic(R: torch.Tensor, t: torch.Tensor) -> tuple[float, float, float]:
    """Recover R2N2's (azimuth, elevation, distance) from a view's model->camera ``R``, ``t``.

    Mesh R-CNN's metadata keeps only the 4x4 matrices. An R2N2 camera looks at the origin from
    ``d * (cos az cos el, sin el, sin az cos el)`` in the model frame, so the camera centre
    ``-R^T t`` gives the three numbers back; the centre does not depend on the camera's axis
    convention, so this holds for any frame ``R`` and ``t`` are expressed in.
    """
    centre = camera_center(R.to(torch.float64), t.to(torch.float64))
    distance = float(centre.norm())
    if distance == 0.0:
        return 0.0, 0.0, 0.0
    elevation = math.degrees(math.asin(max(-1.0, min(1.0, float(centre[1]) / distance))))
    azimuth = math.degrees(math.atan2(float(centre[2]), float(centre[0]))) % 360.0
    return azimuth, elevation, distance


def _load_pt(path: str) -> Any:
    with open(path, "rb") as f:
        return torch.load(f, map_location="cpu", weights_only=True)


def _meshrcnn_model_views(
    data_root: DatasetRoot, synset: str, model: str, views: list[int], where: str
) -> list[dict]:
    """Build the view records of one preprocessed model.

    Raises:
        UnsafePathError: the model id (from the split file ``where``) or an image name of its
            ``metadata.pt`` leads out of ``data_root``.
        OSError, ValueError, ...: a corrupt ``metadata.pt``.
    """
    model_rel = f"{synset}/{model}"
    meta_path = data_root.join("metadata.pt", where, under=model_rel)
    meta = _load_pt(meta_path)
    for key in ("image_list", "intrinsic", "extrinsics"):
        if key not in meta:
            raise ValueError(f"{meta_path}: missing key {key!r}")
    image_list, intrinsic = meta["image_list"], torch.as_tensor(meta["intrinsic"])
    extrinsics = torch.as_tensor(meta["extrinsics"])
    if intrinsic.shape != (4, 4) or extrinsics.ndim != 3 or extrinsics.shape[1:] != (4, 4):
        raise ValueError(
            f"{meta_path}: expected intrinsic (4, 4) and extrinsics (N, 4, 4), got "
            f"{tuple(intrinsic.shape)} and {tuple(extrinsics.shape)}"
        )
    if len(image_list) != extrinsics.shape[0]:
        raise ValueError(
            f"{meta_path}: {len(image_list)} images but {extrinsics.shape[0]} extrinsics"
        )
    mesh = data_root.join("mesh.pt", where, under=model_rel)
    samples = _file_or_none(data_root.join("samples.pt", where, under=model_rel))
    voxel = _file_or_none(data_root.join("voxels.pt", where, under=model_rel))
    records = []
    if not views:
        return records
    selected = extrinsics[views]
    Ks, Rs, ts = camera_from_opengl(intrinsic.expand(len(views), 4, 4), selected, R2N2_IMAGE_SIZE)
    for view, K, R, t in zip(views, Ks, Rs, ts):
        name = str(image_list[view])
        records.append(
            _view_record(
                file_name=data_root.join(
                    name, f"{meta_path} image_list[{view}]", under=f"{model_rel}/images"
                ),
                synset_id=synset,
                model_id=model,
                view_index=view,
                camera=(K, R, t),
                viewpoint=_viewpoint_from_extrinsic(R, t),
                mesh=mesh,
                samples=samples,
                voxel=voxel,
            )
        )
    return records


def load_meshrcnn_shapenet(data_dir: str, split_file: str, split: str) -> list[dict]:
    """Load Mesh R-CNN's preprocessed ShapeNet as view records, one per (model, view).

    A view is loaded when the split file lists it and the model appears in ``summary.json``
    with at least that many images, as Mesh R-CNN's dataset does. ``K``, ``R``, ``t`` are the
    4x4 ``intrinsic`` and ``extrinsics[view]`` of ``metadata.pt`` converted to our frame;
    azimuth, elevation and distance are recovered from them. ``mesh`` is ``mesh.pt``,
    ``samples`` ``samples.pt`` and ``voxel`` ``voxels.pt`` (the last two None when absent).

    Args:
        data_dir: Mesh R-CNN's output folder (``ShapeNetV1processed``).
        split_file: ``pix2mesh_splits_val05.json``, ``{split: {synset: {model: [views]}}}``.
        split: a key of the split file (``"train"``, ``"val"``, ``"test"``).

    Raises:
        FileNotFoundError: ``summary.json`` or the split file is missing, or nothing loaded.
        KeyError: ``split`` is not in the split file.
    """
    data_dir = os.path.abspath(data_dir)
    data_root = DatasetRoot(data_dir)
    summary_path = os.path.join(data_dir, "summary.json")
    for path in (summary_path, split_file):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Mesh R-CNN ShapeNet file not found: {path}")
    summary = read_json(summary_path, "Mesh R-CNN ShapeNet summary")
    splits = read_json(split_file, "Mesh R-CNN ShapeNet split file")
    for name, value in ((summary_path, summary), (split_file, splits)):
        if not isinstance(value, dict):
            raise ValueError(f"{name}: expected a JSON object, got {type(value).__name__}")
    if split not in splits:
        raise KeyError(f"{split_file} has no split {split!r}; it has {sorted(splits)}")

    records: list[dict] = []
    skipped: dict[str, list[str]] = {
        "unknown synset": [],
        "not in summary.json": [],
        "corrupt metadata.pt": [],
        PATH_REFUSED: [],
    }
    for synset in sorted(splits[split]):
        if synset not in SYNSET_TO_R2N2_NAME:
            skipped["unknown synset"].append(synset)
            continue
        for model in sorted(splits[split][synset]):
            count = summary.get(synset, {}).get(model)
            if count is None:
                skipped["not in summary.json"].append(f"{synset}/{model}")
                continue
            views = sorted(
                {int(v) for v in splits[split][synset][model] if 0 <= int(v) < int(count)}
            )
            where = f"{split_file} [{split}] model {synset}/{model}"
            try:
                records.extend(_meshrcnn_model_views(data_root, synset, model, views, where))
            except UnsafePathError as err:
                skipped[PATH_REFUSED].append(f"{synset}/{model}: {err}")
            except (OSError, ValueError, RuntimeError, IndexError, KeyError) as err:
                skipped["corrupt metadata.pt"].append(f"{synset}/{model}: {err}")
    _log_skips(f"{split_file} [{split}]", skipped)
    if not records:
        raise FileNotFoundError(f"no views of split {split!r} of {split_file} found in {data_dir}")
    logger.info("Loaded %d Mesh R-CNN ShapeNet views (%s) from %s", len(records), split, data_dir)
    return records


# ---------------------------------------------------------------------------------------------
# Grouping and registration
# ---------------------------------------------------------------------------------------------


def group_views_by_model(records: Iterable[dict]) -> list[dict]:
    """Turn view records into one record per model, each with its ``views`` by ``view_index``.

    A model record holds the :data:`MODEL_LEVEL_KEYS` (taken from its views, which must agree)
    plus ``views``. Models keep the order of their first view in ``records``.

    Raises:
        ValueError: two views of a model disagree on a model-level key, or repeat a view index.
    """
    models: dict[tuple[str, str], dict] = {}
    for record in records:
        key = (record["synset_id"], record["model_id"])
        model = models.get(key)
        if model is None:
            model = models[key] = {k: record.get(k) for k in MODEL_LEVEL_KEYS}
            model["views"] = []
        else:
            for k in MODEL_LEVEL_KEYS:
                if record.get(k) != model[k]:
                    raise ValueError(
                        f"views of model {key[0]}/{key[1]} disagree on {k!r}: "
                        f"{model[k]!r} vs {record.get(k)!r} (view {record.get('image_id')!r})"
                    )
        model["views"].append(record)
    for (synset, model_id), model in models.items():
        model["views"].sort(key=lambda r: r["view_index"])
        indices = [r["view_index"] for r in model["views"]]
        if len(set(indices)) != len(indices):
            raise ValueError(f"model {synset}/{model_id} repeats view indices: {indices}")
    return list(models.values())


def register_r2n2(name: str, shapenet_root: str, split: str) -> None:
    """Register R2N2's ``split`` of ``shapenet_root`` as ``name`` with ShapeNet metadata."""
    shapenet_root = os.path.abspath(shapenet_root)
    render_root = os.path.join(shapenet_root, R2N2_RENDERING_DIR)
    if not os.path.isdir(render_root):
        raise FileNotFoundError(f"cannot register {name!r}: not found: {render_root}")
    DatasetCatalog.register(name, lambda: load_r2n2(shapenet_root, split))
    _metadata(name, image_root=render_root, split=split)


def register_meshrcnn_shapenet(name: str, data_dir: str, split_file: str, split: str) -> None:
    """Register a split of Mesh R-CNN's preprocessed ShapeNet as ``name``."""
    data_dir, split_file = os.path.abspath(data_dir), os.path.abspath(split_file)
    for path in (os.path.join(data_dir, "summary.json"), split_file):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"cannot register {name!r}: not found: {path}")
    DatasetCatalog.register(name, lambda: load_meshrcnn_shapenet(data_dir, split_file, split))
    _metadata(name, image_root=data_dir, split=split, split_file=split_file)


def register_all(root: str) -> list[str]:
    """Register the ShapeNet datasets whose files exist under ``root/shapenet``.

    ``shapenet_r2n2_{train,test}`` when ``ShapeNetRendering`` exists, and
    ``shapenet_meshrcnn_{train,val,test}`` (those in the split file) when
    ``ShapeNetV1processed/summary.json`` and ``pix2mesh_splits_val05.json`` exist. Does nothing
    when ``root/shapenet`` is absent.

    Returns:
        The names registered.
    """
    folder = os.path.join(root, SHAPENET_DIR)
    if not os.path.isdir(folder):
        return []
    registered = []
    if os.path.isdir(os.path.join(folder, R2N2_RENDERING_DIR)):
        for split in ("train", "test"):
            register_r2n2(f"shapenet_r2n2_{split}", folder, split)
            registered.append(f"shapenet_r2n2_{split}")
    data_dir = os.path.join(folder, MESHRCNN_PROCESSED_DIR)
    split_file = os.path.join(folder, MESHRCNN_SPLIT_FILE)
    if os.path.isfile(os.path.join(data_dir, "summary.json")) and os.path.isfile(split_file):
        present = read_json(split_file, "Mesh R-CNN ShapeNet split file")
        for split in ("train", "val", "test"):
            if split in present:
                register_meshrcnn_shapenet(
                    f"shapenet_meshrcnn_{split}", data_dir, split_file, split
                )
                registered.append(f"shapenet_meshrcnn_{split}")
    return registered
