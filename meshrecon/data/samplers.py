"""Samplers for training (infinite, shuffled, sharded, resumable) and inference (sharded)."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Sampler

from ..utils import comm

__all__ = ["GroupedBatchSampler", "InferenceSampler", "ResumableBatchSampler", "TrainingSampler"]

logger = logging.getLogger(__name__)

_EPOCH_SEED_STRIDE = 0x9E3779B97F4A7C15  # spreads (seed, epoch) pairs over the seed space


class TrainingSampler(Sampler[int]):
    """An infinite stream of indices in ``[0, size)``, sharded over the processes.

    All processes generate the same stream (the same seed), epoch after epoch, each epoch a
    fresh permutation when ``shuffle``; the process of rank ``r`` of ``w`` takes positions
    ``p + r, p + r + w, p + r + 2w, ...`` of it from a start position ``p`` (0 by default).
    Each epoch's permutation is seeded from ``(seed, epoch)``, so the stream can start at any
    position without replaying what comes before it (:meth:`set_start_position`), which is how
    a resumed run continues where it stopped, with the same or another number of processes.
    """

    def __init__(
        self,
        size: int,
        shuffle: bool = True,
        seed: int | None = None,
        *,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        """
        Args:
            size: the dataset size.
            shuffle: shuffle each epoch; otherwise ``0, 1, ..., size - 1`` repeated.
            seed: the seed of the stream; must be the same in all processes. None draws one
                shared by all processes (``comm.shared_random_seed``).
            rank, world_size: this process's shard; default from ``torch.distributed``.
        """
        if not isinstance(size, int) or size <= 0:
            raise ValueError(f"TrainingSampler needs a positive dataset size, got {size!r}")
        self._size = size
        self._shuffle = shuffle
        self._seed = int(comm.shared_random_seed() if seed is None else seed)
        self._rank = comm.get_rank() if rank is None else rank
        self._world_size = comm.get_world_size() if world_size is None else world_size
        if not 0 <= self._rank < self._world_size:
            raise ValueError(f"rank {self._rank} is outside world size {self._world_size}")
        self._start_position = 0

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def world_size(self) -> int:
        return self._world_size

    def set_start_index(self, num_consumed: int) -> None:
        """Make the next ``iter()`` skip the first ``num_consumed`` indices of this shard."""
        if num_consumed < 0:
            raise ValueError(f"num_consumed must be >= 0, got {num_consumed}")
        self.set_start_position(int(num_consumed) * self._world_size)

    def set_start_position(self, position: int) -> None:
        """Make the next ``iter()`` start at ``position`` of the stream shared by all processes.

        The processes together then see the stream's items from ``position`` on, each once:
        rank ``r`` takes ``position + r``, ``position + r + world_size``, ...
        """
        if position < 0:
            raise ValueError(f"position must be >= 0, got {position}")
        self._start_position = int(position)

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        if not self._shuffle:
            return torch.arange(self._size)
        generator = torch.Generator()
        generator.manual_seed((self._seed + epoch * _EPOCH_SEED_STRIDE) % 2**63)
        return torch.randperm(self._size, generator=generator)

    def __iter__(self) -> Iterator[int]:
        position = self._start_position + self._rank
        epoch, offset = divmod(position, self._size)
        while True:
            order = self._epoch_order(epoch).tolist()
            while offset < self._size:
                yield order[offset]
                offset += self._world_size
            epoch += 1
            offset -= self._size

    def state_dict(self) -> dict[str, Any]:
        """The sampler's identity (seed and size); the position comes from the iteration."""
        return {"seed": self._seed, "size": self._size, "shuffle": self._shuffle}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the stream of a checkpointed run: take its seed."""
        if state.get("size", self._size) != self._size:
            logger.warning(
                "The checkpointed sampler was over %d samples, this dataset has %d: the resumed "
                "run will not see the same samples as an uninterrupted one",
                state["size"],
                self._size,
            )
        self._seed = int(state["seed"])


class ResumableBatchSampler(Sampler[list[int]]):
    """Batches of ``batch_size`` consecutive indices of an infinite :class:`TrainingSampler`.

    With ``w`` processes, iteration ``i`` of the run takes, over all processes, the
    ``T = batch_size * w`` items at positions ``[offset + i * T, offset + (i + 1) * T)`` of the
    shared stream (``offset`` is 0 unless the run resumed one written with another total batch
    ``T``). The checkpointed state records ``T`` and ``offset``, so that a run resumed with
    another number of processes or another total batch continues the stream at the first item
    not yet trained on (:meth:`set_start_iter`).
    """

    def __init__(self, sampler: TrainingSampler, batch_size: int) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.sampler = sampler
        self.batch_size = batch_size
        self._offset = 0
        # (total batch, offset, world size) of the run whose state was loaded, if any.
        self._loaded: tuple[int, int, int] | None = None

    @property
    def total_batch_size(self) -> int:
        """The items of one iteration over all processes."""
        return self.batch_size * self.sampler.world_size

    def _loaded_position(self, iteration: int) -> tuple[int, int]:
        """(stream position, total batch) of ``iteration`` of the run whose state was loaded."""
        total, offset, _ = self._loaded or (self.total_batch_size, self._offset, 0)
        return offset + iteration * total, total

    def set_start_iter(self, iteration: int) -> int:
        """Start the next ``iter()`` with the batch of ``iteration`` (counted from 0).

        ``iteration`` counts the iterations of the run whose state was loaded (this run's when
        none was). When that run had another total batch, the stream still resumes at the first
        item it had not trained on, and the iteration of this run holding that item is returned:
        ``floor(items consumed / this run's total batch)``.

        Returns:
            The iteration of this run at which the stream starts.
        """
        if iteration < 0:
            raise ValueError(f"iteration must be >= 0, got {iteration}")
        position, loaded_total = self._loaded_position(iteration)
        start, self._offset = divmod(position, self.total_batch_size)
        if loaded_total != self.total_batch_size:
            logger.info(
                "The checkpointed run took %d items per iteration, this one takes %d: its "
                "iteration %d (item %d of the data stream) is iteration %d of this run",
                loaded_total,
                self.total_batch_size,
                iteration,
                position,
                start,
            )
        self.sampler.set_start_position(position)
        return start

    def __iter__(self) -> Iterator[list[int]]:
        indices = iter(self.sampler)
        while True:
            yield list(itertools.islice(indices, self.batch_size))

    def state_dict(self) -> dict[str, Any]:
        return dict(
            self.sampler.state_dict(),
            total_batch_size=self.total_batch_size,
            position_offset=self._offset,
            world_size=self.sampler.world_size,
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take the seed and the stream layout of a checkpointed run (see :meth:`set_start_iter`).

        States written before the layout was recorded are taken to have this run's total batch.
        """
        self.sampler.load_state_dict(state)
        total = int(state.get("total_batch_size", self.total_batch_size))
        offset = int(state.get("position_offset", 0))
        if total <= 0 or not 0 <= offset < total:
            raise ValueError(
                f"invalid data_sampler state: total_batch_size={total}, position_offset={offset}"
            )
        self._loaded = (total, offset, int(state.get("world_size", self.sampler.world_size)))


class GroupedBatchSampler(ResumableBatchSampler):
    """Batches whose items all share a group id (e.g. landscape vs. portrait images).

    Indices are taken from the sampler in order and put in their group's bucket; a full bucket
    is yielded as a batch. Resuming replays the index stream (indices only, no data) to rebuild
    the buckets, then skips the batches already used.
    """

    def __init__(self, sampler: TrainingSampler, group_ids: Sequence[int], batch_size: int) -> None:
        super().__init__(sampler, batch_size)
        self.group_ids = list(group_ids)
        self._start_iter = 0

    def set_start_iter(self, iteration: int) -> int:
        """Skip the first batches; see :meth:`ResumableBatchSampler.set_start_iter`.

        The buckets of each process depend on its shard of the stream; resumed with another
        number of processes, the run skips this run's first batches instead, which may repeat
        or skip a few items of the current epoch (a warning says so).
        """
        if iteration < 0:
            raise ValueError(f"iteration must be >= 0, got {iteration}")
        position, loaded_total = self._loaded_position(iteration)
        start = position // self.total_batch_size
        if self._loaded is not None and (
            self._loaded[2] != self.sampler.world_size or loaded_total != self.total_batch_size
        ):
            logger.warning(
                "Resuming aspect-ratio grouped batches written by %d processes (%d items per "
                "iteration) with %d processes (%d items): the run skips its own first %d "
                "batches, so a few items of the current epoch may be repeated or skipped",
                self._loaded[2],
                loaded_total,
                self.sampler.world_size,
                self.total_batch_size,
                start,
            )
        self._start_iter = int(start)
        return self._start_iter

    def __iter__(self) -> Iterator[list[int]]:
        self.sampler.set_start_index(0)
        buckets: dict[int, list[int]] = {}
        produced = 0
        for idx in self.sampler:
            bucket = buckets.setdefault(self.group_ids[idx], [])
            bucket.append(idx)
            if len(bucket) == self.batch_size:
                batch = bucket[:]
                bucket.clear()
                produced += 1
                if produced > self._start_iter:
                    yield batch


class InferenceSampler(Sampler[int]):
    """Each process gets a contiguous, disjoint shard of ``range(size)``; together, all of it.

    Shard sizes differ by at most one, so no index is repeated to even them out and every
    sample is evaluated exactly once.
    """

    def __init__(
        self, size: int, *, rank: int | None = None, world_size: int | None = None
    ) -> None:
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        rank = comm.get_rank() if rank is None else rank
        world_size = comm.get_world_size() if world_size is None else world_size
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        per_rank, extra = divmod(size, world_size)
        begin = rank * per_rank + min(rank, extra)
        end = begin + per_rank + (1 if rank < extra else 0)
        self._indices = range(begin, end)

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices)

    def __len__(self) -> int:
        return len(self._indices)
