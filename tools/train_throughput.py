"""Training throughput of a config: images per second, and where a training step's time goes.

The engine of ``python tools/benchmark.py train`` (see that tool for the command line); not a
script of its own. One call of :func:`measure_config` builds a config's model, optimizer,
gradient clipper, mapper and training loader exactly as ``DefaultTrainer`` does, runs
``warmup`` steps and then ``steps`` timed steps of forward, backward and optimizer step (the
steps of ``SimpleTrainer.run_step``, without hooks, logging or checkpoints) on random weights,
and returns the mean time per step split into stages. The mappers' shape caches are warmed
first (each model's files read once), as they are after the first steps of a real training:

========== =================================================================================
data       waiting for the next batch: mapping (reading files, building targets) when
           ``DATALOADER.NUM_WORKERS`` is 0, only the idle wait for the workers otherwise
backbone   the image encoder (``with stage("backbone")`` in the model)
heads      the rest of the forward pass: image normalization, target batching, the heads
losses     the loss functions (``@stage("losses")``), including the ground-truth preparation
           inside them (e.g. sampling points of the target meshes)
backward   ``loss.backward()``
optimizer  ``zero_grad``, gradient clipping and ``optimizer.step()``
========== =================================================================================

Stages are timed by :class:`meshrecon.utils.stage_timer.StageTimer` with explicit timers,
exclusively (a stage inside another is not counted twice), synchronizing CUDA at every stage
boundary: on CPU the times are exact, on CUDA they are kernel times at the cost of the
overlap that the synchronizations remove. ``other`` in the results is the step time that no
stage holds (the timer's own cost, the loop); it should be a few percent at most.

This file uses only meshrecon's public API, so that ``tools/benchmark.py train --baseline``
can run it against an older checkout of meshrecon (whose models carry no stage marks: there
backbone and losses read 0 and the whole forward counts as heads).

Random weights make some steps costlier than in training: an untrained voxel head predicts
occupancy 0.5 everywhere, so VoxMesh and Mesh R-CNN refine the cubified full grid (a mesh of
thousands of vertices) where a trained one gives the object's shape. Their figures are
therefore an upper bound of a step's cost; ``--opts MODEL.WEIGHTS model.pth`` measures a
trained state.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import time
from pathlib import Path
from typing import Any

import torch

STAGES = ("data", "backbone", "heads", "losses", "backward", "optimizer")

# A tiny synthetic world and batch, so that a config's whole measurement takes seconds (tests).
TOY_OPTS = [
    "DATASETS.SYNTHETIC.SCALE",
    "0.02",
    "DATASETS.SYNTHETIC.SHAPENET_VIEWS",
    "3",
    "DATASETS.SYNTHETIC.PIX3D_IMAGE_SIZE",
    "(128, 96)",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "DATALOADER.NUM_WORKERS",
    "0",
    "INPUT.SHAPENET.NUM_SAMPLES",
    "300",
]
# The detectors see their 128 x 96 scenes at that size.
TOY_DETECTOR_OPTS = [
    "INPUT.MIN_SIZE_TRAIN",
    "(96,)",
    "INPUT.MAX_SIZE_TRAIN",
    "128",
]


@dataclasses.dataclass
class TrainThroughput:
    """One config's measurement.

    ``stages`` maps each name of :data:`STAGES` to its mean seconds per step; ``step_s`` is
    the mean wall time of a whole step; ``images_per_step`` is ``SOLVER.IMS_PER_BATCH`` (for
    the multi-view configs an "image" is one object with its views). ``map_s_per_image`` is the
    mapper's time per record measured apart in this process (what a data-loader worker spends
    per record), None when the records need no mapper. ``cpu_s`` is the CPU time of the
    training process per step (all its threads; not the data-loader workers'): on a machine
    that other jobs share, it moves far less with their load than the wall time does.
    ``start_iter`` is the iteration the first warm-up step reported to the model, ``losses``
    the names of the losses of the last timed step (what the step trained: VoxMesh's
    voxel-only steps have no mesh losses).
    """

    config: str
    device: str
    threads: int
    num_workers: int
    images_per_step: int
    steps: int
    step_s: float
    stages: dict[str, float]
    map_s_per_image: float | None
    cpu_s: float = float("nan")
    label: str = ""
    start_iter: int = -1
    losses: list[str] = dataclasses.field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        return self.images_per_step / self.step_s if self.step_s > 0 else float("nan")

    @property
    def other_s(self) -> float:
        return self.step_s - sum(self.stages.values())

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["images_per_s"] = self.images_per_s
        out["other_s"] = self.other_s
        return out


def _stage_timer_class():
    """``StageTimer`` of the meshrecon in use, or of this checkout when that one has none."""
    try:
        from meshrecon.utils.stage_timer import StageTimer
    except ImportError:
        path = Path(__file__).resolve().parents[1] / "meshrecon" / "utils" / "stage_timer.py"
        spec = importlib.util.spec_from_file_location("_stage_timer_fallback", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        StageTimer = module.StageTimer
    return StageTimer


def build_config(config_file: str, opts: list[str], device: str, toy: bool = False):
    """The config as the benchmark runs it: random weights (``MODEL.WEIGHTS`` "", so that the
    configs that continue another run's model need not find it), ``device``, the toy options
    first when ``toy``, then ``opts`` (``MODEL.WEIGHTS`` there loads a checkpoint)."""
    from meshrecon.apps.method_benchmark.presets import TOY_RECOGNITION_OPTS
    from meshrecon.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(config_file)
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.DEVICE = device
    extra = list(TOY_OPTS) if toy else []
    if toy and cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN":
        extra += TOY_DETECTOR_OPTS
    heads = (cfg.MODEL.MESH_HEAD.NAME, cfg.MODEL.MULTIVIEW_HEAD.NAME)
    if toy and any(n.endswith(("RetrievalHead", "ClusteringHead", "OracleNNHead")) for n in heads):
        extra += TOY_RECOGNITION_OPTS
    cfg.merge_from_list(extra + list(opts))
    return cfg


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# Record keys naming a model's shape files, which mappers keep in a per-process cache.
_SHAPE_KEYS = ("mesh", "voxel", "samples")


def _shape_files(value: Any) -> set[str]:
    """Paths of the shape files a record (with its annotations or views) names."""
    if isinstance(value, dict):
        found = {v for k, v in value.items() if k in _SHAPE_KEYS and isinstance(v, str)}
        for v in value.values():
            found |= _shape_files(v) if isinstance(v, (dict, list)) else set()
        return found
    if isinstance(value, list):
        return set().union(*(_shape_files(v) for v in value)) if value else set()
    return set()


def warm_shape_cache(mapper, records: list[dict]) -> int:
    """Map every record that names a shape file not seen before; return how many were mapped.

    A long training reads each model's files long before its steady state; a short
    measurement would otherwise time those first reads, which the mappers' caches remove
    afterwards. Data-loader workers forked later inherit the warm cache.
    """
    if mapper is None:
        return 0
    seen: set[str] = set()
    count = 0
    for record in records:
        files = _shape_files(record)
        if files - seen:
            mapper(record)
            seen |= files
            count += 1
    return count


def _measure_mapping(mapper, records: list[dict], count: int) -> float | None:
    """Mean seconds the mapper takes per record, over ``count`` records (training mapping)."""
    if mapper is None or not records:
        return None
    picks = [records[i % len(records)] for i in range(count)]
    start = time.perf_counter()
    for record in picks:
        mapper(record)
    return (time.perf_counter() - start) / len(picks)


def measure_config(
    config_file: str,
    *,
    device: str = "cpu",
    steps: int = 20,
    warmup: int = 3,
    opts: list[str] | None = None,
    toy: bool = False,
    start_iter: int | None = None,
    warm_cache: bool = True,
    label: str = "",
) -> TrainThroughput:
    """Run ``warmup`` + ``steps`` training steps of ``config_file``; return the timed steps'
    mean split (see the module docstring).

    Args:
        config_file: a YAML config.
        device: "cpu" or "cuda".
        steps, warmup: timed steps, and untimed steps before them (caches, allocator, the
            data-loader workers' start).
        opts: config overrides (``KEY VALUE`` pairs), applied last.
        toy: run at toy size (:data:`TOY_OPTS`).
        start_iter: the iteration the first (warm-up) step reports to the model
            (``EventStorage.iter``); default ``SOLVER.MAX_ITER // 2``, meant to be past warm-ups
            such as ``VOXEL_ONLY_ITERS`` so that every head trains. Pass it to compare the same
            kind of step between checkouts whose schedules differ.
        warm_cache: first map one record of every model (:func:`warm_shape_cache`), so that
            the steps see the mappers' steady state.
        label: a name for the checkout measured (comparisons).
    """
    import meshrecon.data.datasets  # noqa: F401  (registers the datasets)
    import meshrecon.modeling  # noqa: F401  (registers the models)
    from meshrecon.data import build_mapper, build_train_loader
    from meshrecon.data.build import get_dataset_dicts
    from meshrecon.data.datasets import configure_synthetic
    from meshrecon.modeling import build_model
    from meshrecon.solver import build_gradient_clipper, build_optimizer
    from meshrecon.utils.env import seed_all_rng
    from meshrecon.utils.events import EventStorage

    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got {steps} and {warmup}")
    cfg = build_config(config_file, list(opts or []), device, toy)
    configure_synthetic(cfg)
    seed_all_rng(cfg.SEED if cfg.SEED >= 0 else 0)
    dev = torch.device(device)

    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:  # given in opts: measure a trained state instead of random weights
        from meshrecon.checkpoint import Checkpointer

        Checkpointer(model).load(cfg.MODEL.WEIGHTS)
    model.train()
    optimizer = build_optimizer(cfg, model)
    clipper = build_gradient_clipper(cfg)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    mapper = build_mapper(cfg, is_train=True)
    records = get_dataset_dicts(cfg.DATASETS.TRAIN)
    loader = build_train_loader(cfg, mapper=mapper, dataset=records)
    if warm_cache:
        warm_shape_cache(mapper, records)
    batches = iter(loader)
    if start_iter is None:
        start_iter = cfg.SOLVER.MAX_ITER // 2
    if start_iter < 0:
        raise ValueError(f"start_iter must be >= 0, got {start_iter}")

    timer = _stage_timer_class()(dev)
    step_total = cpu_total = 0.0
    with EventStorage(start_iter) as storage, timer:
        for i in range(warmup + steps):
            if i == warmup:
                _sync(dev)
                timer.reset()
            storage.iter = start_iter + i
            _sync(dev)
            begin, cpu_begin = time.perf_counter(), time.process_time()
            with timer.measure("data"):
                data = next(batches)
            with timer.measure("heads"):
                loss_dict = model(data)
                if isinstance(loss_dict, torch.Tensor):
                    loss_dict = {"total_loss": loss_dict}
                losses = sum(loss_dict.values())
            with timer.measure("optimizer"):
                optimizer.zero_grad(set_to_none=True)
            with timer.measure("backward"):
                losses.backward()
            with timer.measure("optimizer"):
                if clipper is not None:
                    clipper(params)
                optimizer.step()
            _sync(dev)
            if i >= warmup:
                step_total += time.perf_counter() - begin
                cpu_total += time.process_time() - cpu_begin
            if not torch.isfinite(losses.detach()):
                raise FloatingPointError(f"{config_file}: loss is {float(losses)} at step {i}")
        totals = dict(timer.totals)
    del batches  # stops the loader's workers before the mapping is timed

    map_s = _measure_mapping(mapper, records, max(2, cfg.SOLVER.IMS_PER_BATCH))
    return TrainThroughput(
        config=str(config_file),
        device=str(dev),
        threads=torch.get_num_threads(),
        num_workers=int(cfg.DATALOADER.NUM_WORKERS),
        images_per_step=int(cfg.SOLVER.IMS_PER_BATCH),
        steps=steps,
        step_s=step_total / steps,
        stages={name: totals.get(name, 0.0) / steps for name in STAGES},
        map_s_per_image=map_s,
        cpu_s=cpu_total / steps,
        label=label,
        start_iter=int(start_iter),
        losses=sorted(loss_dict),
    )


def config_name(path: str) -> str:
    """``configs/synthetic/psgn.yaml`` -> ``psgn``."""
    return os.path.splitext(os.path.basename(path))[0]


def format_table(results: list[TrainThroughput]) -> str:
    """A markdown table: images/s and the milliseconds per step of each stage."""
    header = ["config", "device", "thr", "workers", "img/step", "step ms", "cpu ms", "img/s"]
    header += [f"{s} ms" for s in STAGES] + ["other ms", "map ms/img", "largest stage"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        largest = max(r.stages, key=r.stages.get)
        share = r.stages[largest] / r.step_s if r.step_s > 0 else 0.0
        row = [
            config_name(r.config) + (f" ({r.label})" if r.label else ""),
            r.device,
            str(r.threads),
            str(r.num_workers),
            str(r.images_per_step),
            f"{r.step_s * 1e3:.0f}",
            f"{r.cpu_s * 1e3:.0f}",
            f"{r.images_per_s:.2f}",
        ]
        row += [f"{r.stages[s] * 1e3:.0f}" for s in STAGES]
        row.append(f"{r.other_s * 1e3:.0f}")
        row.append("-" if r.map_s_per_image is None else f"{r.map_s_per_image * 1e3:.1f}")
        row.append(f"{largest} {share:.0%}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def format_comparison(
    pairs: list[tuple[str, list[TrainThroughput], list[TrainThroughput]]],
) -> str:
    """A markdown table per config: images/s before and after (medians over the rounds) and
    their ratio, and the ratio of the training process's CPU time per image."""
    import statistics

    header = ["config", "before img/s", "after img/s", "after / before", "CPU time ratio"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, before, after in pairs:
        b = statistics.median(r.images_per_s for r in before)
        a = statistics.median(r.images_per_s for r in after)
        cpu_b = statistics.median(r.cpu_s / r.images_per_step for r in before)
        cpu_a = statistics.median(r.cpu_s / r.images_per_step for r in after)
        ratio = a / b if b > 0 else float("nan")
        cpu_ratio = cpu_b / cpu_a if cpu_a > 0 else float("nan")
        lines.append(f"| {name} | {b:.2f} | {a:.2f} | {ratio:.2f}x | {cpu_ratio:.2f}x |")
    return "\n".join(lines)
