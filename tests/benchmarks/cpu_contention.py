#!/usr/bin/env python
"""Evaluation speed on a shared CPU: thread settings side by side, without and with a competitor.

    python tests/benchmarks/cpu_contention.py --images 12 --rounds 3

Not a ``bm_*`` case of ``tools/benchmark.py``: each measurement is its own process, started
with the environment of one setting (``OMP_NUM_THREADS``, ``OMP_WAIT_POLICY``). The process
evaluates the synthetic VoxMesh config (random weights, the toy-size test split) the way
``DefaultTrainer.test`` does (test loader with its worker, model, ShapeNet evaluator with
10k samples per surface) and reports images per second after a warm-up. Every setting runs
once per round, in turn, first alone and then beside one busy-looping process (another
CPU-bound job taking a core), so that all settings see the same background load; the table
gives the median over rounds and the ratio loaded / alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

# name -> environment of the measured process ("" removes the variable).
SETTINGS: dict[str, dict[str, str]] = {
    "torch default (2 threads, libgomp spins)": {"OMP_NUM_THREADS": "", "OMP_WAIT_POLICY": ""},
    "2 threads, OMP_WAIT_POLICY=PASSIVE": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"},
    "1 thread": {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": ""},
    "1 thread, OMP_WAIT_POLICY=PASSIVE": {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"},
}

_OPTS = [
    "DATASETS.SYNTHETIC.SCALE", "0.02",
    "DATASETS.SYNTHETIC.SHAPENET_VIEWS", "3",
    "MODEL.DEVICE", "cpu",
]  # fmt: skip


def _child(args: argparse.Namespace) -> None:
    import torch

    import meshrecon.data.datasets  # noqa: F401  (registers the synthetic splits)
    import meshrecon.modeling  # noqa: F401
    from meshrecon.data.datasets import configure_synthetic
    from meshrecon.engine import DefaultTrainer
    from meshrecon.evaluation.evaluator import inference_context
    from meshrecon.model_zoo import get_config
    from meshrecon.modeling import build_model

    cfg = get_config("synthetic/voxmesh.yaml")
    cfg.merge_from_list(_OPTS + ["OUTPUT_DIR", args.workdir])
    configure_synthetic(cfg)
    torch.manual_seed(0)
    model = build_model(cfg)
    loader = DefaultTrainer.build_test_loader(cfg, cfg.DATASETS.TEST[0])
    evaluator = DefaultTrainer.build_evaluator(cfg, cfg.DATASETS.TEST[0])
    evaluator.reset()
    warmup, timed, start = 2, 0, None
    with inference_context(model), torch.no_grad():
        for i, inputs in enumerate(loader):
            if i == warmup:
                start = time.perf_counter()
            evaluator.process(inputs, model(inputs))
            if i >= warmup:
                timed += len(inputs)
            if timed >= args.images:
                break
    elapsed = time.perf_counter() - start
    print(json.dumps({"images": timed, "seconds": elapsed, "threads": torch.get_num_threads()}))


def _run(setting: dict[str, str], workdir: str, images: int) -> float:
    env = dict(os.environ)
    for key, value in setting.items():
        if value:
            env[key] = value
        else:
            env.pop(key, None)
    cmd = [sys.executable, __file__, "--child", "--images", str(images), "--workdir", workdir]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result["images"] / result["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=12, help="timed images per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    workdir = tempfile.mkdtemp(prefix="cpu_contention_")
    # Generate the toy split once, outside the timings.
    _run(SETTINGS[next(iter(SETTINGS))], workdir, 1)
    speeds: dict[tuple[str, bool], list[float]] = {}
    for r in range(args.rounds):
        for loaded in (False, True):
            for name, setting in SETTINGS.items():
                hog = None
                if loaded:
                    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
                try:
                    speed = _run(setting, workdir, args.images)
                finally:
                    if hog is not None:
                        hog.kill()
                        hog.wait()
                speeds.setdefault((name, loaded), []).append(speed)
                print(f"round {r + 1} {'loaded' if loaded else 'alone '} {name}: {speed:.2f} img/s")
    print(f"\n{os.cpu_count()} CPUs, load average before the table: {os.getloadavg()[0]:.1f}")
    print("| setting | alone (img/s) | beside one busy process (img/s) | loaded / alone |")
    print("|---|---|---|---|")
    for name in SETTINGS:
        alone = statistics.median(speeds[(name, False)])
        busy = statistics.median(speeds[(name, True)])
        print(f"| {name} | {alone:.2f} | {busy:.2f} | {busy / alone:.2f} |")


if __name__ == "__main__":
    main()
