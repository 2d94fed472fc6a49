"""Periodic validation, the best checkpoint (model_best.pth) and stopping on a plateau."""

import glob
import json
import os

import pytest
import torch
from toy_task import TOY_TEST, toy_cfg

from meshrecon.data import DatasetCatalog, MetadataCatalog
from meshrecon.engine import CallbackHook, DefaultTrainer
from meshrecon.engine import validation as validation_module
from meshrecon.evaluation import DatasetEvaluator, register_evaluator, registered_evaluator_types
from meshrecon.utils.events import get_event_storage

TOY_VAL = "toy_val_curve"
# The score the fake evaluator reports at each iteration it is called at (else 0).
CURVE: dict[int, float] = {}


class CurveEvaluator(DatasetEvaluator):
    """Reports ``CURVE[iteration]`` as ``curve/score``, whatever the model predicts."""

    def __init__(self, cfg=None, dataset_name=TOY_VAL, output_dir=None):
        pass

    def reset(self):
        pass

    def process(self, inputs, outputs):
        pass

    def evaluate(self):
        it = get_event_storage().iter
        return {"curve": {"score": CURVE.get(it, 0.0), "iteration": float(it)}}


if "curve" not in registered_evaluator_types():
    register_evaluator("curve", CurveEvaluator)
if TOY_VAL not in DatasetCatalog:
    from toy_task import toy_dicts

    DatasetCatalog.register(TOY_VAL, lambda: toy_dicts(5, seed=2))
    MetadataCatalog.get(TOY_VAL).evaluator_type = "curve"


def _cfg(tmp_path, **overrides):
    opts = {
        "DATASETS.VAL": (TOY_VAL,),
        "TEST.EVAL_PERIOD": 10,
        "TEST.BEST_METRIC": "curve/score",
        "SOLVER.MAX_ITER": 50,
        "SOLVER.CHECKPOINT_PERIOD": 10,
    }
    opts.update(overrides)
    return toy_cfg(str(tmp_path), **opts)


def _train(cfg, resume=False, extra_hooks=()):
    trainer = DefaultTrainer(cfg)
    trainer.register_hooks(extra_hooks)
    trainer.resume_or_load(resume=resume)
    return trainer, trainer.train()


def _best(tmp_path):
    return torch.load(tmp_path / "model_best.pth", map_location="cpu", weights_only=True)


def _metrics(tmp_path):
    with open(tmp_path / "metrics.json") as f:
        return [json.loads(line) for line in f]


@pytest.fixture
def curve():
    CURVE.clear()
    # Evaluations after iterations 9, 19, ..., 49: the score peaks at iteration 29.
    CURVE.update({9: 1.0, 19: 3.0, 29: 7.0, 39: 4.0, 49: 2.0})
    yield CURVE
    CURVE.clear()


def test_best_checkpoint_keeps_the_peak_and_the_curve_is_logged(tmp_path, curve):
    trainer, results = _train(_cfg(tmp_path))
    best = _best(tmp_path)
    assert best["best_iteration"] == 29 and best["best_value"] == 7.0
    assert best["best_metric"] == "curve/score" and best["best_mode"] == "max"
    # Its weights are the model of iteration 29 (the periodic checkpoint of that iteration),
    # not the final one.
    at_29 = torch.load(tmp_path / "model_0000029.pth", map_location="cpu", weights_only=True)
    final = torch.load(tmp_path / "model_final.pth", map_location="cpu", weights_only=True)
    for key, value in best["model"].items():
        assert torch.equal(value, at_29["model"][key])
    assert any(not torch.equal(v, final["model"][k]) for k, v in best["model"].items())
    # metrics.json: the validation metrics at their iterations, with the wall-clock time.
    lines = [d for d in _metrics(tmp_path) if "val/curve/score" in d]
    assert [d["iteration"] for d in lines] == [9, 19, 29, 39, 49]
    assert [d["val/curve/score"] for d in lines] == [1.0, 3.0, 7.0, 4.0, 2.0]
    times = [d["val/wall_time_s"] for d in lines]
    assert all(b > a for a, b in zip(times, times[1:])) and times[0] > 0
    # With a validation split the test split is evaluated once, after training (iteration 50).
    assert [d["iteration"] for d in _metrics(tmp_path) if "toy/mse" in d] == [50]
    assert results["toy"]["count"] == 13
    saved = json.loads((tmp_path / "validation.json").read_text())
    assert saved["best"] == {"iteration": 29, "value": 7.0}
    assert [e["iteration"] for e in saved["curve"]] == [9, 19, 29, 39, 49]
    assert saved["final_evaluation"] == "final"


def test_a_tie_keeps_the_later_model(tmp_path, curve):
    # 5.0 at 19, 29 and 49: the best is the last of them; a curve stuck at 0 (a detector's
    # AP^mesh before it learns) keeps the last validation's model, not the first one's.
    curve.update({9: 3.0, 19: 5.0, 29: 5.0, 39: 4.0, 49: 5.0})
    _train(_cfg(tmp_path))
    assert _best(tmp_path)["best_iteration"] == 49
    curve.clear()
    _train(_cfg(tmp_path / "flat"))
    best = _best(tmp_path / "flat")
    assert best["best_iteration"] == 49 and best["best_value"] == 0.0


def test_resume_keeps_a_better_best(tmp_path, curve):
    def crash(trainer):
        if trainer.iter == 35:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        _train(_cfg(tmp_path), extra_hooks=[CallbackHook(after_step=crash)])
    before = _best(tmp_path)
    assert before["best_iteration"] == 29
    mtime = os.path.getmtime(tmp_path / "model_best.pth")
    # The resumed run starts at 30; its evaluations (4 at 39, 2 at 49) are worse than 7. A
    # hook that forgot the best would write model_best.pth at iteration 39.
    trainer, _ = _train(_cfg(tmp_path), resume=True)
    assert trainer.start_iter == 30
    after = _best(tmp_path)
    assert after["best_iteration"] == 29 and after["best_value"] == 7.0
    assert os.path.getmtime(tmp_path / "model_best.pth") == mtime
    for key, value in before["model"].items():
        assert torch.equal(value, after["model"][key])
    # The curve continues: the evaluations before the resumed checkpoint, then the new ones.
    saved = json.loads((tmp_path / "validation.json").read_text())
    assert [e["iteration"] for e in saved["curve"]] == [9, 19, 29, 39, 49]


def test_resume_replaces_the_best_with_a_better_one(tmp_path, curve):
    curve.update({39: 9.0})

    def crash(trainer):
        if trainer.iter == 35:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        _train(_cfg(tmp_path), extra_hooks=[CallbackHook(after_step=crash)])
    _train(_cfg(tmp_path), resume=True)
    assert _best(tmp_path)["best_iteration"] == 39


def test_a_kill_while_saving_the_best_leaves_the_previous_one(tmp_path, curve, monkeypatch):
    curve.update({9: 1.0, 19: 3.0, 29: 7.0})
    real_save = torch.save
    calls = []

    def save_then_die(obj, f, *args, **kwargs):
        if "best_iteration" not in obj:  # a periodic checkpoint: saved as usual
            return real_save(obj, f, *args, **kwargs)
        calls.append(obj["best_iteration"])
        if obj["best_iteration"] == 29:
            f.write(b"half a checkpoint")  # bytes on disk, then the process dies
            raise KeyboardInterrupt("killed while saving model_best.pth")
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(validation_module.torch, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _train(_cfg(tmp_path))
    monkeypatch.setattr(validation_module.torch, "save", real_save)
    assert calls == [9, 19, 29]
    best = _best(tmp_path)  # loads: the previous complete file
    assert best["best_iteration"] == 19 and best["best_value"] == 3.0
    assert not glob.glob(str(tmp_path / ".model_best.pth.*"))  # no temporary file left


def test_stop_on_plateau_ends_training_and_saves_the_final_model(tmp_path):
    CURVE.clear()
    # Rises 1.0 per evaluation to 9.9 at iteration 99, then flat. With a 20% window and a 0.5
    # threshold: at T = 119 the window (> 95.2) holds 99 (9.9) against 8.9 before it: +1.0,
    # still improving; at T = 129 the window (> 103.2) holds 109-129 against 9.9 at 99: +0,
    # flat: training stops after iteration 129.
    CURVE.update({it: min(it, 99) / 10.0 for it in range(9, 400, 10)})
    cfg = _cfg(
        tmp_path,
        **{
            "SOLVER.MAX_ITER": 400,
            "SOLVER.STOP_ON_PLATEAU": True,
            "TEST.PLATEAU_MIN_DELTA": 0.5,
            "SOLVER.CHECKPOINT_PERIOD": 1000,
        },
    )
    trainer, results = _train(cfg)
    CURVE.clear()
    saved = json.loads((tmp_path / "validation.json").read_text())
    assert saved["stopped_early_at"] == 129
    assert saved["plateau"]["plateaued"] and saved["plateau"]["decided"]
    assert trainer.iter == 130 == trainer.max_iter
    final = torch.load(tmp_path / "model_final.pth", map_location="cpu", weights_only=True)
    assert final["iteration"] == 129
    assert results["toy"]["count"] == 13  # the test split was evaluated after the stop
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    # What the benchmark report says about this run's end.
    summary = validation_module.summarize_validation(str(tmp_path))
    assert summary["flat"] is True and summary["metric"] == "curve/score"
    assert "flat at the end" in summary["text"] and "stopped at iteration 129" in summary["text"]


def test_plateau_start_iter_keeps_training_through_a_flat_first_phase(tmp_path):
    # Flat at 1.0 up to iteration 99 (a voxel-only phase), then rising 1.0 per validation to
    # 5.0 at 139, then flat; threshold 0.5. Judged on the whole curve, training stops at 59
    # (the window > 47.2 holds 49 and 59 at 1.0, as before it). With TEST.PLATEAU_START_ITER
    # 99 only 109 on is judged: at 169 the window (> 135.2: 5.0) still beats 4.0 (129) by 1.0;
    # at 179 (> 143.2) it holds 5.0 against 5.0 at 139: flat, the stop.
    CURVE.clear()
    CURVE.update(
        {it: 1.0 if it <= 99 else min(5.0, (it - 99) / 10.0 + 1.0) for it in range(9, 400, 10)}
    )
    opts = {
        "SOLVER.MAX_ITER": 400,
        "SOLVER.STOP_ON_PLATEAU": True,
        "TEST.PLATEAU_MIN_DELTA": 0.5,
        "SOLVER.CHECKPOINT_PERIOD": 1000,
    }
    _train(_cfg(tmp_path / "whole", **opts))
    whole = json.loads((tmp_path / "whole" / "validation.json").read_text())
    assert whole["stopped_early_at"] == 59
    _train(_cfg(tmp_path / "phase", **opts, **{"TEST.PLATEAU_START_ITER": 99}))
    CURVE.clear()
    saved = json.loads((tmp_path / "phase" / "validation.json").read_text())
    assert saved["plateau_rule"]["start_iter"] == 99
    assert saved["stopped_early_at"] == 179
    summary = validation_module.summarize_validation(str(tmp_path / "phase"))
    assert summary["flat"] is True and "stopped at iteration 179" in summary["text"]


def _rates(store):
    """A hook that records the LR each step trains with."""
    return CallbackHook(
        before_step=lambda t: store.__setitem__(t.iter, t.optimizer.param_groups[0]["lr"])
    )


def test_plateau_lr_step_brings_the_step_forward_then_stops(tmp_path):
    # Rising to 9.9 at 99, then flat; threshold 0.5; one LR step at 300 of 400. Without
    # SOLVER.PLATEAU_LR_STEP training stops at 129 (see the test above). With it the plateau
    # at 129 brings the step forward to 130 and the curve is judged again from 129 on: at 179
    # (window > 143.2) it holds 9.9 against 9.9 at 139 before it: flat, no step left: the stop.
    CURVE.clear()
    CURVE.update({it: min(it, 99) / 10.0 for it in range(9, 400, 10)})
    opts = {
        "SOLVER.MAX_ITER": 400,
        "SOLVER.STEPS": (300,),
        "SOLVER.STOP_ON_PLATEAU": True,
        "SOLVER.PLATEAU_LR_STEP": True,
        "TEST.PLATEAU_MIN_DELTA": 0.5,
        "SOLVER.CHECKPOINT_PERIOD": 10,
    }
    rates = {}
    trainer, _ = _train(_cfg(tmp_path / "run", **opts), extra_hooks=[_rates(rates)])
    saved = json.loads((tmp_path / "run" / "validation.json").read_text())
    assert saved["lr_steps_moved"] == [{"iteration": 129, "moved_from": 300}]
    assert saved["stopped_early_at"] == 179 and trainer.iter == 180 == trainer.max_iter
    assert rates[129] == pytest.approx(0.01) and rates[130] == pytest.approx(0.001)
    assert rates[179] == pytest.approx(0.001)
    # The checkpoint of the plateau's iteration carries the moved step.
    at_129 = torch.load(tmp_path / "run" / "model_0000129.pth", weights_only=False)
    assert at_129["scheduler"]["milestones"] == [130]
    summary = validation_module.summarize_validation(str(tmp_path / "run"))
    assert summary["flat"] is True
    assert "LR step brought forward to iteration 129, stopped at iteration 179" in summary["text"]

    # Killed at 150 and resumed from a checkpoint saved before the move (its scheduler holds
    # the config's step at 300): the move recorded in validation.json is made again, and the
    # run ends as the uninterrupted one did.
    def crash(t):
        if t.iter == 150:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        _train(_cfg(tmp_path / "resumed", **opts), extra_hooks=[CallbackHook(after_step=crash)])
    ckpt = tmp_path / "resumed" / "model_0000149.pth"
    state = torch.load(ckpt, weights_only=False)
    state["scheduler"]["milestones"] = [300]
    torch.save(state, ckpt)
    rates = {}
    trainer, _ = _train(
        _cfg(tmp_path / "resumed", **opts), resume=True, extra_hooks=[_rates(rates)]
    )
    assert trainer.start_iter == 150 and trainer.iter == 180
    assert min(rates) == 150 and rates[150] == pytest.approx(0.001)
    again = json.loads((tmp_path / "resumed" / "validation.json").read_text())
    assert again["lr_steps_moved"] == saved["lr_steps_moved"]
    assert again["stopped_early_at"] == 179
    CURVE.clear()


@pytest.mark.slow
def test_plateau_lr_step_moves_the_rate_of_every_process(tmp_path):
    # Two processes; only the main one judges the curve (min(iteration, 19), validated every 5
    # iterations): the plateau at 29 must drop the rate of both, or their replicas diverge.
    # Judged afresh from 29, the curve is flat again at 44: the stop.
    from toy_task import TOY_CURVE_VAL, read_records, train_toy_record_main

    from meshrecon.engine import launch

    overrides = {
        "DATASETS.VAL": (TOY_CURVE_VAL,),
        "TEST.EVAL_PERIOD": 5,
        "TEST.BEST_METRIC": "curve/score",
        "TEST.PLATEAU_MIN_DELTA": 0.5,
        "SOLVER.STOP_ON_PLATEAU": True,
        "SOLVER.PLATEAU_LR_STEP": True,
        "SOLVER.MAX_ITER": 200,
        "SOLVER.STEPS": (150,),
        "SOLVER.CHECKPOINT_PERIOD": 1000,
    }
    out, rec = tmp_path / "run", tmp_path / "records"
    launch(train_toy_record_main, 2, dist_url="auto", args=(str(out), overrides, str(rec)))
    saved = json.loads((out / "validation.json").read_text())
    assert saved["lr_steps_moved"] == [{"iteration": 29, "moved_from": 150}]
    assert saved["stopped_early_at"] == 44
    records = read_records(str(rec))
    assert sorted(records) == [0, 1]
    for steps in records.values():
        assert max(steps) == 44
        assert steps[29]["lr"] == pytest.approx(0.01)
        assert steps[30]["lr"] == pytest.approx(0.001) and steps[44]["lr"] == pytest.approx(0.001)


def test_plateau_lr_step_needs_the_stop_and_a_step_schedule(tmp_path):
    # The message names both ways out: the stop with it, or neither (training past a plateau).
    with pytest.raises(ValueError, match="STOP_ON_PLATEAU True with it, or both False"):
        DefaultTrainer(_cfg(tmp_path, **{"SOLVER.PLATEAU_LR_STEP": True}))
    cosine = _cfg(
        tmp_path / "cosine",
        **{
            "SOLVER.PLATEAU_LR_STEP": True,
            "SOLVER.STOP_ON_PLATEAU": True,
            "SOLVER.LR_SCHEDULER_NAME": "WarmupCosineLR",
        },
    )
    with pytest.raises(ValueError, match="WarmupMultiStepLR"):
        _train(cosine)


def test_a_curve_at_zero_does_not_stop_training(tmp_path):
    # AP^mesh at 0 for the first validations must neither stop the run nor drop its rate.
    CURVE.clear()
    CURVE.update({it: 0.0 if it < 150 else 1.0 for it in range(9, 200, 10)})
    opts = {
        "SOLVER.MAX_ITER": 200,
        "SOLVER.STEPS": (180,),
        "SOLVER.STOP_ON_PLATEAU": True,
        "SOLVER.PLATEAU_LR_STEP": True,
        "TEST.PLATEAU_MIN_DELTA": 0.01,
        "SOLVER.CHECKPOINT_PERIOD": 1000,
    }
    trainer, _ = _train(_cfg(tmp_path, **opts))
    CURVE.clear()
    saved = json.loads((tmp_path / "validation.json").read_text())
    # Judged on zeros alone the rule found it flat at 59 (window 49-59 against 9-39): the step
    # would have come forward there and training stopped at 99. Undecided while at 0, rising
    # from 159, flat only at 199 (window > 159.2 against 1.0 at 159), the last validation,
    # with the step at 180 behind it.
    assert saved["lr_steps_moved"] == []
    assert saved["stopped_early_at"] == 199 and trainer.iter == 200
    assert [e["iteration"] for e in saved["curve"]][-1] == 199


def test_summary_names_a_curve_that_never_moved(tmp_path):
    # An all-zero curve (a detector's AP^mesh early in training) has not started: undecided;
    # a constant non-zero one is flat by the rule. Neither is a plateau reached by learning,
    # and the report says so.
    def write(values):
        curve = [{"iteration": 10 * (k + 1) - 1, "metrics": {"m": v}} for k, v in enumerate(values)]
        saved = {"metric": "m", "mode": "max", "curve": curve}
        saved["plateau_rule"] = {"window_frac": 0.2, "min_delta": 1.0}
        (tmp_path / "validation.json").write_text(json.dumps(saved))
        return validation_module.summarize_validation(str(tmp_path))

    summary = write([0.0] * 6)
    assert summary["flat"] is None
    assert summary["text"] == "curve never moved (0 at all 6 validations)"
    constant = write([5.0] * 6)
    assert constant["flat"] is True
    assert constant["text"] == "curve never moved (5 at all 6 validations)"
    moving = write([0.0, 2.0, 2.5, 2.6, 2.6, 2.6])
    assert moving["flat"] is True and moving["text"].startswith("curve flat at the end (")


def test_eval_best_tests_the_best_model(tmp_path, curve):
    trainer, results = _train(_cfg(tmp_path, **{"TEST.EVAL_BEST": True}))
    best = _best(tmp_path)
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, best["model"][key])
    saved = json.loads((tmp_path / "validation.json").read_text())
    assert saved["final_evaluation"] == "best (iteration 29)"
    # model_final.pth is still the last iteration's model.
    final = torch.load(tmp_path / "model_final.pth", map_location="cpu", weights_only=True)
    assert final["iteration"] == 49
    # The benchmark report's status says which model was tested and how the curve ended: five
    # evaluations leave one in the last 20%, too few for a verdict (two are needed).
    from meshrecon.apps.method_benchmark.report import status_text
    from meshrecon.apps.method_benchmark.runner import RunRecord

    summary = validation_module.summarize_validation(str(tmp_path))
    assert summary["evaluated"] == "best (iteration 29)" and summary["flat"] is None
    record = RunRecord("toy", "trained", max_iter=50, validation=summary)
    text = status_text(record)
    assert text.startswith("trained (50 it); curve undecided (5 validations)")
    assert text.endswith("tested: best (iteration 29) model")
    assert status_text(RunRecord("toy", "trained", max_iter=50)) == "trained (50 it)"


def test_config_mistakes_are_clear_errors(tmp_path, curve):
    with pytest.raises(ValueError, match="DATASETS.VAL"):
        DefaultTrainer(_cfg(tmp_path, **{"DATASETS.VAL": ()}))
    with pytest.raises(ValueError, match="must not see a test split"):
        DefaultTrainer(_cfg(tmp_path, **{"DATASETS.VAL": (TOY_TEST,)}))
    with pytest.raises(ValueError, match="BEST_MODE"):
        DefaultTrainer(_cfg(tmp_path, **{"TEST.BEST_MODE": "up"}))
    with pytest.raises(ValueError, match="PLATEAU_WINDOW_FRAC"):
        DefaultTrainer(_cfg(tmp_path, **{"TEST.PLATEAU_WINDOW_FRAC": 1.5}))
    with pytest.raises(ValueError, match=r"'curve/score', 'curve/iteration'|not among"):
        _train(_cfg(tmp_path, **{"TEST.BEST_METRIC": "curve/F1"}))


def test_without_a_validation_split_nothing_changes(tmp_path):
    cfg = toy_cfg(str(tmp_path), **{"TEST.EVAL_PERIOD": 20, "SOLVER.MAX_ITER": 50})
    trainer, _ = _train(cfg)
    assert not any(isinstance(h, validation_module.ValidationHook) for h in trainer._hooks)
    # The test split is evaluated every EVAL_PERIOD, as before.
    assert [d["iteration"] for d in _metrics(tmp_path) if "toy/mse" in d] == [19, 39, 50]
    assert not (tmp_path / "model_best.pth").exists()
