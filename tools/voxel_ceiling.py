#!/usr/bin/env python
"""What a perfect voxel branch would score: cubify the ground-truth voxels, no refinement.

    python tools/voxel_ceiling.py --config-file configs/synthetic/voxmesh.yaml --sizes 24,32,48
    python tools/voxel_ceiling.py --config-file configs/synthetic/voxmesh.yaml \\
        --aligns center,topleft DATASETS.SYNTHETIC.SHAPENET_VIEWS 6

Prints one row per (grid size, CUBIFY_ALIGN) with the config's evaluator's figures (Mesh
R-CNN's protocol: F1@0.3 and Chamfer-L2 after scaling the ground truth's longest side to 10).
See :mod:`meshrecon.apps.voxel_ceiling`.
"""

from __future__ import annotations

import argparse
import sys


def _flat(results: dict, protocol: str, key: str) -> float:
    value = results.get(protocol, {}).get(key)
    return float("nan") if value is None else float(value)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config-file", required=True, help="a VoxMesh config")
    p.add_argument("--sizes", default="", help="grid sizes, e.g. 24,32,48 (default: the config's)")
    p.add_argument(
        "--aligns",
        default="",
        help="CUBIFY_ALIGN values, e.g. center,topleft (default: the config's)",
    )
    p.add_argument("--dataset", default="", help="split to score (default: DATASETS.TEST[0])")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = p.parse_args(argv)

    from meshrecon.apps.voxel_ceiling import voxel_ceiling
    from meshrecon.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.OUTPUT_DIR = cfg.OUTPUT_DIR.rstrip("/") + "_voxel_ceiling"
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        p.error(f"--sizes takes comma-separated integers, got {args.sizes!r}")
    sizes = sizes or [int(cfg.MODEL.VOXEL_HEAD.VOXEL_SIZE)]
    aligns = [a.strip() for a in args.aligns.split(",") if a.strip()] or [""]
    rows = voxel_ceiling(cfg, sizes, aligns, dataset=args.dataset)
    print("\n| grid | CUBIFY_ALIGN | F1@0.3 | F1@0.1 | Chamfer-L2 | precision@0.3 | recall@0.3 |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        r = row["results"]
        print(
            f"| {row['size']}^3 | {row['align']} | {_flat(r, 'shapenet', 'F1@0.300000'):.1f} "
            f"| {_flat(r, 'shapenet', 'F1@0.100000'):.1f} "
            f"| {_flat(r, 'shapenet', 'Chamfer-L2'):.3f} "
            f"| {_flat(r, 'shapenet', 'Precision@0.300000'):.1f} "
            f"| {_flat(r, 'shapenet', 'Recall@0.300000'):.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
