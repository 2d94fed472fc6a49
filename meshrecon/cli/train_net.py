#!/usr/bin/env python
"""Train or evaluate a meshrecon model from a config file.

    python tools/train_net.py --config-file configs/X.yaml                 # train
    python tools/train_net.py --config-file configs/X.yaml --resume        # continue a run
    python tools/train_net.py --config-file configs/X.yaml --eval-only MODEL.WEIGHTS model.pth
    python tools/train_net.py --config-file configs/X.yaml --num-gpus 2 SOLVER.BASE_LR 0.01

``--num-gpus N`` starts N processes (one per GPU; on a machine without CUDA, N CPU processes
that train together over gloo). Trailing ``KEY VALUE`` pairs override the config.

Several machines, with the built-in launcher (the same command on each, its own machine rank):

    python tools/train_net.py --num-gpus 8 --num-machines 2 --machine-rank 0 \
        --dist-url tcp://HOST0:PORT --config-file configs/X.yaml         # on machine 0
    python tools/train_net.py --num-gpus 8 --num-machines 2 --machine-rank 1 \
        --dist-url tcp://HOST0:PORT --config-file configs/X.yaml         # on machine 1

or with torchrun, which starts the processes itself (this script then spawns none):

    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST0:PORT \
        --rdzv-id JOB tools/train_net.py --config-file configs/X.yaml    # on every machine
"""

from __future__ import annotations

import importlib
import logging
from datetime import timedelta
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


def invoke_main(argv: list[str] | None = None) -> None:
    args = default_argument_parser().parse_args(argv)
    print("Command line arguments:", args)
    # Under torchrun (RANK/WORLD_SIZE set) launch joins torchrun's processes instead of
    # spawning its own.
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
        join_timeout=timedelta(minutes=args.dist_timeout),
    )


if __name__ == "__main__":
    invoke_main()
