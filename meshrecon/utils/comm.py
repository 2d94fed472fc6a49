"""Helpers for multi-process (``torch.distributed``) training that also work in a single process.

Every function here is safe to call when ``torch.distributed`` is unavailable or not initialized:
it then behaves as if there were one process of rank 0.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "all_gather",
    "create_local_process_group",
    "forget_process_groups",
    "gather",
    "get_local_rank",
    "get_local_size",
    "get_rank",
    "get_world_size",
    "is_main_process",
    "reduce_dict",
    "shared_random_seed",
    "synchronize",
]

# The group of processes on this machine; set by ``create_local_process_group`` (``launch`` calls
# it), so that the local rank is known without relying on environment variables.
_LOCAL_PROCESS_GROUP: dist.ProcessGroup | None = None


def _is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    """Return the number of processes taking part in training (1 without distributed)."""
    return dist.get_world_size() if _is_dist() else 1


def get_rank() -> int:
    """Return this process's global rank (0 without distributed)."""
    return dist.get_rank() if _is_dist() else 0


def get_local_rank() -> int:
    """Return this process's rank among the processes of its machine (0 without distributed)."""
    if not _is_dist() or _LOCAL_PROCESS_GROUP is None:
        return 0
    return dist.get_rank(group=_LOCAL_PROCESS_GROUP)


def get_local_size() -> int:
    """Return the number of processes on this machine (1 without distributed)."""
    if not _is_dist() or _LOCAL_PROCESS_GROUP is None:
        return 1
    return dist.get_world_size(group=_LOCAL_PROCESS_GROUP)


def is_main_process() -> bool:
    """Return True in the process of global rank 0, which alone writes files and logs."""
    return get_rank() == 0


def create_local_process_group(
    num_workers_per_machine: int | None = None, *, machine_id: Any = None
) -> None:
    """Create the per-machine process group behind ``get_local_rank`` / ``get_local_size``.

    Every process must call this, since ``new_group`` is a collective over all ranks. Give
    either ``num_workers_per_machine`` (every machine runs that many processes, with consecutive
    global ranks, as the built-in launcher starts them) or ``machine_id`` (anything comparable
    that is equal for the processes of one machine, e.g. torchrun's node rank; machines may then
    run different numbers of processes).
    """
    global _LOCAL_PROCESS_GROUP
    if _LOCAL_PROCESS_GROUP is not None:
        raise RuntimeError("create_local_process_group() was already called in this process")
    if (num_workers_per_machine is None) == (machine_id is None):
        raise ValueError("give exactly one of num_workers_per_machine and machine_id")
    world_size = get_world_size()
    if machine_id is None:
        if world_size % num_workers_per_machine != 0:
            raise ValueError(
                f"world size {world_size} is not a multiple of num_workers_per_machine "
                f"{num_workers_per_machine}"
            )
        machines = [r // num_workers_per_machine for r in range(world_size)]
        machine_id = machines[get_rank()]
    else:
        machines = all_gather(machine_id)
    # Groups in the order of their lowest rank: every process creates them in the same order.
    for key in dict.fromkeys(machines):
        group = dist.new_group([r for r, m in enumerate(machines) if m == key])
        if key == machine_id:
            _LOCAL_PROCESS_GROUP = group


def forget_process_groups() -> None:
    """Drop this module's groups; call before ``destroy_process_group`` ends the default one.

    After it, ``create_local_process_group`` may be called again for a new default group (a
    second ``launch`` in the same process).
    """
    global _LOCAL_PROCESS_GROUP
    _LOCAL_PROCESS_GROUP = None
    _get_object_group.cache_clear()


def synchronize() -> None:
    """Block until every process reaches this point (a barrier); a no-op in one process."""
    if get_world_size() == 1:
        return
    if dist.get_backend() == dist.Backend.NCCL and torch.cuda.is_available():
        # NCCL's barrier needs to know the device, or it may pick a wrong one and hang.
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


@functools.lru_cache
def _get_object_group() -> dist.ProcessGroup | None:
    """A gloo group for exchanging Python objects; None means the default group already is one.

    Objects are pickled into CPU tensors, which NCCL cannot move, hence a separate gloo group.
    """
    if dist.get_backend() == dist.Backend.NCCL:
        return dist.new_group(backend="gloo")
    return None


def all_gather(data: Any, group: dist.ProcessGroup | None = None) -> list[Any]:
    """Gather any picklable object from every process, in every process.

    Returns:
        A list with one entry per rank of ``group``, in rank order.
    """
    if get_world_size() == 1:
        return [data]
    if group is None:
        group = _get_object_group()
    world_size = dist.get_world_size(group=group)
    if world_size == 1:
        return [data]
    output: list[Any] = [None] * world_size
    dist.all_gather_object(output, data, group=group)
    return output


def gather(data: Any, dst: int = 0, group: dist.ProcessGroup | None = None) -> list[Any]:
    """Gather any picklable object from every process into process ``dst``.

    Returns:
        In rank ``dst``: a list with one entry per rank, in rank order. Elsewhere: ``[]``.
    """
    if get_world_size() == 1:
        return [data]
    if group is None:
        group = _get_object_group()
    world_size = dist.get_world_size(group=group)
    if world_size == 1:
        return [data]
    if dist.get_rank(group=group) == dst:
        output: list[Any] = [None] * world_size
        dist.gather_object(data, output, dst=dst, group=group)
        return output
    dist.gather_object(data, None, dst=dst, group=group)
    return []


def shared_random_seed() -> int:
    """Return a random seed that is the same in every process (drawn in rank 0).

    All processes must call this function together.
    """
    # The global generator on purpose: seeded by seed_all_rng, it makes the shared seed
    # reproducible when cfg.SEED is set.
    seed = int(np.random.randint(2**31))  # noqa: NPY002
    return all_gather(seed)[0]


def reduce_dict(
    input_dict: dict[str, torch.Tensor], average: bool = True
) -> dict[str, torch.Tensor]:
    """Sum (or average) a dict of scalar tensors over all processes; the result is in rank 0.

    Other ranks get partial sums, as with ``torch.distributed.reduce``: use the result only in
    rank 0. All processes must pass the same keys.
    """
    world_size = get_world_size()
    if world_size == 1:
        return input_dict
    with torch.no_grad():
        names = sorted(input_dict.keys())
        values = torch.stack([input_dict[k].detach().reshape(()) for k in names])
        dist.reduce(values, dst=0)
        if average and dist.get_rank() == 0:
            values /= world_size
        return dict(zip(names, values))
