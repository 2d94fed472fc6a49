#!/usr/bin/env python
"""Draw several shape hypotheses of an OptimizeMVS model for one image, side by side in a PNG.

    python tools/sample_hypotheses.py --config-file configs/synthetic/optimize_mvs_stage2.yaml \
        --dataset synthetic_shapenet_test_multiview --index 0 --view 0 --num 4 \
        --output hypotheses.png MODEL.WEIGHTS output/synthetic_optimize_mvs_stage2/model_final.pth

The view comes from a registered multi-view dataset (mapped as in evaluation). Each column is
one random input r: the top row is the cloud seen from the input camera, the bottom row the same
cloud seen from the side (``meshrecon.utils.point_hypotheses``).
"""

from __future__ import annotations

import argparse
import sys

import meshrecon.data  # noqa: F401  (registers the dataset catalog)
import meshrecon.data.datasets  # noqa: F401  (registers the built-in datasets)
import meshrecon.modeling  # noqa: F401  (registers the models)
from meshrecon.checkpoint import Checkpointer
from meshrecon.config import get_cfg
from meshrecon.data import DatasetCatalog
from meshrecon.data.mapper_registry import build_mapper
from meshrecon.modeling import build_model
from meshrecon.utils.point_hypotheses import render_hypotheses, sample_hypotheses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--dataset", default="synthetic_shapenet_test_multiview")
    parser.add_argument("--index", type=int, default=0, help="object of the dataset")
    parser.add_argument("--view", type=int, default=0, help="view of that object")
    parser.add_argument("--num", type=int, default=4, help="hypotheses (draws of r)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", required=True, help="PNG to write")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config KEY VALUE overrides")
    args = parser.parse_args(argv)
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts or [])
    records = DatasetCatalog.get(args.dataset)
    if not 0 <= args.index < len(records):
        parser.error(f"--index {args.index} out of range: {args.dataset} has {len(records)} items")
    cfg.defrost()
    cfg.INPUT.MULTIVIEW.NUM_VIEWS = max(cfg.INPUT.MULTIVIEW.NUM_VIEWS, args.view + 1)
    item = build_mapper(cfg, False, [args.dataset])(records[args.index])
    if args.view >= len(item["images"]):
        parser.error(f"--view {args.view}: the object has {len(item['images'])} views")
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        Checkpointer(model).load(cfg.MODEL.WEIGHTS)
    image = item["images"][args.view]
    clouds = sample_hypotheses(model, image, num=args.num, seed=args.seed)
    rgb = image if cfg.INPUT.FORMAT == "RGB" else image.flip(0)
    path = render_hypotheses(clouds, args.output, image=rgb)
    print(f"{item['image_id']} view {args.view}: {args.num} hypotheses -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
