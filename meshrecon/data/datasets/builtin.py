"""Register every built-in dataset split in ``DatasetCatalog`` and ``MetadataCatalog``.

Synthetic splits (``synthetic_{shapenet,pix3d,nyu}_{train,val,test}``) are generated on first
``DatasetCatalog.get`` and cached under ``$MESHRECON_DATASETS/synthetic``; see
:mod:`meshrecon.data.datasets.synthetic.generator`.
Real datasets (Pix3D, ShapeNet, NYU Depth v2, KITTI) are registered by their own modules:
``register_all(root)`` for the splits whose files exist under ``$MESHRECON_DATASETS``.
Datasets made by ``meshrecon render-shapes`` (``$MESHRECON_DATASETS/custom/<name>/``) register
as ``<name>_train``, ``<name>_val`` and ``<name>_test``.
"""

from __future__ import annotations

import functools
import os

from meshrecon.data.catalog import DatasetCatalog, MetadataCatalog

from . import kitti, nyu, pix3d, shapenet
from .shapenet import group_views_by_model
from .synthetic import CATEGORIES, SPLITS, dataset_name, get_synthetic_config, load_synthetic
from .synthetic.generator import _update_dataset_root

__all__ = ["MULTIVIEW_SUFFIX", "register_all_real", "register_all_synthetic", "register_multiview"]

# Evaluator of each kind of split (docs/DATA_FORMATS.md).
_EVALUATOR_TYPES = {"shapenet": "shapenet", "pix3d": "pix3d", "nyu": "depth"}


def register_all_synthetic() -> list[str]:
    """Register every synthetic split that is not registered yet; return the names registered."""
    registered = []
    for kind, splits in SPLITS.items():
        for split in splits:
            name = dataset_name(kind, split)
            if name in DatasetCatalog:
                continue
            # No config argument: the loader reads the active config when it is called, so a
            # trainer's configure_synthetic(cfg) after import still applies.
            DatasetCatalog.register(name, functools.partial(load_synthetic, kind, split))
            meta = MetadataCatalog.get(name)
            meta.set(evaluator_type=_EVALUATOR_TYPES[kind])
            if kind in ("shapenet", "pix3d"):
                meta.set(thing_classes=list(CATEGORIES))
            if kind == "shapenet":
                # Synthetic "synsets" are the category names themselves.
                meta.set(synset_to_name={c: c for c in CATEGORIES})
            _update_dataset_root(kind, split, get_synthetic_config())
            registered.append(name)
    return registered


register_all_synthetic()


# --- section: real datasets ---
def register_all_real(root: str | None = None) -> list[str]:
    """Register the real datasets found under ``root``; return the names registered.

    ``root`` defaults to ``$MESHRECON_DATASETS``, else ``./datasets``. Each module registers
    only the splits whose files exist there (see each module's ``register_all``).
    """
    root = root or os.environ.get("MESHRECON_DATASETS", "") or "datasets"
    names: list[str] = []
    for module in (pix3d, shapenet, nyu, kitti):
        names += module.register_all(root)
    return names


register_all_real()
# --- end section ---

# --- section: render-shapes datasets ---
# The user's own meshes, made into datasets by `meshrecon render-shapes` under
# $MESHRECON_DATASETS/custom/<name>/ (see custom_shapes.registry); registered before the
# multi-view twins below so that they get theirs.
from .custom_shapes.registry import register_all_custom  # noqa: E402

register_all_custom()
# --- end section ---

# Multi-view methods (R2N2, OptimizeMVS) read one record per object with all its views.
MULTIVIEW_SUFFIX = "_multiview"


def register_multiview(name: str) -> str:
    """Register ``<name>_multiview``: the view records of ``name`` grouped by model.

    The twin's records are :func:`group_views_by_model` of ``name``'s; its metadata keeps
    ``thing_classes`` and sets ``evaluator_type = "multiview"``. Returns the twin's name.
    """
    twin = name + MULTIVIEW_SUFFIX
    if twin not in DatasetCatalog:
        DatasetCatalog.register(twin, lambda: group_views_by_model(DatasetCatalog.get(name)))
        source = MetadataCatalog.get(name)
        meta = MetadataCatalog.get(twin)
        meta.set(evaluator_type="multiview", source_dataset=name)
        for key in ("thing_classes", "synset_to_name"):
            if source.get(key) is not None:
                meta.set(**{key: source.get(key)})
    return twin


for _name in DatasetCatalog.list():
    if MetadataCatalog.get(_name).get("evaluator_type") == "shapenet":
        register_multiview(_name)
