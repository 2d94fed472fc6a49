"""Datasets from your own meshes: ``meshrecon render-shapes MESH_FOLDER --name NAME``.

* :mod:`.sources`: which files, categories, model ids and splits;
* :mod:`.model`: one model (load, check, normalise, voxelize, sample, render, write);
* :mod:`.build`: the resumable run over a process pool (:func:`render_shapes`);
* :mod:`.registry`: ``<NAME>_train/_val/_test`` registered from ``$MESHRECON_DATASETS/custom``;
* :mod:`.cli`: the command (``main(argv)``).

The on-disk format is the one of ``synthetic_shapenet`` (``docs/DATA_FORMATS.md``).
"""

from .registry import (
    custom_dataset_dir,
    custom_datasets_root,
    load_custom_split,
    register_all_custom,
    register_custom_dataset,
)

__all__ = [
    "custom_dataset_dir",
    "custom_datasets_root",
    "load_custom_split",
    "main",
    "register_all_custom",
    "register_custom_dataset",
    "render_shapes",
]


def __getattr__(name: str):
    # The command and the builder import the renderer and trimesh: only when asked for.
    if name == "render_shapes":
        from .build import render_shapes

        return render_shapes
    if name == "main":
        from .cli import main

        return main
    raise AttributeError(name)
