"""A run killed with SIGKILL and resumed with --resume ends with the weights of an unbroken run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from toy_task import toy_opts

TESTS_DIR = Path(__file__).resolve().parent
TRAIN_NET = TESTS_DIR.parent / "tools" / "train_net.py"

# Runs tools/train_net.py with the toy task registered; TOY_STEP_SLEEP slows each step so that
# the test can kill the run in the middle.
DRIVER = """
import importlib.util, os, sys, time
sys.path.insert(0, os.environ["TOY_TESTS_DIR"])
import toy_task  # noqa: F401  (registers the toy model and datasets)
from meshrecon.engine import CallbackHook

spec = importlib.util.spec_from_file_location("train_net", os.environ["TOY_TRAIN_NET"])
train_net = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train_net)
delay = float(os.environ.get("TOY_STEP_SLEEP", "0"))
if delay:
    base_build_hooks = train_net.Trainer.build_hooks

    def build_hooks(self):
        return base_build_hooks(self) + [CallbackHook(after_step=lambda t: time.sleep(delay))]

    train_net.Trainer.build_hooks = build_hooks
train_net.invoke_main()
"""

MAX_ITER = 40


def _command(driver, output_dir, *flags):
    opts = toy_opts(str(output_dir), **{"SOLVER.MAX_ITER": MAX_ITER, "DATASETS.TEST": "()"})
    return [sys.executable, str(driver), *flags, *map(str, opts)]


def _env(sleep=0.0):
    env = dict(os.environ)
    env.update(
        TOY_TESTS_DIR=str(TESTS_DIR),
        TOY_TRAIN_NET=str(TRAIN_NET),
        TOY_STEP_SLEEP=str(sleep),
        OMP_NUM_THREADS="1",
    )
    return env


def _final_weights(output_dir):
    return torch.load(output_dir / "model_final.pth", weights_only=True)["model"]


def _run(cmd, env):
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_killed_run_resumes_to_identical_weights(tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    straight, broken = tmp_path / "straight", tmp_path / "broken"

    _run(_command(driver, straight), _env())

    proc = subprocess.Popen(
        _command(driver, broken),
        env=_env(sleep=0.15),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    tag = broken / "last_checkpoint"
    deadline = time.monotonic() + 240
    try:
        while not tag.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tag.exists(), "the run wrote no checkpoint before the deadline or exited"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = tag.read_text()
    assert killed_at != "model_final.pth", "the run finished before it was killed"
    assert not (broken / "model_final.pth").exists()

    log = _run(_command(driver, broken, "--resume"), _env())
    resumed_from = int(killed_at.split("_")[1].split(".")[0]) + 1
    assert f"Resuming training at iteration {resumed_from}" in log

    expected, actual = _final_weights(straight), _final_weights(broken)
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key
