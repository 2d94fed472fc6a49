"""Start training in one or several processes, on one or several machines, with torch.distributed.

Two ways to get several processes:

- the built-in launcher: run the same command on every machine with ``--num-gpus M``
  (processes per machine), ``--num-machines N``, that machine's ``--machine-rank`` and the
  ``--dist-url tcp://HOST:PORT`` of machine 0; each machine spawns its M processes;
- an external launcher, ``torchrun`` (also through SLURM): it starts the processes and sets
  ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; ``launch`` then
  spawns nothing and joins the process group those variables describe.

Backends: NCCL with one process per GPU when CUDA is available; otherwise gloo on the CPU. On a
machine without CUDA, ``--num-gpus N`` still works: it spawns N CPU processes that train
together over gloo, which is how the distributed code path is tested on CPU-only machines.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlparse

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..utils import comm

__all__ = ["DEFAULT_TIMEOUT", "LauncherEnv", "launch", "launcher_env"]

logger = logging.getLogger(__name__)

# How long a collective operation (all-reduce, barrier...) and, unless told otherwise, the
# rendezvous may wait, as in Detectron2.
DEFAULT_TIMEOUT = timedelta(minutes=30)

# The variables torchrun sets in each process it starts; a launcher that sets the first two
# must set the others too (SLURM or MPI wrappers that imitate torchrun).
_ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class LauncherEnv:
    """The process layout an external launcher (torchrun) gave this process."""

    rank: int
    world_size: int
    local_rank: int
    # Processes on this machine (torchrun's LOCAL_WORLD_SIZE), None when the launcher omits it.
    local_world_size: int | None
    # Which machine this is (torchrun's GROUP_RANK, the node rank), None when omitted.
    node_rank: int | None
    master: str  # MASTER_ADDR:MASTER_PORT, the rendezvous of the process group


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def launcher_env() -> LauncherEnv | None:
    """Return the layout set by torchrun (or a launcher that sets the same variables), or None.

    A process counts as externally launched when ``RANK`` and ``WORLD_SIZE`` are both set.

    Raises:
        ValueError: when they are, with a world size above 1, but ``LOCAL_RANK``,
            ``MASTER_ADDR`` or ``MASTER_PORT`` is missing, or a value is not an integer or is
            out of range.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    rank, world_size = _env_int("RANK"), _env_int("WORLD_SIZE")
    if rank is None or world_size is None or world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"RANK={os.environ['RANK']!r} and WORLD_SIZE={os.environ['WORLD_SIZE']!r} do not "
            "describe a process of a distributed job (need 0 <= RANK < WORLD_SIZE)"
        )
    missing = [name for name in _ENV_VARS if not os.environ.get(name)]
    if world_size > 1 and missing:
        raise ValueError(
            f"RANK and WORLD_SIZE are set (an external launcher such as torchrun), but "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not: set all of "
            f"{', '.join(_ENV_VARS)}, or unset RANK and WORLD_SIZE to use the built-in launcher"
        )
    local_rank = _env_int("LOCAL_RANK") or 0
    local_world_size = _env_int("LOCAL_WORLD_SIZE")
    if local_world_size is not None and not 0 <= local_rank < local_world_size:
        raise ValueError(f"LOCAL_RANK={local_rank} is outside LOCAL_WORLD_SIZE={local_world_size}")
    master = f"{os.environ.get('MASTER_ADDR', '')}:{os.environ.get('MASTER_PORT', '')}"
    return LauncherEnv(
        rank, world_size, local_rank, local_world_size, _env_int("GROUP_RANK"), master
    )


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
    join_timeout: timedelta | None = None,
) -> None:
    """Run ``main_func(*args)`` in every process of a (possibly multi-machine) job.

    Under torchrun (``RANK`` and ``WORLD_SIZE`` set, see :func:`launcher_env`) this process is
    one of the job's: it joins the process group at ``MASTER_ADDR:MASTER_PORT`` and runs
    ``main_func`` itself, spawning nothing; ``num_gpus_per_machine``, ``num_machines`` and
    ``machine_rank`` must then be left at their defaults or agree with torchrun's layout.

    Otherwise, with one process in all, ``main_func`` runs here without ``torch.distributed``.
    With several, this machine starts ``num_gpus_per_machine`` processes (one per GPU, or CPU
    processes over gloo when CUDA is absent; one process per machine runs in this process)
    with the global ranks ``machine_rank * num_gpus_per_machine + local_rank``; each joins the
    process group and the per-machine group, then calls ``main_func``. The same call must run
    on every machine, each with its own ``machine_rank``.

    Args:
        main_func: a picklable (module-level) function.
        num_gpus_per_machine: processes per machine.
        num_machines: the number of machines.
        machine_rank: this machine's rank, in ``[0, num_machines)``.
        dist_url: where the processes meet: ``tcp://HOST:PORT`` of machine 0 (a port free
            there, reachable from every machine); None or ``"auto"`` picks a free local port
            (one machine only).
        args: arguments of ``main_func``.
        timeout: the timeout of collective operations.
        join_timeout: how long a process waits for all the others at ``dist_url``; after it,
            the process fails with an error naming ``dist_url``. Default: ``timeout``.

    Raises:
        ValueError: for an impossible layout, or one that contradicts torchrun's.
        RuntimeError: (in the process that called ``launch`` when it runs the worker itself)
            when the processes do not all arrive at ``dist_url`` within ``join_timeout``.
    """
    if num_gpus_per_machine < 1 or num_machines < 1:
        raise ValueError(
            f"need at least one process per machine and one machine, got "
            f"num_gpus_per_machine={num_gpus_per_machine}, num_machines={num_machines}"
        )
    if not 0 <= machine_rank < num_machines:
        raise ValueError(f"machine_rank {machine_rank} is outside [0, {num_machines})")
    join_timeout = timeout if join_timeout is None else join_timeout

    env = launcher_env()
    if env is not None:
        _launch_from_env(
            env,
            main_func,
            args,
            num_gpus_per_machine,
            num_machines,
            machine_rank,
            dist_url,
            timeout,
            join_timeout,
        )
        return

    world_size = num_machines * num_gpus_per_machine
    if world_size == 1:
        main_func(*args)
        return

    if dist_url is None or dist_url == "auto":
        if num_machines != 1:
            raise ValueError(
                'dist_url="auto" works on one machine only; give the tcp://HOST:PORT of machine '
                "0, the same on every machine"
            )
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    _check_url(dist_url)
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
    worker_args = (
        main_func,
        world_size,
        num_gpus_per_machine,
        machine_rank,
        dist_url,
        args,
        timeout,
        use_cuda,
        join_timeout,
    )
    if num_gpus_per_machine == 1:
        # One process on this machine: run it here. A spawned child would cost an interpreter
        # start and hide the worker's exception behind a wrapper.
        _distributed_worker(0, *worker_args)
        return
    mp.start_processes(
        _distributed_worker,
        nprocs=num_gpus_per_machine,
        args=worker_args,
        daemon=False,
        start_method="spawn",
    )


def _check_url(dist_url: str) -> None:
    scheme = urlparse(dist_url).scheme
    if scheme not in ("tcp", "file", "env"):
        raise ValueError(
            f"dist_url {dist_url!r} must start with tcp://, file:// or env:// (e.g. "
            "tcp://HOST:PORT of machine 0)"
        )
    if scheme == "tcp":
        parsed = urlparse(dist_url)
        try:
            port = parsed.port
        except ValueError:
            port = None
        if not parsed.hostname or port is None:
            raise ValueError(f"dist_url {dist_url!r} needs a host and a port: tcp://HOST:PORT")


def _launch_from_env(
    env: LauncherEnv,
    main_func: Callable[..., Any],
    args: tuple,
    num_gpus_per_machine: int,
    num_machines: int,
    machine_rank: int,
    dist_url: str | None,
    timeout: timedelta,
    join_timeout: timedelta,
) -> None:
    """Run ``main_func`` as process ``env.rank`` of a job started by torchrun."""
    # What the built-in launcher's arguments say must not contradict torchrun's layout: a
    # silent difference would make a user believe they train with a layout they do not.
    local = env.local_world_size
    conflicts = []
    if num_gpus_per_machine != 1 and num_gpus_per_machine != local:
        conflicts.append(f"--num-gpus {num_gpus_per_machine} (torchrun: {local} per machine)")
    if num_machines != 1 and (local is None or num_machines * local != env.world_size):
        conflicts.append(f"--num-machines {num_machines} (torchrun: WORLD_SIZE={env.world_size})")
    if machine_rank != 0 and machine_rank != env.node_rank:
        conflicts.append(f"--machine-rank {machine_rank} (torchrun: GROUP_RANK={env.node_rank})")
    if conflicts:
        raise ValueError(
            "this process was started by torchrun (RANK/WORLD_SIZE are set), which decides the "
            "processes; these arguments contradict it: " + "; ".join(conflicts) + ". Leave "
            "--num-gpus, --num-machines and --machine-rank out under torchrun."
        )
    if dist_url not in (None, "auto"):
        logger.warning(
            "dist_url %s is not used: under torchrun the processes meet at MASTER_ADDR:"
            "MASTER_PORT (%s)",
            dist_url,
            env.master,
        )
    if env.world_size == 1:
        main_func(*args)
        return
    use_cuda = torch.cuda.is_available()
    # Ranks of one machine share its GPUs; with GROUP_RANK unknown, the host name tells the
    # machines apart.
    machine = env.node_rank if env.node_rank is not None else socket.gethostname()
    _run_in_process_group(
        main_func,
        args,
        "env://",
        env.rank,
        env.world_size,
        env.local_rank,
        machine,
        use_cuda,
        timeout,
        join_timeout,
        hint=f"torchrun gave MASTER_ADDR:MASTER_PORT={env.master}, which every process must reach.",
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
    join_timeout: timedelta = DEFAULT_TIMEOUT,
) -> None:
    global_rank = machine_rank * num_gpus_per_machine + local_rank
    _run_in_process_group(
        main_func,
        args,
        dist_url,
        global_rank,
        world_size,
        local_rank,
        machine_rank,
        use_cuda,
        timeout,
        join_timeout,
        hint="Every machine must run the same command with its own --machine-rank and the "
        "same --dist-url, whose host and port machine 0 can bind and every machine can reach.",
    )


def _run_in_process_group(
    main_func: Callable[..., Any],
    args: tuple,
    dist_url: str,
    rank: int,
    world_size: int,
    local_rank: int,
    machine: int | str,
    use_cuda: bool,
    timeout: timedelta,
    join_timeout: timedelta,
    hint: str = "",
) -> None:
    if use_cuda:
        # Set before the group exists, so that NCCL and the model default to this GPU.
        torch.cuda.set_device(local_rank)
    backend = "nccl" if use_cuda else "gloo"
    _join_process_group(dist_url, rank, world_size, backend, timeout, join_timeout, hint)
    try:
        comm.create_local_process_group(machine_id=machine)
        comm.synchronize()
        main_func(*args)
    finally:
        # No barrier here: after an error in one process, the others would wait forever.
        comm.forget_process_groups()
        if dist.is_initialized():
            dist.destroy_process_group()


def _wait_for_server(host: str, port: int, deadline: float) -> None:
    """Wait until ``host:port`` accepts TCP connections, or raise TimeoutError at ``deadline``.

    The TCP store's own client retries with backoff and may overrun its timeout several times;
    polling the port first keeps the wait of a machine whose machine 0 never comes within the
    stated join timeout.
    """
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError as err:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"nothing answers at {host}:{port} ({err})") from None
        time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))


def _join_process_group(
    dist_url: str,
    rank: int,
    world_size: int,
    backend: str,
    timeout: timedelta,
    join_timeout: timedelta,
    hint: str = "",
) -> None:
    """Initialize the default process group at ``dist_url``, waiting at most ``join_timeout``.

    Rank 0 of a ``tcp://`` URL serves the store and waits there for the others; the other ranks
    wait for it to answer. Either side fails at ``join_timeout`` with an error naming the URL,
    rather than waiting for the (much longer) collective ``timeout``.
    """
    start = time.monotonic()
    deadline = start + join_timeout.total_seconds()
    try:
        parsed = urlparse(dist_url)
        if parsed.scheme == "tcp" and rank != 0:
            _wait_for_server(parsed.hostname, parsed.port, deadline)
        remaining = timedelta(seconds=max(1.0, deadline - time.monotonic()))
        store, rank, world_size = next(
            dist.rendezvous(dist_url, rank=rank, world_size=world_size, timeout=remaining)
        )
        store.set_timeout(timeout)
        # What init_process_group(init_method=...) does with the store it makes itself.
        store = dist.PrefixStore("default_pg", store)
        dist.init_process_group(
            backend=backend, store=store, rank=rank, world_size=world_size, timeout=timeout
        )
    except Exception as err:
        waited = time.monotonic() - start
        raise RuntimeError(
            f"process {rank} of {world_size} could not join the others at {dist_url} (waited "
            f"{waited:.0f} s, join timeout {join_timeout.total_seconds():.0f} s): "
            f"{str(err).rstrip('. ')}. {hint}"
        ) from err
