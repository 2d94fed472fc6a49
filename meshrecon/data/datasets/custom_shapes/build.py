"""``render_shapes``: a folder of meshes to a registered ShapeNet-style dataset, resumably.

The run, under a lock on the dataset folder:

1. find the meshes and their categories (:func:`.sources.find_sources`);
2. delete ``dataset.json`` (so a dataset being changed is never registered half-way) and the
   temporary folders of models whose writing was interrupted;
3. every model whose folder holds a ``model.json`` made from the same file (SHA-256) with the
   same recipe is kept; the others are written by a process pool (:func:`.model.process_model`,
   temp folder renamed into place), with a progress bar; meshes that cannot be loaded or are
   degenerate are skipped with their reason;
4. model folders that no input file produces any more are deleted;
5. the models are split into train / val / test (:func:`.sources.assign_splits`), the split
   files and ``models.json`` (models and skipped inputs) are written, and ``dataset.json`` last.

Each model's files depend only on its mesh file, the recipe and its key, so an interrupted and
resumed run ends with exactly the files of an uninterrupted one.
"""

from __future__ import annotations

import concurrent.futures as futures
import dataclasses
import glob
import logging
import multiprocessing
import os
import re
import shutil
from collections import Counter
from typing import Any

import torch

from meshrecon.utils.progress import progress_bar

from .model import MODEL_FILE, ModelJob, Recipe, file_sha256, process_model
from .registry import (
    DATASET_FILE,
    FORMAT_NAME,
    custom_dataset_dir,
    register_custom_dataset,
)
from .sources import SPLIT_NAMES, Problem, assign_splits, find_sources

__all__ = ["RenderSummary", "render_shapes"]

logger = logging.getLogger(__name__)

# Every model's source file, split and counts, and every skipped input with its reason.
MODELS_FILE = "models.json"
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


@dataclasses.dataclass
class RenderSummary:
    """What a run did (the CLI prints it; ``dataset.json`` keeps most of it)."""

    name: str
    folder: str
    found: int = 0
    done: int = 0
    reused: int = 0
    removed: int = 0
    skipped: list[Problem] = dataclasses.field(default_factory=list)
    ignored: dict[str, int] = dataclasses.field(default_factory=dict)
    categories: list[str] = dataclasses.field(default_factory=list)
    splits: dict[str, int] = dataclasses.field(default_factory=dict)
    views: dict[str, int] = dataclasses.field(default_factory=dict)
    registered: list[str] = dataclasses.field(default_factory=list)


def _check_name(name: str) -> None:
    from meshrecon.data.catalog import DatasetCatalog, MetadataCatalog

    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"--name must start with a letter and hold only letters, digits, '_' and '-' "
            f"(at most 64), got {name!r}"
        )
    for split in SPLIT_NAMES:
        full = f"{name}_{split}"
        if full in DatasetCatalog and not MetadataCatalog.get(full).get("custom_dataset"):
            raise ValueError(f"--name {name!r}: {full!r} is a built-in dataset; pick another name")


def _file_lock(path: str):
    from ..synthetic.generator import _file_lock as lock

    return lock(path)


def _read_model_file(folder: str) -> dict | None:
    import json

    try:
        with open(os.path.join(folder, MODEL_FILE), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _worker_init() -> None:
    # One thread per worker: the pool already uses every core, and torch's default (all
    # cores per process) would make the workers fight over them.
    torch.set_num_threads(1)


def _run_jobs(jobs: list[ModelJob], workers: int, progress: bool) -> list[dict]:
    """Run :func:`process_model` on every job (a pool when ``workers > 1``)."""
    bar = progress_bar(
        total=len(jobs),
        desc="render-shapes",
        unit="model",
        dynamic_ncols=True,
        disable=not progress,
        mininterval=0.5,
    )
    results = []
    try:
        if workers <= 1 or len(jobs) <= 1:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # the same arithmetic as in a pool worker
            try:
                for job in jobs:
                    results.append(process_model(job))
                    bar.update(1)
            finally:
                torch.set_num_threads(threads)
            return results
        context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        with futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_worker_init
        ) as pool:
            pending = [pool.submit(process_model, job) for job in jobs]
            try:
                for done in futures.as_completed(pending):
                    results.append(done.result())
                    bar.update(1)
            except BaseException:
                for f in pending:
                    f.cancel()
                raise
        return results
    finally:
        bar.close()


def _remove_stale(folder: str, keep: set[str]) -> int:
    """Delete model folders (those holding a model.json) whose key is not in ``keep``."""
    removed = 0
    for path in sorted(glob.glob(os.path.join(folder, "*", "*", MODEL_FILE))):
        model_dir = os.path.dirname(path)
        key = os.path.relpath(model_dir, folder).replace(os.sep, "/")
        if key not in keep:
            shutil.rmtree(model_dir)
            removed += 1
    for category_dir in glob.glob(os.path.join(folder, "*", "")):
        if not os.listdir(category_dir):
            os.rmdir(category_dir)
    return removed


def render_shapes(
    mesh_folder: str,
    name: str,
    *,
    root: str | None = None,
    csv_path: str | None = None,
    default_category: str | None = None,
    recipe: Recipe | None = None,
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    workers: int | None = None,
    progress: bool = True,
    register: bool = True,
) -> RenderSummary:
    """Turn a folder of meshes into the dataset ``<root>/custom/<name>`` and register it.

    Args:
        mesh_folder: the meshes, in category folders or listed by ``csv_path``.
        name: dataset name; the splits register as ``<name>_train``, ``_val``, ``_test``.
        root: datasets root (default ``$MESHRECON_DATASETS``, else ``./datasets``), the folder
            whose ``custom/`` is scanned when meshrecon is imported.
        csv_path: CSV of ``file,category`` rows (flat layout).
        default_category: category of meshes directly in ``mesh_folder``.
        recipe: views, image size, cameras, samples, voxel sizes... (:class:`.model.Recipe`).
        split_fractions: ``(train, val, test)``, summing to 1; by model, stratified by category.
        workers: processes (default: the usable cores, at most 8).
        progress: show a progress bar.
        register: register the splits in this process too.

    Returns:
        a :class:`RenderSummary`.

    Raises:
        ValueError: a bad name, option or CSV; no mesh could be used.
        NotADirectoryError / FileNotFoundError: the mesh folder or the CSV does not exist.
    """
    from ..synthetic.writers import save_json
    from .registry import custom_datasets_root

    _check_name(name)
    recipe = recipe or Recipe()
    assign_splits([], split_fractions, recipe.seed)  # validates the fractions
    if workers is None:
        affinity = getattr(os, "sched_getaffinity", None)
        usable = len(affinity(0)) if affinity else os.cpu_count()
        workers = min(usable or 1, 8)
    root = custom_datasets_root(root)
    folder = custom_dataset_dir(name, root)
    sources, problems, ignored = find_sources(
        mesh_folder, csv_path, default_category, exclude=os.path.dirname(folder)
    )
    summary = RenderSummary(name=name, folder=folder, found=len(sources) + len(problems))
    summary.ignored = dict(sorted(ignored.items()))
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    with _file_lock(folder + ".lock"):
        os.makedirs(folder, exist_ok=True)
        if os.path.exists(os.path.join(folder, DATASET_FILE)):
            os.remove(os.path.join(folder, DATASET_FILE))
        for stale in glob.glob(os.path.join(folder, "*", ".tmp-*")):
            shutil.rmtree(stale, ignore_errors=True)  # interrupted writes: redone below
        digest = recipe.digest()
        jobs, results = [], []
        for src in sources:
            sha = file_sha256(src.path)
            previous = _read_model_file(os.path.join(folder, src.category_dir, src.model_id))
            same = previous and previous.get("source_sha256") == sha
            if same and previous.get("recipe") == digest:
                results.append({"key": src.key, "status": "done", **previous, "reused": True})
                continue
            jobs.append(
                ModelJob(
                    src.path,
                    src.rel,
                    src.category,
                    src.category_dir,
                    src.model_id,
                    folder,
                    recipe,
                    sha,
                )
            )
        summary.reused = len(results)
        if jobs:
            logger.info(
                "render-shapes %s: %d models to write (%d already done) with %d worker(s)",
                name,
                len(jobs),
                summary.reused,
                min(workers, len(jobs)),
            )
        results += _run_jobs(jobs, workers, progress)
        rel_of = {s.key: s.rel for s in sources}
        done = {r["key"]: r for r in results if r["status"] == "done"}
        summary.done = len(done) - summary.reused
        summary.skipped = problems + [
            Problem(rel_of[r["key"]], r["kind"], r["reason"])
            for r in sorted(results, key=lambda r: r["key"])
            if r["status"] == "skipped"
        ]
        summary.removed = _remove_stale(folder, set(done))
        if not done:
            raise ValueError(
                f"no usable mesh in {mesh_folder} ({len(summary.skipped)} skipped); nothing to "
                "register. " + "; ".join(f"{p.rel}: {p.reason}" for p in summary.skipped[:5])
            )
        category_of = {s.key: (s.category, s.category_dir) for s in sources}
        categories = sorted({category_of[k] for k in done}, key=lambda c: c[1])
        category_id = {d: i for i, (_, d) in enumerate(categories)}
        splits = assign_splits([tuple(k.split("/")) for k in done], split_fractions, recipe.seed)
        split_records: dict[str, list[dict]] = {s: [] for s in SPLIT_NAMES}
        models: dict[str, Any] = {}
        for key in sorted(done):
            split = splits[tuple(key.split("/"))]
            category_dir = key.split("/")[0]
            # The category's name and index follow this run's categories (a model written by
            # an earlier run keeps its files).
            name_and_id = {
                "category": category_of[key][0],
                "category_id": category_id[category_dir],
            }
            for record in done[key]["records"]:
                split_records[split].append({**record, **name_and_id})
            models[key] = {"source": rel_of[key], "split": split, **done[key]["info"]}
        for split, records in split_records.items():
            save_json(os.path.join(folder, f"{split}.json"), records)
        summary.categories = [c for c, _ in categories]
        summary.splits = {s: sum(m["split"] == s for m in models.values()) for s in SPLIT_NAMES}
        summary.views = {s: len(r) for s, r in split_records.items()}
        # The per-model listing can be long (every import reads dataset.json): its own file.
        save_json(
            os.path.join(folder, MODELS_FILE),
            {"models": models, "skipped": [dataclasses.asdict(p) for p in summary.skipped]},
        )
        save_json(
            os.path.join(folder, DATASET_FILE),
            {
                "format": FORMAT_NAME,
                "name": name,
                "categories": summary.categories,
                "category_dirs": [d for _, d in categories],
                "recipe": recipe.as_dict(),
                "split_fractions": list(split_fractions),
                "splits": {
                    s: {"models": summary.splits[s], "views": summary.views[s]} for s in SPLIT_NAMES
                },
                "num_models": len(models),
                "num_skipped": len(summary.skipped),
                "ignored_files": summary.ignored,
            },
        )
    if register:
        summary.registered = register_custom_dataset(folder, replace=True)
    return summary


def skipped_counts(summary: RenderSummary) -> Counter:
    """How many inputs were skipped for each kind of reason."""
    return Counter(p.kind for p in summary.skipped)
