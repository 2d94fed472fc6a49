"""Checkpoints: atomic saves, safe loads of .pth / Detectron2 .pkl / torchvision weights, URLs."""

from fvcore.common.checkpoint import PeriodicCheckpointer

from meshrecon.checkpoint.catalog import (
    DETECTRON2_BASE_URL,
    MESHRCNN_BASE_URL,
    SHAPENET_BASE_URL,
    DownloadedFileError,
    PathManager,
    UnsafePathError,
    WeightsDownloadError,
    cache_path_for_url,
    fetch_and_load,
    get_cache_dir,
    resolve_url,
    torchvision_weights_url,
)
from meshrecon.checkpoint.checkpointer import Checkpointer, RenameHook, format_incompatible_keys
from meshrecon.checkpoint.integrity import (
    CheckpointDamagedError,
    NonFiniteWeightsError,
    recorded_config,
)
from meshrecon.checkpoint.matching import align_by_suffix, convert_c2_names
from meshrecon.checkpoint.pickle_safety import UnsafePickleError, safe_pickle_load

__all__ = [
    "Checkpointer",
    "PeriodicCheckpointer",
    "RenameHook",
    "PathManager",
    "WeightsDownloadError",
    "DownloadedFileError",
    "UnsafePathError",
    "UnsafePickleError",
    "CheckpointDamagedError",
    "NonFiniteWeightsError",
    "recorded_config",
    "DETECTRON2_BASE_URL",
    "MESHRCNN_BASE_URL",
    "SHAPENET_BASE_URL",
    "get_cache_dir",
    "cache_path_for_url",
    "fetch_and_load",
    "resolve_url",
    "torchvision_weights_url",
    "format_incompatible_keys",
    "align_by_suffix",
    "convert_c2_names",
    "safe_pickle_load",
]
