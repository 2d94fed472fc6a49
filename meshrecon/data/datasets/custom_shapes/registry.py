"""Registering the datasets that ``render-shapes`` wrote under ``<root>/custom/<name>/``.

Importing :mod:`meshrecon.data.datasets` scans ``$MESHRECON_DATASETS/custom/`` (else
``./datasets/custom/``) and registers, for every folder holding a ``dataset.json``, the splits
``<name>_train``, ``<name>_val`` and ``<name>_test`` (and their ``_multiview`` twins) with the
ShapeNet evaluator and the dataset's categories as ``thing_classes``. So a dataset made once is
trained on with no code::

    meshrecon train --config-file configs/synthetic/voxmesh.yaml \\
        DATASETS.TRAIN '("mydata_train",)' DATASETS.TEST '("mydata_test",)'

A folder without ``dataset.json`` (a run still going or interrupted) is not registered.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from typing import Any

from meshrecon.data.catalog import DatasetCatalog, MetadataCatalog

__all__ = [
    "CUSTOM_SUBDIR",
    "DATASET_FILE",
    "custom_dataset_dir",
    "custom_datasets_root",
    "load_custom_split",
    "register_all_custom",
    "register_custom_dataset",
]

logger = logging.getLogger(__name__)

CUSTOM_SUBDIR = "custom"
DATASET_FILE = "dataset.json"
FORMAT_NAME = "meshrecon-render-shapes-v1"
_SPLITS = ("train", "val", "test")


def custom_datasets_root(root: str | None = None) -> str:
    """The datasets root: ``root``, else ``$MESHRECON_DATASETS``, else ``./datasets`` (absolute)."""
    root = root or os.environ.get("MESHRECON_DATASETS", "") or "datasets"
    return os.path.abspath(os.path.expanduser(root))


def custom_dataset_dir(name: str, root: str | None = None) -> str:
    """``<root>/custom/<name>``."""
    return os.path.join(custom_datasets_root(root), CUSTOM_SUBDIR, name)


def _read_dataset_file(folder: str) -> dict[str, Any]:
    path = os.path.join(folder, DATASET_FILE)
    with open(path, encoding="utf-8") as f:
        meta = json.load(f)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{path} is not a render-shapes dataset file (format {FORMAT_NAME})")
    return meta


def load_custom_split(folder: str, split: str) -> list[dict]:
    """The view records of one split of a render-shapes dataset, with absolute paths.

    Raises:
        FileNotFoundError: ``dataset.json``, the split file or a file a record names is missing.
        UnsafePathError: a record's path leaves the dataset folder.
        ValueError: the split has no model (too few models for the split fractions).
    """
    from meshrecon.utils.path_policy import DatasetRoot

    from ..synthetic.generator import _absolutize

    meta = _read_dataset_file(folder)
    name = meta["name"]
    path = os.path.join(folder, f"{split}.json")
    with open(path, encoding="utf-8") as f:
        records = json.load(f)
    if not records:
        counts = ", ".join(f"{s} {meta['splits'][s]['models']}" for s in _SPLITS)
        raise ValueError(
            f"dataset {name!r} has no {split} models (models per split: {counts}; fractions "
            f"{meta.get('split_fractions')}): rerun render-shapes with more meshes or another "
            "--split"
        )
    missing: set[str] = set()
    root = DatasetRoot(folder, "render-shapes dataset folder")
    records = [_absolutize(r, root, missing, f"{path} record {i}") for i, r in enumerate(records)]
    if missing:
        raise FileNotFoundError(
            f"dataset {name!r} ({folder}) lacks {len(missing)} file(s) its records name, e.g. "
            f"{sorted(missing)[0]}; rerun render-shapes to rewrite it"
        )
    return records


def register_custom_dataset(
    folder: str, replace: bool = False, multiview: bool = True
) -> list[str]:
    """Register the three splits of the render-shapes dataset in ``folder``; return the names.

    Args:
        folder: ``<root>/custom/<name>``, holding ``dataset.json``.
        replace: re-register names that are registered already (after a new run).
        multiview: register the ``_multiview`` twins too (the import-time scan leaves them to
            :mod:`meshrecon.data.datasets.builtin`, which adds them for every ShapeNet-style
            split).
    """
    meta = _read_dataset_file(folder)
    name = meta["name"]
    names = []
    for split in _SPLITS:
        full = f"{name}_{split}"
        twin = f"{full}_multiview"
        if full in DatasetCatalog:
            if not replace or not MetadataCatalog.get(full).get("custom_dataset"):
                logger.warning("dataset %s (%s) is registered already: not replaced", full, folder)
                continue
            for n in (full, twin):
                if n in DatasetCatalog:
                    DatasetCatalog.remove(n)
                    MetadataCatalog.remove(n)
        DatasetCatalog.register(full, functools.partial(load_custom_split, folder, split))
        MetadataCatalog.get(full).set(
            evaluator_type="shapenet",
            thing_classes=list(meta["categories"]),
            synset_to_name=dict(zip(meta["category_dirs"], meta["categories"])),
            dataset_root=folder,
            custom_dataset=True,
        )
        names.append(full)
        if multiview:
            from meshrecon.data.datasets.builtin import register_multiview

            names.append(register_multiview(full))
    return names


def register_all_custom(root: str | None = None) -> list[str]:
    """Register every render-shapes dataset under ``<root>/custom/``; return the names.

    A folder whose ``dataset.json`` is unreadable, or whose names are taken, is skipped with a
    warning (importing meshrecon never fails because of it).
    """
    base = os.path.join(custom_datasets_root(root), CUSTOM_SUBDIR)
    if not os.path.isdir(base):
        return []
    names = []
    for entry in sorted(os.listdir(base)):
        folder = os.path.join(base, entry)
        if not os.path.isfile(os.path.join(folder, DATASET_FILE)):
            continue
        try:
            names += register_custom_dataset(folder, multiview=False)
        except (OSError, ValueError, KeyError) as err:
            logger.warning("render-shapes dataset %s not registered: %s", folder, err)
    return names
