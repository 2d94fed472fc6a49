"""Dataset wrappers: a list of dicts as a dataset, and a dataset mapped through a function."""

from __future__ import annotations

import copy
import logging
import multiprocessing as mp
import pickle
import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch.utils.data as torchdata

__all__ = ["DatasetFromList", "MapDataset"]

logger = logging.getLogger(__name__)


class DatasetFromList(torchdata.Dataset):
    """A map-style dataset over a list of items (typically the dicts of a dataset).

    With ``serialize=True`` the items are pickled into one NumPy buffer, because a list of many
    Python objects is copied page by page into every data-loader worker as its reference counts
    change, multiplying memory use by the number of workers.
    """

    def __init__(self, items: list[Any], copy: bool = True, serialize: bool = True) -> None:
        """
        Args:
            items: the items.
            copy: return a deep copy of each item (when not serialized), so that a mapper
                modifying its input does not change the dataset.
            serialize: store the items pickled in one buffer.
        """
        self._copy = copy
        self._serialize = serialize
        if serialize:
            blobs = [np.frombuffer(pickle.dumps(x, protocol=-1), dtype=np.uint8) for x in items]
            self._addr = np.cumsum(np.asarray([len(b) for b in blobs], dtype=np.int64))
            self._buffer = np.concatenate(blobs) if blobs else np.zeros(0, dtype=np.uint8)
            self._items: list[Any] = []
        else:
            self._items = items

    def __len__(self) -> int:
        return len(self._addr) if self._serialize else len(self._items)

    def __getitem__(self, idx: int) -> Any:
        if self._serialize:
            start = 0 if idx == 0 else int(self._addr[idx - 1])
            end = int(self._addr[idx])
            return pickle.loads(memoryview(self._buffer[start:end]))
        return copy.deepcopy(self._items[idx]) if self._copy else self._items[idx]


def _describe(item: Any) -> str:
    """`` (image_id ..., file ...)`` for a record dict, so that a skipped sample is named."""
    if not isinstance(item, dict):
        return ""
    parts = [f"image_id {item['image_id']!r}"] if item.get("image_id") is not None else []
    if not parts and item.get("model_id") is not None:  # a multi-view model record
        parts.append(f"model {item.get('synset_id')}/{item['model_id']}")
    if item.get("file_name"):
        parts.append(f"file {item['file_name']}")
    return f" ({', '.join(parts)})" if parts else ""


class MapDataset(torchdata.Dataset):
    """A dataset whose items are ``map_func(dataset[i])``; a corrupt item is skipped and counted.

    When ``map_func`` raises or returns None for an item, a warning names the item and the error,
    the shared skip counter (``num_skipped``) grows by one, and then:

    - in training (``retry=True``) another item, chosen by a generator seeded from the index
      (so runs stay reproducible), is mapped in its place;
    - in inference (``retry=False``) None is returned, which ``trivial_batch_collator`` drops, so
      no item is evaluated twice.

    The trainer reports ``num_skipped`` as the metric ``data/skipped_samples``. The counter lives
    in shared memory, so it also counts skips in data-loader worker processes.
    """

    def __init__(
        self,
        dataset: torchdata.Dataset,
        map_func: Callable[[Any], Any],
        *,
        retry: bool = True,
        max_retries: int = 100,
    ) -> None:
        """
        Args:
            dataset: a map-style dataset.
            map_func: the function applied to each item.
            retry: whether to replace a corrupt item by another one (training) or return None.
            max_retries: after this many corrupt items in a row for one index, raise: the
                dataset (or the mapper) is broken as a whole, not one sample of it.
        """
        self._dataset = dataset
        self._map_func = map_func
        self._retry = retry
        self._max_retries = max_retries
        self._skipped = mp.Value("q", 0)

    @property
    def num_skipped(self) -> int:
        """The number of corrupt items skipped so far, in this process and its workers."""
        return int(self._skipped.value)

    def __len__(self) -> int:
        return len(self._dataset)

    def _skip(self, idx: int, item: Any, reason: str) -> None:
        with self._skipped.get_lock():
            self._skipped.value += 1
            total = self._skipped.value
        logger.warning(
            "Skipping sample %d%s of the dataset (%d skipped so far): %s",
            idx,
            _describe(item),
            total,
            reason,
        )

    def __getitem__(self, idx: int) -> Any:
        current = int(idx)
        for attempt in range(1, self._max_retries + 1):
            item = None
            try:
                item = self._dataset[current]
                data = self._map_func(item)
                reason = "the mapper returned None"
            except Exception as err:  # any failure of one sample must not end the run
                data = None
                reason = f"the mapper raised {type(err).__name__}: {err}"
            if data is not None:
                return data
            self._skip(current, item, reason)
            if not self._retry:
                return None
            current = random.Random(int(idx) * 1_000_003 + attempt).randrange(len(self))
        raise RuntimeError(
            f"{self._max_retries} samples in a row failed to map (starting at index {idx}); the "
            "dataset or the mapper is broken as a whole; see the warnings above"
        )
