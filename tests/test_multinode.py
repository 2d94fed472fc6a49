"""Several "machines" on loopback: the built-in launcher and torchrun, over gloo on 127.0.0.1.

Each machine is a separate OS process started with its own command line, as on a cluster; they
share nothing but the rendezvous address (each writes to its own OUTPUT_DIR, so that what rank 1
writes is visible). Every run ends with the weights of one process training on the same total
batch, and a missing peer makes the other fail at the join timeout with the URL in the error.
"""

import importlib.util
import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import toy_task

from meshrecon.engine import launch
from meshrecon.engine.launch import _find_free_port, launcher_env

TESTS_DIR = Path(__file__).resolve().parent
DRIVER = TESTS_DIR / "toy_train_net.py"
TRAIN_NET = TESTS_DIR.parent / "tools" / "train_net.py"

# Batch 4 in total, momentum, weight decay, warmup and an LR step: equal updates step for step.
OVERRIDES = {"SOLVER.MAX_ITER": 12, "SOLVER.STEPS": (8,), "SOLVER.CHECKPOINT_PERIOD": 100}
# The files of a run's OUTPUT_DIR that only rank 0 may write.
RANK0_FILES = {"config.yaml", "log.txt", "metrics.json", "last_checkpoint", "model_final.pth"}


def _env(record_dir):
    env = dict(os.environ, OMP_NUM_THREADS="1", TOY_RECORD_DIR=str(record_dir))
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR.parent), env.get("PYTHONPATH", "")])
    # Set by an outer torchrun, these would make the driver join the wrong job.
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def _opts(output_dir):
    return [str(o) for o in toy_task.toy_opts(str(output_dir), **OVERRIDES)]


def _wait_all(procs, timeout=300):
    deadline = time.monotonic() + timeout
    outputs = []
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        outputs.append(out)
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out[-4000:]
    return outputs


def _single_process_reference(tmp_path):
    """The toy run in this process: 1 process x 4 samples per step; its weights and records."""
    out, rec = tmp_path / "single", tmp_path / "single_rec"
    launch(toy_task.train_toy_record_main, 1, args=(str(out), OVERRIDES, str(rec)))
    weights = torch.load(out / "model_final.pth", weights_only=True)["model"]
    return weights, toy_task.read_records(str(rec))[0]


def _check_run(tmp_path, out_dirs, record_dir, reference):
    """Weights, data and side effects of a 2-process run against the 1-process reference."""
    ref_weights, ref_steps = reference
    # Rank 0 wrote its files; the other machine's OUTPUT_DIR holds only rank 1's own log.
    written = {d: sorted(os.listdir(d)) if d.exists() else [] for d in out_dirs}
    main_dirs = [d for d in out_dirs if "model_final.pth" in written[d]]
    assert len(main_dirs) == 1, written
    main_dir = main_dirs[0]
    (other,) = [d for d in out_dirs if d != main_dir]
    assert RANK0_FILES <= set(written[main_dir]), written
    assert any(n.startswith("events.out.tfevents") for n in written[main_dir])
    assert (main_dir / "inference" / "toy_test" / "results.json").is_file()
    assert written[other] == ["log.txt.rank1"], written
    assert not any("rank" in n for n in written[main_dir]), written
    assert "world size: 2" in (main_dir / "log.txt").read_text()

    weights = torch.load(main_dir / "model_final.pth", weights_only=True)["model"]
    assert weights.keys() == ref_weights.keys()
    for key in weights:
        torch.testing.assert_close(weights[key], ref_weights[key], rtol=1e-5, atol=1e-5)

    # Each step, the two ranks trained on disjoint halves of the single process's batch.
    records = toy_task.read_records(str(record_dir))
    assert sorted(records) == [0, 1]
    assert sorted(records[0]) == sorted(ref_steps) == list(range(12))
    for it, ref in ref_steps.items():
        ids0, ids1 = records[0][it]["ids"], records[1][it]["ids"]
        assert len(ids0) == len(ids1) == 2 and not set(ids0) & set(ids1)
        assert sorted(ids0 + ids1) == sorted(ref["ids"])
        assert records[0][it]["lr"] == pytest.approx(ref["lr"], rel=1e-12)


@pytest.mark.slow
def test_two_machines_with_the_builtin_launcher_match_one_process(tmp_path):
    reference = _single_process_reference(tmp_path)
    url = f"tcp://127.0.0.1:{_find_free_port()}"
    outs = [tmp_path / "machine0", tmp_path / "machine1"]
    record = tmp_path / "records"
    start = time.monotonic()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(DRIVER),
                "--num-machines",
                "2",
                "--machine-rank",
                str(rank),
                "--dist-url",
                url,
                "--dist-timeout",
                "2",
                *_opts(outs[rank]),
            ],
            env=_env(record),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    _wait_all(procs)
    print(f"two machines, built-in launcher: {time.monotonic() - start:.1f} s wall")
    _check_run(tmp_path, outs, record, reference)


@pytest.mark.slow
def test_two_nodes_with_torchrun_match_one_process(tmp_path):
    reference = _single_process_reference(tmp_path)
    endpoint = f"127.0.0.1:{_find_free_port()}"
    outs = [tmp_path / "node0", tmp_path / "node1"]
    record = tmp_path / "records"
    start = time.monotonic()
    # The c10d rendezvous numbers the nodes in order of arrival: either command may get rank 0.
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--nproc-per-node",
                "1",
                "--rdzv-backend",
                "c10d",
                "--rdzv-endpoint",
                endpoint,
                "--rdzv-id",
                "toy",
                "--rdzv-conf",
                "join_timeout=120",
                str(DRIVER),
                *_opts(out),
            ],
            env=_env(record),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for out in outs
    ]
    logs = _wait_all(procs)
    print(f"two nodes, torchrun: {time.monotonic() - start:.1f} s wall")
    _check_run(tmp_path, outs, record, reference)
    # Under torchrun the script spawned nothing: the built-in launcher's CPU message is absent.
    assert not any("launching" in log and "CPU processes" in log for log in logs)


@pytest.mark.slow
def test_torchrun_node_without_peer_fails_at_its_join_timeout(tmp_path):
    endpoint = f"127.0.0.1:{_find_free_port()}"
    start = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes",
            "2",
            "--nproc-per-node",
            "1",
            "--rdzv-backend",
            "c10d",
            "--rdzv-endpoint",
            endpoint,
            "--rdzv-id",
            "lonely",
            "--rdzv-conf",
            "join_timeout=5",
            str(DRIVER),
            *_opts(tmp_path / "out"),
        ],
        env=_env(tmp_path / "rec"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    assert "RendezvousTimeoutError" in proc.stderr, proc.stderr[-3000:]
    assert not (tmp_path / "out").exists()  # no worker ever started
    print(f"torchrun without its peer failed after {elapsed:.1f} s (join_timeout=5)")


def generate_synthetic_in_each_rank(root: str, log_dir: str) -> None:
    """Load a tiny synthetic split in every process of a launch; log who generated it."""
    from meshrecon.data.datasets.synthetic import SyntheticConfig, load_synthetic
    from meshrecon.data.datasets.synthetic import scenes as scenes_module
    from meshrecon.utils import comm

    real = scenes_module.generate_split

    def counting(spec, out_dir):
        with open(os.path.join(log_dir, f"generated_by_rank{comm.get_rank()}"), "w") as f:
            f.write(out_dir)
        time.sleep(1.0)  # long enough for the other process to reach the lock
        return real(spec, out_dir)

    scenes_module.generate_split = counting
    config = SyntheticConfig(root=root, scale=0.02, nyu_image_size=(64, 48))
    comm.synchronize()  # both processes ask for the missing split at the same time
    records = load_synthetic("nyu", "test", config)
    with open(os.path.join(log_dir, f"records_rank{comm.get_rank()}.json"), "w") as f:
        json.dump(records, f)


@pytest.mark.slow
def test_synthetic_data_is_generated_once_by_the_processes_sharing_a_disk(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    root = tmp_path / "datasets"
    launch(generate_synthetic_in_each_rank, 2, dist_url="auto", args=(str(root), str(logs)))
    generated = sorted(p.name for p in logs.glob("generated_by_rank*"))
    assert len(generated) == 1, generated
    records = [json.loads((logs / f"records_rank{r}.json").read_text()) for r in (0, 1)]
    assert records[0] == records[1] and len(records[0]) >= 1


@pytest.mark.parametrize("machine_rank", [0, 1])
def test_builtin_launcher_without_peer_fails_at_join_timeout_naming_url(machine_rank):
    # Machine 0 waits at its store for machine 1; machine 1 waits for machine 0 to answer.
    url = f"tcp://127.0.0.1:{_find_free_port()}"
    called = []
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=url) as info:
        launch(
            called.append,
            1,
            num_machines=2,
            machine_rank=machine_rank,
            dist_url=url,
            args=("ran",),
            join_timeout=timedelta(seconds=2),
        )
    elapsed = time.monotonic() - start
    assert "join timeout 2 s" in str(info.value) and not called
    assert elapsed < 2 + 3, f"gave up after {elapsed:.1f} s, join timeout 2 s"
    assert not torch.distributed.is_initialized()


def _load_train_net():
    spec = importlib.util.spec_from_file_location("train_net_for_test", TRAIN_NET)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_net_dist_timeout_bounds_the_wait(monkeypatch):
    train_net = _load_train_net()
    url = f"tcp://127.0.0.1:{_find_free_port()}"
    argv = [
        "train_net.py",
        "--num-machines",
        "2",
        "--machine-rank",
        "1",
        "--dist-url",
        url,
        "--dist-timeout",
        "0.03",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=f"process 1 of 2 could not join the others at {url}"):
        train_net.invoke_main()
    assert time.monotonic() - start < 1.8 + 3


def _torchrun_env(monkeypatch, **values):
    for name in (
        "RANK",
        "WORLD_SIZE",
        "LOCAL_RANK",
        "LOCAL_WORLD_SIZE",
        "GROUP_RANK",
        "MASTER_ADDR",
        "MASTER_PORT",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, str(value))


def test_launcher_env_reads_torchrun_variables(monkeypatch):
    _torchrun_env(monkeypatch)
    assert launcher_env() is None
    _torchrun_env(
        monkeypatch,
        RANK=3,
        WORLD_SIZE=4,
        LOCAL_RANK=1,
        LOCAL_WORLD_SIZE=2,
        GROUP_RANK=1,
        MASTER_ADDR="10.0.0.1",
        MASTER_PORT=29500,
    )
    env = launcher_env()
    assert (env.rank, env.world_size, env.local_rank, env.local_world_size) == (3, 4, 1, 2)
    assert env.node_rank == 1 and env.master == "10.0.0.1:29500"


def test_launcher_env_errors_name_the_variable(monkeypatch):
    _torchrun_env(monkeypatch, RANK=1, WORLD_SIZE=2, LOCAL_RANK=0, MASTER_PORT=29500)
    with pytest.raises(ValueError, match="MASTER_ADDR"):
        launcher_env()
    _torchrun_env(monkeypatch, RANK=2, WORLD_SIZE=2)
    with pytest.raises(ValueError, match="RANK"):
        launcher_env()
    _torchrun_env(monkeypatch, RANK="x", WORLD_SIZE=2)
    with pytest.raises(ValueError, match="RANK"):
        launcher_env()


def test_launch_under_torchrun_spawns_nothing_and_rejects_contradictions(monkeypatch):
    # A torchrun job of one process: main runs here, with no process group and no spawning.
    _torchrun_env(
        monkeypatch,
        RANK=0,
        WORLD_SIZE=1,
        LOCAL_RANK=0,
        LOCAL_WORLD_SIZE=1,
        GROUP_RANK=0,
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=1,
    )
    ran = []
    launch(ran.append, 1, args=(os.getpid(),))
    assert ran == [os.getpid()] and not torch.distributed.is_initialized()

    # Two nodes of two processes: the built-in launcher's arguments must agree or be left out.
    _torchrun_env(
        monkeypatch,
        RANK=2,
        WORLD_SIZE=4,
        LOCAL_RANK=0,
        LOCAL_WORLD_SIZE=2,
        GROUP_RANK=1,
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=1,
    )
    with pytest.raises(ValueError, match="--num-gpus 4"):
        launch(ran.append, 4)
    with pytest.raises(ValueError, match="--num-machines 3"):
        launch(ran.append, 1, num_machines=3)
    with pytest.raises(ValueError, match="--machine-rank 2"):
        launch(ran.append, 1, num_machines=3, machine_rank=2)
    assert ran == [os.getpid()]


def test_launch_rejects_bad_urls():
    with pytest.raises(ValueError, match="tcp://HOST:PORT"):
        launch(print, 1, num_machines=2, dist_url="tcp://127.0.0.1")
    with pytest.raises(ValueError, match="must start with"):
        launch(print, 1, num_machines=2, dist_url="127.0.0.1:1234")
