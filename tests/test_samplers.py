import itertools
import logging

import pytest

from meshrecon.data import (
    DatasetFromList,
    GroupedBatchSampler,
    InferenceSampler,
    MapDataset,
    ResumableBatchSampler,
    TrainingSampler,
    trivial_batch_collator,
)


def take(iterable, n):
    return list(itertools.islice(iterable, n))


def test_training_sampler_is_deterministic_and_shuffles_each_epoch():
    a = take(TrainingSampler(10, seed=3, rank=0, world_size=1), 30)
    b = take(TrainingSampler(10, seed=3, rank=0, world_size=1), 30)
    c = take(TrainingSampler(10, seed=4, rank=0, world_size=1), 30)
    assert a == b and a != c
    epochs = [a[i : i + 10] for i in range(0, 30, 10)]
    assert all(sorted(e) == list(range(10)) for e in epochs)  # each epoch is a permutation
    assert epochs[0] != epochs[1]
    assert take(TrainingSampler(5, shuffle=False, seed=0, rank=0, world_size=1), 7) == [
        0, 1, 2, 3, 4, 0, 1,
    ]  # fmt: skip


def test_training_sampler_shards_interleave_into_the_global_stream():
    full = take(TrainingSampler(7, seed=11, rank=0, world_size=1), 42)
    shards = [take(TrainingSampler(7, seed=11, rank=r, world_size=3), 14) for r in range(3)]
    # Rank r takes positions r, r+3, ... of the same stream: the shards are disjoint positions.
    rebuilt = [shards[i % 3][i // 3] for i in range(42)]
    assert rebuilt == full
    # Within one pass over the dataset (first 7 positions), ranks see different samples.
    first_pass = [idx for r in range(3) for idx in shards[r][: (7 - r + 2) // 3]]
    assert sorted(first_pass) == list(range(7))


@pytest.mark.parametrize("world_size", [1, 2])
def test_training_sampler_start_index_equals_skipping(world_size):
    for rank in range(world_size):
        reference = take(TrainingSampler(9, seed=5, rank=rank, world_size=world_size), 40)
        for start in (0, 1, 8, 9, 23):
            sampler = TrainingSampler(9, seed=5, rank=rank, world_size=world_size)
            sampler.set_start_index(start)
            assert take(sampler, 40 - start) == reference[start:]


def test_resumable_batch_sampler_state_and_start_iter():
    batches = take(ResumableBatchSampler(TrainingSampler(6, seed=1, rank=0, world_size=1), 4), 5)
    assert all(len(b) == 4 for b in batches)
    resumed = ResumableBatchSampler(TrainingSampler(6, seed=999, rank=0, world_size=1), 4)
    resumed.load_state_dict(
        ResumableBatchSampler(TrainingSampler(6, seed=1, rank=0, world_size=1), 4).state_dict()
    )
    resumed.set_start_iter(2)
    assert take(resumed, 3) == batches[2:]


def _run(size, seed, world_size, batch_size, num_iter, state=None, start_iter=0):
    """A run's batches over all ranks: (first iteration, [[items of iteration i]...], state)."""
    samplers = [
        ResumableBatchSampler(TrainingSampler(size, seed=seed, rank=r, world_size=world_size), b)
        for r, b in [(r, batch_size) for r in range(world_size)]
    ]
    starts = set()
    for sampler in samplers:
        if state is not None:
            sampler.load_state_dict(state)
        starts.add(sampler.set_start_iter(start_iter))
    (start,) = starts
    per_rank = [take(s, num_iter) for s in samplers]
    iterations = [[i for rank in per_rank for i in rank[it]] for it in range(num_iter)]
    return start, iterations, samplers[0].state_dict()


@pytest.mark.parametrize(
    "old,new",
    [
        ((2, 2), (1, 4)),  # 2 processes x 2 -> 1 x 4: the same iterations
        ((1, 4), (2, 2)),
        ((2, 2), (1, 2)),  # another total batch (REFERENCE_WORLD_SIZE scaling): 4 -> 2 per step
        ((1, 2), (2, 2)),  # 2 -> 4 per step, from an odd number of steps: mid-step position
        ((3, 1), (2, 3)),
    ],
)
def test_resume_with_another_world_size_continues_the_stream(old, new):
    size, seed, done = 11, 7, 5
    stream = take(TrainingSampler(size, seed=seed, rank=0, world_size=1), 200)
    (old_world, old_batch), (new_world, new_batch) = old, new
    old_total, new_total = old_world * old_batch, new_world * new_batch

    _, first, state = _run(size, seed, old_world, old_batch, done)
    consumed = done * old_total
    start, second, state2 = _run(size, seed + 1, new_world, new_batch, 4, state, done)
    assert start == consumed // new_total  # the iteration of the new run holding that item
    # Together the two runs took the stream's items in order, each position once: no item of
    # an epoch is repeated or skipped.
    seen = [sorted(items) for items in first + second]
    expected, pos, by_epoch = [], 0, {}
    for items in first + second:
        expected.append(sorted(stream[pos : pos + len(items)]))
        if pos // size == (pos + len(items) - 1) // size:  # the step lies in one epoch
            by_epoch.setdefault(pos // size, []).extend(items)
        pos += len(items)
    assert seen == expected and pos == consumed + 4 * new_total
    assert all(len(set(items)) == len(items) for items in by_epoch.values())

    # The resumed run's own checkpoint resumes it exactly (the mid-step offset is kept), also
    # back on the first layout.
    again, third, _ = _run(size, seed + 2, old_world, old_batch, 2, state2, start + 4)
    assert sorted(third[0]) == sorted(stream[pos : pos + old_total])
    assert again == pos // old_total


def test_resumable_batch_sampler_rejects_a_corrupt_state():
    sampler = ResumableBatchSampler(TrainingSampler(6, seed=1, rank=0, world_size=1), 2)
    with pytest.raises(ValueError, match="position_offset"):
        sampler.load_state_dict({"seed": 1, "total_batch_size": 4, "position_offset": 4})


def test_grouped_batch_sampler_warns_when_resumed_with_another_layout(caplog):
    group_ids = [0, 1] * 5
    old = GroupedBatchSampler(TrainingSampler(10, seed=2, rank=0, world_size=2), group_ids, 2)
    new = GroupedBatchSampler(TrainingSampler(10, seed=2, rank=0, world_size=1), group_ids, 2)
    new.load_state_dict(old.state_dict())
    with caplog.at_level(logging.WARNING, logger="meshrecon.data.samplers"):
        assert new.set_start_iter(3) == 6  # 3 steps of 4 items are 6 steps of 2
    assert "repeated or skipped" in caplog.text


def test_grouped_batch_sampler_groups_and_resumes():
    group_ids = [0, 1, 0, 1, 1, 0, 0, 1, 0, 1]
    sampler = GroupedBatchSampler(TrainingSampler(10, seed=2, rank=0, world_size=1), group_ids, 3)
    batches = take(sampler, 8)
    assert all(len({group_ids[i] for i in b}) == 1 and len(b) == 3 for b in batches)
    resumed = GroupedBatchSampler(TrainingSampler(10, seed=2, rank=0, world_size=1), group_ids, 3)
    resumed.set_start_iter(5)
    assert take(resumed, 3) == batches[5:]


def _ranks(world_size):
    return [(r, world_size) for r in range(world_size)]


@pytest.mark.parametrize("size,world_size", [(10, 3), (2, 4), (0, 2), (9, 1)])
def test_inference_sampler_covers_each_index_once(size, world_size):
    shards = [
        list(InferenceSampler(size, rank=r, world_size=world_size)) for r in range(world_size)
    ]
    assert sorted(i for s in shards for i in s) == list(range(size))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    lengths = [len(InferenceSampler(size, rank=r, world_size=ws)) for r, ws in _ranks(world_size)]
    assert lengths == [len(s) for s in shards]


def test_sampler_argument_errors():
    with pytest.raises(ValueError, match="positive"):
        TrainingSampler(0, seed=0)
    with pytest.raises(ValueError, match="outside"):
        InferenceSampler(5, rank=2, world_size=2)


def _mapper(d):
    if d["id"] in (1, 3):
        raise ValueError(f"corrupt sample {d['id']}")
    if d["id"] == 4:
        return None
    return d["id"] * 10


def test_map_dataset_skips_corrupt_samples_with_warning_and_count(caplog):
    items = [{"id": i} for i in range(6)]
    dataset = MapDataset(DatasetFromList(items), _mapper)
    with caplog.at_level(logging.WARNING):
        replaced = dataset[1]
    assert replaced in (0, 20, 50)
    assert dataset.num_skipped >= 1
    assert "corrupt sample 1" in caplog.text and "Skipping sample 1" in caplog.text
    assert dataset[1] == replaced  # the replacement is deterministic
    assert dataset[0] == 0 and dataset[2] == 20


def test_map_dataset_without_retry_returns_none_and_collator_drops_it():
    dataset = MapDataset(DatasetFromList([{"id": i} for i in range(6)]), _mapper, retry=False)
    batch = trivial_batch_collator([dataset[i] for i in range(6)])
    assert batch == [0, 20, 50]
    assert dataset.num_skipped == 3


def test_map_dataset_gives_up_when_everything_is_corrupt():
    dataset = MapDataset(DatasetFromList([{"id": 1}, {"id": 3}]), _mapper, max_retries=5)
    with pytest.raises(RuntimeError, match="broken as a whole"):
        dataset[0]


def test_map_dataset_counts_skips_in_worker_processes():
    import torch.utils.data as torchdata

    dataset = MapDataset(DatasetFromList([{"id": i} for i in range(6)]), _mapper, retry=False)
    loader = torchdata.DataLoader(
        dataset, batch_size=2, num_workers=2, collate_fn=trivial_batch_collator
    )
    assert sorted(x for b in loader for x in b) == [0, 20, 50]
    assert dataset.num_skipped == 3


def test_dataset_from_list_serialized_and_copied():
    items = [{"a": [1, 2]}, {"a": [3]}]
    for serialize in (True, False):
        ds = DatasetFromList(items, copy=True, serialize=serialize)
        assert len(ds) == 2 and ds[1] == {"a": [3]}
        ds[0]["a"].append(9)
        assert ds[0] == {"a": [1, 2]}
