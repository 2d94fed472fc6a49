"""Periodic validation: the validation curve, the best checkpoint, and stopping on a plateau.

:class:`ValidationHook` evaluates the model on the validation split (``DATASETS.VAL``, never the
test split) every ``TEST.EVAL_PERIOD`` iterations and after the last one, and

* puts every metric into the event storage as ``val/<metric>`` (so ``metrics.json`` and
  TensorBoard get them at that iteration), with ``val/wall_time_s``, the wall-clock seconds
  since training started;
* keeps the whole curve in ``OUTPUT_DIR/validation.json`` (rewritten atomically after each
  evaluation), the file that reports plot and judge;
* keeps ``OUTPUT_DIR/model_best.pth``, the weights at the best value of ``TEST.BEST_METRIC``
  (direction ``TEST.BEST_MODE``), written atomically with the metric's name, value and the
  iteration inside. A kill while it is written leaves the previous best file as it was. With
  ``--resume`` the best value so far is read back from that file, so the resumed run replaces
  it only with one at least as good (a tie goes to the later model). A best file written
  after the checkpoint a run resumes from stays (it is a model this run produced);
* with ``SOLVER.STOP_ON_PLATEAU``, ends training early once the curve has plateaued
  (:func:`meshrecon.engine.plateau.detect_plateau`); the model of that iteration becomes
  ``model_final.pth`` and the test split is evaluated on it as usual. With
  ``SOLVER.PLATEAU_LR_STEP`` a plateau first brings the next learning-rate step of
  ``SOLVER.STEPS`` forward to that iteration (the curve is then judged afresh from there), and
  training stops only at a plateau with no step left ahead: a curve flat at the high rate gets
  the low rate's gain before it ends;
* with ``TEST.EVAL_BEST``, loads ``model_best.pth`` back into the model after training, so the
  final test evaluation reports the best model instead of the last one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ..checkpoint.checkpointer import _atomic_write
from ..evaluation.testing import flatten_results_dict
from ..solver import apply_scheduled_lr
from ..utils import comm
from .hooks import PeriodicWriter, at_period_or_end
from .plateau import PlateauResult, detect_plateau
from .train_loop import HookBase

__all__ = [
    "BEST_CHECKPOINT",
    "VALIDATION_FILE",
    "ValidationHook",
    "read_best_checkpoint_info",
    "read_validation_file",
    "summarize_validation",
]

logger = logging.getLogger(__name__)

BEST_CHECKPOINT = "model_best.pth"
VALIDATION_FILE = "validation.json"
# Storage names of the validation scalars: "val/<flattened metric>".
PREFIX = "val/"


def read_best_checkpoint_info(path: str) -> dict[str, Any] | None:
    """Return ``{"iteration", "metric", "value", "mode"}`` recorded in a best checkpoint.

    None when ``path`` does not exist. Raises ValueError for a file that is not one.
    """
    if not os.path.isfile(path):
        return None
    data = torch.load(path, map_location="cpu", weights_only=True)
    keys = ("best_iteration", "best_metric", "best_value", "best_mode")
    if not isinstance(data, dict) or any(k not in data for k in keys):
        raise ValueError(f"{path} is not a best checkpoint: it lacks {', '.join(keys)}")
    return {
        "iteration": int(data["best_iteration"]),
        "metric": str(data["best_metric"]),
        "value": float(data["best_value"]),
        "mode": str(data["best_mode"]),
    }


def read_validation_file(output_dir: str) -> dict[str, Any] | None:
    """Return the content of ``output_dir/validation.json`` (None when absent)."""
    path = os.path.join(output_dir, VALIDATION_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _judged_from(start_iter: int, lr_steps_moved: list[dict[str, int]]) -> int:
    """The iteration after which the plateau rule judges a curve (the hook's stop and the
    report alike): ``TEST.PLATEAU_START_ITER``, or the last LR step brought forward, after
    which only the curve at the new rate counts."""
    return max([int(start_iter)] + [int(m["iteration"]) for m in lr_steps_moved])


def summarize_validation(output_dir: str) -> dict[str, Any] | None:
    """What a run's ``validation.json`` says about its end, for reports (None without one).

    Returns ``{"metric", "flat", "text", "evaluated", "best"}``: ``flat`` is the plateau rule
    applied to the whole curve (True, False, or None when undecided or without a metric),
    ``text`` a short phrase such as ``"curve flat at the end (+0.3 in the last 20%)"`` (``"curve
    never moved (0 at all 4 validations)"`` when every validation gave the same value), and
    ``evaluated`` which model the final test evaluation used ("final" or "best (iteration N)").
    """
    saved = read_validation_file(output_dir)
    if not saved:
        return None
    metric, rule = saved.get("metric") or "", saved.get("plateau_rule") or {}
    its, vals = [], []
    for e in saved.get("curve", []):
        v = e.get("metrics", {}).get(metric)
        if v is not None:
            its.append(int(e["iteration"]))
            vals.append(float(v))
    moves = saved.get("lr_steps_moved") or []
    flat, text = None, "no validation metric named (TEST.BEST_METRIC)"
    if metric and its:
        frac = float(rule.get("window_frac", 0.2))
        r = detect_plateau(
            its,
            vals,
            mode=saved.get("mode", "max"),
            window_frac=frac,
            min_delta=float(rule.get("min_delta", 1.0)),
            start_iter=_judged_from(int(rule.get("start_iter", 0)), moves),
        )
        finite = [v for v in vals if math.isfinite(v)]
        flat = r.plateaued if r.decided else None
        if len(set(finite)) == 1:
            # whatever the rule says: not a plateau reached by learning
            text = f"curve never moved ({finite[0]:.3g} at all {len(finite)} validations)"
        elif not r.decided:
            text = f"curve undecided ({len(its)} validations)"
        else:
            state = "flat at the end" if flat else "still improving"
            text = f"curve {state} ({r.improvement:+.3g} in the last {frac:.0%})"
        for m in moves:
            text += f", LR step brought forward to iteration {m['iteration']}"
        if saved.get("stopped_early_at") is not None:
            text += f", stopped at iteration {saved['stopped_early_at']}"
    return {
        "metric": metric,
        "flat": flat,
        "text": text,
        "evaluated": saved.get("final_evaluation"),
        "best": saved.get("best"),
    }


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _jsonable(value: Any) -> Any:
    """``value`` with non-finite floats as None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return _finite_or_none(value)
    return value


class ValidationHook(HookBase):
    """Evaluate on the validation split periodically; log the curve, keep the best model.

    See the module docstring for what it writes. Register it before the
    ``PeriodicCheckpointer`` (so that an early stop saves ``model_final.pth`` at the stopping
    iteration) and before the test ``EvalHook`` (so that ``eval_best`` takes effect first).
    """

    def __init__(
        self,
        eval_period: int,
        eval_function: Callable[[], Mapping[str, Any] | None],
        *,
        model: nn.Module,
        output_dir: str,
        best_metric: str = "",
        best_mode: str = "max",
        plateau_window_frac: float = 0.2,
        plateau_min_delta: float = 1.0,
        plateau_start_iter: int = 0,
        stop_on_plateau: bool = False,
        plateau_lr_step: bool = False,
        eval_best: bool = False,
    ) -> None:
        """
        Args:
            eval_period: validate after every this many iterations (and after the last one);
                0: only after the last one.
            eval_function: evaluates the model on the validation split in every process and
                returns the (nested) metrics, in the main process at least.
            model: the (unwrapped) model whose weights ``model_best.pth`` stores.
            output_dir: where ``model_best.pth`` and ``validation.json`` go.
            best_metric: the flattened metric name to keep the best of, e.g.
                ``"shapenet/F1@0.300000"``; "" keeps no best model.
            best_mode: "max" (higher is better) or "min".
            plateau_window_frac, plateau_min_delta: the plateau rule's window and threshold.
            plateau_start_iter: the rule judges only the validations after this iteration.
            stop_on_plateau: end training once the curve of ``best_metric`` has plateaued.
            plateau_lr_step: with ``stop_on_plateau``, a plateau first brings the scheduler's
                next milestone forward to it; only a plateau with none left ahead stops.
            eval_best: after training, load the best weights into the model for the final
                (test) evaluation.
        """
        if best_mode not in ("max", "min"):
            raise ValueError(f"TEST.BEST_MODE must be 'max' or 'min', got {best_mode!r}")
        if (stop_on_plateau or eval_best) and not best_metric:
            raise ValueError(
                "SOLVER.STOP_ON_PLATEAU and TEST.EVAL_BEST need TEST.BEST_METRIC: the name of "
                "the validation metric to follow, e.g. 'shapenet/F1@0.300000'"
            )
        # Checked here, not at the first plateau test hours later.
        detect_plateau(
            [],
            [],
            window_frac=plateau_window_frac,
            min_delta=plateau_min_delta,
            start_iter=plateau_start_iter,
        )
        self._period = int(eval_period)
        self._func = eval_function
        self._model = model
        self._output_dir = output_dir
        self.best_metric = best_metric
        self.best_mode = best_mode
        self._window_frac = float(plateau_window_frac)
        self._min_delta = float(plateau_min_delta)
        self._start_iter = int(plateau_start_iter)
        self._stop_on_plateau = bool(stop_on_plateau)
        self._plateau_lr_step = bool(plateau_lr_step)
        if self._plateau_lr_step and not self._stop_on_plateau:
            raise ValueError(
                "SOLVER.PLATEAU_LR_STEP moves the LR steps at the plateaus that "
                "SOLVER.STOP_ON_PLATEAU stops at: set SOLVER.STOP_ON_PLATEAU True with it, "
                "or both False to train on past a plateau (e.g. resuming a run that stopped at "
                "one with a larger SOLVER.MAX_ITER)"
            )
        # The LR steps brought forward: [{"iteration": at, "moved_from": the milestone}].
        self.lr_steps_moved: list[dict[str, int]] = []
        self._step_to_move: int | None = None  # decided by the last validation (main process)
        self._eval_best = bool(eval_best)
        self.best_value: float | None = None
        self.best_iteration: int | None = None
        self.history: list[dict[str, Any]] = []
        self.plateau: PlateauResult | None = None
        self.stopped_early_at: int | None = None
        # Which model the final test evaluation saw: "final" or "best (iteration N)".
        self.final_evaluation: str | None = None
        self._time_offset = 0.0
        self._val_seconds = 0.0
        self._start = time.perf_counter()

    @classmethod
    def from_config(
        cls, cfg, model: nn.Module, eval_function: Callable[[], Mapping[str, Any] | None]
    ) -> ValidationHook:
        """Build the hook from ``TEST.*`` and ``SOLVER.STOP_ON_PLATEAU``."""
        return cls(
            cfg.TEST.EVAL_PERIOD,
            eval_function,
            model=model,
            output_dir=cfg.OUTPUT_DIR,
            best_metric=cfg.TEST.BEST_METRIC,
            best_mode=cfg.TEST.BEST_MODE,
            plateau_window_frac=cfg.TEST.PLATEAU_WINDOW_FRAC,
            plateau_min_delta=cfg.TEST.PLATEAU_MIN_DELTA,
            plateau_start_iter=cfg.TEST.PLATEAU_START_ITER,
            stop_on_plateau=cfg.SOLVER.STOP_ON_PLATEAU,
            plateau_lr_step=cfg.SOLVER.PLATEAU_LR_STEP,
            eval_best=cfg.TEST.EVAL_BEST,
        )

    @property
    def best_path(self) -> str:
        return os.path.join(self._output_dir, BEST_CHECKPOINT)

    # ------------------------------------------------------------------ resume
    def before_train(self) -> None:
        self._start = time.perf_counter()
        start_iter = int(self.trainer.start_iter)
        if self._plateau_lr_step and not hasattr(self._scheduler(), "milestones"):
            raise ValueError(
                "SOLVER.PLATEAU_LR_STEP brings the next of SOLVER.STEPS forward: it needs a "
                "step schedule (SOLVER.LR_SCHEDULER_NAME WarmupMultiStepLR), not "
                f"{type(self._scheduler()).__name__}"
            )
        if not self._output_dir:  # nothing is written, nothing to resume
            return
        if start_iter > 0:
            self._restore(start_iter)
        elif os.path.isfile(self.best_path) or read_validation_file(self._output_dir):
            logger.warning(
                "%s holds the validation files of an earlier run; this run starts at iteration "
                "0 and replaces them at its first validation",
                self._output_dir,
            )

    def _restore(self, start_iter: int) -> None:
        """Continue the curve and the best value of the run being resumed."""
        saved = read_validation_file(self._output_dir) or {}
        self.history = [e for e in saved.get("curve", []) if int(e["iteration"]) < start_iter]
        moved = [m for m in saved.get("lr_steps_moved", []) if int(m["iteration"]) < start_iter]
        if self._plateau_lr_step:
            # The checkpoint may predate the move (saved before that validation) or carry this
            # config's schedule: the moves the curve went through are made again.
            for m in moved:
                self._move_milestone(int(m["moved_from"]), int(m["iteration"]))
            self.lr_steps_moved = moved
        if self.history:
            last = self.history[-1]
            # Time to the resumed checkpoint, extrapolated from the last evaluation before it.
            per_iter = float(last["wall_time_s"]) / (int(last["iteration"]) + 1)
            self._time_offset = per_iter * start_iter
            self._val_seconds = float(last.get("validation_time_s", 0.0))
        info = read_best_checkpoint_info(self.best_path) if self.best_metric else None
        if info is None:
            return
        if info["metric"] != self.best_metric or info["mode"] != self.best_mode:
            logger.warning(
                "%s was kept by %s (%s), this run keeps the best by %s (%s): it will be replaced",
                self.best_path,
                info["metric"],
                info["mode"],
                self.best_metric,
                self.best_mode,
            )
            return
        self.best_value, self.best_iteration = info["value"], info["iteration"]
        logger.info(
            "Resumed the best model: %s = %.6g at iteration %d (%s)",
            self.best_metric,
            self.best_value,
            self.best_iteration,
            self.best_path,
        )

    # ------------------------------------------------------------------ validating
    def after_step(self) -> None:
        if at_period_or_end(self.trainer, self._period):
            self._validate()

    def _validate(self) -> None:
        iteration = int(self.trainer.iter)
        t0 = time.perf_counter()
        results = self._func()
        self._val_seconds += time.perf_counter() - t0
        stop = False
        self._step_to_move = None
        if comm.is_main_process():
            if not isinstance(results, Mapping) or not results:
                raise ValueError(
                    "the validation returned no metrics (is DATASETS.VAL a split with an "
                    f"evaluator?), got {results!r}"
                )
            stop = self._record(iteration, results)
        move = self._step_to_move
        if comm.get_world_size() > 1:
            stop = any(comm.all_gather(stop))
            move = next((m for m in comm.all_gather(move) if m is not None), None)
        if move is not None:  # every process: their optimizers must keep one rate
            self._move_milestone(move, iteration)
            if not comm.is_main_process():
                self.lr_steps_moved.append({"iteration": iteration, "moved_from": move})
            logger.info(
                "LR step of iteration %d brought forward to iteration %d (LR now %g)",
                move,
                iteration + 1,
                self._scheduler().optimizer.param_groups[0]["lr"],
            )
        if stop:
            self.stopped_early_at = iteration
            # TrainerBase ends its loop after this step; iter == max_iter then marks training
            # as completed for the hooks' after_train (final checkpoint and test evaluation).
            self.trainer.max_iter = iteration + 1
        comm.synchronize()

    def _record(self, iteration: int, results: Mapping[str, Any]) -> bool:
        """Log, save and judge one evaluation (main process); return whether to stop."""
        metrics: dict[str, float] = {}
        for key, value in flatten_results_dict(results).items():
            try:
                metrics[key] = float(value)
            except (TypeError, ValueError) as err:
                raise ValueError(f"the validation returned non-scalar {key!r}={value!r}") from err
        wall = self._time_offset + time.perf_counter() - self._start
        entry = {
            "iteration": iteration,
            "wall_time_s": round(wall, 3),
            "validation_time_s": round(self._val_seconds, 3),
            "metrics": {k: _finite_or_none(v) for k, v in metrics.items()},
        }
        self.history.append(entry)
        self.trainer.storage.put_scalars(
            **{PREFIX + k: v for k, v in metrics.items()},
            **{PREFIX + "wall_time_s": wall},
            smoothing_hint=False,
        )
        # Written now: the writers keep only each scalar's latest value until their period.
        for hook in getattr(self.trainer, "_hooks", []):
            if isinstance(hook, PeriodicWriter):
                hook.write()
        stop = False
        if self.best_metric:
            if self.best_metric not in metrics:
                raise ValueError(
                    f"TEST.BEST_METRIC={self.best_metric!r} is not among the validation "
                    f"metrics: {sorted(metrics)}"
                )
            value = metrics[self.best_metric]
            if self._is_better(value):
                self._save_best(iteration, value)
            self.plateau = self._judge(iteration)
            ahead = self._next_milestone(iteration) if self._plateau_lr_step else None
            if self._stop_on_plateau and self.plateau.plateaued and ahead is not None:
                # Made by _validate in every process; recorded (and judged from) here.
                self._step_to_move = ahead
                self.lr_steps_moved.append({"iteration": iteration, "moved_from": ahead})
                logger.info(
                    "The validation curve of %s is %s at iteration %d: the LR step of "
                    "iteration %d comes forward to it; the curve is judged afresh from here",
                    self.best_metric,
                    self.plateau.reason,
                    iteration,
                    ahead,
                )
            elif self._stop_on_plateau and self.plateau.plateaued:
                logger.info(
                    "Stopping at iteration %d: the validation curve of %s is %s",
                    iteration,
                    self.best_metric,
                    self.plateau.reason,
                )
                stop = True
        self._write_file(stopped=iteration if stop else None)
        return stop

    def _is_better(self, value: float) -> bool:
        # A tie goes to the later, longer-trained model: a metric stuck at its floor (a
        # detector's AP^mesh of 0 before its boxes are good) would otherwise keep, and with
        # TEST.EVAL_BEST test, the first validation's model.
        if not math.isfinite(value):
            return False
        if self.best_value is None:
            return True
        return value >= self.best_value if self.best_mode == "max" else value <= self.best_value

    def _save_best(self, iteration: int, value: float) -> None:
        data = {
            "model": self._model.state_dict(),
            "best_iteration": iteration,
            "best_metric": self.best_metric,
            "best_value": value,
            "best_mode": self.best_mode,
        }
        # Through a temporary file and a rename: a kill mid-write keeps the previous best.
        if self._output_dir:
            _atomic_write(self.best_path, lambda f: torch.save(data, f))
        previous = self.best_value
        self.best_value, self.best_iteration = value, iteration
        logger.info(
            "New best %s = %.6g at iteration %d (was %s); saved %s",
            self.best_metric,
            value,
            iteration,
            "none" if previous is None else f"{previous:.6g}",
            self.best_path,
        )

    def curve(self, metric: str | None = None) -> tuple[list[int], list[float]]:
        """``(iterations, values)`` of one validation metric (default: ``best_metric``)."""
        metric = metric or self.best_metric
        its, vals = [], []
        for e in self.history:
            v = e["metrics"].get(metric)
            if v is not None:
                its.append(int(e["iteration"]))
                vals.append(float(v))
        return its, vals

    def _judge(self, iteration: int) -> PlateauResult:
        its, vals = self.curve()
        start = _judged_from(self._start_iter, self.lr_steps_moved)
        return detect_plateau(
            its,
            vals,
            mode=self.best_mode,
            window_frac=self._window_frac,
            min_delta=self._min_delta,
            last_iter=iteration,
            start_iter=start,
        )

    # ------------------------------------------------------------------ LR steps on plateaus
    def _scheduler(self) -> Any:
        return getattr(self.trainer, "scheduler", None)

    def _next_milestone(self, iteration: int) -> int | None:
        """The scheduler's first LR step after ``iteration`` and before the end, or None."""
        ahead = [
            int(m)
            for m in getattr(self._scheduler(), "milestones", [])
            if iteration + 1 < int(m) < self.trainer.max_iter
        ]
        return min(ahead) if ahead else None

    def _move_milestone(self, milestone: int, iteration: int) -> None:
        """Move the LR step at ``milestone`` to ``iteration + 1`` (the next step's LR) and set
        the optimizer's rates at once; nothing when it has moved already."""
        scheduler = self._scheduler()
        milestones = list(scheduler.milestones)
        if milestone not in milestones:
            return
        milestones[milestones.index(milestone)] = iteration + 1
        scheduler.milestones = sorted(milestones)
        # At the scheduler's position: dropped for the next step if the scheduler has stepped
        # past this iteration already, else at its coming step.
        apply_scheduled_lr(scheduler)

    def _write_file(self, stopped: int | None = None) -> None:
        if not self._output_dir:
            return
        data = {
            "metric": self.best_metric,
            "mode": self.best_mode,
            "best": None
            if self.best_iteration is None
            else {"iteration": self.best_iteration, "value": self.best_value},
            "plateau_rule": {
                "window_frac": self._window_frac,
                "min_delta": self._min_delta,
                "start_iter": self._start_iter,
            },
            "plateau": None if self.plateau is None else dict(self.plateau.__dict__),
            "stopped_early_at": stopped if stopped is not None else self.stopped_early_at,
            "lr_steps_moved": self.lr_steps_moved,
            "final_evaluation": self.final_evaluation,
            "curve": self.history,
        }
        text = json.dumps(_jsonable(data), indent=1, allow_nan=False)
        _atomic_write(
            os.path.join(self._output_dir, VALIDATION_FILE), lambda f: f.write(text), mode="w"
        )

    # ------------------------------------------------------------------ the end
    def after_train(self) -> None:
        if self.trainer.iter >= self.trainer.max_iter:  # completed, not failed
            if self._eval_best:
                # Every process loads the file the main process wrote (as --resume does).
                self._load_best()
            else:
                self.final_evaluation = "final"
            if comm.is_main_process() and self.history:
                self._write_file()
        del self._func

    def _load_best(self) -> None:
        if not os.path.isfile(self.best_path):
            logger.warning(
                "TEST.EVAL_BEST: no %s; the test evaluation uses the final model", self.best_path
            )
            self.final_evaluation = "final"
            return
        data = torch.load(self.best_path, map_location="cpu", weights_only=True)
        self._model.load_state_dict(data["model"])
        iteration = int(data["best_iteration"])
        logger.info(
            "TEST.EVAL_BEST: the test evaluation uses %s (%s = %.6g at iteration %d)",
            self.best_path,
            data["best_metric"],
            float(data["best_value"]),
            iteration,
        )
        self.final_evaluation = f"best (iteration {iteration})"
