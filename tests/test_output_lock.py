"""Two runs in one OUTPUT_DIR: the second refuses, naming the first; stale locks are taken over."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from toy_task import toy_cfg, toy_opts

from meshrecon.engine import CallbackHook, DefaultTrainer, OutputDirLockedError
from meshrecon.engine import output_lock as lock_mod
from meshrecon.engine.output_lock import LOCK_FILENAME, acquire_output_dir_lock

TESTS_DIR = Path(__file__).resolve().parent
TRAIN_NET = TESTS_DIR.parent / "tools" / "train_net.py"
# tools/train_net.py with the toy task registered; with TOY_HOLD_FILE, the run waits after
# iteration 10 until that file exists, so that the test can start a second run meanwhile.
DRIVER = """
import importlib.util, os, sys, time
sys.path.insert(0, os.environ["TOY_TESTS_DIR"])
import toy_task  # noqa: F401
from meshrecon.engine import CallbackHook

spec = importlib.util.spec_from_file_location("train_net", os.environ["TOY_TRAIN_NET"])
train_net = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train_net)
hold = os.environ.get("TOY_HOLD_FILE")
if hold:
    base_build_hooks = train_net.Trainer.build_hooks

    def wait(trainer):
        while trainer.iter >= 10 and not os.path.exists(hold):
            time.sleep(0.05)

    def build_hooks(self):
        return base_build_hooks(self) + [CallbackHook(after_step=wait)]

    train_net.Trainer.build_hooks = build_hooks
train_net.invoke_main()
"""


def _env(hold_file: Path | None = None) -> dict:
    env = dict(os.environ)
    env.update(TOY_TESTS_DIR=str(TESTS_DIR), TOY_TRAIN_NET=str(TRAIN_NET), OMP_NUM_THREADS="1")
    if hold_file is not None:
        env["TOY_HOLD_FILE"] = str(hold_file)
    return env


def _write_lock(output_dir: Path, **fields) -> Path:
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": "earlier"}
    record.update(fields)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / LOCK_FILENAME
    path.write_text(json.dumps(record))
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid names no process now
    return proc.pid


@pytest.fixture
def log(caplog):
    """caplog that also sees meshrecon's loggers (``setup_logger`` stops their propagation)."""
    logger = logging.getLogger("meshrecon")
    level = logger.level
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.INFO)
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.setLevel(level)


def _train(cfg) -> DefaultTrainer:
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    return trainer


def test_second_training_in_the_same_folder_refuses_naming_the_first(tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    out, go_on = tmp_path / "run", tmp_path / "go_on"
    first_opts = toy_opts(str(out), **{"SOLVER.MAX_ITER": 30, "DATASETS.TEST": "()"})
    first = subprocess.Popen(
        [sys.executable, str(driver), *map(str, first_opts)],
        env=_env(hold_file=go_on),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "last_checkpoint").exists() and time.monotonic() < deadline:
            assert first.poll() is None, first.stdout.read()[-3000:]
            time.sleep(0.05)
        lock = json.loads((out / LOCK_FILENAME).read_text())
        assert lock["pid"] == first.pid and lock["host"] == socket.gethostname()
        config_before = (out / "config.yaml").read_text()

        # A second training with another learning rate, then an evaluation, into the same folder.
        second_opts = toy_opts(str(out), **{"SOLVER.MAX_ITER": 30, "SOLVER.BASE_LR": 0.02})
        seconds = [
            subprocess.Popen(
                [sys.executable, str(driver), *flags, *map(str, second_opts)],
                env=_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for flags in ([], ["--eval-only"])
        ]
        for second in seconds:
            _, stderr = second.communicate(timeout=300)
            assert second.returncode != 0
            assert "OutputDirLockedError" in stderr, stderr[-3000:]
            assert f"in use by pid {first.pid} on host {socket.gethostname()!r}" in stderr
        # Refused before they wrote anything: the first run's config stands.
        assert (out / "config.yaml").read_text() == config_before
        assert first.poll() is None, "the first run should still be training"
    finally:
        go_on.touch()
        output, _ = first.communicate(timeout=300)
    assert first.returncode == 0, output[-3000:]
    assert (out / "last_checkpoint").read_text() == "model_final.pth"
    assert not (out / LOCK_FILENAME).exists()  # released at the end


def test_lock_of_a_live_process_refuses_in_process_training(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(tmp_path, pid=sleeper.pid, command="train_net.py --config-file a.yaml")
        with pytest.raises(OutputDirLockedError) as err:
            DefaultTrainer(toy_cfg(str(tmp_path), **{"SOLVER.MAX_ITER": 2}))
    finally:
        sleeper.kill()
        sleeper.wait()
    message = str(err.value)
    assert f"pid {sleeper.pid}" in message and socket.gethostname() in message
    assert "train_net.py --config-file a.yaml" in message and LOCK_FILENAME in message
    assert not (tmp_path / "model_final.pth").exists()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, log):
    dead = _dead_pid()
    _write_lock(tmp_path, pid=dead)
    _train(toy_cfg(str(tmp_path), **{"SOLVER.MAX_ITER": 3, "DATASETS.TEST": ()}))
    assert "Taking over the lock" in log.text and f"pid {dead}" in log.text
    assert f"no process {dead} exists" in log.text
    assert (tmp_path / "model_final.pth").exists()
    assert not (tmp_path / LOCK_FILENAME).exists()


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc")
def test_lock_whose_pid_now_belongs_to_another_process_is_stale(tmp_path, log):
    # A crashed run's pid reused by an unrelated program: the recorded start time differs.
    record = lock_mod._this_process_record()
    _write_lock(tmp_path, pid=os.getppid(), start_ticks=-1, boot_id=record["boot_id"])
    acquire_output_dir_lock(str(tmp_path)).release()
    assert "now belongs to another process" in log.text


def test_lock_from_another_host_is_not_taken_over(tmp_path):
    path = _write_lock(tmp_path, pid=_dead_pid(), host="gpu-node-17")
    with pytest.raises(OutputDirLockedError) as err:
        acquire_output_dir_lock(str(tmp_path))
    message = str(err.value)
    assert "gpu-node-17" in message and "never taken over" in message
    assert f"delete {path}" in message
    assert json.loads(path.read_text())["host"] == "gpu-node-17"  # left as it was


def test_unreadable_lock_file_is_not_guessed_at(tmp_path, monkeypatch):
    monkeypatch.setattr(lock_mod, "_UNREADABLE_GRACE_S", 0.2)
    (tmp_path / LOCK_FILENAME).write_text("{not json")
    with pytest.raises(OutputDirLockedError, match="cannot be read"):
        acquire_output_dir_lock(str(tmp_path))


def test_lock_is_reentrant_in_one_process_and_released_by_the_last_holder(tmp_path):
    first = acquire_output_dir_lock(str(tmp_path))
    (tmp_path.parent / f"{tmp_path.name}_link").symlink_to(tmp_path)
    second = acquire_output_dir_lock(str(tmp_path.parent / f"{tmp_path.name}_link"))
    path = tmp_path / LOCK_FILENAME
    assert json.loads(path.read_text())["pid"] == os.getpid()
    first.release()
    first.release()  # idempotent: does not drop the second holder's hold
    assert path.exists()
    second.release()
    assert not path.exists()


# Loads output_lock.py alone (it imports nothing of meshrecon): a quick start for subprocesses.
_IMPORT_LOCK_MODULE = (
    "import importlib.util, sys, time\n"
    f"spec = importlib.util.spec_from_file_location('output_lock', {lock_mod.__file__!r})\n"
    "lock_mod = sys.modules['output_lock'] = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(lock_mod)\n"
)


def test_lock_is_removed_when_the_run_is_terminated(tmp_path):
    # SIGTERM (a scheduler's preemption) removes the lock, and the process still dies of it.
    code = _IMPORT_LOCK_MODULE + (
        "lock_mod.acquire_output_dir_lock(sys.argv[1])\n"
        "print('locked', flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "locked"
    assert json.loads((tmp_path / LOCK_FILENAME).read_text())["pid"] == proc.pid
    proc.terminate()
    assert proc.wait(timeout=60) == -signal.SIGTERM
    assert not (tmp_path / LOCK_FILENAME).exists()


def test_lock_is_released_when_training_fails(tmp_path):
    cfg = toy_cfg(str(tmp_path), **{"SOLVER.MAX_ITER": 5, "DATASETS.TEST": ()})
    trainer = DefaultTrainer(cfg)

    def fail(t):
        if t.iter == 2:
            raise RuntimeError("boom")

    trainer.register_hooks([CallbackHook(after_step=fail)])
    assert (tmp_path / LOCK_FILENAME).exists()
    with pytest.raises(RuntimeError, match="boom"):
        trainer.train()
    assert not (tmp_path / LOCK_FILENAME).exists()
    _train(cfg)  # the folder is free for the next run


def test_concurrent_starts_on_a_stale_lock_have_one_winner(tmp_path):
    _write_lock(tmp_path, pid=_dead_pid())
    go = tmp_path / "go"
    code = _IMPORT_LOCK_MODULE + (
        "import os\n"
        "while not os.path.exists(sys.argv[2]):\n"
        "    time.sleep(0.005)\n"
        "try:\n"
        "    lock_mod.acquire_output_dir_lock(sys.argv[1])\n"
        "except lock_mod.OutputDirLockedError:\n"
        "    print('refused', flush=True)\n"
        "else:\n"
        "    print('won', flush=True)\n"
        "    time.sleep(3)\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path), str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    time.sleep(1.0)
    go.touch()
    outcomes = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert outcomes == ["refused", "refused", "refused", "won"]
    assert not (tmp_path / LOCK_FILENAME).exists()
    assert [p.name for p in tmp_path.iterdir() if "stale" in p.name] == []
