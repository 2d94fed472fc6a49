"""Export a model for deployment: ``meshrecon export`` (and ``tools/export_model.py``).

    meshrecon export --config-file synthetic/voxmesh.yaml \\
        --format torch.export --output exported/voxmesh \\
        MODEL.WEIGHTS output/synthetic_voxmesh/model_final.pth

Builds the model from the config, loads ``MODEL.WEIGHTS``, exports every program of it
(:func:`meshrecon.export.export_model`) into ``--output``, checks each against eager mode on
random inputs of another batch size, and prints a summary. Exit status 0 on success.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from meshrecon.cli.common import CONFIG_FILE_HELP, resolve_config_file

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Export a meshrecon model with torch.export (.pt2) or ONNX (.onnx): one "
        "file per program and export_info.json in --output.",
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help=CONFIG_FILE_HELP)
    parser.add_argument(
        "--format",
        default="torch.export",
        choices=["torch.export", "onnx"],
        help="torch.export: .pt2 programs (torch.export.load); onnx: .onnx files",
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="folder of the files")
    parser.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="size of the sample images (default: 137 x 137 for single-view models, "
        "INPUT.DEPTH.BASE_SIZE for depth, MIN_SIZE_TEST x MAX_SIZE_TEST for Mesh R-CNN); "
        "single-view programs keep this size",
    )
    parser.add_argument(
        "--batch-size", type=int, default=2, help="batch of the tracing inputs (>= 2; default 2)"
    )
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="skip the comparison of the exported outputs with eager mode's",
    )
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="config overrides as KEY VALUE pairs, e.g. MODEL.WEIGHTS path/model_final.pth",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the exporter with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch_size < 2:
        raise SystemExit("--batch-size must be >= 2 (a batch of 1 would be fixed in the export)")
    try:
        config_file = resolve_config_file(args.config_file)
    except FileNotFoundError as err:
        parser.error(str(err))
    # Imported here so that --help is instant.
    import torch

    from meshrecon.checkpoint import Checkpointer
    from meshrecon.config import get_cfg
    from meshrecon.export import export_model
    from meshrecon.modeling import build_model

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = get_cfg()
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(args.opts))
    cfg.MODEL.DEVICE = "cpu"  # the exported programs are traced and checked on the CPU
    # channels_last (the CPU default of GeneralizedRCNN) cannot be traced with a symbolic
    # image size; the exported programs are layout-neutral.
    cfg.MODEL.MEMORY_FORMAT = "contiguous"
    cfg.freeze()
    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        Checkpointer(model).load(cfg.MODEL.WEIGHTS)
    else:
        logging.getLogger(__name__).warning("MODEL.WEIGHTS is empty: exporting random weights")
    model.eval()
    with torch.no_grad():
        info = export_model(
            model,
            cfg,
            args.output,
            args.format,
            image_size=args.image_size,
            batch_size=args.batch_size,
            check_batch_size=args.batch_size + 1,
            check=not args.no_check,
            extra_info={"config_file": args.config_file},
        )
    summary = {
        name: {k: entry.get(k) for k in ("file", "max_abs_diff", "check") if k in entry}
        for name, entry in info["programs"].items()
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
