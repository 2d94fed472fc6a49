#!/usr/bin/env python
"""Run meshrecon's benchmarks and print a table.

    python tools/benchmark.py ops                  # every op, on CPU and on CUDA when present
    python tools/benchmark.py ops --filter chamfer --device cpu
    python tools/benchmark.py ops --markdown bench.md
    python tools/benchmark.py train                # training throughput of configs/synthetic/*
    python tools/benchmark.py train --filter mesh --steps 30 --threads 2
    python tools/benchmark.py train --baseline ../old-checkout --rounds 2   # before / after

Cases live in ``tests/benchmarks/bm_*.py`` (see its README). Each case runs in a fresh process,
so that its peak-memory figure is its own and one case's caches do not speed up the next.

``train`` measures every ``configs/synthetic/`` config (``--filter`` picks by name) in a fresh
process each: images per second over ``--steps`` training steps after ``--warmup`` steps, and
the milliseconds per step of each stage (data, backbone, heads, losses, backward, optimizer;
see ``tools/train_throughput.py`` for what each holds and how it is timed). ``--baseline DIR``
also runs each config with the meshrecon checkout in DIR (its own config files), alternating
the two checkouts over ``--rounds`` rounds, and prints images/s before and after as ratios,
with the ratio of the training process's CPU time per image beside them (on a machine shared
with other jobs the wall time follows their load; the CPU time far less).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "tests" / "benchmarks"
SYNTHETIC_CONFIGS = Path("configs") / "synthetic"


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _bench_files(suite: str) -> list[Path]:
    files = []
    for path in sorted(BENCH_DIR.glob("bm_*.py")):
        # Reading SUITE from the source avoids importing every benchmark's dependencies here.
        text = path.read_text()
        if f'SUITE = "{suite}"' in text:
            files.append(path)
    return files


def _run_one(path: str, index: int, device: str, threads: int | None) -> None:
    import torch

    from meshrecon.utils.benchmark import run_case

    if threads:
        torch.set_num_threads(threads)
    case = _load(Path(path)).CASES[index]
    result = run_case(case, torch.device(device))
    print("RESULT " + json.dumps(dataclasses.asdict(result)))


def _fmt(ms: float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def _ratio(result: dict) -> str:
    ref = result["reference_ms"]
    parts = []
    for mode, key in (("fwd", "fwd_ms"), ("fwd+bwd", "fwd_bwd_ms")):
        if mode in ref and result[key]:
            parts.append(f"{ref[mode] / result[key]:.1f}x vs {ref[mode]:.0f} ms ({mode})")
    return "; ".join(parts) or "-"


def format_table(results: list[dict]) -> str:
    header = ["op", "size", "device", "fwd ms", "fwd+bwd ms", "peak MB", "speed vs reference"]
    rows = [
        [
            r["op"],
            r["size"],
            r["device"],
            _fmt(r["fwd_ms"]),
            _fmt(r["fwd_bwd_ms"]),
            f"{r['peak_mb']:.0f}",
            _ratio(r),
        ]
        for r in results
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------ train: training throughput
def _train_module():
    name = "meshrecon_train_throughput"
    if name not in sys.modules:  # registered: its dataclasses look their module up by name
        path = Path(__file__).resolve().with_name("train_throughput.py")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _train_configs(tree: Path, name_filter: str) -> list[str]:
    """Names of the trainable synthetic configs of a checkout (``Base-*`` files excluded, and
    the Oracle NN baselines: they read the ground truth and train nothing)."""
    folder = tree / SYNTHETIC_CONFIGS
    skip = ("Base-", "oracle_nn")
    names = sorted(p.stem for p in folder.glob("*.yaml") if not p.stem.startswith(skip))
    return [n for n in names if name_filter in n]


def _run_train_one(config: str, device: str, args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    result = _train_module().measure_config(
        config,
        device=device,
        steps=args.steps,
        warmup=args.warmup,
        opts=args.opts or [],
        toy=args.toy,
        start_iter=args.start_iter,
        label=args.label,
    )
    print("RESULT " + json.dumps(result.to_dict()))


def _spawn_train(tree: Path, name: str, device: str, args: argparse.Namespace, label: str):
    """Measure config ``name`` of checkout ``tree`` in a fresh process; None if it failed."""
    tt = _train_module()
    cmd = [sys.executable, __file__, "--run-train", str(tree / SYNTHETIC_CONFIGS / f"{name}.yaml")]
    cmd += [device, "--steps", str(args.steps), "--warmup", str(args.warmup), "--label", label]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.toy:
        cmd.append("--toy")
    if args.start_iter is not None:
        cmd += ["--start-iter", str(args.start_iter)]
    if args.opts:
        cmd += ["--opts", *args.opts]
    # The checkout measured comes first on the path, whatever meshrecon is installed.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH", "")]))
    print(f"running {name} on {device}{f' ({label})' if label else ''} ...", file=sys.stderr)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tree)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        print(f"  FAILED (exit {proc.returncode}):\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    fields = json.loads(lines[-1][len("RESULT ") :])
    fields.pop("images_per_s")
    fields.pop("other_s")
    return tt.TrainThroughput(**fields)


def _main_train(args: argparse.Namespace, devices: list[str]) -> int:
    tt = _train_module()
    names = _train_configs(REPO, args.filter)
    if not names:
        print(f"no config in {REPO / SYNTHETIC_CONFIGS} matches {args.filter!r}", file=sys.stderr)
        return 2
    baseline = Path(args.baseline).resolve() if args.baseline else None
    if baseline is not None and not (baseline / "meshrecon").is_dir():
        print(f"--baseline {baseline} is not a meshrecon checkout", file=sys.stderr)
        return 2
    results, pairs, failed = [], [], []
    for device in devices:
        for name in names:
            if baseline is None:
                result = _spawn_train(REPO, name, device, args, "")
                results += [result] if result else []
                failed += [] if result else [name]
                continue
            if not (baseline / SYNTHETIC_CONFIGS / f"{name}.yaml").is_file():
                print(f"{name}: not in the baseline checkout, skipped", file=sys.stderr)
                continue
            runs: dict[str, list] = {"before": [], "after": []}
            for r in range(args.rounds):
                # Alternate which checkout goes first, so that a drifting machine load does not
                # favour one of them.
                order = [("before", baseline), ("after", REPO)]
                for label, tree in order if r % 2 == 0 else order[::-1]:
                    result = _spawn_train(tree, name, device, args, label)
                    if result is not None:
                        runs[label].append(result)
                        results.append(result)
            if runs["before"] and runs["after"]:
                label = f"{name} ({device})" if len(devices) > 1 else name
                pairs.append((label, runs["before"], runs["after"]))
            else:
                failed.append(name)

    import torch

    threads = args.threads or torch.get_num_threads()
    print(f"\ntrain throughput: torch {torch.__version__}, {threads} CPU threads")
    table = tt.format_table(results)
    print(table)
    if pairs:
        comparison = tt.format_comparison(pairs)
        print(
            f"\nimages/s before ({baseline}) and after ({REPO}), median of {args.rounds}; "
            "CPU time ratio: the training process's CPU seconds per image, before / after:"
        )
        print(comparison)
        table += "\n\n" + comparison
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps([r.to_dict() for r in results], indent=1) + "\n")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "suite", nargs="?", default="ops", help="benchmark suite, e.g. 'ops', or 'train'"
    )
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument(
        "--filter", default="", help="only cases (train: configs) whose name contains this"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--markdown", default="", help="also write the table to this file")
    train = parser.add_argument_group("train")
    train.add_argument("--steps", type=int, default=20, help="timed training steps per config")
    train.add_argument("--warmup", type=int, default=3, help="untimed steps before them")
    train.add_argument("--toy", action="store_true", help="tiny data and batches (tests)")
    train.add_argument(
        "--start-iter",
        type=int,
        default=None,
        help="the iteration the steps start at (default: each config's SOLVER.MAX_ITER // 2); "
        "e.g. 0 times VoxMesh's voxel-only steps, 100000 its full steps, whatever the schedule",
    )
    train.add_argument("--baseline", default="", help="also measure this meshrecon checkout")
    train.add_argument("--rounds", type=int, default=1, help="with --baseline: rounds of both")
    train.add_argument("--json", default="", help="also write every measurement to this file")
    train.add_argument(
        "--opts", nargs=argparse.REMAINDER, default=[], help="config overrides: KEY VALUE ..."
    )
    parser.add_argument(
        "--run-one", nargs=3, metavar=("FILE", "INDEX", "DEVICE"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--run-train", nargs=2, metavar=("CONFIG", "DEVICE"), help=argparse.SUPPRESS
    )
    parser.add_argument("--label", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.run_one:
        path, index, device = args.run_one
        _run_one(path, int(index), device, args.threads or None)
        return 0
    if args.run_train:
        _run_train_one(args.run_train[0], args.run_train[1], args)
        return 0

    import torch

    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        devices.remove("cuda")
        print("CUDA is not available: CPU only.", file=sys.stderr)
    if args.suite == "train":
        return _main_train(args, devices)
    files = _bench_files(args.suite)
    if not files:
        print(f"no benchmark files with SUITE = {args.suite!r} in {BENCH_DIR}", file=sys.stderr)
        return 2

    results = []
    for path in files:
        cases = _load(path).CASES
        for index, case in enumerate(cases):
            if args.filter and args.filter not in case.op:
                continue
            for device in devices:
                if device not in case.devices:
                    continue
                cmd = [sys.executable, __file__, "--run-one", str(path), str(index), device]
                if args.threads:
                    cmd += ["--threads", str(args.threads)]
                print(f"running {case.op} [{case.size}] on {device} ...", file=sys.stderr)
                proc = subprocess.run(cmd, capture_output=True, text=True)
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                if proc.returncode != 0 or not lines:
                    print(
                        f"  FAILED (exit {proc.returncode}):\n{proc.stderr[-2000:]}",
                        file=sys.stderr,
                    )
                    continue
                results.append(json.loads(lines[-1][len("RESULT ") :]))

    table = format_table(results)
    print(f"\nsuite {args.suite}: torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
