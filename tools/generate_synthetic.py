#!/usr/bin/env python
"""Generate the synthetic splits ahead of training and report what each one costs.

    python tools/generate_synthetic.py                      # every split at SCALE 1
    python tools/generate_synthetic.py --scale 3 --kinds shapenet --splits train
    python tools/generate_synthetic.py --scale 3 --root /tmp/ds --json sizes.json

Splits already in the cache are not generated again (their time shows as 0). The table gives,
per split, the records, the generation time (wall clock, and the CPU time of this process, the
figure to trust on a machine shared with other work) and the size on disk, so the cost of a
larger synthetic world (``DATASETS.SYNTHETIC.SCALE``) can be read before choosing it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from meshrecon.data.datasets.synthetic import (  # noqa: E402
    SPLITS,
    ensure_generated,
    read_split,
    synthetic_config_from_env,
)


def folder_bytes(folder: str) -> int:
    """Total size of the regular files under ``folder``."""
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            total += os.path.getsize(os.path.join(dirpath, name))
    return total


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=None, help="DATASETS.SYNTHETIC.SCALE")
    parser.add_argument(
        "--train-scale", type=float, default=None, help="DATASETS.SYNTHETIC.TRAIN_SCALE"
    )
    parser.add_argument("--seed", type=int, default=None, help="DATASETS.SYNTHETIC.SEED")
    parser.add_argument("--root", default=None, help="datasets root (default: as training)")
    parser.add_argument("--kinds", default=",".join(SPLITS), help="comma-separated kinds")
    parser.add_argument("--splits", default="train,val,test", help="comma-separated splits")
    parser.add_argument("--json", default="", help="also write the table to this JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    changes = {
        k: v
        for k, v in (
            ("scale", args.scale),
            ("train_scale", args.train_scale),
            ("seed", args.seed),
            ("root", args.root),
        )
        if v is not None
    }
    config = dataclasses.replace(synthetic_config_from_env(), **changes)
    kinds = [k for k in args.kinds.split(",") if k]
    for kind in kinds:
        if kind not in SPLITS:
            parser.error(f"--kinds: unknown kind {kind!r}; known: {', '.join(SPLITS)}")
    rows = []
    for kind in kinds:
        for split in [s for s in args.splits.split(",") if s in SPLITS[kind]]:
            start, cpu_start = time.perf_counter(), time.process_time()
            folder = ensure_generated(kind, split, config)
            seconds = time.perf_counter() - start
            cpu_seconds = time.process_time() - cpu_start
            records, _ = read_split(folder)
            rows.append(
                {
                    "split": f"synthetic_{kind}_{split}",
                    "records": len(records),
                    "seconds": round(seconds, 1),
                    "cpu_seconds": round(cpu_seconds, 1),
                    "megabytes": round(folder_bytes(folder) / 1e6, 1),
                    "folder": folder,
                }
            )
    print(f"\nscale {config.scale}, train scale {config.train_scale}, seed {config.seed}")
    print(f"{'split':<28}{'records':>9}{'wall (s)':>10}{'CPU (s)':>10}{'disk (MB)':>11}")
    total = {"split": "total"}
    for key in ("records", "seconds", "cpu_seconds", "megabytes"):
        total[key] = sum(r[key] for r in rows)
    for r in [*rows, total]:
        print(
            f"{r['split']:<28}{r['records']:>9}{r['seconds']:>10.1f}{r['cpu_seconds']:>10.1f}"
            f"{r['megabytes']:>11.1f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"scale": config.scale, "seed": config.seed, "splits": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
