"""Start training in one or several processes with ``torch.distributed``.

Backends: NCCL with one process per GPU when CUDA is available; otherwise gloo on the CPU. On a
machine without CUDA, ``--num-gpus N`` (``num_gpus_per_machine=N``) still works: it spawns N CPU
processes that train together over gloo, which is how the distributed code path is tested on
CPU-only machines (and a way to use several cores for data-parallel training).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..utils import comm

__all__ = ["DEFAULT_TIMEOUT", "launch"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = timedelta(minutes=30)


def _find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Binding to port 0 lets the OS pick a free one; it may be taken again before the
        # processes bind it, which is acceptable for single-machine launches.
        sock.bind(("", 0))
        return sock.getsockname()[1]


def launch(
    main_func: Callable[..., Any],
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str | None = None,
    args: tuple = (),
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> None:
    """Run ``main_func(*args)`` in ``num_gpus_per_machine * num_machines`` processes.

    With one process in all, ``main_func`` runs directly in this process without
    ``torch.distributed``. Otherwise this machine spawns ``num_gpus_per_machine`` processes
    (one per GPU, or CPU processes over gloo when CUDA is absent), each of which initializes
    the default process group and the per-machine group before calling ``main_func``.

    Args:
        main_func: a picklable (module-level) function.
        num_gpus_per_machine: processes per machine.
        num_machines: the number of machines.
        machine_rank: this machine's rank, in ``[0, num_machines)``.
        dist_url: where the processes meet, e.g. ``tcp://127.0.0.1:PORT``; None or ``"auto"``
            picks a free local port (one machine only).
        args: arguments of ``main_func``.
        timeout: the timeout of collective operations.
    """
    if num_gpus_per_machine < 1 or num_machines < 1:
        raise ValueError(
            f"need at least one process per machine and one machine, got "
            f"num_gpus_per_machine={num_gpus_per_machine}, num_machines={num_machines}"
        )
    if not 0 <= machine_rank < num_machines:
        raise ValueError(f"machine_rank {machine_rank} is outside [0, {num_machines})")
    world_size = num_machines * num_gpus_per_machine
    if world_size == 1:
        main_func(*args)
        return

    if dist_url is None or dist_url == "auto":
        if num_machines != 1:
            raise ValueError('dist_url="auto" works on one machine only; give tcp://HOST:PORT')
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    if num_machines > 1 and dist_url.startswith("file://"):
        logger.warning("file:// rendezvous needs a file system that every machine shares")

    use_cuda = torch.cuda.is_available()
    if use_cuda and num_gpus_per_machine > torch.cuda.device_count():
        raise ValueError(
            f"asked for {num_gpus_per_machine} processes per machine, but this machine has "
            f"{torch.cuda.device_count()} GPUs"
        )
    if not use_cuda:
        logger.info(
            "CUDA is not available: launching %d CPU processes with the gloo backend",
            num_gpus_per_machine,
        )
    mp.start_processes(
        _distributed_worker,
        nprocs=num_gpus_per_machine,
        args=(
            main_func,
            world_size,
            num_gpus_per_machine,
            machine_rank,
            dist_url,
            args,
            timeout,
            use_cuda,
        ),
        daemon=False,
        start_method="spawn",
    )


def _distributed_worker(
    local_rank: int,
    main_func: Callable[..., Any],
    world_size: int,
    num_gpus_per_machine: int,
    machine_rank: int,
    dist_url: str,
    args: tuple,
    timeout: timedelta,
    use_cuda: bool,
) -> None:
    global_rank = machine_rank * num_gpus_per_machine + local_rank
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        # Set before the group exists, so that NCCL and the model default to this GPU.
        torch.cuda.set_device(local_rank)
    try:
        dist.init_process_group(
            backend=backend,
            init_method=dist_url,
            world_size=world_size,
            rank=global_rank,
            timeout=timeout,
        )
    except Exception as err:
        raise RuntimeError(f"process {global_rank} could not join {dist_url}: {err}") from err
    try:
        comm.create_local_process_group(num_gpus_per_machine)
        comm.synchronize()
        main_func(*args)
    finally:
        # No barrier here: after an error in one process, the others would wait forever.
        if dist.is_initialized():
            dist.destroy_process_group()
