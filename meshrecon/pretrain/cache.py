"""Pretrained weights cached like the synthetic datasets: made once, keyed, written atomically.

``synthetic://<name>`` (e.g. ``synthetic://resnet18_pretrained.pth``) names a recipe of
:data:`PRETRAINED_RECIPES`. Its file lives at
``<cache>/synthetic/<stem>/v<GENERATOR_VERSION>-<key>/<name>`` with a ``meta.json`` beside it,
``<cache>`` being ``meshrecon.checkpoint.get_cache_dir()`` (``$MESHRECON_CACHE``). ``key``
hashes the recipe, the synthetic generator's version and the source of the code that makes
the renders and trains (``synthetic/*.py``, ``meshrecon/render``, ``meshrecon/pretrain``), so a
changed recipe or generator makes a new entry and a stale one is never reused.

When the file is missing it is made on first use (or ahead of time by
``tools/pretrain_backbone.py``): into a temporary sibling folder, renamed into place when
complete, under a lock file next to it, so concurrent processes (DDP ranks) make it once.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from typing import Any

import torch

from .recipe import PretrainRecipe

__all__ = [
    "PRETRAINED_RECIPES",
    "SCHEME",
    "ensure_pretrained",
    "is_cached",
    "pretrained_dir",
    "recipe_key",
    "register_pretrain_recipe",
]

logger = logging.getLogger(__name__)

SCHEME = "synthetic://"
# Bump when the weights change in a way the source digest cannot see.
PRETRAIN_VERSION = 1
_META_FILE = "meta.json"

# The recipes ``synthetic://<name>`` resolves, each about 12 minutes of one CPU core (the
# README's "Pretrained backbones" section gives the measured figures): 360 objects x 6 views at
# 112 x 112, then 500 steps of 32 for ResNet-18 (1.4 CPU-s per step) or 1000 for the
# AlexNet-width stack (0.6 CPU-s per step).
PRETRAINED_RECIPES: dict[str, PretrainRecipe] = {
    "resnet18_pretrained.pth": PretrainRecipe(arch="resnet18"),
    "eigen_alexnet_pretrained.pth": PretrainRecipe(arch="eigen_alexnet", steps=1000),
}


def register_pretrain_recipe(name: str, recipe: PretrainRecipe) -> None:
    """Make ``synthetic://<name>`` resolve to ``recipe`` (replacing any earlier one)."""
    if not isinstance(recipe, PretrainRecipe):
        raise TypeError(f"recipe must be a PretrainRecipe, got {type(recipe).__name__}")
    if not name or "/" in name or not name.endswith(".pth"):
        raise ValueError(f"a pretrained weights name is a file name ending in .pth, got {name!r}")
    PRETRAINED_RECIPES[name] = recipe


def _recipe_for(name: str) -> PretrainRecipe:
    if name not in PRETRAINED_RECIPES:
        raise ValueError(
            f"{SCHEME}{name} names no pretraining recipe; known: "
            + ", ".join(SCHEME + n for n in sorted(PRETRAINED_RECIPES))
        )
    return PRETRAINED_RECIPES[name]


def _code_digest() -> str:
    """Hash of the code that decides the weights: the synthetic world's, this package's and
    the low-dtype call its network runs its encoder with (``meshrecon.utils.precision``)."""
    from meshrecon.data.datasets.synthetic.generator import _source_digest
    from meshrecon.utils import precision

    digest = hashlib.sha256(_source_digest().encode())
    here = os.path.dirname(os.path.abspath(__file__))
    for path in [*sorted(glob.glob(os.path.join(here, "*.py"))), precision.__file__]:
        digest.update(os.path.basename(path).encode())
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


def recipe_key(recipe: PretrainRecipe) -> str:
    """``v<GENERATOR_VERSION>-<12 hex>``: the cache folder name of ``recipe``'s weights."""
    from meshrecon.data.datasets.synthetic import GENERATOR_VERSION

    payload = json.dumps(
        {
            "generator_version": GENERATOR_VERSION,
            "pretrain_version": PRETRAIN_VERSION,
            "recipe": recipe.to_dict(),
            "encoder_dtype": str(recipe.encoder_dtype()),
            "code": _code_digest(),
        },
        sort_keys=True,
    )
    return f"v{GENERATOR_VERSION}-{hashlib.sha256(payload.encode()).hexdigest()[:12]}"


def pretrained_dir(name: str, recipe: PretrainRecipe | None = None) -> str:
    """The cache folder of the weights ``name`` made by ``recipe`` (default: its registered one)."""
    from meshrecon.checkpoint.catalog import get_cache_dir

    recipe = recipe or _recipe_for(name)
    stem = os.path.splitext(name)[0]
    return os.path.join(get_cache_dir(), "synthetic", stem, recipe_key(recipe))


def is_cached(name: str, recipe: PretrainRecipe | None = None) -> bool:
    folder = pretrained_dir(name, recipe)
    return os.path.isfile(os.path.join(folder, name)) and os.path.isfile(
        os.path.join(folder, _META_FILE)
    )


def _make(name: str, recipe: PretrainRecipe, folder: str, progress: bool) -> None:
    from .recipe import pretrain

    parent = os.path.dirname(folder)
    prefix = f".tmp-{os.path.basename(folder)}-"
    for stale in glob.glob(os.path.join(parent, prefix + "*")):  # killed earlier attempts
        shutil.rmtree(stale, ignore_errors=True)
    tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        start = time.perf_counter()
        state_dict, info = pretrain(recipe, progress=progress)
        info = dict(info, name=name, key=os.path.basename(folder))
        info["total_seconds"] = round(time.perf_counter() - start, 1)
        checkpoint: dict[str, Any] = {"model": state_dict, "__source__": "synthetic"}
        checkpoint.update(
            {k: info[k] for k in ("recipe", "pixel_mean", "pixel_std", "input_format")}
        )
        checkpoint["model_ids"] = info["model_ids"]
        torch.save(checkpoint, os.path.join(tmp, name))
        # meta.json last: a folder holding it is complete.
        with open(os.path.join(tmp, _META_FILE), "w", encoding="utf-8") as f:
            json.dump(info, f, indent=1)
        os.chmod(tmp, 0o755)
        os.rename(tmp, folder)
        logger.info(
            "Made %s%s in %.1f min (rendering %.0f s, training %.0f s) into %s",
            SCHEME,
            name,
            info["total_seconds"] / 60.0,
            info["render_seconds"],
            info["train_seconds"],
            folder,
        )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def ensure_pretrained(
    name: str, recipe: PretrainRecipe | None = None, *, progress: bool = True
) -> str:
    """Return the local path of the weights ``name``, making them first if they are missing.

    Args:
        name: the file name after ``synthetic://``, e.g. ``"resnet18_pretrained.pth"``.
        recipe: the recipe to use instead of the registered one.
        progress: show progress bars while making them.
    """
    from meshrecon.data.datasets.synthetic.generator import _file_lock

    recipe = recipe or _recipe_for(name)
    folder = pretrained_dir(name, recipe)
    path = os.path.join(folder, name)
    if is_cached(name, recipe):
        return path
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    with _file_lock(folder + ".lock"):
        # Another process may have made it while this one waited for the lock.
        if not is_cached(name, recipe):
            if os.path.exists(folder):
                raise RuntimeError(
                    f"{folder} exists but is incomplete (no {_META_FILE}); it was not written "
                    "by this cache's atomic rename. Delete it to make the weights again."
                )
            logger.info(
                "%s%s is not in the cache (first use of this recipe: %s): pretraining the %s "
                "encoder on synthetic renders now, once; it is cached at %s",
                SCHEME,
                name,
                recipe,
                recipe.arch,
                folder,
            )
            _make(name, recipe, folder, progress)
    return path
