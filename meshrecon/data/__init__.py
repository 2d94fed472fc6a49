"""Datasets by name, dataset wrappers, samplers and data loaders."""

from .build import (
    build_test_loader,
    build_train_loader,
    get_dataset_dicts,
    trivial_batch_collator,
    worker_init_reset_seed,
)
from .catalog import DatasetCatalog, Metadata, MetadataCatalog
from .common import DatasetFromList, MapDataset
from .samplers import (
    GroupedBatchSampler,
    InferenceSampler,
    ResumableBatchSampler,
    TrainingSampler,
)

__all__ = [
    "DatasetCatalog",
    "DatasetFromList",
    "GroupedBatchSampler",
    "InferenceSampler",
    "MapDataset",
    "Metadata",
    "MetadataCatalog",
    "ResumableBatchSampler",
    "TrainingSampler",
    "build_test_loader",
    "build_train_loader",
    "get_dataset_dicts",
    "trivial_batch_collator",
    "worker_init_reset_seed",
]
