import json
import logging
import os

import numpy as np
import pytest
import torch
from torch import nn
from toy_task import TOY_TEST, toy_cfg

from meshrecon.checkpoint import Checkpointer
from meshrecon.data import DatasetCatalog, build_train_loader
from meshrecon.engine import (
    CallbackHook,
    DefaultPredictor,
    DefaultTrainer,
    EvalHook,
    SimpleTrainer,
    default_argument_parser,
    default_setup,
)
from meshrecon.utils.env import seed_all_rng


def _train(cfg):
    # As default_setup does: the model's initialization and the sampler's stream (whose seed is
    # drawn from NumPy's generator) follow cfg.SEED, not whatever ran before in this process.
    seed_all_rng(cfg.SEED)
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=False)
    return trainer, trainer.train()


def _metrics(output_dir):
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f]


def test_toy_training_loss_falls_and_eval_only_reproduces_metrics(tmp_path):
    cfg = toy_cfg(str(tmp_path))
    trainer, results = _train(cfg)
    lines = _metrics(tmp_path)
    losses = [d["loss_mse"] for d in lines if "loss_mse" in d]
    assert losses[-1] < 0.5 * losses[0], losses
    assert lines[-1]["iteration"] == 50 and lines[-1]["toy/count"] == 13  # final evaluation
    assert results["toy"]["count"] == 13 and results["toy"]["unique"] == 13
    assert os.path.exists(tmp_path / "model_final.pth")
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"

    # --eval-only path: a fresh model loaded from the saved weights gives the same metrics.
    eval_cfg = cfg.clone()
    eval_cfg.defrost()
    eval_cfg.MODEL.WEIGHTS = str(tmp_path / "model_final.pth")
    model = DefaultTrainer.build_model(eval_cfg)
    Checkpointer(model, save_dir=str(tmp_path)).resume_or_load(eval_cfg.MODEL.WEIGHTS, resume=False)
    assert DefaultTrainer.test(eval_cfg, model) == results


class _LossModel(nn.Module):
    """Losses from a parameter; ``bad_iter`` makes ``loss_bad`` NaN at that call."""

    def __init__(self, bad_iter=None, bad_value=float("nan")):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(1.0))
        self.calls = 0
        self.bad_iter, self.bad_value = bad_iter, bad_value

    def forward(self, batch):
        bad = self.w * 0 + (self.bad_value if self.calls == self.bad_iter else 0.0)
        self.calls += 1
        return {"loss_good": (self.w - 3.0) ** 2, "loss_bad": bad}


def _forever():
    while True:
        yield [0]


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf")])
def test_non_finite_loss_names_the_term_and_iteration(bad_value):
    model = _LossModel(bad_iter=3, bad_value=bad_value)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = SimpleTrainer(model, _forever(), optimizer)
    before = None

    def remember(t):
        nonlocal before
        before = model.w.detach().clone()

    trainer.register_hooks([CallbackHook(after_step=remember)])
    with pytest.raises(FloatingPointError) as err:
        trainer.train(0, 10)
    message = str(err.value)
    assert "loss_bad" in message and "iteration 3" in message
    assert "loss_good=" not in message.split(";")[0]  # only the bad term is blamed
    assert torch.equal(model.w.detach(), before)  # no update from the bad step


def test_simple_trainer_clips_gradients_and_requires_cuda_for_amp():
    model = _LossModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    seen = []

    def clipper(params):
        params = list(params)
        seen.append(params[0].grad.item())
        torch.nn.utils.clip_grad_value_(params, 0.5)

    trainer = SimpleTrainer(model, _forever(), optimizer, grad_clipper=clipper)
    trainer.train(0, 1)
    assert seen == [-4.0]  # d/dw (w - 3)^2 at w = 1
    assert model.w.item() == pytest.approx(1.5)  # clipped to 0.5, lr 1
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            SimpleTrainer(model, _forever(), optimizer, amp=True)


def test_eval_hook_runs_periodically_and_after_training():
    calls = []
    model = _LossModel()
    trainer = SimpleTrainer(model, _forever(), torch.optim.SGD(model.parameters(), lr=0.01))

    def evaluate():
        calls.append(trainer.iter)
        return {"task": {"metric": float(len(calls))}}

    trainer.register_hooks([EvalHook(4, evaluate)])
    trainer.train(0, 10)
    assert calls == [3, 7, 10]
    assert trainer.storage.latest()["task/metric"] == (3.0, 10)


def test_periodic_writer_writes_every_period_the_last_step_and_at_the_end():
    from meshrecon.engine.hooks import PeriodicWriter
    from meshrecon.utils.events import EventWriter

    model = _LossModel()
    trainer = SimpleTrainer(model, _forever(), torch.optim.SGD(model.parameters(), lr=0.01))

    class Recorder(EventWriter):
        def __init__(self):
            self.iters, self.closed = [], False

        def write(self):
            self.iters.append(trainer.iter)

        def close(self):
            self.closed = True

    recorder = Recorder()
    trainer.register_hooks([PeriodicWriter([recorder], period=4)])
    trainer.train(0, 10)
    # After steps 3 and 7 (each fourth), after the last step (9), and once more at the end.
    assert recorder.iters == [3, 7, 9, 10] and recorder.closed
    with pytest.raises(TypeError, match="EventWriter"):
        PeriodicWriter([object()])


def test_skipped_samples_are_counted_in_the_event_storage(tmp_path):
    cfg = toy_cfg(str(tmp_path), **{"SOLVER.MAX_ITER": 3, "DATASETS.TEST": ()})

    def mapper(d):
        if d["image_id"] % 4 == 0:
            raise OSError(f"cannot read sample {d['image_id']}")
        return d

    loader = build_train_loader(cfg, mapper=mapper)
    model = DefaultTrainer.build_model(cfg)
    trainer = SimpleTrainer(model, loader, torch.optim.SGD(model.parameters(), lr=0.01))
    trainer.train(0, 3)
    skipped = trainer.storage.history("data/skipped_samples").latest()
    assert skipped == loader.dataset.num_skipped and skipped > 0


def test_amp_on_cpu_is_ignored_with_a_warning(tmp_path, caplog):
    if torch.cuda.is_available():
        pytest.skip("checks the CPU fallback")
    cfg = toy_cfg(str(tmp_path), **{"SOLVER.AMP.ENABLED": True, "SOLVER.MAX_ITER": 2})
    with caplog.at_level(logging.WARNING):
        trainer = DefaultTrainer(cfg)
    assert trainer._trainer.grad_scaler is None and "AMP" in caplog.text


def test_default_setup_writes_config_and_parser_reads_flags(tmp_path):
    args = default_argument_parser().parse_args(
        ["--resume", "--num-gpus", "2", "--dist-url", "tcp://127.0.0.1:1", "SOLVER.BASE_LR", "1"]
    )
    assert args.resume and args.num_gpus == 2 and args.opts == ["SOLVER.BASE_LR", "1"]
    assert not args.eval_only and args.num_machines == 1 and args.machine_rank == 0
    cfg = toy_cfg(str(tmp_path / "out"), **{"SEED": 7})
    default_setup(cfg, args)
    assert "ToyRegressor" in (tmp_path / "out" / "config.yaml").read_text()
    assert os.path.exists(tmp_path / "out" / "log.txt")
    first = torch.rand(3)
    default_setup(cfg, args)
    assert torch.equal(torch.rand(3), first)  # SEED + rank seeds every generator


def test_default_predictor_converts_format_resizes_and_loads_weights(tmp_path):
    cfg = toy_cfg(str(tmp_path), **{"MODEL.META_ARCHITECTURE": "ToyImageModel"}).clone()
    cfg.defrost()
    model = DefaultTrainer.build_model(cfg)
    with torch.no_grad():
        model.scale.fill_(2.0)
    Checkpointer(model, save_dir=str(tmp_path)).save("image_model")
    cfg.MODEL.WEIGHTS = str(tmp_path / "image_model.pth")
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 8, 12
    cfg.INPUT.FORMAT = "RGB"
    image = np.zeros((4, 5, 3), dtype=np.uint8)
    image[..., 0] = 10  # blue, in BGR order
    image[..., 2] = 30  # red
    out = DefaultPredictor(cfg)(image)
    assert out["image_shape"] == (3, 8, 10)
    assert out["channel_means"] == pytest.approx([60.0, 0.0, 20.0])  # RGB, x2 from weights
    assert (out["height"], out["width"]) == (4, 5)
    assert not out["grad_enabled"] and not out["training"]
    with pytest.raises(ValueError, match="H, W, 3"):
        DefaultPredictor(cfg)(np.zeros((4, 5), dtype=np.uint8))


def test_test_checks_evaluator_count(tmp_path):
    cfg = toy_cfg(str(tmp_path))
    assert TOY_TEST in DatasetCatalog
    with pytest.raises(ValueError, match="2 evaluators"):
        DefaultTrainer.test(cfg, DefaultTrainer.build_model(cfg), evaluators=[None, None])
