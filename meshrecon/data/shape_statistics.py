"""Statistics of a training split that some models are built with, computed once, as data.

Two baselines answer from the training shapes instead of the image: the mean-shape head
(:class:`~meshrecon.modeling.heads.mean_shape.MeanShapeHead`) and the recognition heads
(:mod:`meshrecon.modeling.heads.recognition`). What they need of the training split is computed
here, by the data layer, and handed to them:

* :func:`compute_mean_shape`: the majority vote of the models' solid occupancy, cubified;
* :func:`build_shape_database`: the training shapes as a searchable
  :class:`~meshrecon.structures.ShapeDatabase` (entries, poses, distance-field descriptors).

:func:`training_statistics` is the one entry point a model uses, when it is built from a config
(``DATASETS.TRAIN``). Each result is computed once per content and parameters and cached on
disk like the synthetic datasets and the pretrained weights: under
``<cache>/statistics/<kind>/v<STATISTICS_VERSION>-<key>.pt``, ``<cache>`` being
``$MESHRECON_CACHE`` (default ``~/.cache/meshrecon``), where ``key`` hashes the parameters, the
records the computation reads (the files they name with their sizes and modification times)
and the source of the code that computes it, so that a changed split, parameter or algorithm
makes a new entry and a stale one is never reused. An entry is written to a temporary file
and renamed into place, under a lock file, so that concurrent processes (DDP ranks, the
benchmark's runs) compute it once.

The heads keep the result in their ``state_dict``: a checkpoint carries it, and a model built
from a config whose training split is not registered takes it from the checkpoint it loads.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from meshrecon.checkpoint.catalog import get_cache_dir
from meshrecon.checkpoint.checkpointer import _atomic_write
from meshrecon.ops import (
    cubify,
    descriptor_lattice,
    distance_field_descriptors,
    voxelize_meshes,
)
from meshrecon.structures import Meshes
from meshrecon.structures.shape_database import FRAMES, ShapeDatabase

from .build import get_dataset_dicts
from .catalog import DatasetCatalog
from .datasets.synthetic.generator import _file_lock
from .mapper_utils import sample_surface, samples
from .readers import read_mesh

__all__ = [
    "STATISTICS_KINDS",
    "STATISTICS_VERSION",
    "build_shape_database",
    "cached_mean_shape",
    "cached_shape_database",
    "compute_mean_shape",
    "statistics_cache_dir",
    "training_statistics",
]

logger = logging.getLogger(__name__)

# Bump when a result changes in a way the source digest cannot see (e.g. a dependency's maths).
STATISTICS_VERSION = 1
STATISTICS_KINDS = ("mean_shape", "shape_database")

# The record fields the shape database reads (the image, depth etc. do not matter to it).
_DATABASE_FIELDS = (
    "synset_id",
    "model_id",
    "mesh",
    "samples",
    "voxel",
    "category",
    "R",
    "t",
    "view_index",
)


# ----------------------------------------------------------------------------- the mean shape


def _mean_shape_paths(records: Sequence[dict], max_models: int) -> list[str]:
    """The mesh files the mean shape votes over: each distinct one once, the first ones."""
    return list(dict.fromkeys(r["mesh"] for r in records if r.get("mesh")))[:max_models]


def compute_mean_shape(
    records: Sequence[dict],
    voxel_size: int = 32,
    bounds: Sequence[float] = (-0.5, 0.5),
    max_models: int = 500,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean shape of the models of ShapeNet-style view records, in the model frame.

    A voxel of the ``voxel_size``^3 grid over the cube ``bounds``^3 is kept when more than half
    of the models fill it (solid occupancy, :func:`meshrecon.ops.voxelize_meshes`); the kept
    voxels are cubified into a closed mesh.

    Args:
        records: view records (``mesh`` path, ``synset_id`` / ``model_id``); each distinct
            mesh counts once.
        voxel_size: side of the occupancy grid over the cube ``bounds``^3.
        bounds: (min, max) of that cube in model units (ShapeNet models fit in [-0.5, 0.5]).
        max_models: use at most this many models (the first ones, in record order).

    Returns:
        verts (V, 3) float32, faces (F, 3) int64 of the cubified majority-vote occupancy (if
        no voxel is filled by a majority, the most filled voxels, down to half of the maximum).

    Raises:
        ValueError: no record names a mesh.
    """
    paths = _mean_shape_paths(records, max_models)
    if not paths:
        raise ValueError("compute_mean_shape: no record has a 'mesh'")
    lo, hi = float(bounds[0]), float(bounds[1])
    box = torch.tensor([[lo] * 3, [hi] * 3])
    total = torch.zeros(voxel_size, voxel_size, voxel_size)
    for path in paths:
        verts, faces = read_mesh(path)
        mesh = Meshes(verts=[verts.float()], faces=[faces])
        total += voxelize_meshes(mesh, voxel_size, box=box, align="center")[0].float()
    freq = total / len(paths)
    thresh = min(0.5, 0.5 * float(freq.max()))
    grid = cubify(freq[None], max(thresh, 1e-6), align="center")
    verts = lo + (grid.verts_packed() + 1.0) * 0.5 * (hi - lo)
    logger.info(
        "Mean shape of %d models: %d voxels filled by > %.2f of them",
        len(paths),
        int((freq >= thresh).sum()),
        thresh,
    )
    return verts, grid.faces_packed()


# ----------------------------------------------------------------------------- the database


def _model_key(record: dict) -> str:
    if record.get("synset_id") is not None and record.get("model_id") is not None:
        return f"{record['synset_id']}/{record['model_id']}"
    if record.get("mesh"):
        return str(record["mesh"])
    raise ValueError(
        f"record {record.get('image_id')!r} names no model (synset_id / model_id or mesh)"
    )


def _group_views(records: Sequence[dict]) -> dict[str, list[dict]]:
    """Model key -> its view records, in record order (multi-view records are expanded)."""
    models: dict[str, list[dict]] = {}
    for r in records:
        model = {k: v for k, v in r.items() if k != "views"}
        for view in r.get("views") or [{}]:
            merged = {**model, **view}
            models.setdefault(_model_key(merged), []).append(merged)
    return models


def _select_views(
    records: Sequence[dict], frame: str, views_per_model: int, max_models: int
) -> list[tuple[str, list[dict]]]:
    """(model key, the views the database reads) per model it holds, in record order: the
    first view (its shape) in the object frame, the first ``views_per_model`` (0: all) in the
    viewer frame."""
    if frame not in FRAMES:
        raise ValueError(f"frame must be one of {FRAMES}, got {frame!r}")
    models = _group_views(records)
    if not models:
        raise ValueError("build_shape_database: no training records")
    chosen = []
    for key in list(models)[: max_models or None]:
        views = models[key]
        chosen.append((key, views[:1] if frame == "object" else views[: views_per_model or None]))
    return chosen


def _surface_points(view: dict, num_points: int) -> torch.Tensor:
    where = str(view.get("image_id"))
    if view.get("samples"):
        return samples(view["samples"], num_points, where)[0]
    if not view.get("mesh"):
        raise ValueError(f"record {where} has neither 'samples' nor 'mesh' to describe")
    verts, faces = read_mesh(view["mesh"])
    return sample_surface(verts.float(), faces, num_points)[0]


def build_shape_database(
    records: Sequence[dict],
    *,
    frame: str = "object",
    resolution: int = 16,
    num_points: int = 1000,
    views_per_model: int = 0,
    max_models: int = 0,
    box: Sequence[float] | torch.Tensor | None = None,
    seed: int = 0,
) -> ShapeDatabase:
    """Build the database of a dataset's training records.

    Each model is described by ``num_points`` samples of its surface (its ``samples`` file,
    else its mesh), posed per entry and turned into a distance-field descriptor over a
    ``resolution``^3 lattice (:func:`meshrecon.ops.distance_field_descriptors`).

    Args:
        records: ShapeNet-style view records (``synset_id``, ``model_id``, ``mesh``,
            ``samples``, ``voxel``, ``R``, ``t``) or multi-view model records (``views``).
        frame: ``"object"`` (an entry per model, model frame) or ``"viewer"`` (an entry per
            view: the model moved by the view's ``R``, ``t`` into its camera frame).
        resolution: lattice side of the descriptor.
        num_points: surface samples per entry.
        views_per_model: viewer frame: at most this many views of each model (its first ones);
            0: all.
        max_models: at most this many models (the first ones); 0: all.
        box: the lattice's region as ``[xmin, ymin, zmin, xmax, ymax, zmax]``; None or empty:
            the bounding box of every entry's samples, enlarged by 5% on each side.
        seed: seed of the surface sampling (the global RNG is left as it was).

    Returns:
        The :class:`~meshrecon.structures.ShapeDatabase`; the same for the same records,
        parameters and seed.

    Raises:
        ValueError: an unknown frame, no records, a record naming no model or no surface, or
            a viewer-frame view without ``R``, ``t``.
    """
    selected = _select_views(records, frame, views_per_model, max_models)
    mesh_paths, voxel_paths, keys, categories = [], [], [], []
    entry_model, rots, trans, clouds = [], [], [], []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for m, (key, views) in enumerate(selected):
            first = views[0]
            mesh_paths.append(first.get("mesh"))
            voxel_paths.append(first.get("voxel"))
            pts = _surface_points(first, num_points)
            if frame == "object":
                chosen = [(key, torch.eye(3), torch.zeros(3))]
            else:
                chosen = []
                for i, v in enumerate(views):
                    if v.get("R") is None or v.get("t") is None:
                        raise ValueError(f"view {v.get('image_id')!r} has no R, t for frame viewer")
                    R = torch.as_tensor(v["R"], dtype=torch.float32).reshape(3, 3)
                    t = torch.as_tensor(v["t"], dtype=torch.float32).reshape(3)
                    chosen.append((f"{key}/{v.get('view_index', i)}", R, t))
            for entry_key, R, t in chosen:
                keys.append(entry_key)
                categories.append(str(first.get("category") or first.get("synset_id") or ""))
                entry_model.append(m)
                rots.append(R)
                trans.append(t)
                clouds.append(pts @ R.T + t)
    if box is None or len(box) == 0:
        allpts = torch.cat(clouds)
        lo, hi = allpts.min(0).values, allpts.max(0).values
        pad = 0.05 * (hi - lo).clamp(min=1e-6)
        box_t = torch.stack([lo - pad, hi + pad])
    else:
        box_t = torch.as_tensor(list(box), dtype=torch.float32).reshape(2, 3)
    lattice = descriptor_lattice(box_t, resolution)
    descriptors = distance_field_descriptors(clouds, lattice)
    logger.info(
        "Shape database: %d entries (%s frame) of %d models, %d^3 distance-field descriptors",
        len(keys),
        frame,
        len(mesh_paths),
        resolution,
    )
    return ShapeDatabase(
        frame=frame,
        keys=keys,
        mesh_paths=mesh_paths,
        voxel_paths=voxel_paths,
        entry_model=torch.tensor(entry_model, dtype=torch.long),
        entry_R=torch.stack(rots),
        entry_t=torch.stack(trans),
        box=box_t,
        resolution=int(resolution),
        descriptors=descriptors,
        categories=categories,
    )


# ----------------------------------------------------------------------------- the disk cache


def statistics_cache_dir() -> str:
    """``<cache>/statistics``: the folder of the cached statistics (``$MESHRECON_CACHE``)."""
    return os.path.join(get_cache_dir(), "statistics")


def _code_digest() -> str:
    """Hash of the code that computes the statistics: this module, the readers and samplers
    it calls, and the ops, io and structures packages (voxelization, cubify, k-NN, loaders)."""
    here = os.path.dirname(os.path.abspath(__file__))
    package = os.path.dirname(here)
    files = [os.path.join(here, name) for name in ("shape_statistics.py", "readers.py")]
    files.append(os.path.join(here, "mapper_utils.py"))
    for sub in ("ops", "io", "structures"):
        files += sorted(glob.glob(os.path.join(package, sub, "*.py")))
    digest = hashlib.sha256()
    for path in files:
        # Names relative to the package: the key must not depend on where it is installed.
        digest.update(os.path.relpath(path, package).replace(os.sep, "/").encode())
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


def _file_identity(path: Any) -> list[Any] | None:
    """[size, mtime in ns] of a local file; None for a URL or a missing file (the path alone
    keys it then, and reading it raises as usual)."""
    try:
        st = os.stat(str(path))
    except (OSError, ValueError):
        return None
    return [st.st_size, st.st_mtime_ns]


def _plain(value: Any) -> Any:
    """JSON fallback for the tensors and arrays that records may hold (R, t)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _cache_key(kind: str, params: dict[str, Any], inputs: Any) -> str:
    payload = json.dumps(
        {
            "version": STATISTICS_VERSION,
            "kind": kind,
            "params": params,
            "inputs": inputs,
            "code": _code_digest(),
        },
        sort_keys=True,
        default=_plain,
    )
    return f"v{STATISTICS_VERSION}-{hashlib.sha256(payload.encode()).hexdigest()[:16]}"


def _read_entry(path: str, key: str) -> dict[str, Any] | None:
    if not os.path.isfile(path):
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # damaged outside this cache's atomic writes: make it again
        logger.warning("Cached statistics %s are unreadable (%s); computing them again", path, err)
        return None
    if not isinstance(data, dict) or data.get("key") != key or "statistics" not in data:
        logger.warning("Cached statistics %s are not the entry %s; computing them again", path, key)
        return None
    return data["statistics"]


def _write_entry(path: str, entry: dict[str, Any]) -> None:
    """Write ``entry`` atomically (the checkpointer's temporary file, fsync and rename),
    readable by every user of a shared cache."""
    _atomic_write(path, lambda f: torch.save(entry, f))
    os.chmod(path, 0o644)


def _cached(
    kind: str,
    params: dict[str, Any],
    inputs: Any,
    compute: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """The statistics ``compute()`` returns, read from the disk cache when they are there."""
    key = _cache_key(kind, params, inputs)
    path = os.path.join(statistics_cache_dir(), kind, f"{key}.pt")
    found = _read_entry(path, key)
    if found is not None:
        logger.info("Training statistics (%s) read from the cache: %s", kind, path)
        return found
    lock = contextlib.ExitStack()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        lock.enter_context(_file_lock(path + ".lock"))
    except OSError as err:  # a read-only cache: compute, and say that nothing is kept
        logger.warning("Cannot cache the %s statistics under %s (%s)", kind, path, err)
        return compute()
    with lock:
        # Another process may have computed it while this one waited for the lock.
        found = _read_entry(path, key)
        if found is not None:
            return found
        start = time.perf_counter()
        result = compute()
        seconds = time.perf_counter() - start
        entry = {"key": key, "kind": kind, "params": params, "statistics": result}
        try:
            _write_entry(path, entry)
        except OSError as err:
            logger.warning("Could not write the %s statistics to %s (%s)", kind, path, err)
        else:
            logger.info(
                "Training statistics (%s) computed in %.1f s, cached: %s", kind, seconds, path
            )
        return result


def cached_mean_shape(
    records: Sequence[dict],
    voxel_size: int = 32,
    bounds: Sequence[float] = (-0.5, 0.5),
    max_models: int = 500,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`compute_mean_shape`, computed once per content and parameters (disk cache).

    The key holds the mesh files the vote reads (in order, with their sizes and modification
    times), the parameters and the code's digest.
    """
    params = {"voxel_size": int(voxel_size), "bounds": [float(b) for b in bounds]}
    params["max_models"] = int(max_models)
    paths = _mean_shape_paths(records, max_models)
    inputs = [[str(p), _file_identity(p)] for p in paths]

    def compute() -> dict[str, Any]:
        verts, faces = compute_mean_shape(records, voxel_size, bounds, max_models)
        return {"verts": verts, "faces": faces}

    result = _cached("mean_shape", params, inputs, compute)
    return result["verts"], result["faces"]


def cached_shape_database(
    records: Sequence[dict],
    *,
    frame: str = "object",
    resolution: int = 16,
    num_points: int = 1000,
    views_per_model: int = 0,
    max_models: int = 0,
    box: Sequence[float] | torch.Tensor | None = None,
    seed: int = 0,
) -> ShapeDatabase:
    """:func:`build_shape_database`, computed once per content and parameters (disk cache).

    The key holds the fields of the records the database reads (the views it selects, with
    the sizes and modification times of the files it samples), the parameters and the code's
    digest.
    """
    box_list = [] if box is None else [float(b) for b in torch.as_tensor(box).flatten().tolist()]
    # The parameters key the entry and are what build_shape_database is called with (an empty
    # box means "the samples' bounding box", as None does).
    params: dict[str, Any] = {
        "frame": frame,
        "resolution": int(resolution),
        "num_points": int(num_points),
        "views_per_model": int(views_per_model),
        "max_models": int(max_models),
        "box": box_list,
        "seed": int(seed),
    }
    inputs = []
    for key, views in _select_views(records, frame, views_per_model, max_models):
        first = views[0]
        files = [
            [first.get(k), _file_identity(first[k])] for k in ("samples", "mesh") if first.get(k)
        ]
        fields = [{k: v.get(k) for k in _DATABASE_FIELDS if v.get(k) is not None} for v in views]
        inputs.append([key, files, fields])

    def compute() -> dict[str, Any]:
        return build_shape_database(records, **params).to_dict()

    return ShapeDatabase.from_dict(_cached("shape_database", params, inputs, compute))


# ----------------------------------------------------------------------------- for models


def training_statistics(cfg: Any, kind: str) -> dict[str, Any] | None:
    """What a head built from ``cfg`` needs of its training split, or None without one.

    The one function through which a model reaches the data layer while it is built. It reads
    ``cfg.DATASETS.TRAIN`` and returns, computed once and cached on disk:

    * ``kind="mean_shape"``: ``{"mean_verts": (V, 3), "mean_faces": (F, 3)}`` per
      ``cfg.MODEL.MEAN_SHAPE`` (:func:`compute_mean_shape`);
    * ``kind="shape_database"``: ``{"database": ShapeDatabase}`` per
      ``cfg.MODEL.RECOGNITION`` (:func:`build_shape_database`).

    Returns None when ``DATASETS.TRAIN`` is empty or none of its datasets is registered: the
    model is then built without these statistics, and the checkpoint it loads must hold them.

    Raises:
        ValueError: an unknown ``kind``.
        KeyError: some of ``DATASETS.TRAIN`` are registered and others are not (a typo).
    """
    if kind not in STATISTICS_KINDS:
        raise ValueError(f"kind must be one of {STATISTICS_KINDS}, got {kind!r}")
    names = tuple(cfg.DATASETS.TRAIN)
    unregistered = [name for name in names if name not in DatasetCatalog]
    if not names or len(unregistered) == len(names):
        logger.info(
            "DATASETS.TRAIN %s: no registered training split, so no %s statistics are computed; "
            "the model takes them from the checkpoint it loads",
            list(names),
            kind,
        )
        return None
    if unregistered:
        raise KeyError(
            f"DATASETS.TRAIN names datasets that are not registered: {unregistered} (the others "
            f"are); registered datasets: {', '.join(sorted(DatasetCatalog.keys()))}"
        )
    records = get_dataset_dicts(names)
    if kind == "mean_shape":
        m = cfg.MODEL.MEAN_SHAPE
        verts, faces = cached_mean_shape(records, m.VOXEL_SIZE, m.BOUNDS, m.MAX_MODELS)
        return {"mean_verts": verts, "mean_faces": faces}
    r = cfg.MODEL.RECOGNITION
    database = cached_shape_database(
        records,
        frame=r.FRAME,
        resolution=r.DESCRIPTOR_SIZE,
        num_points=r.DESCRIPTOR_POINTS,
        views_per_model=r.VIEWS_PER_MODEL,
        max_models=r.MAX_MODELS,
        box=list(r.BOUNDS) or None,
        seed=r.SEED,
    )
    return {"database": database}
