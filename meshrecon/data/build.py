"""Build the training and test data loaders from a config."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch.utils.data as torchdata

from ..utils import comm
from ..utils.env import seed_all_rng
from .catalog import DatasetCatalog
from .common import DatasetFromList, MapDataset
from .samplers import (
    GroupedBatchSampler,
    InferenceSampler,
    ResumableBatchSampler,
    TrainingSampler,
)

__all__ = [
    "build_train_loader",
    "build_test_loader",
    "get_dataset_dicts",
    "trivial_batch_collator",
    "worker_init_reset_seed",
]

logger = logging.getLogger(__name__)


def get_dataset_dicts(names: str | Sequence[str]) -> list[dict]:
    """Load the datasets ``names`` from the ``DatasetCatalog`` and concatenate them.

    Raises:
        ValueError: when no name is given or a dataset is empty.
    """
    if isinstance(names, str):
        names = [names]
    if len(names) == 0:
        raise ValueError("no dataset name given (is DATASETS.TRAIN / DATASETS.TEST empty?)")
    dicts: list[dict] = []
    for name in names:
        part = DatasetCatalog.get(name)
        if len(part) == 0:
            raise ValueError(f"dataset {name!r} is empty")
        dicts.extend(part)
    return dicts


def trivial_batch_collator(batch: list[Any]) -> list[Any]:
    """Return the batch as a list, without the None that a skipped (corrupt) sample leaves."""
    return [x for x in batch if x is not None]


def worker_init_reset_seed(worker_id: int) -> None:
    """Seed a data-loader worker's Python and NumPy generators from its torch seed.

    PyTorch seeds each worker's torch generator differently, but not ``random`` / ``numpy``,
    whose state a forked worker would otherwise share with its siblings.
    """
    import torch

    seed_all_rng(torch.initial_seed() % 2**31)


def _default_mapper(dataset_dict: dict) -> dict:
    # The real mappers (reading images, meshes...) arrive with the datasets; until a mapper is
    # given, dicts pass through unchanged, copied so the model cannot alter the dataset.
    return copy.deepcopy(dataset_dict)


def _aspect_ratio_groups(dataset: Any) -> list[int] | None:
    """Group 0 for landscape, 1 for portrait items; None if the items lack width/height."""
    if not isinstance(dataset, list):
        return None
    try:
        return [0 if d["width"] >= d["height"] else 1 for d in dataset]
    except (KeyError, TypeError):
        return None


def build_train_loader(
    cfg,
    mapper: Callable[[Any], Any] | None = None,
    dataset: list | torchdata.Dataset | None = None,
    sampler: TrainingSampler | None = None,
) -> torchdata.DataLoader:
    """Build the training loader: an infinite stream of batches of mapped samples.

    Each process gets batches of ``SOLVER.IMS_PER_BATCH // world_size`` items, as a list (no
    collation into tensors). The loader's ``batch_sampler`` has ``set_start_iter(iteration)`` and
    ``state_dict()`` / ``load_state_dict()``, through which the trainer resumes the stream.

    Args:
        cfg: the config (DATASETS.TRAIN, DATALOADER.*, SOLVER.IMS_PER_BATCH, SEED).
        mapper: maps one dataset dict to the model's input; default: a copy of the dict.
        dataset: a list of dicts or a map-style dataset; default: ``DATASETS.TRAIN`` loaded from
            the ``DatasetCatalog``.
        sampler: default: a :class:`TrainingSampler` seeded with ``cfg.SEED`` (if >= 0).
    """
    world_size = comm.get_world_size()
    total = cfg.SOLVER.IMS_PER_BATCH
    if total <= 0 or total % world_size != 0:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH ({total}) must be a positive multiple of the number of "
            f"processes ({world_size})"
        )
    batch_size = total // world_size

    if dataset is None:
        dataset = get_dataset_dicts(cfg.DATASETS.TRAIN)
    group_ids = _aspect_ratio_groups(dataset) if cfg.DATALOADER.ASPECT_RATIO_GROUPING else None
    if isinstance(dataset, list):
        dataset = DatasetFromList(dataset, copy=False)
    dataset = MapDataset(dataset, mapper or _default_mapper, retry=True)

    if sampler is None:
        name = cfg.DATALOADER.SAMPLER_TRAIN
        if name != "TrainingSampler":
            raise ValueError(
                f"unknown DATALOADER.SAMPLER_TRAIN {name!r}; available: 'TrainingSampler'"
            )
        seed = cfg.SEED if cfg.SEED >= 0 else None
        sampler = TrainingSampler(len(dataset), shuffle=True, seed=seed)
    logger.info("Using training sampler %s", type(sampler).__name__)

    if group_ids is not None:
        batch_sampler: ResumableBatchSampler = GroupedBatchSampler(sampler, group_ids, batch_size)
    else:
        batch_sampler = ResumableBatchSampler(sampler, batch_size)
    return torchdata.DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        collate_fn=trivial_batch_collator,
        worker_init_fn=worker_init_reset_seed,
    )


def build_test_loader(
    cfg,
    dataset_name: str | Sequence[str],
    mapper: Callable[[Any], Any] | None = None,
    batch_size: int = 1,
) -> torchdata.DataLoader:
    """Build a loader that goes once through ``dataset_name``, sharded over the processes.

    Every sample is seen exactly once over all processes; a corrupt sample is skipped (and
    counted), not replaced. A mapper with an ``expand_test_records(records)`` method chooses the
    records it maps from the dataset's (the multi-view mapper's view sets).

    Args:
        batch_size: items per batch in each process (1 keeps the timing per image meaningful).
    """
    dicts = get_dataset_dicts(dataset_name)
    expand = getattr(mapper, "expand_test_records", None)
    if expand is not None:
        dicts = expand(dicts)
    dataset = MapDataset(DatasetFromList(dicts, copy=False), mapper or _default_mapper, retry=False)
    sampler = InferenceSampler(len(dataset))
    batch_sampler = torchdata.BatchSampler(sampler, batch_size, drop_last=False)
    return torchdata.DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        collate_fn=trivial_batch_collator,
    )
