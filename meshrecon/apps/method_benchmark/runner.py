"""Train and evaluate the benchmark's methods, one ``tools/train_net.py`` process each.

Each method runs through the same code path as ``tools/train_net.py`` (``DefaultTrainer``), in
its own process so that memory does not accumulate, with the thread count set through
``OMP_NUM_THREADS``. A run whose ``OUTPUT_DIR`` already holds ``model_final.pth`` trained with
the identical config (the config recorded inside that checkpoint, ``OUTPUT_DIR`` aside; not the
``config.yaml`` beside it, which another run may have rewritten) is reused instead of retrained.
An evaluation-only method has no checkpoint of its own: its ``config.yaml`` is compared.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from .methods import METHODS, TASKS, MethodSpec, Row
from .presets import PRETRAIN_MINUTES

logger = logging.getLogger(__name__)

__all__ = [
    "MethodPlan",
    "RunRecord",
    "config_fingerprint",
    "count_parameters",
    "iteration_overrides",
    "load_curve",
    "log_progress",
    "plan_methods",
    "prepare_datasets",
    "prepare_pretrained",
    "pretrained_weights_needed",
    "run_plan",
    "synthetic_weights_named",
    "tested_checkpoint",
]

RUN_INFO = "benchmark_run.json"
EVAL_SUBDIR = "benchmark_eval"
# Set for every run before the tool's and the user's overrides (which win): of the periodic
# checkpoints only the latest is kept (enough to resume an interrupted run); keeping every one
# made the default preset's runs 5.3 GB, the detectors' ~0.15 GB a checkpoint.
RUN_DEFAULTS = ("SOLVER.CHECKPOINT_MAX_KEEP", "1")
# Keys that do not change what a run trains: left out of the fingerprint that decides reuse.
_NOT_FINGERPRINTED = ("OUTPUT_DIR", "SOLVER.CHECKPOINT_MAX_KEEP")
# Config keys counted in iterations: scaled together with SOLVER.MAX_ITER.
_ITERATION_KEYS = (
    "SOLVER.WARMUP_ITERS",
    "SOLVER.CHECKPOINT_PERIOD",
    "TEST.EVAL_PERIOD",
    "MODEL.VOXEL_HEAD.VOXEL_ONLY_ITERS",
    "TEST.PLATEAU_START_ITER",
)


@dataclass
class MethodPlan:
    """What the tool will run for one method."""

    spec: MethodSpec
    config_file: str
    output_dir: str
    overrides: list[str]
    cfg: Any = None  # the merged CfgNode (frozen)


@dataclass
class RunRecord:
    """The outcome of one method: status, times, parameters, metrics."""

    name: str
    status: str  # "trained", "reused", "evaluated", "skipped", "failed"
    reason: str = ""
    wall_s: float | None = None  # this invocation's train + eval time
    train_s: float | None = None  # the training's wall time (also for reused runs)
    params: int | None = None
    max_iter: int | None = None
    row: Row = field(default_factory=dict)
    output_dir: str = ""
    log_path: str = ""
    results: Mapping[str, Any] = field(default_factory=dict)
    # The run's validation curve at its end (meshrecon.engine.validation.summarize_validation).
    validation: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in ("trained", "reused", "evaluated")


def _get(cfg, dotted: str) -> Any:
    """The value at a dotted key of a config (or of its YAML loaded as dicts); None if absent."""
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def iteration_overrides(cfg, scale: float = 1.0, max_iter: int | None = None) -> list[str]:
    """Config overrides that shorten (or lengthen) a schedule.

    ``SOLVER.MAX_ITER`` becomes ``max_iter`` when given, else ``round(MAX_ITER * scale)``; the
    LR steps, warm-up, checkpoint and evaluation periods and a voxel-only phase scale by the
    same factor, so the schedule keeps its shape.
    """
    if scale <= 0:
        raise ValueError(f"the iteration scale must be positive, got {scale}")
    if max_iter is not None and max_iter < 1:
        raise ValueError(f"an iteration override must be at least 1, got {max_iter}")
    old = int(cfg.SOLVER.MAX_ITER)
    new = int(max_iter) if max_iter is not None else max(1, round(old * scale))
    if new == old:
        return []
    factor = new / old
    out = ["SOLVER.MAX_ITER", str(new)]
    steps = tuple(max(1, round(s * factor)) for s in cfg.SOLVER.STEPS)
    out += ["SOLVER.STEPS", repr(steps)]
    for key in _ITERATION_KEYS:
        value = _get(cfg, key)
        if isinstance(value, int) and value > 0:
            floor = 1 if key == "SOLVER.CHECKPOINT_PERIOD" else 0
            out += [key, str(max(floor, round(value * factor)))]
    return out


def tested_checkpoint(cfg, output_dir: str, *, must_exist: bool = True) -> str:
    """The checkpoint a run's test numbers come from: ``model_best.pth`` when the run validates
    and tests its best validation checkpoint (``TEST.EVAL_BEST`` with ``DATASETS.VAL``; the
    validation hook writes it, at the latest at the last iteration), else ``model_final.pth``.

    A stage that starts from this run (``MethodSpec.init_from``) starts from these weights, and
    the gallery shows them. With ``must_exist`` (for runs already made), a missing
    ``model_best.pth`` (a run older than its validation) gives ``model_final.pth``.
    """
    final = os.path.join(output_dir, "model_final.pth")
    if not (cfg.TEST.EVAL_BEST and len(cfg.DATASETS.VAL)):
        return final
    best = os.path.join(output_dir, "model_best.pth")
    return final if must_exist and not os.path.isfile(best) else best


def _merge(config_file: str, overrides: Sequence[str]):
    from meshrecon.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(overrides))
    return cfg


def config_fingerprint(cfg_or_yaml: Any) -> str:
    """Hash of a full config, aside from the keys that do not change what a run trains
    (``OUTPUT_DIR``: a run may move between folders; how many checkpoints it keeps)."""
    text = cfg_or_yaml if isinstance(cfg_or_yaml, str) else cfg_or_yaml.dump()
    data = yaml.safe_load(text) or {}
    for dotted in _NOT_FINGERPRINTED:
        parent, _, leaf = dotted.rpartition(".")
        node = _get(data, parent) if parent else data
        if isinstance(node, dict):
            node.pop(leaf, None)
    blob = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def plan_methods(
    methods: Sequence[MethodSpec] = METHODS,
    *,
    runs_dir: str = "",
    iter_scale: float = 1.0,
    iters: Mapping[str, int] | None = None,
    opts: Sequence[str] = (),
    method_opts: Mapping[str, Sequence[str]] | None = None,
    user_method_opts: Mapping[str, Sequence[str]] | None = None,
    tasks: Mapping[str, Any] = TASKS,
) -> tuple[list[MethodPlan], list[RunRecord]]:
    """Resolve every method's config, output folder and overrides.

    Args:
        runs_dir: folder of the runs (``<runs_dir>/<name>``); "" keeps each config's own
            ``OUTPUT_DIR``, so that runs of ``tools/train_net.py`` with the same config are
            reused.
        iter_scale: multiplies every schedule (see :func:`iteration_overrides`).
        iters: ``{method: MAX_ITER}`` overrides; they win over ``iter_scale``.
        opts: ``KEY VALUE`` overrides for every method; they win over ``method_opts`` for the
            same key.
        method_opts: ``{method: [KEY, VALUE, ...]}`` overrides for one method (a preset's).
        user_method_opts: ``{method: [KEY, VALUE, ...]}`` overrides for one method given by
            the user (``--method-opts``); they win over ``opts`` and ``method_opts``.

    Returns:
        ``(plans, skipped)``: plans in run order (a stage after the method it starts from) and
        records of the methods that cannot run (config not in the model zoo).
    """
    from meshrecon.model_zoo import get_config_file

    iters = dict(iters or {})
    method_opts = dict(method_opts or {})
    user_method_opts = dict(user_method_opts or {})
    names = {m.name for m in methods}
    for key in list(iters) + list(method_opts) + list(user_method_opts):
        if key not in names:
            raise KeyError(f"override for unknown method {key!r}; known: {', '.join(names)}")
    if len(opts) % 2:
        raise ValueError(f"config overrides must be KEY VALUE pairs, got {list(opts)}")
    for name, pairs in user_method_opts.items():
        if len(pairs) % 2:
            raise ValueError(f"overrides of {name} must be KEY VALUE pairs, got {list(pairs)}")
    user_keys = set(opts[::2])
    plans: dict[str, MethodPlan] = {}
    skipped: list[RunRecord] = []
    pending = list(methods)
    requeued = 0
    while pending:
        spec = pending.pop(0)
        if spec.task not in tasks:
            raise KeyError(f"method {spec.name!r} has unknown task {spec.task!r}")
        if spec.init_from and spec.init_from not in plans:
            skipped_names = {r.name for r in skipped}
            if spec.init_from not in names or spec.init_from in skipped_names:
                reason = f"starts from {spec.init_from}, which does not run"
                skipped.append(RunRecord(spec.name, "skipped", reason))
            else:
                requeued += 1
                if requeued > len(methods):
                    raise ValueError(f"method {spec.name!r}: its init_from chain has a cycle")
                pending.append(spec)  # after the stage it starts from
            continue
        try:
            config_file = get_config_file(spec.config)
        except FileNotFoundError:
            skipped.append(
                RunRecord(spec.name, "skipped", f"config {spec.config} is not in the model zoo")
            )
            continue
        overrides = list(RUN_DEFAULTS) + list(opts) + list(spec.overrides)
        base = _merge(config_file, overrides)
        overrides += iteration_overrides(base, iter_scale, iters.get(spec.name))
        mine = list(method_opts.get(spec.name, ()))
        if len(mine) % 2:
            raise ValueError(f"overrides of {spec.name} must be KEY VALUE pairs")
        # The command line's overrides win over a preset's for the same key (e.g. the full
        # preset's DATASETS.SYNTHETIC.TRAIN_SCALE): the preset's pair is left out.
        overrides += [
            item
            for k, v in zip(mine[::2], mine[1::2], strict=True)
            if k not in user_keys
            for item in (k, v)
        ]
        # The user's overrides of this one method come last: they win over everything above.
        overrides += list(user_method_opts.get(spec.name, ()))
        if spec.init_from:
            # The weights of the stage's table row (its best validation checkpoint when it is
            # tested with that), written when that stage has trained.
            upstream = plans[spec.init_from]
            weights = tested_checkpoint(upstream.cfg, upstream.output_dir, must_exist=False)
            overrides += ["MODEL.WEIGHTS", weights]
        cfg = _merge(config_file, overrides)
        output_dir = os.path.join(runs_dir, spec.name) if runs_dir else cfg.OUTPUT_DIR
        if not output_dir:
            output_dir = os.path.join("output", "benchmark", spec.name)
        cfg.OUTPUT_DIR = output_dir
        cfg.freeze()
        plans[spec.name] = MethodPlan(spec, config_file, output_dir, overrides, cfg)
    return list(plans.values()), skipped


def prepare_datasets(plans: Sequence[MethodPlan]) -> list[str]:
    """Generate (or find) every split the plans train, validate and test on; return their names.

    Done once, up front, so that data generation is neither counted in a method's time nor
    repeated by concurrent processes.
    """
    from meshrecon.data import DatasetCatalog
    from meshrecon.data.datasets import configure_synthetic

    done: list[str] = []
    seen: set[tuple[str, Any]] = set()
    for plan in plans:
        # A split's content depends on the plan's DATASETS.SYNTHETIC (e.g. the full preset's
        # TRAIN_SCALE for Eigen): one name may stand for several folders.
        synthetic = configure_synthetic(plan.cfg)
        cfg_data = plan.cfg.DATASETS
        for name in list(cfg_data.TRAIN) + list(cfg_data.VAL) + list(cfg_data.TEST):
            if (name, synthetic) not in seen:
                DatasetCatalog.get(name)
                seen.add((name, synthetic))
                if name not in done:
                    done.append(name)
    return done


def pretrained_weights_needed(
    plans: Sequence[MethodPlan], retrain: bool = False
) -> dict[str, list[str]]:
    """``{name: [methods]}`` of the ``synthetic://<name>`` weights the plans' runs will load.

    ``MODEL.BACKBONE.PRETRAINED`` counts for a run that will train (not one that is reused:
    :func:`reusable`, unless ``retrain``), ``MODEL.DEPTH.PRETRAINED`` for every trained method
    (the depth head loads it whenever the model is built, also to evaluate a reused run).
    """
    needed: dict[str, list[str]] = {}
    will_train: set[str] = set()
    for plan in plans:
        spec, cfg = plan.spec, plan.cfg
        if not spec.train:
            continue
        trains = retrain or spec.init_from in will_train or not reusable(plan)[0]
        if trains:
            will_train.add(spec.name)
        for name in _synthetic_weights(cfg, backbone=trains):
            needed.setdefault(name, []).append(spec.name)
    return needed


def synthetic_weights_named(plans: Sequence[MethodPlan]) -> set[str]:
    """The ``synthetic://`` weights that the plans' configs name, whether or not their runs
    will be reused (the upper bound of what a first run makes)."""
    return {name for plan in plans for name in _synthetic_weights(plan.cfg)}


def _synthetic_weights(cfg, backbone: bool = True) -> list[str]:
    """Names of the ``synthetic://`` weights a config loads: ``MODEL.DEPTH.PRETRAINED`` (when
    the model is built) and, unless ``backbone`` is False, ``MODEL.BACKBONE.PRETRAINED`` (when
    training starts)."""
    from meshrecon.pretrain import SCHEME

    urls = [cfg.MODEL.DEPTH.PRETRAINED] + ([cfg.MODEL.BACKBONE.PRETRAINED] if backbone else [])
    return [url[len(SCHEME) :] for url in urls if url.startswith(SCHEME)]


def prepare_pretrained(
    needed: Mapping[str, Sequence[str]], log=logger.info
) -> list[dict[str, Any]]:
    """Make the missing pretrained weights of ``needed`` (see :func:`pretrained_weights_needed`)
    here, one after the other with progress bars, before any run starts: the runs then find
    them in the cache instead of each pretraining on its own clock.

    Returns one ``{"name", "methods", "seconds"}`` per weights; ``seconds`` is None for weights
    that were already cached.
    """
    import meshrecon.pretrain as pretrain

    out = []
    for name, methods in needed.items():
        if name in pretrain.PRETRAINED_RECIPES and pretrain.is_cached(name):
            log(f"[benchmark] pretrained encoder synthetic://{name}: cached")
            out.append({"name": name, "methods": list(methods), "seconds": None})
            continue
        minutes = PRETRAIN_MINUTES.get(name)
        log(
            f"[benchmark] pretraining synthetic://{name} for {', '.join(methods)} (not cached: "
            "made once here, on the synthetic world's own objects"
            + (f"; ~{minutes:.0f} min on 2 idle cores)" if minutes else ")")
        )
        start = time.perf_counter()
        pretrain.ensure_pretrained(name, progress=True)
        seconds = time.perf_counter() - start
        log(f"[benchmark] made synthetic://{name} in {seconds / 60:.1f} min")
        out.append({"name": name, "methods": list(methods), "seconds": seconds})
    return out


def count_parameters(cfg) -> int:
    """Number of parameters of the model a config builds (on CPU, weights not loaded)."""
    from meshrecon.data.datasets import configure_synthetic
    from meshrecon.modeling import build_model

    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    configure_synthetic(cfg)
    model = build_model(cfg)
    return sum(p.numel() for p in model.parameters())


def results_path(output_dir: str, dataset: str) -> str:
    return os.path.join(output_dir, "inference", dataset, "results.json")


def _read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def _fingerprint_over_defaults(yaml_text: str, source: str) -> str | None:
    """Fingerprint of a saved config, read over today's defaults: keys that were added to
    meshrecon after the run take their default values (the run did not set them)."""
    from meshrecon.config import CfgNode, get_cfg

    cfg = get_cfg()
    try:
        data = yaml.safe_load(yaml_text) or {}
        if not isinstance(data, dict):
            raise ValueError(f"not a mapping but a {type(data).__name__}")
        cfg.merge_from_other_cfg(CfgNode(data))
    except (KeyError, ValueError, TypeError, yaml.YAMLError) as err:  # a removed key, a bad type
        logger.info("%s does not load over today's defaults (%s); not reusing it", source, err)
        return None
    return config_fingerprint(cfg)


def _saved_fingerprint(output_dir: str) -> str | None:
    """Fingerprint of a run's saved ``config.yaml`` (see :func:`_fingerprint_over_defaults`)."""
    path = os.path.join(output_dir, "config.yaml")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return _fingerprint_over_defaults(f.read(), path)


def _checkpoint_fingerprint(checkpoint: str) -> tuple[str | None, str]:
    """Fingerprint of the config recorded in ``checkpoint``, or None and why there is none."""
    from meshrecon.checkpoint import recorded_config

    try:
        text = recorded_config(checkpoint)
    except (ValueError, OSError) as err:  # damaged or refused
        return None, f"{checkpoint} cannot be read ({err})"
    if text is None:
        return None, f"{checkpoint} records no config (saved before checkpoints recorded theirs)"
    fingerprint = _fingerprint_over_defaults(text, f"the config recorded in {checkpoint}")
    if fingerprint is None:
        return None, f"the config recorded in {checkpoint} no longer loads"
    return fingerprint, ""


def _train_seconds(output_dir: str, fingerprint: str) -> float | None:
    """The recorded training time of a finished run, else an estimate from file times."""
    info_path = os.path.join(output_dir, RUN_INFO)
    if os.path.isfile(info_path):
        info = _read_json(info_path)
        if info.get("fingerprint") == fingerprint and info.get("wall_s") is not None:
            return float(info["wall_s"])
    start = os.path.join(output_dir, "config.yaml")
    end = os.path.join(output_dir, "model_final.pth")
    if os.path.isfile(start) and os.path.isfile(end):
        return max(0.0, os.path.getmtime(end) - os.path.getmtime(start))
    return None


def reusable(plan: MethodPlan) -> tuple[bool, str]:
    """Whether the plan's folder holds a finished run of the identical config, and why not.

    For a trained method the config is the one recorded in its ``model_final.pth``, so that a
    ``config.yaml`` rewritten by another run in the folder cannot pair the model with a config
    it was not trained with.
    """
    if plan.spec.train:
        final = os.path.join(plan.output_dir, "model_final.pth")
        if not os.path.isfile(final):
            if _saved_fingerprint(plan.output_dir) is None:
                return False, "no earlier run"
            return False, "the earlier run did not finish (no model_final.pth)"
        recorded, why = _checkpoint_fingerprint(final)
        if recorded is None:
            return False, why
        if recorded != config_fingerprint(plan.cfg):
            return False, "the config recorded in the earlier run's model_final.pth differs"
        return True, ""
    saved = _saved_fingerprint(plan.output_dir)
    if saved is None:
        return False, "no earlier run"
    if saved != config_fingerprint(plan.cfg):
        return False, "the earlier run's config.yaml differs"
    if not os.path.isfile(results_path(plan.output_dir, plan.cfg.DATASETS.TEST[0])):
        return False, "the earlier evaluation wrote no results.json"
    return True, ""


_ITER_RE = re.compile(r"\biter: (\d+)")
_INFER_RE = re.compile(r"inference:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)")
_INFER_START = "Start inference"


def log_progress(tail: str) -> tuple[str, int | None, int | None]:
    """What the end of a train_net log shows: ``(phase, done, eval_total)``.

    ``phase`` is "eval" when the last thing logged belongs to an evaluation (its start or its
    progress bar) and "train" otherwise, so a run that validates periodically goes back to
    "train" at its next iteration line. ``done`` is that phase's count (the last iteration, or
    the batches evaluated so far: 0 right after the start line), None when nothing was logged;
    ``eval_total`` the evaluation's number of batches when its bar has shown it.
    """
    iters = list(_ITER_RE.finditer(tail))
    last_iter = iters[-1].start() if iters else -1
    started = tail.rfind(_INFER_START)
    infers = [m for m in _INFER_RE.finditer(tail) if m.start() > started]
    eval_at = max(started, infers[-1].start() if infers else -1)
    if eval_at > last_iter:
        if infers:
            return "eval", int(infers[-1].group(1)), int(infers[-1].group(2))
        return "eval", 0, None
    return "train", (int(iters[-1].group(1)) if iters else None), None


class LogProgress:
    """Feeds a progress bar from the tails of a train_net log (:func:`log_progress`).

    Each phase (the training, each evaluation) restarts the bar at the first count the log
    shows for it: a training resumed at iteration 3000, or going on at 1199 after a validation,
    shows its rate and time left from the iterations made since, not 3000 items in a second.
    """

    def __init__(self, bar: Any, desc: str, total: int | None) -> None:
        self.bar, self.desc, self.total = bar, desc, total
        self._shown: tuple[str, int | None, bool] | None = None

    def show(self, tail: str) -> None:
        from meshrecon.utils.progress import restart

        phase, done, eval_total = log_progress(tail)
        key = (phase, eval_total, done is None)
        if key != self._shown:
            self._shown = key
            label = self.desc if phase == "train" else f"{self.desc} (evaluating)"
            self.bar.set_description(label, refresh=False)
            restart(self.bar, total=self.total if phase == "train" else eval_total, start=done or 0)
            return  # restart() has drawn the bar
        if done is not None:
            self.bar.n = done
        self.bar.refresh()


def _follow(proc: subprocess.Popen, log_path: str, desc: str, total: int | None) -> None:
    """Show a progress bar fed by the child's log until it exits: the training's iterations,
    and each evaluation's batches while it runs (periodic validations included)."""
    from meshrecon.utils.progress import progress_bar

    bar = progress_bar(total=total, desc=desc, unit="it", dynamic_ncols=True, leave=False)
    follower = LogProgress(bar, desc, total)
    try:
        while proc.poll() is None:
            time.sleep(1.0)
            try:
                with open(log_path, errors="replace") as f:
                    f.seek(max(0, os.path.getsize(log_path) - 20000))
                    tail = f.read()
            except OSError:
                continue
            follower.show(tail)
    finally:
        bar.close()


def _run_train_net(
    plan: MethodPlan,
    train_script: str | Sequence[str],
    log_path: str,
    threads: int,
    eval_only: bool,
    output_dir: str,
    overrides: Sequence[str],
    desc: str,
    total: int | None,
) -> tuple[int, float]:
    if isinstance(train_script, str):
        cmd = [sys.executable, train_script]
    else:
        cmd = list(train_script)
    cmd += ["--config-file", plan.config_file]
    if eval_only:
        cmd.append("--eval-only")
    cmd += [*overrides, "OUTPUT_DIR", output_dir]
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env.setdefault("PYTHONUNBUFFERED", "1")
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    start = time.perf_counter()
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            _follow(proc, log_path, desc, total)
        finally:
            rc = proc.wait()
    return rc, time.perf_counter() - start


def _log_tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def run_plan(
    plan: MethodPlan,
    *,
    train_script: str | Sequence[str],
    logs_dir: str,
    threads: int = 1,
    retrain: bool = False,
    upstream_retrained: bool = False,
) -> RunRecord:
    """Train (or reuse) and evaluate one method; return its record.

    Args:
        train_script: path of ``tools/train_net.py``, or the command that trains (e.g.
            ``[sys.executable, "-m", "meshrecon", "train"]``); the config and overrides follow.
        logs_dir: where ``<name>.log`` (the process's output) goes.
        threads: ``OMP_NUM_THREADS`` of the process.
        retrain: train even when a finished identical run exists.
        upstream_retrained: the method it starts from was trained in this invocation, so an
            earlier run of this one started from other weights.
    """
    spec, cfg = plan.spec, plan.cfg
    dataset = cfg.DATASETS.TEST[0]
    log_path = os.path.join(logs_dir, f"{spec.name}.log")
    fingerprint = config_fingerprint(cfg)
    record = RunRecord(
        spec.name,
        "failed",
        output_dir=plan.output_dir,
        log_path=log_path,
        max_iter=int(cfg.SOLVER.MAX_ITER) if spec.train else 0,
    )
    ok, why = reusable(plan)
    results_file = results_path(plan.output_dir, dataset)
    if ok and not retrain and not upstream_retrained:
        record.train_s = _train_seconds(plan.output_dir, fingerprint)
        if not os.path.isfile(results_file):
            # Trained before runs wrote results.json: evaluate into a side folder, so that the
            # run's own config.yaml (the reuse key) stays as it is.
            eval_dir = os.path.join(plan.output_dir, EVAL_SUBDIR)
            weights = tested_checkpoint(cfg, plan.output_dir)
            rc, wall = _run_train_net(
                plan,
                train_script,
                log_path,
                threads,
                True,
                eval_dir,
                [*plan.overrides, "MODEL.WEIGHTS", weights],
                f"{spec.name} (eval)",
                None,
            )
            record.wall_s = wall
            if rc != 0:
                record.reason = f"evaluation exited with {rc}:\n{_log_tail(log_path)}"
                return record
            results_file = results_path(eval_dir, dataset)
        else:
            record.wall_s = 0.0
        record.status = "reused"
    else:
        rc, wall = _run_train_net(
            plan,
            train_script,
            log_path,
            threads,
            not spec.train,
            plan.output_dir,
            plan.overrides,
            spec.name,
            record.max_iter or None,
        )
        record.wall_s = wall
        if rc != 0:
            record.reason = f"train_net.py exited with {rc}:\n{_log_tail(log_path)}"
            return record
        record.train_s = wall if spec.train else 0.0
        record.status = "trained" if spec.train else "evaluated"
        with open(os.path.join(plan.output_dir, RUN_INFO), "w") as f:
            json.dump({"fingerprint": fingerprint, "wall_s": wall, "method": spec.name}, f)
    if not os.path.isfile(results_file):
        record.status = "failed"
        record.reason = f"the run wrote no {results_file}"
        return record
    record.results = _read_json(results_file)
    from meshrecon.engine.validation import summarize_validation

    record.validation = summarize_validation(plan.output_dir) or {}
    try:
        record.row = dict(spec.read_metrics(record.results))
    except KeyError as err:
        record.status = "failed"
        record.reason = f"cannot read the metrics: {err}"
    return record


def load_curve(output_dir: str, key: str = "total_loss") -> tuple[list[int], list[float]]:
    """``(iterations, values)`` of one scalar in a run's ``metrics.json`` (JSONWriter lines)."""
    path = os.path.join(output_dir, "metrics.json")
    its: list[int] = []
    vals: list[float] = []
    if not os.path.isfile(path):
        return its, vals
    with open(path) as f:
        for line in f:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            value = entry.get(key)
            if isinstance(value, (int, float)) and math.isfinite(value) and "iteration" in entry:
                its.append(int(entry["iteration"]))
                vals.append(float(value))
    return its, vals
