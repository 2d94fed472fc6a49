"""The synthetic datasets: sizes, cache folders, atomic generation on first use, loading.

A split such as ``synthetic_shapenet_train`` is a pure function of a :class:`SyntheticConfig`
(seed, scale, image sizes) and of the generator's code. :func:`load_synthetic` generates it on
first use into ``<root>/synthetic/<kind>_<split>/v<VERSION>-<key>/``, where ``key`` hashes every
parameter of that split together with the source of the modules that produce its content
(``synthetic/*.py`` other than this one, and ``meshrecon/render``). Changing the seed, a size or
the generating code therefore selects a new folder, and stale folders are never reused.

Generation writes into a temporary sibling folder and renames it into place only when every
file and the record list are written, so a killed generation leaves nothing that a later run
trusts. A lock file next to the folder serializes concurrent generators (DDP ranks sharing a
file system): the first one generates, the others wait and then load its result.

Configuration comes, in increasing precedence, from the defaults of :class:`SyntheticConfig`,
the environment (``MESHRECON_SYNTHETIC_SEED``, ``_SCALE``, ``_ROOT``, ``_SHAPENET_VIEWS``,
``_PIX3D_IMAGE_SIZE`` and ``_NYU_IMAGE_SIZE`` as ``WxH``; read at import, because datasets are
registered then) and :func:`configure_synthetic`, which a trainer calls with its config.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import glob
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from meshrecon.data.catalog import MetadataCatalog
from meshrecon.utils.path_policy import DatasetRoot, UnsafePathError

__all__ = [
    "GENERATOR_VERSION",
    "SPLITS",
    "SyntheticConfig",
    "configure_synthetic",
    "dataset_dir",
    "dataset_name",
    "datasets_root",
    "ensure_generated",
    "get_synthetic_config",
    "load_synthetic",
    "read_split",
    "set_synthetic_config",
    "split_spec",
    "synthetic_config_from_env",
]

logger = logging.getLogger(__name__)

# Bump when the content of a split changes in a way the source digest cannot see (e.g. a
# change of a dependency's behaviour); every cached split is then regenerated.
GENERATOR_VERSION = 1

# Splits of each kind of synthetic dataset. Every split draws its models, scenes and rooms from
# its own random streams (seeded by kind and split, see ``scenes.item_rng``), so ``val`` shares
# no model or scene with ``train`` or ``test``: it is the split for periodic validation and for
# choosing the best checkpoint (``DATASETS.VAL``), never the test split.
SPLITS: dict[str, tuple[str, ...]] = {
    "shapenet": ("train", "val", "test"),
    "pix3d": ("train", "val", "test"),
    "nyu": ("train", "val", "test"),
}

# Counts at SCALE = 1, chosen so that all nine default splits generate in a few minutes on two
# CPU cores and still train a model usefully (see the README of the synthetic configs).
_BASE_COUNTS: dict[tuple[str, str], dict[str, int]] = {
    ("shapenet", "train"): {"models_per_category": 10},
    ("shapenet", "val"): {"models_per_category": 2},
    ("shapenet", "test"): {"models_per_category": 3},
    ("pix3d", "train"): {"images": 200, "models_per_category": 4},
    ("pix3d", "val"): {"images": 40, "models_per_category": 2},
    ("pix3d", "test"): {"images": 50, "models_per_category": 2},
    ("nyu", "train"): {"images": 200},
    ("nyu", "val"): {"images": 40},
    ("nyu", "test"): {"images": 50},
}

_RECORDS_FILE = "records.json"
_META_FILE = "meta.json"
# Record keys that hold paths relative to the split folder on disk and absolute in memory.
_PATH_KEYS = ("file_name", "segmentation", "mesh", "voxel", "samples", "path")


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Everything that decides the content and location of the synthetic splits.

    Attributes:
        seed: seed of every split (each split and item draws from its own derived stream).
        scale: multiplies every count of ``_BASE_COUNTS`` (at least 1 item each).
        train_scale: multiplies the counts of the training splits once more (models per
            category, images), leaving validation and test as they are: more training data
            measured on the same test split. Items keep their own random streams, so a larger
            training split holds the smaller one's items and more.
        root: datasets root; "" means ``$MESHRECON_DATASETS`` or else ``./datasets``.
        shapenet_views: views rendered per ShapeNet-style model (R2N2: 24).
        pix3d_image_size: (width, height) of the Pix3D-style images.
        nyu_image_size: (width, height) of the NYU-style images (NYU's 4:3 at a lower size).
    """

    seed: int = 0
    scale: float = 1.0
    train_scale: float = 1.0
    root: str = ""
    shapenet_views: int = 24
    pix3d_image_size: tuple[int, int] = (320, 240)
    nyu_image_size: tuple[int, int] = (160, 120)

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError(f"synthetic scale must be > 0, got {self.scale}")
        if not self.train_scale > 0:
            raise ValueError(f"synthetic train_scale must be > 0, got {self.train_scale}")
        if not 1 <= self.shapenet_views <= 24:
            raise ValueError(f"shapenet_views must be in 1..24, got {self.shapenet_views}")
        for name in ("pix3d_image_size", "nyu_image_size"):
            size = tuple(int(s) for s in getattr(self, name))
            if len(size) != 2 or min(size) < 16:
                raise ValueError(f"{name} must be (width, height), each >= 16, got {size}")
            object.__setattr__(self, name, size)


def _parse_size(text: str, var: str) -> tuple[int, int]:
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError as err:
        raise ValueError(f"{var} must look like 320x240, got {text!r}") from err


def synthetic_config_from_env(environ: dict[str, str] | None = None) -> SyntheticConfig:
    """Return the defaults overridden by the ``MESHRECON_SYNTHETIC_*`` environment variables."""
    env = os.environ if environ is None else environ
    kwargs: dict[str, Any] = {}
    readers = {
        "seed": ("MESHRECON_SYNTHETIC_SEED", int),
        "scale": ("MESHRECON_SYNTHETIC_SCALE", float),
        "train_scale": ("MESHRECON_SYNTHETIC_TRAIN_SCALE", float),
        "root": ("MESHRECON_SYNTHETIC_ROOT", str),
        "shapenet_views": ("MESHRECON_SYNTHETIC_SHAPENET_VIEWS", int),
    }
    for field, (var, cast) in readers.items():
        if env.get(var, "") != "":
            try:
                kwargs[field] = cast(env[var])
            except ValueError as err:
                raise ValueError(f"environment variable {var}={env[var]!r} is invalid") from err
    for field, var in (
        ("pix3d_image_size", "MESHRECON_SYNTHETIC_PIX3D_IMAGE_SIZE"),
        ("nyu_image_size", "MESHRECON_SYNTHETIC_NYU_IMAGE_SIZE"),
    ):
        if env.get(var, "") != "":
            kwargs[field] = _parse_size(env[var], var)
    return SyntheticConfig(**kwargs)


_ACTIVE = synthetic_config_from_env()


def get_synthetic_config() -> SyntheticConfig:
    """Return the configuration the registered synthetic splits use now."""
    return _ACTIVE


def set_synthetic_config(config: SyntheticConfig) -> SyntheticConfig:
    """Make ``config`` the one the registered splits use; return the previous one."""
    global _ACTIVE
    if not isinstance(config, SyntheticConfig):
        raise TypeError(f"expected a SyntheticConfig, got {type(config).__name__}")
    previous, _ACTIVE = _ACTIVE, config
    for kind, splits in SPLITS.items():
        for split in splits:
            _update_dataset_root(kind, split, config)
    return previous


# Config keys under DATASETS.SYNTHETIC and the SyntheticConfig fields they set.
_CFG_FIELDS = {
    "SEED": "seed",
    "SCALE": "scale",
    "TRAIN_SCALE": "train_scale",
    "ROOT": "root",
    "SHAPENET_VIEWS": "shapenet_views",
    "PIX3D_IMAGE_SIZE": "pix3d_image_size",
    "NYU_IMAGE_SIZE": "nyu_image_size",
}


def configure_synthetic(cfg: Any) -> SyntheticConfig:
    """Apply ``cfg.DATASETS.SYNTHETIC`` to the registered synthetic splits; return the result.

    A key the config leaves at its default (``meshrecon/config/defaults.py``) keeps the value
    from the environment, so both ``MESHRECON_SYNTHETIC_SCALE=0.1 train_net.py`` and
    ``train_net.py DATASETS.SYNTHETIC.SCALE 0.1`` work; a key set in the config wins. Call it
    once per process before the first ``DatasetCatalog.get`` (the trainer's setup does).
    """
    from meshrecon.config import get_cfg

    node = cfg.DATASETS.SYNTHETIC
    default = get_cfg().DATASETS.SYNTHETIC
    changes = {}
    for key, field in _CFG_FIELDS.items():
        value = node.get(key, default.get(key))
        if value != default.get(key):
            changes[field] = tuple(value) if isinstance(value, (list, tuple)) else value
    config = dataclasses.replace(synthetic_config_from_env(), **changes)
    set_synthetic_config(config)
    return config


def dataset_name(kind: str, split: str) -> str:
    """Return the registered name of a split, e.g. ``synthetic_shapenet_train``."""
    return f"synthetic_{kind}_{split}"


def datasets_root(config: SyntheticConfig | None = None) -> str:
    """Return the absolute datasets root: ``config.root``, else $MESHRECON_DATASETS, else
    ``./datasets``."""
    config = config or _ACTIVE
    root = config.root or os.environ.get("MESHRECON_DATASETS", "") or "datasets"
    return os.path.abspath(os.path.expanduser(root))


def _check_kind_split(kind: str, split: str) -> None:
    if kind not in SPLITS or split not in SPLITS[kind]:
        known = ", ".join(f"{k}: {'/'.join(s)}" for k, s in SPLITS.items())
        raise KeyError(f"no synthetic split {kind!r}/{split!r}; known: {known}")


def split_spec(kind: str, split: str, config: SyntheticConfig | None = None) -> dict[str, Any]:
    """Return every parameter that decides the content of one split (counts already scaled).

    Scenes read their sizes from this dict only, so the cache key (a hash of it) covers them.
    """
    _check_kind_split(kind, split)
    config = config or _ACTIVE
    factor = config.scale * (config.train_scale if split == "train" else 1.0)
    counts = {k: max(1, round(v * factor)) for k, v in _BASE_COUNTS[(kind, split)].items()}
    spec: dict[str, Any] = {"kind": kind, "split": split, "seed": int(config.seed), **counts}
    if kind == "shapenet":
        spec.update(
            views=config.shapenet_views,
            image_size=137,
            num_samples=10000,
            voxel_sizes=[32, 48],
        )
    elif kind == "pix3d":
        spec.update(
            image_size=list(config.pix3d_image_size),
            max_objects=3,
            voxel_size=32,
            # Visible pixels below this fraction of the image drop an instance.
            min_visible_fraction=0.004,
        )
    else:
        spec.update(image_size=list(config.nyu_image_size), max_objects=4)
    return spec


@functools.lru_cache(maxsize=1)
def _source_digest() -> str:
    """Hash of the source of the modules that produce the content of the splits."""
    digest = hashlib.sha256()
    # Normalized: a script that puts "tools/.." on sys.path imports this module under a
    # non-normalized __file__, and the digest (hence every cache key) must not depend on that.
    me = os.path.abspath(__file__)
    here = os.path.dirname(me)
    files = [p for p in sorted(glob.glob(os.path.join(here, "*.py"))) if p != me]
    render = importlib.util.find_spec("meshrecon.render")
    if render is not None and render.submodule_search_locations:
        for location in render.submodule_search_locations:
            files += sorted(glob.glob(os.path.join(location, "*.py")))
    for path in files:
        digest.update(os.path.basename(path).encode())
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


def split_key(spec: dict[str, Any]) -> str:
    """Return the folder name of a split: ``v<GENERATOR_VERSION>-<hash of spec and source>``."""
    payload = json.dumps(
        {"version": GENERATOR_VERSION, "spec": spec, "source": _source_digest()}, sort_keys=True
    )
    return f"v{GENERATOR_VERSION}-{hashlib.sha256(payload.encode()).hexdigest()[:12]}"


def dataset_dir(kind: str, split: str, config: SyntheticConfig | None = None) -> str:
    """Return the absolute folder of one split (which may not be generated yet)."""
    config = config or _ACTIVE
    spec = split_spec(kind, split, config)
    return os.path.join(datasets_root(config), "synthetic", f"{kind}_{split}", split_key(spec))


def _update_dataset_root(kind: str, split: str, config: SyntheticConfig) -> None:
    meta = MetadataCatalog.get(dataset_name(kind, split))
    root = dataset_dir(kind, split, config)
    # Metadata attributes are set-once, but the root of a synthetic split legitimately follows
    # the synthetic config, which a trainer may change after registration.
    object.__setattr__(meta, "dataset_root", root)
    if kind == "pix3d":
        object.__setattr__(meta, "image_root", root)


@contextlib.contextmanager
def _file_lock(path: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) for the duration of the block."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no fcntl (Windows): the atomic rename still holds
        yield
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _is_complete(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, _META_FILE)) and os.path.isfile(
        os.path.join(folder, _RECORDS_FILE)
    )


def _generate_into(folder: str, spec: dict[str, Any]) -> None:
    """Generate a split into a temporary sibling of ``folder``, then rename it into place."""
    # Imported here: registering the splits should not import the renderer and writers.
    from .scenes import generate_split
    from .writers import save_json

    parent, key = os.path.split(folder)
    prefix = f".tmp-{key}-"
    # Leftovers of killed generations of this folder: safe to delete, since we hold its lock.
    for stale in glob.glob(os.path.join(parent, prefix + "*")):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
    # mkdtemp makes the folder private (0700); the dataset is meant to be shared like any other.
    os.chmod(tmp, 0o755)
    try:
        start = time.perf_counter()
        records, info = generate_split(spec, tmp)
        save_json(os.path.join(tmp, _RECORDS_FILE), records)
        info = dict(info, spec=spec, num_records=len(records), generator_version=GENERATOR_VERSION)
        # meta.json is written last: a folder holding it is complete.
        save_json(os.path.join(tmp, _META_FILE), info)
        try:
            os.rename(tmp, folder)
        except OSError:
            # Only without a working lock (no fcntl) can another process have won the race;
            # its complete folder is as good as ours.
            if not _is_complete(folder):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        logger.info(
            "generated %s/%s (%d records) in %.1f s into %s",
            spec["kind"],
            spec["split"],
            len(records),
            time.perf_counter() - start,
            folder,
        )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def ensure_generated(kind: str, split: str, config: SyntheticConfig | None = None) -> str:
    """Generate a split unless its complete folder exists; return the folder."""
    config = config or _ACTIVE
    folder = dataset_dir(kind, split, config)
    if _is_complete(folder):
        return folder
    with _file_lock(folder + ".lock"):
        # Another process may have finished while we waited for the lock.
        if not _is_complete(folder):
            if os.path.exists(folder):
                raise RuntimeError(
                    f"{folder} exists but is incomplete (no {_META_FILE}); it was not written "
                    "by this generator's atomic rename. Delete it to regenerate."
                )
            spec = split_spec(kind, split, config)
            logger.info(
                "Generating %s (%s) into %s: %s",
                dataset_name(kind, split),
                _describe_spec(spec),
                folder,
                _why_generating(folder, spec),
            )
            _generate_into(folder, spec)
    return folder


# Spec entries -> the config keys that set them, for the log's explanation.
_SPEC_KEYS = {
    "seed": "SEED",
    "views": "SHAPENET_VIEWS",
    "models_per_category": "SCALE",
    "images": "SCALE",
}


def _config_key(spec: dict[str, Any], entry: str) -> str:
    if entry in ("models_per_category", "images") and spec.get("split") == "train":
        return "DATASETS.SYNTHETIC.SCALE / TRAIN_SCALE"
    if entry == "image_size":
        return f"DATASETS.SYNTHETIC.{spec['kind'].upper()}_IMAGE_SIZE"
    return "DATASETS.SYNTHETIC." + _SPEC_KEYS.get(entry, entry.upper())


def _describe_spec(spec: dict[str, Any]) -> str:
    shown = ("seed", "models_per_category", "images", "views", "image_size")
    return ", ".join(f"{k} {spec[k]}" for k in shown if k in spec)


def _why_generating(folder: str, spec: dict[str, Any]) -> str:
    """Why a split is generated: no cached copy, or how the cached copies differ from it."""
    parent = os.path.dirname(folder)
    others = []
    for meta_path in sorted(glob.glob(os.path.join(parent, "v*", _META_FILE))):
        try:
            with open(meta_path, encoding="utf-8") as f:
                theirs = json.load(f).get("spec", {})
        except (OSError, ValueError):
            continue
        diffs = [
            f"{k} {theirs[k]} ({_config_key(spec, k)})"
            for k in spec
            if k in theirs and theirs[k] != spec[k]
        ]
        key = os.path.basename(os.path.dirname(meta_path))
        others.append(f"{key} has " + (", ".join(diffs) if diffs else "older generator code"))
    if not others:
        return "no copy of this split is cached yet (cache key " + os.path.basename(folder) + ")"
    return (
        f"the cache holds no copy with these parameters (cache key {os.path.basename(folder)}); "
        f"cached copies differ: {'; '.join(others[:4])}"
        + (f"; and {len(others) - 4} more" if len(others) > 4 else "")
    )


def _absolutize(value: Any, folder: DatasetRoot, missing: set[str], where: str = "") -> Any:
    """Turn the relative paths of a record into absolute ones, collecting missing files.

    Raises:
        UnsafePathError: a path leaves the split folder (absolute, ``..``, a symlink leading
            out): the generator never writes one, so the whole folder is suspect.
    """
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in _PATH_KEYS and isinstance(v, str):
                path = folder.join(v, f"{where} key {k!r}")
                if not os.path.isfile(path):
                    missing.add(path)
                out[k] = path
            else:
                out[k] = _absolutize(v, folder, missing, where)
        return out
    if isinstance(value, list):
        return [_absolutize(v, folder, missing, where) for v in value]
    return value


def read_split(folder: str) -> tuple[list[dict], dict[str, Any]]:
    """Read and validate the records of a generated split folder; return (records, meta).

    Raises:
        FileNotFoundError: naming the first missing file (records, meta or a referenced file).
        UnsafePathError: a record's path leaves the folder (the whole split is refused).
    """
    for name in (_META_FILE, _RECORDS_FILE):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"synthetic dataset file missing: {path}")
    with open(os.path.join(folder, _META_FILE), encoding="utf-8") as f:
        meta = json.load(f)
    with open(os.path.join(folder, _RECORDS_FILE), encoding="utf-8") as f:
        records = json.load(f)
    missing: set[str] = set()
    root = DatasetRoot(folder)
    records_file = os.path.join(folder, _RECORDS_FILE)
    try:
        records = [
            _absolutize(r, root, missing, f"{records_file} record {i}")
            for i, r in enumerate(records)
        ]
    except UnsafePathError as err:
        raise UnsafePathError(f"{err}. Delete {folder} to regenerate it.") from None
    if missing:
        first = sorted(missing)[0]
        raise FileNotFoundError(
            f"synthetic dataset {folder} lacks {len(missing)} file(s) its records name, e.g. "
            f"{first}; delete the folder to regenerate it"
        )
    return records, meta


def load_synthetic(kind: str, split: str, config: SyntheticConfig | None = None) -> list[dict]:
    """Return the records of a synthetic split, generating it first if needed.

    The registered ``DatasetCatalog`` loaders call this with the active config. Records follow
    ``docs/DATA_FORMATS.md`` with absolute paths; the split's metadata gains
    ``dataset_root`` and the counts from its generation (e.g. ``num_dropped_instances``).
    """
    config = config or _ACTIVE
    folder = ensure_generated(kind, split, config)
    records, meta = read_split(folder)
    if config is _ACTIVE:
        _update_dataset_root(kind, split, config)
        md = MetadataCatalog.get(dataset_name(kind, split))
        for key, value in meta.get("metadata", {}).items():
            object.__setattr__(md, key, value)
    return records
