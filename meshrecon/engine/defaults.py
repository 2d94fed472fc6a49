"""The standard ways to run meshrecon: argument parser, setup, trainer, predictor.

``DefaultTrainer`` and ``DefaultPredictor`` encode the usual choices; for others, subclass them
(every ``build_*`` is an overridable classmethod) or assemble the parts yourself.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import weakref
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from iopath.common.file_io import PathManager as _PathManagerCls
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from meshrecon.data.datasets import configure_synthetic

from ..checkpoint import Checkpointer
from ..config.checks import check_config
from ..data import MetadataCatalog, build_mapper, build_test_loader, build_train_loader
from ..evaluation import (
    DatasetEvaluator,
    DatasetEvaluators,
    inference_on_dataset,
    print_csv_format,
    verify_results,
)
from ..evaluation import build_evaluator as _build_evaluator_from_registry
from ..modeling import build_model
from ..modeling.backbone.pretrained import load_pretrained_backbone
from ..modeling.heads.build import declared_evaluator_type
from ..render.frustum import R2N2_IMAGE_SIZE
from ..solver import (
    apply_scheduled_lr,
    build_gradient_clipper,
    build_lr_scheduler,
    build_optimizer,
)
from ..utils import comm
from ..utils.env import collect_env_info, seed_all_rng
from ..utils.events import (
    CommonMetricPrinter,
    EventWriter,
    JSONWriter,
    TensorboardXWriter,
    WandbWriter,
)
from ..utils.logger import setup_logger
from . import hooks
from .output_lock import OutputDirLock, OutputDirLockedError, acquire_output_dir_lock
from .train_loop import SimpleTrainer, TrainerBase
from .validation import ValidationHook

__all__ = [
    "DefaultPredictor",
    "DefaultTrainer",
    "create_ddp_model",
    "default_argument_parser",
    "default_setup",
    "default_writers",
    "lock_output_dir",
    "restart_lr_schedule",
    "write_results_json",
]

_PATH_MANAGER = _PathManagerCls()
logger = logging.getLogger(__name__)


def default_argument_parser(epilog: str | None = None) -> argparse.ArgumentParser:
    """Return the command-line parser that ``tools/train_net.py`` and similar scripts share."""
    parser = argparse.ArgumentParser(
        epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to a config file")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last checkpoint in OUTPUT_DIR (iteration, optimizer, scheduler, "
        "data order); without it, start from MODEL.WEIGHTS at iteration 0",
    )
    parser.add_argument("--eval-only", action="store_true", help="only evaluate MODEL.WEIGHTS")
    parser.add_argument(
        "--num-gpus",
        type=int,
        default=1,
        help="processes per machine: one per GPU; on a machine without CUDA, CPU processes "
        "that train together over gloo",
    )
    parser.add_argument("--num-machines", type=int, default=1, help="total number of machines")
    parser.add_argument(
        "--machine-rank", type=int, default=0, help="the rank of this machine (unique per machine)"
    )
    parser.add_argument(
        "--dist-url",
        default="auto",
        help="where the processes meet, e.g. tcp://HOST:PORT of machine 0; 'auto' picks a free "
        "local port (one machine only). Under torchrun, leave --num-gpus, --num-machines, "
        "--machine-rank and --dist-url out: torchrun's environment decides",
    )
    parser.add_argument(
        "--dist-timeout",
        type=float,
        default=30.0,
        metavar="MINUTES",
        help="how long each process waits for all the others at --dist-url before it fails "
        "with an error naming the URL",
    )
    parser.add_argument(
        "opts",
        default=None,
        nargs=argparse.REMAINDER,
        help="config overrides as KEY VALUE pairs, e.g. SOLVER.BASE_LR 0.01",
    )
    return parser


def lock_output_dir(output_dir: str) -> OutputDirLock | None:
    """Take the ``OUTPUT_DIR`` lock in the main process; every process fails if it cannot.

    Returns:
        The main process's handle (None in the others, or without ``output_dir``).

    Raises:
        OutputDirLockedError: another run holds the folder (in every process of the job, so
            that none waits for the others at a later collective).
    """
    handle: OutputDirLock | None = None
    error: OutputDirLockedError | None = None
    if comm.is_main_process() and output_dir:
        try:
            handle = acquire_output_dir_lock(output_dir)
        except OutputDirLockedError as err:
            error = err
    if comm.get_world_size() > 1:
        message = comm.all_gather(str(error) if error is not None else None)[0]
        if message is not None and error is None:
            error = OutputDirLockedError(f"the main process could not lock it: {message}")
    if error is not None:
        raise error
    return handle


def default_setup(cfg, args: argparse.Namespace | None = None) -> None:
    """Prepare a run: config check, output directory and its lock, logging, config dump, seeds.

    The config's values are checked first (:func:`meshrecon.config.checks.check_config`). Rank 0
    creates ``cfg.OUTPUT_DIR``, locks it for this process (see
    :mod:`meshrecon.engine.output_lock`; released at exit) so that a second run in the same
    folder refuses before it writes anything, and writes ``config.yaml`` there. Every process
    seeds its generators with ``cfg.SEED + rank`` (a random seed when ``cfg.SEED < 0``), so that
    ranks draw different random augmentations while a run stays reproducible.
    """
    eval_only = args is not None and getattr(args, "eval_only", False)
    check_config(cfg, training=not eval_only)
    output_dir = cfg.OUTPUT_DIR
    rank = comm.get_rank()
    if comm.is_main_process() and output_dir:
        _PATH_MANAGER.mkdirs(output_dir)
    # Held until the process exits: the whole run (training or evaluation) writes here.
    lock_output_dir(output_dir)
    setup_logger(output_dir or None, distributed_rank=rank, name="fvcore")
    log = setup_logger(output_dir or None, distributed_rank=rank, name="meshrecon")

    log.info("Rank of this process: %d; world size: %d", rank, comm.get_world_size())
    log.info("Environment info:\n%s", collect_env_info())
    if args is not None:
        log.info("Command line arguments: %s", args)
        config_file = getattr(args, "config_file", "")
        if config_file:
            with _PATH_MANAGER.open(config_file) as f:
                log.info("Contents of the config file %s:\n%s", config_file, f.read())

    if comm.is_main_process() and output_dir:
        path = os.path.join(output_dir, "config.yaml")
        with _PATH_MANAGER.open(path, "w") as f:
            f.write(cfg.dump())
        log.info("Full config saved to %s", path)

    seed = seed_all_rng(None if cfg.SEED < 0 else cfg.SEED + rank)
    log.info("Seed of this process: %d", seed)
    # The synthetic splits are registered at import time with the environment's sizes; the run's
    # config decides what is generated and loaded, in every process, before any data is read.
    configure_synthetic(cfg)
    if not (args is not None and getattr(args, "eval_only", False)):
        torch.backends.cudnn.benchmark = bool(cfg.CUDNN_BENCHMARK)
    precision = cfg.get("FLOAT32_PRECISION", "")
    if precision:
        torch.set_float32_matmul_precision(precision)


def default_writers(output_dir: str, max_iter: int | None = None, cfg=None) -> list[EventWriter]:
    """Return the usual writers: console (with ETA), ``metrics.json`` and TensorBoard.

    With a ``cfg`` whose ``WANDB.ENABLED`` is True, the main process also gets a
    :class:`~meshrecon.utils.events.WandbWriter` (the run's config attached, files under
    ``output_dir``).
    """
    _PATH_MANAGER.mkdirs(output_dir)
    writers: list[EventWriter] = [
        CommonMetricPrinter(max_iter),
        JSONWriter(os.path.join(output_dir, "metrics.json")),
        TensorboardXWriter(output_dir),
    ]
    if cfg is not None and cfg.WANDB.ENABLED and comm.is_main_process():
        writers.append(build_wandb_writer(cfg, output_dir))
    return writers


def _plain_config(node: Any) -> Any:
    """A config (``CfgNode``, a dict subclass) as plain nested dicts and lists."""
    if isinstance(node, dict):
        return {str(k): _plain_config(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain_config(v) for v in node]
    return node


def build_wandb_writer(cfg, output_dir: str) -> EventWriter:
    """Return the :class:`~meshrecon.utils.events.WandbWriter` that ``cfg.WANDB`` describes."""
    w = cfg.WANDB
    return WandbWriter(
        w.PROJECT,
        config=_plain_config(cfg),
        name=w.NAME or os.path.basename(os.path.normpath(output_dir)),
        entity=w.ENTITY,
        mode=w.MODE,
        tags=list(w.TAGS),
        log_dir=output_dir,
    )


def _jsonable(value: Any) -> Any:
    """``value`` with tensors / numpy numbers as Python numbers and NaN or inf as None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if torch.is_tensor(value) or isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def write_results_json(results: dict[str, Any] | None, output_dir: str) -> str:
    """Write evaluation results to ``output_dir/results.json``; return the path.

    The file holds the evaluator's nested dict as plain JSON (non-finite numbers as ``null``),
    written atomically, so tools such as ``tools/benchmark_methods.py`` can read a run's final
    metrics without parsing logs.
    """
    _PATH_MANAGER.mkdirs(output_dir)
    path = os.path.join(output_dir, "results.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(_jsonable(results or {}), f, indent=1, allow_nan=False)
    os.replace(tmp, path)
    return path


def restart_lr_schedule(scheduler: Any, schedule: dict[str, Any], iteration: int) -> None:
    """Put ``scheduler`` at ``iteration`` of ``schedule`` (a ``state_dict()`` of it).

    Used when a resumed run counts iterations differently from its checkpoint (another total
    batch): the LR then follows this run's schedule (milestones, warmup, base LRs of this
    config) from the iteration holding the same sample, rather than the checkpoint's.
    The scheduler must compute its LR in closed form from ``last_epoch``, as meshrecon's do.
    """
    if not hasattr(scheduler, "_get_closed_form_lr"):
        raise TypeError(
            f"{type(scheduler).__name__} has no closed-form LR (_get_closed_form_lr); it cannot "
            f"be moved to iteration {iteration} of a resumed run with another total batch"
        )
    scheduler.load_state_dict(dict(schedule, last_epoch=int(iteration)))
    apply_scheduled_lr(scheduler)


def create_ddp_model(model: nn.Module, **kwargs: Any) -> nn.Module:
    """Wrap ``model`` in ``DistributedDataParallel`` when there are several processes.

    DDP averages the gradients over processes, so with a per-process loss that is a mean over
    the process's batch, the update equals that of one process with the whole batch.
    """
    if comm.get_world_size() == 1:
        return model
    device = next(model.parameters()).device
    if device.type == "cuda":
        kwargs.setdefault("device_ids", [comm.get_local_rank()])
    return DistributedDataParallel(model, **kwargs)


def _release(lock: OutputDirLock | None) -> None:
    if lock is not None:
        lock.release()


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


class DefaultPredictor:
    """Run a model from a config on one image: ``predictor(image) -> predictions``.

    Builds ``cfg.MODEL`` in eval mode, loads ``cfg.MODEL.WEIGHTS``, and for each call converts
    the image from BGR to ``cfg.INPUT.FORMAT``, resizes its shorter side to
    ``INPUT.MIN_SIZE_TEST`` (longer side at most ``INPUT.MAX_SIZE_TEST``) and returns the
    model's output for it. Predictions are in the original image's coordinates when the model
    uses the ``height`` / ``width`` it is given, as Detectron2-style models do: a detector
    returns ``{"instances": Instances}``.

    A single-object reconstructor (``SingleViewReconstructor``) gets the image with its longer
    side at the size of the views it is trained on (``R2N2_IMAGE_SIZE``, 137: R2N2's
    renders and the synthetic data), as ``meshrecon demo`` does, instead of the detectors'
    ``MIN_SIZE_TEST``; pass a picture with the object centred and filling it, as in those
    views. It returns the predictions of its heads, e.g. ``{"voxels": (D, D, D), "mesh":
    (verts, faces)}`` or ``{"points": (P, 3)}``, in the camera frame.
    """

    # Meta-architectures trained on fixed-size views of one object (see above).
    SINGLE_VIEW_META_ARCHITECTURES = ("SingleViewReconstructor",)

    def __init__(self, cfg) -> None:
        self.cfg = cfg.clone()
        self.model = build_model(self.cfg)
        self.model.eval()
        if len(cfg.DATASETS.TEST):
            self.metadata = MetadataCatalog.get(cfg.DATASETS.TEST[0])
        Checkpointer(self.model).load(cfg.MODEL.WEIGHTS)
        self.min_size = cfg.INPUT.MIN_SIZE_TEST
        self.max_size = cfg.INPUT.MAX_SIZE_TEST
        # The longer side's size for single-view models (0: the detectors' resize above).
        self.view_size = 0
        if cfg.MODEL.META_ARCHITECTURE in self.SINGLE_VIEW_META_ARCHITECTURES:
            self.view_size = R2N2_IMAGE_SIZE
        self.input_format = cfg.INPUT.FORMAT
        if self.input_format not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT must be 'RGB' or 'BGR', got {self.input_format!r}")

    def _resize(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        if self.view_size > 0:
            scale = self.view_size / max(h, w)
        elif self.min_size > 0:
            scale = self.min_size / min(h, w)
            if self.max_size > 0 and max(h, w) * scale > self.max_size:
                scale = self.max_size / max(h, w)
        else:
            return image
        new_h, new_w = int(h * scale + 0.5), int(w * scale + 0.5)
        if (new_h, new_w) == (h, w):
            return image
        return F.interpolate(image[None], size=(new_h, new_w), mode="bilinear")[0]

    def __call__(self, original_image: np.ndarray) -> dict:
        """Return the model's predictions for one ``(H, W, 3)`` BGR image (uint8 or float)."""
        if not isinstance(original_image, np.ndarray) or original_image.ndim != 3:
            raise ValueError(
                "DefaultPredictor expects one image as a numpy array of shape (H, W, 3), got "
                f"{getattr(original_image, 'shape', type(original_image).__name__)}"
            )
        if original_image.shape[2] != 3:
            raise ValueError(f"expected 3 channels (BGR), got shape {original_image.shape}")
        height, width = original_image.shape[:2]
        image = original_image[:, :, ::-1] if self.input_format == "RGB" else original_image
        tensor = torch.as_tensor(np.ascontiguousarray(image).astype("float32")).permute(2, 0, 1)
        tensor = self._resize(tensor)
        with torch.no_grad():
            return self.model([{"image": tensor, "height": height, "width": width}])[0]


class DefaultTrainer(TrainerBase):
    """The standard trainer: a :class:`SimpleTrainer` plus the usual hooks, from a config.

    It builds the model, optimizer, scheduler and loaders from the config (each through an
    overridable ``build_*`` classmethod), wraps the model in DDP when distributed, checkpoints
    to ``OUTPUT_DIR`` (model, optimizer, scheduler, AMP scaler and data-sampler seed), and
    evaluates every ``TEST.EVAL_PERIOD`` iterations and at the end (unless
    ``TEST.EVAL_AFTER_TRAIN`` is off). Typical use::

        trainer = DefaultTrainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        trainer.train()
    """

    def __init__(self, cfg) -> None:
        super().__init__()
        meshrecon_logger = logging.getLogger("meshrecon")
        if not meshrecon_logger.isEnabledFor(logging.INFO):
            setup_logger()
        check_config(cfg, training=True)
        config_text = cfg.dump()
        scaled = self.auto_scale_workers(cfg, comm.get_world_size())
        if scaled is not cfg:
            check_config(
                scaled,
                training=True,
                context=f"after auto-scaling from SOLVER.REFERENCE_WORLD_SIZE "
                f"{cfg.SOLVER.REFERENCE_WORLD_SIZE} to {comm.get_world_size()} processes",
            )
        cfg = scaled
        # One training per OUTPUT_DIR: held from here to the end of train() (and at most until
        # this trainer is collected or the process exits).
        self._output_lock = lock_output_dir(cfg.OUTPUT_DIR)
        self._release_lock = weakref.finalize(self, _release, self._output_lock)

        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model(model, broadcast_buffers=False)

        amp = bool(cfg.SOLVER.AMP.ENABLED)
        device = next(_unwrap(model).parameters()).device
        if amp and device.type != "cuda":
            logger.warning("SOLVER.AMP.ENABLED is ignored: the model is on %s, not CUDA", device)
            amp = False
        self._trainer = SimpleTrainer(
            model,
            data_loader,
            optimizer,
            grad_clipper=build_gradient_clipper(cfg),
            amp=amp,
            max_consecutive_nonfinite=cfg.SOLVER.MAX_CONSECUTIVE_NONFINITE,
        )
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)

        checkpointables: dict[str, Any] = {"optimizer": optimizer, "scheduler": self.scheduler}
        if self._trainer.grad_scaler is not None:
            checkpointables["grad_scaler"] = self._trainer.grad_scaler
        batch_sampler = getattr(data_loader, "batch_sampler", None)
        if hasattr(batch_sampler, "state_dict") and hasattr(batch_sampler, "load_state_dict"):
            checkpointables["data_sampler"] = batch_sampler
        self.checkpointer = Checkpointer(
            _unwrap(model),
            cfg.OUTPUT_DIR,
            save_to_disk=comm.is_main_process(),
            **checkpointables,
        )
        # Every checkpoint says which config trained it (as given, before auto-scaling): the
        # benchmark's reuse check reads it there, not from a config.yaml that may be newer.
        self.checkpointer.extra_data["config"] = config_text
        # The lock is held, so no other process saves here: temp files are of killed saves.
        self.checkpointer.remove_interrupted_saves()
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self._last_eval_results: dict[str, Any] | None = None
        self.register_hooks(self.build_hooks())

    @property
    def model(self) -> nn.Module:
        return self._trainer.model

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self._trainer.optimizer

    @property
    def data_loader(self):
        return self._trainer.data_loader

    def resume_or_load(self, resume: bool = True) -> None:
        """Resume from the last checkpoint of ``OUTPUT_DIR`` or load ``MODEL.WEIGHTS``.

        With ``resume`` and a checkpoint present, everything checkpointed is restored and
        training continues at the iteration after the checkpoint's, with the data stream moved
        past the batches already used. Otherwise only the model weights are loaded
        (``MODEL.BACKBONE.PRETRAINED`` into the image encoder, then ``MODEL.WEIGHTS``, each if
        set) and training starts at iteration 0.
        """
        # This config's schedule, before a checkpoint overwrites it.
        schedule = copy.deepcopy(self.scheduler.state_dict())
        if self.cfg.MODEL.BACKBONE.PRETRAINED and not (
            resume and self.checkpointer.has_checkpoint()
        ):
            # The encoder's pretrained weights first; MODEL.WEIGHTS, if any, loads over them.
            load_pretrained_backbone(
                self.checkpointer.model,
                self.cfg.MODEL.BACKBONE.PRETRAINED,
                input_format=self.cfg.INPUT.FORMAT,
                pixel_mean=self.cfg.MODEL.PIXEL_MEAN,
                pixel_std=self.cfg.MODEL.PIXEL_STD,
            )
        extra = self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        self.start_iter = 0
        if resume and self.checkpointer.has_checkpoint():
            self.start_iter = int(extra.get("iteration", -1)) + 1
            logger.info("Resuming training at iteration %d", self.start_iter)
        batch_sampler = getattr(self.data_loader, "batch_sampler", None)
        if hasattr(batch_sampler, "set_start_iter"):
            start = batch_sampler.set_start_iter(self.start_iter)
            if start is not None and start != self.start_iter:
                # The checkpoint had another total batch (e.g. SOLVER.REFERENCE_WORLD_SIZE
                # scaling on another number of processes): progress is counted in samples.
                self.start_iter = int(start)
                restart_lr_schedule(self.scheduler, schedule, self.start_iter)
                logger.info(
                    "Resuming training at iteration %d of this run's schedule (LR %g)",
                    self.start_iter,
                    self.optimizer.param_groups[0]["lr"],
                )
        starts = comm.all_gather(self.start_iter)
        if len(set(starts)) > 1:
            raise RuntimeError(
                f"the processes would resume at different iterations (by rank: {starts}): "
                f"they read different checkpoints from OUTPUT_DIR={self.cfg.OUTPUT_DIR!r}. "
                "Resuming needs OUTPUT_DIR on a file system that every machine shares."
            )

    def build_hooks(self) -> list[hooks.HookBase]:
        """Return the hooks: timer, LR schedule, precise BN (``TEST.PRECISE_BN``), validation,
        checkpoints, evaluation, writers (in order)."""
        cfg = self.cfg
        result: list[hooks.HookBase] = [hooks.IterationTimer(), hooks.LRScheduler()]
        # A weak reference: the hooks must not keep the trainer alive.
        trainer_ref = weakref.ref(self)
        cls = type(self)
        if cfg.TEST.PRECISE_BN.ENABLED:
            # Before every hook that evaluates: they see the recomputed statistics.
            result.append(
                hooks.PreciseBN(
                    cfg.TEST.EVAL_PERIOD,
                    self.model,
                    lambda: cls.build_train_loader(cfg),
                    cfg.TEST.PRECISE_BN.NUM_ITER,
                )
            )
        # Before the checkpointer and the test evaluation (see ValidationHook).
        result.append(self.build_validation_hook())
        if comm.is_main_process():
            # Checked by check_config: >= 0; 0 (fvcore's None) keeps every periodic checkpoint.
            keep = int(cfg.SOLVER.CHECKPOINT_MAX_KEEP)
            result.append(
                hooks.PeriodicCheckpointer(
                    self.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD, max_to_keep=keep or None
                )
            )

        def test_and_save_results() -> dict[str, Any]:
            trainer = trainer_ref()
            trainer._last_eval_results = trainer.test(trainer.cfg, trainer.model)
            return trainer._last_eval_results

        if len(cfg.DATASETS.TEST):
            # With a validation split, the test splits are evaluated once, after training.
            period = 0 if len(cfg.DATASETS.VAL) else cfg.TEST.EVAL_PERIOD
            if period > 0 or cfg.TEST.EVAL_AFTER_TRAIN:
                result.append(
                    hooks.EvalHook(
                        period, test_and_save_results, eval_after_train=cfg.TEST.EVAL_AFTER_TRAIN
                    )
                )
        if comm.is_main_process():
            result.append(hooks.PeriodicWriter(self.build_writers(), period=20))
        return result

    def build_validation_hook(self) -> hooks.HookBase | None:
        """Return the hook that validates on ``DATASETS.VAL`` (None without a validation split).

        It logs the validation curve, keeps ``model_best.pth`` by ``TEST.BEST_METRIC`` and may
        stop training on a plateau (:mod:`meshrecon.engine.validation`).
        """
        cfg = self.cfg
        if not len(cfg.DATASETS.VAL):
            if cfg.TEST.BEST_METRIC or cfg.TEST.EVAL_BEST or cfg.SOLVER.STOP_ON_PLATEAU:
                raise ValueError(
                    "TEST.BEST_METRIC, TEST.EVAL_BEST and SOLVER.STOP_ON_PLATEAU need a "
                    "validation split in DATASETS.VAL (a checkpoint is never chosen on the test "
                    "split)"
                )
            return None
        both = set(cfg.DATASETS.VAL) & set(cfg.DATASETS.TEST)
        if both:
            raise ValueError(
                f"DATASETS.VAL and DATASETS.TEST share {sorted(both)}: validation (which picks "
                "the best checkpoint and may stop training) must not see a test split"
            )
        trainer_ref = weakref.ref(self)
        return ValidationHook.from_config(
            cfg, self.checkpointer.model, lambda: trainer_ref().validate()
        )

    def validate(self) -> dict[str, Any]:
        """Evaluate the model on every dataset of ``DATASETS.VAL`` (as :meth:`test` does)."""
        cfg = self.cfg.clone()
        cfg.defrost()
        cfg.DATASETS.TEST = tuple(cfg.DATASETS.VAL)
        cfg.freeze()
        return self.test(cfg, self.model)

    def build_writers(self) -> list[EventWriter]:
        """Return the writers of the main process (see :func:`default_writers`)."""
        return default_writers(self.cfg.OUTPUT_DIR, self.max_iter, self.cfg)

    def train(self) -> dict[str, Any] | None:
        """Train from ``start_iter`` to ``SOLVER.MAX_ITER``; return the last evaluation results.

        The ``OUTPUT_DIR`` lock is released when training ends, also on an exception.
        """
        if not self._release_lock.alive:  # a second train() after the first released it
            self._output_lock = lock_output_dir(self.cfg.OUTPUT_DIR)
            self._release_lock = weakref.finalize(self, _release, self._output_lock)
        try:
            super().train(self.start_iter, self.max_iter)
        finally:
            self._release_lock()
        if self._last_eval_results and comm.is_main_process():
            verify_results(self.cfg, self._last_eval_results)
        return self._last_eval_results

    def run_step(self) -> None:
        self._trainer.iter = self.iter
        self._trainer.run_step()

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["_trainer"] = self._trainer.state_dict()
        return state

    @classmethod
    def build_model(cls, cfg) -> nn.Module:
        """Return ``meshrecon.modeling.build_model(cfg)``."""
        model = build_model(cfg)
        logger.info("Model:\n%s", model)
        return model

    @classmethod
    def build_optimizer(cls, cfg, model: nn.Module) -> torch.optim.Optimizer:
        """Return ``meshrecon.solver.build_optimizer(cfg, model)``."""
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer: torch.optim.Optimizer):
        """Return ``meshrecon.solver.build_lr_scheduler(cfg, optimizer)``."""
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg):
        """Return the training loader, its records mapped by ``build_mapper(cfg, True)``."""
        return build_train_loader(cfg, mapper=build_mapper(cfg, is_train=True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name: str):
        """Return the loader of ``dataset_name``, mapped by ``build_mapper(cfg, False)``."""
        mapper = build_mapper(cfg, is_train=False, dataset_names=dataset_name)
        return build_test_loader(cfg, dataset_name, mapper=mapper)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name: str) -> DatasetEvaluator:
        """Return the evaluator of the model's declared type, else the dataset's.

        A multi-view head class declares what scores its predictions (``evaluator_type``,
        e.g. ``"optimize_mvs"``; :func:`~meshrecon.modeling.heads.build.declared_evaluator_type`)
        and that type is built in place of the dataset's ``evaluator_type`` metadata, which
        stays the default (and which the dataset must have: it is its record format too).

        Raises:
            NotImplementedError: when the dataset names none (``test`` then skips it).
        """
        if MetadataCatalog.get(dataset_name).get("evaluator_type") is None:
            raise NotImplementedError(
                f"dataset {dataset_name!r} has no evaluator_type metadata; override "
                "DefaultTrainer.build_evaluator or pass evaluators to DefaultTrainer.test"
            )
        output_dir = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return _build_evaluator_from_registry(
            cfg, dataset_name, output_dir, evaluator_type=declared_evaluator_type(cfg)
        )

    @classmethod
    def test(cls, cfg, model: nn.Module, evaluators=None) -> dict[str, Any]:
        """Evaluate ``model`` on every dataset of ``cfg.DATASETS.TEST``.

        The main process also writes each dataset's results to
        ``OUTPUT_DIR/inference/<dataset>/results.json`` (see :func:`write_results_json`).

        Args:
            evaluators: None (build one per dataset with ``build_evaluator``), one evaluator, or
                a list with one evaluator per dataset of ``DATASETS.TEST``.

        Returns:
            ``{dataset_name: results}``, or just the results when there is one dataset.
        """
        names = list(cfg.DATASETS.TEST)
        if isinstance(evaluators, DatasetEvaluator) and not isinstance(
            evaluators, DatasetEvaluators
        ):
            evaluators = [evaluators]
        if evaluators is not None and len(evaluators) != len(names):
            raise ValueError(
                f"{len(evaluators)} evaluators given for {len(names)} datasets in DATASETS.TEST"
            )
        results: OrderedDict[str, Any] = OrderedDict()
        for idx, name in enumerate(names):
            data_loader = cls.build_test_loader(cfg, name)
            if evaluators is not None:
                evaluator = evaluators[idx]
            else:
                try:
                    evaluator = cls.build_evaluator(cfg, name)
                except NotImplementedError as err:
                    logger.warning("No evaluator for %s, skipping it: %s", name, err)
                    results[name] = {}
                    continue
            results[name] = inference_on_dataset(model, data_loader, evaluator)
            if comm.is_main_process():
                # An evaluator that logged its own tables has said it all on the console; the
                # raw numbers still go to the log file (and results.json).
                tables = not getattr(evaluator, "logs_own_tables", False)
                print_csv_format(results[name], tables=tables)
                if cfg.OUTPUT_DIR:
                    path = write_results_json(
                        results[name], os.path.join(cfg.OUTPUT_DIR, "inference", name)
                    )
                    logger.info("Metrics of %s written to %s", name, path)
        if len(results) == 1:
            return next(iter(results.values()))
        return results

    @staticmethod
    def auto_scale_workers(cfg, num_workers: int):
        """Scale the batch size, LR and schedule linearly from ``SOLVER.REFERENCE_WORLD_SIZE``.

        Returns ``cfg`` unchanged when the reference is 0 or equals ``num_workers``; otherwise a
        modified copy in which the same number of epochs is trained with the per-process batch
        of the reference setup.
        """
        old_world_size = cfg.SOLVER.REFERENCE_WORLD_SIZE
        if old_world_size == 0 or old_world_size == num_workers:
            return cfg
        cfg = cfg.clone()
        was_frozen = cfg.is_frozen()
        cfg.defrost()
        if cfg.SOLVER.IMS_PER_BATCH % old_world_size != 0:
            raise ValueError("SOLVER.IMS_PER_BATCH must be divisible by REFERENCE_WORLD_SIZE")
        scale = num_workers / old_world_size
        cfg.SOLVER.IMS_PER_BATCH = int(round(cfg.SOLVER.IMS_PER_BATCH * scale))
        cfg.SOLVER.BASE_LR = cfg.SOLVER.BASE_LR * scale
        cfg.SOLVER.MAX_ITER = int(round(cfg.SOLVER.MAX_ITER / scale))
        cfg.SOLVER.WARMUP_ITERS = int(round(cfg.SOLVER.WARMUP_ITERS / scale))
        cfg.SOLVER.STEPS = tuple(int(round(s / scale)) for s in cfg.SOLVER.STEPS)
        cfg.TEST.EVAL_PERIOD = int(round(cfg.TEST.EVAL_PERIOD / scale))
        cfg.SOLVER.CHECKPOINT_PERIOD = int(round(cfg.SOLVER.CHECKPOINT_PERIOD / scale))
        cfg.SOLVER.REFERENCE_WORLD_SIZE = num_workers
        logger.info(
            "Auto-scaled the config from %d to %d processes: IMS_PER_BATCH=%d, BASE_LR=%g, "
            "MAX_ITER=%d",
            old_world_size,
            num_workers,
            cfg.SOLVER.IMS_PER_BATCH,
            cfg.SOLVER.BASE_LR,
            cfg.SOLVER.MAX_ITER,
        )
        if was_frozen:
            cfg.freeze()
        return cfg
