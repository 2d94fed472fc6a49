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
from .mapper_registry import MAPPER_REGISTRY, build_mapper
from .mappers import DepthMapper, MeshRCNNMapper, MultiViewMapper, ShapeNetMapper
from .readers import VoxelData, read_depth, read_image, read_mask, read_mesh, read_voxel
from .samplers import (
    GroupedBatchSampler,
    InferenceSampler,
    ResumableBatchSampler,
    TrainingSampler,
)

__all__ = [
    "MAPPER_REGISTRY",
    "build_mapper",
    "DepthMapper",
    "MeshRCNNMapper",
    "MultiViewMapper",
    "ShapeNetMapper",
    "VoxelData",
    "read_depth",
    "read_image",
    "read_mask",
    "read_mesh",
    "read_voxel",
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

# Registers the built-in splits (synthetic ones, and real ones found under $MESHRECON_DATASETS),
# as importing detectron2.data does; last, because the dataset modules use the names above.
from . import datasets  # noqa: E402, F401
