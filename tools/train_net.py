#!/usr/bin/env python
"""Train or evaluate a meshrecon model from a config file.

    python tools/train_net.py --config-file configs/X.yaml                 # train
    python tools/train_net.py --config-file configs/X.yaml --resume        # continue a run
    python tools/train_net.py --config-file configs/X.yaml --eval-only MODEL.WEIGHTS model.pth
    python tools/train_net.py --config-file configs/X.yaml --num-gpus 2 SOLVER.BASE_LR 0.01

``--num-gpus N`` starts N processes (one per GPU; on a machine without CUDA, N CPU processes
that train together over gloo). Trailing ``KEY VALUE`` pairs override the config.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import meshrecon.data  # noqa: F401  (registers the dataset catalog)
import meshrecon.modeling  # noqa: F401  (importing the models registers them)
from meshrecon.checkpoint import Checkpointer
from meshrecon.config import get_cfg
from meshrecon.engine import DefaultTrainer, default_argument_parser, default_setup, launch
from meshrecon.evaluation import verify_results
from meshrecon.utils import comm

logger = logging.getLogger("meshrecon.train_net")

# Modules that register built-in datasets and evaluators when they exist in this version.
_OPTIONAL_REGISTRATIONS = ("meshrecon.data.datasets",)


def _import_optional_registrations() -> None:
    for name in _OPTIONAL_REGISTRATIONS:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:  # the module exists but one of its imports is missing
                raise


class Trainer(DefaultTrainer):
    """The trainer of this script; evaluators come from each test dataset's metadata."""


def setup(args) -> Any:
    """Build the frozen config from ``args`` and prepare the run (logging, output dir, seed)."""
    cfg = get_cfg()
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts or [])
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def main(args) -> dict | None:
    """Train, or with ``--eval-only`` evaluate ``MODEL.WEIGHTS``; return the evaluation results."""
    _import_optional_registrations()
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        Checkpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        results = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, results)
        return results
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def invoke_main() -> None:
    args = default_argument_parser().parse_args()
    print("Command line arguments:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    invoke_main()
