"""``meshrecon train`` / ``meshrecon eval``: train or evaluate a model from a config.

    meshrecon train --config-file synthetic/voxmesh.yaml                # a shipped config
    meshrecon train --config-file my.yaml --resume                      # continue a run
    meshrecon train --config-file my.yaml --no-eval SOLVER.MAX_ITER 100 # no evaluation at the end
    meshrecon eval --config-file my.yaml MODEL.WEIGHTS model.pth        # = train --eval-only
    meshrecon train --config-file my.yaml --num-gpus 2 SOLVER.BASE_LR 0.01

``--num-gpus N`` starts N processes (one per GPU; on a machine without CUDA, N CPU processes
that train together over gloo). Trailing ``KEY VALUE`` pairs override the config.

Several machines, with the built-in launcher (the same command on each, its own machine rank):

    meshrecon train --num-gpus 8 --num-machines 2 --machine-rank 0 \
        --dist-url tcp://HOST0:PORT --config-file X.yaml                 # on machine 0
    meshrecon train --num-gpus 8 --num-machines 2 --machine-rank 1 \
        --dist-url tcp://HOST0:PORT --config-file X.yaml                 # on machine 1

or with torchrun, which starts the processes itself (this command then spawns none):

    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST0:PORT \
        --rdzv-id JOB -m meshrecon train --config-file X.yaml            # on every machine

In a clone, ``python tools/train_net.py ARGS`` is the same command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
from datetime import timedelta
from typing import Any

import meshrecon.data  # noqa: F401  (registers the dataset catalog)
import meshrecon.modeling  # noqa: F401  (importing the models registers them)
from meshrecon.checkpoint import Checkpointer
from meshrecon.cli.common import CONFIG_FILE_HELP, resolve_config_file
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


_EPILOG = """\
what it writes, into OUTPUT_DIR (the config's, e.g. ./output/synthetic_voxmesh for
synthetic/voxmesh.yaml; put OUTPUT_DIR DIR at the end to choose another):
  config.yaml                      the full config of the run
  log.txt                          the log (log.txt.rank<r>: the other processes' logs)
  metrics.json, events.out.tfevents.*   losses and metrics per iteration (JSON lines;
                                   TensorBoard)
  model_<iter>.pth, model_final.pth, last_checkpoint   checkpoints (every
                                   SOLVER.CHECKPOINT_PERIOD iterations and at the end)
  inference/<dataset>/results.json  the metrics of each evaluation (plus the evaluator's
                                   own files, e.g. shapenet_results.txt)

evaluation: a training ends with an evaluation on each dataset of DATASETS.TEST (and runs
one every TEST.EVAL_PERIOD iterations when that is > 0 and there is no DATASETS.VAL); on the
full synthetic test split that takes minutes. --no-eval skips them (it sets
TEST.EVAL_AFTER_TRAIN False, and TEST.EVAL_PERIOD 0 when there is no validation split; a
validation on DATASETS.VAL still runs); 'meshrecon eval' (--eval-only) evaluates
MODEL.WEIGHTS alone.

data: the synthetic datasets are generated on first use and cached under
$MESHRECON_DATASETS/synthetic (default ./datasets), one folder per generator version and
sizes (DATASETS.SYNTHETIC.*): the log says when a split is generated and why.
"""

# The overrides --no-eval stands for.
NO_EVAL_OPTS = ["TEST.EVAL_AFTER_TRAIN", "False", "TEST.EVAL_PERIOD", "0"]


def build_parser(epilog: str = _EPILOG) -> argparse.ArgumentParser:
    """Return the parser of ``meshrecon train`` / ``eval``: Detectron2's, plus ``--no-eval``."""
    parser = default_argument_parser(epilog=epilog)
    parser.description = "Train a model from a config, or evaluate one (--eval-only)."
    parser._option_string_actions["--config-file"].help = CONFIG_FILE_HELP
    parser._option_string_actions["--eval-only"].help = (
        "only evaluate MODEL.WEIGHTS on DATASETS.TEST (writes inference/<dataset>/ in "
        "OUTPUT_DIR); with --resume, the last checkpoint of OUTPUT_DIR instead"
    )
    parser.add_argument(
        "--no-eval",
        action="store_true",
        help="train without evaluating on DATASETS.TEST, neither periodically nor at the end "
        "(TEST.EVAL_AFTER_TRAIN False, and TEST.EVAL_PERIOD 0 without a DATASETS.VAL)",
    )
    return parser


def setup(args) -> Any:
    """Build the frozen config from ``args`` and prepare the run (logging, output dir, seed)."""
    cfg = get_cfg()
    if args.config_file:
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts or [])
    if getattr(args, "no_eval", False):
        # With a validation split the test splits are only evaluated after training, and
        # TEST.EVAL_PERIOD paces the validation (which picks the best checkpoint): kept.
        cfg.merge_from_list(NO_EVAL_OPTS if not len(cfg.DATASETS.VAL) else NO_EVAL_OPTS[:2])
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def _log_evaluation_plan(cfg) -> None:
    """Say before training what evaluation will follow, and how to skip it."""
    names = ", ".join(cfg.DATASETS.TEST)
    period = 0 if len(cfg.DATASETS.VAL) else cfg.TEST.EVAL_PERIOD  # as DefaultTrainer's hooks
    if not names:
        logger.info("No evaluation: DATASETS.TEST is empty")
    elif cfg.TEST.EVAL_AFTER_TRAIN or period > 0:
        when = "after training" if cfg.TEST.EVAL_AFTER_TRAIN else ""
        if period > 0:
            when = f"every {period} iterations" + (f" and {when}" if when else "")
        logger.info("Evaluation on %s %s (--no-eval skips it)", names, when)
    else:
        logger.info(
            "No evaluation during or after training (TEST.EVAL_AFTER_TRAIN False, "
            "TEST.EVAL_PERIOD 0); evaluate later with: meshrecon eval --config-file %s "
            "MODEL.WEIGHTS %s",
            os.path.join(cfg.OUTPUT_DIR, "config.yaml"),
            os.path.join(cfg.OUTPUT_DIR, "model_final.pth"),
        )


def main(args) -> dict | None:
    """Train, or with ``--eval-only`` evaluate ``MODEL.WEIGHTS``; return the evaluation results.

    Runs in every process (``launch`` calls it); ``args`` is the parsed command line.
    """
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
    _log_evaluation_plan(cfg)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def invoke_main(argv: list[str] | None = None) -> None:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run :func:`main` in every process."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.eval_only and args.no_eval:
        parser.error("--eval-only and --no-eval contradict each other")
    if args.config_file:
        try:
            args.config_file = resolve_config_file(args.config_file)
        except FileNotFoundError as err:
            parser.error(str(err))
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
