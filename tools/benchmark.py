#!/usr/bin/env python
"""Run meshrecon's benchmarks and print a table.

    python tools/benchmark.py ops                  # every op, on CPU and on CUDA when present
    python tools/benchmark.py ops --filter chamfer --device cpu
    python tools/benchmark.py ops --markdown bench.md

Cases live in ``tests/benchmarks/bm_*.py`` (see its README). Each case runs in a fresh process,
so that its peak-memory figure is its own and one case's caches do not speed up the next.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent / "tests" / "benchmarks"


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suite", nargs="?", default="ops", help="benchmark suite, e.g. 'ops'")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument("--filter", default="", help="only cases whose op name contains this")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--markdown", default="", help="also write the table to this file")
    parser.add_argument(
        "--run-one", nargs=3, metavar=("FILE", "INDEX", "DEVICE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)

    if args.run_one:
        path, index, device = args.run_one
        _run_one(path, int(index), device, args.threads or None)
        return 0

    import torch

    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        devices.remove("cuda")
        print("CUDA is not available: CPU only.", file=sys.stderr)
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
