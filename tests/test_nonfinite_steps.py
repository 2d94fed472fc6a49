"""The NaN guard of the trainer: a non-finite step is skipped and named; a streak stops the run."""

import contextlib
import logging
import math

import pytest
import torch
from torch import nn
from toy_task import toy_cfg, toy_dicts

from meshrecon.data import DatasetCatalog, MetadataCatalog
from meshrecon.engine import DefaultTrainer, SimpleTrainer
from meshrecon.engine.train_loop import batch_sample_ids

BAD_LABEL = "toy_train_one_nan_label"
BAD_ID = 5


def _register_bad_label_dataset():
    """The toy training set with one record whose label is NaN (a bad annotation that no
    mapper check can see): its loss, and only its loss, is NaN."""
    if BAD_LABEL not in DatasetCatalog:

        def load():
            dicts = toy_dicts(16, seed=0)
            dicts[BAD_ID]["y"] = math.nan
            return dicts

        DatasetCatalog.register(BAD_LABEL, load)
        MetadataCatalog.get(BAD_LABEL).evaluator_type = "toy"


@contextlib.contextmanager
def captured_warnings(name: str):
    """Messages of WARNING and above logged to ``name`` (meshrecon's logger does not propagate
    to the root logger once a trainer has set it up, so caplog would miss them)."""
    messages: list[str] = []

    class _Handler(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    handler = _Handler(logging.WARNING)
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def test_one_bad_batch_is_skipped_named_and_counted_and_training_finishes(tmp_path):
    _register_bad_label_dataset()
    overrides = {"DATASETS.TRAIN": (BAD_LABEL,), "DATASETS.TEST": (), "SOLVER.MAX_ITER": 12}
    cfg = toy_cfg(str(tmp_path), **overrides)
    assert cfg.SOLVER.MAX_CONSECUTIVE_NONFINITE == 5  # the default skips isolated bad steps
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=False)
    with captured_warnings("meshrecon.engine.train_loop") as messages:
        trainer.train()
    assert trainer.iter == 12 and (tmp_path / "model_final.pth").exists()
    # 12 steps of 4 cover the 16 records, so the bad one was drawn (once per epoch at least).
    warnings = [m for m in messages if "Skipping this iteration" in m]
    assert warnings, messages
    assert all("loss_mse=nan" in w and f"{BAD_ID}" in w.split("samples of the batch:")[1]
               for w in warnings)  # fmt: skip
    storage = trainer.storage
    assert storage.history("train/skipped_iterations").latest() == len(warnings)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    # The losses recorded are those of the finite steps only.
    assert all(math.isfinite(v) for v, _ in storage.history("loss_mse").values())

    # Detectron2's guard (1) stops at that same first bad step, naming its samples.
    cfg1 = toy_cfg(str(tmp_path / "strict"), **overrides, **{"SOLVER.MAX_CONSECUTIVE_NONFINITE": 1})
    strict = DefaultTrainer(cfg1)
    strict.resume_or_load(resume=False)
    with pytest.raises(FloatingPointError, match=f"samples of the batch: .*{BAD_ID}"):
        strict.train()


class _NaNAfter(nn.Module):
    """``loss_bad`` is NaN at the calls listed in ``bad_calls``; ``loss_good`` pulls w to 3."""

    def __init__(self, bad_calls=(), exception_calls=()):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(1.0))
        self.calls = 0
        self.bad_calls, self.exception_calls = set(bad_calls), set(exception_calls)

    def forward(self, batch):
        call = self.calls
        self.calls += 1
        if call in self.exception_calls:
            raise FloatingPointError("Predicted boxes contain NaN. Training has diverged.")
        bad = self.w * 0 + (math.nan if call in self.bad_calls else 0.0)
        return {"loss_good": (self.w - 3.0) ** 2, "loss_bad": bad}


def _batches():
    i = 0
    while True:
        yield [{"image_id": 2 * i, "file_name": f"img{2 * i}.png"}, {"image_id": 2 * i + 1}]
        i += 1


def _weights_by_iter(model, trainer):
    from meshrecon.engine import CallbackHook

    seen = {}
    trainer.register_hooks(
        [CallbackHook(after_step=lambda t: seen.__setitem__(t.iter, model.w.item()))]
    )
    return seen


def test_repeated_nonfinite_losses_stop_the_run_naming_the_samples():
    model = _NaNAfter(bad_calls=range(3, 100))
    trainer = SimpleTrainer(
        model, _batches(), torch.optim.SGD(model.parameters(), lr=0.1), max_consecutive_nonfinite=3
    )
    w = _weights_by_iter(model, trainer)
    with pytest.raises(FloatingPointError) as err:
        trainer.train(0, 20)
    message = str(err.value)
    assert "iteration 5" in message and "loss_bad=nan (rank 0)" in message
    assert "3 iteration(s) in a row" in message and "MAX_CONSECUTIVE_NONFINITE = 3" in message
    assert "samples of the batch: 10 (img10.png), 11" in message
    assert w[3] == w[4] == w[2]  # the skipped steps did not move the weights
    assert trainer.storage.history("train/skipped_iterations").latest() == 3
    assert trainer.num_nonfinite_steps == 3


def test_streak_resets_on_a_finite_step_and_exceptions_of_the_forward_count():
    # Bad steps 1, 3 (NaN) and 5 (FloatingPointError raised by the model), never two in a row.
    model = _NaNAfter(bad_calls=(1, 3), exception_calls=(5,))
    trainer = SimpleTrainer(
        model, _batches(), torch.optim.SGD(model.parameters(), lr=0.1), max_consecutive_nonfinite=2
    )
    w = _weights_by_iter(model, trainer)
    trainer.train(0, 8)
    assert trainer.num_nonfinite_steps == 3 and trainer.nonfinite_streak == 0
    assert w[1] == w[0] and w[3] == w[2] and w[5] == w[4] and w[6] != w[5]
    assert trainer.storage.history("train/skipped_iterations").latest() == 3
    # A skipped step leaves no gradients behind (step 0 made some, step 1 is skipped).
    model2 = _NaNAfter(bad_calls=(1,))
    t2 = SimpleTrainer(model2, _batches(), torch.optim.SGD(model2.parameters(), lr=0.1),
                       max_consecutive_nonfinite=2)  # fmt: skip
    t2.train(0, 2)
    assert model2.w.grad is None


def test_bad_limits_are_refused():
    model = _NaNAfter()
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="MAX_CONSECUTIVE_NONFINITE"):
            SimpleTrainer(model, _batches(), torch.optim.SGD(model.parameters(), lr=0.1),
                          max_consecutive_nonfinite=bad)  # fmt: skip


def test_default_trainer_refuses_a_zero_limit(tmp_path):
    cfg = toy_cfg(str(tmp_path), **{"SOLVER.MAX_CONSECUTIVE_NONFINITE": 0})
    with pytest.raises(ValueError, match="SOLVER.MAX_CONSECUTIVE_NONFINITE"):
        DefaultTrainer(cfg)


def test_batch_sample_ids():
    batch = [{"image_id": 3, "file_name": "a.png"}, {"image_id": "chair/m1"}, {"file_name": "b"}]
    assert batch_sample_ids(batch) == ["3 (a.png)", "chair/m1", "b"]
    assert batch_sample_ids([0]) == ["#0 (no image_id or file_name)"]
    assert batch_sample_ids(None) == []


class _RecordingScaler:
    """Stands in for ``torch.amp.GradScaler`` (CUDA only) to see what a skipped step calls."""

    def __init__(self):
        self.calls = []

    def scale(self, loss):
        self.calls.append("scale")
        return loss

    def unscale_(self, optimizer):
        self.calls.append("unscale_")

    def step(self, optimizer):
        self.calls.append("step")
        optimizer.step()

    def update(self):
        self.calls.append("update")


def test_with_a_grad_scaler_a_skipped_step_leaves_the_scaler_alone():
    model = _NaNAfter(bad_calls=(1,))
    trainer = SimpleTrainer(
        model, _batches(), torch.optim.SGD(model.parameters(), lr=0.1), max_consecutive_nonfinite=2
    )
    scaler = trainer.grad_scaler = _RecordingScaler()  # the AMP branch of run_step
    w = _weights_by_iter(model, trainer)
    trainer.train(0, 3)
    assert scaler.calls == ["scale", "step", "update"] * 2  # steps 0 and 2, nothing for 1
    assert w[1] == w[0] and w[2] != w[1]


# ------------------------------------------------- diverged point-set models reach the guard
class _HeadModel(nn.Module):
    """A head and fixed inputs as a trainable model; ``diverge()`` sets a weight to NaN."""

    def __init__(self, head, inputs, weight):
        super().__init__()
        self.head, self.inputs, self.weight = head, inputs, weight

    def diverge(self):
        with torch.no_grad():
            self.weight.view(-1)[0] = math.nan

    def forward(self, batch):
        return self.head(**self.inputs)


def _psgn_model():
    from meshrecon.modeling.heads.psgn import PSGNHead
    from meshrecon.modeling.meta_arch.single_view import ViewBatch

    torch.manual_seed(0)
    head = PSGNHead(feature_channels=[8, 16], fc_dims=[32], deconv_dim=8, noise_dim=4,
                    num_fc_points=16, conv_grid=(4, 4), loss="emd", mon_samples=1)  # fmt: skip
    feats = [torch.randn(2, 8, 8, 8), torch.randn(2, 16, 4, 4)]
    gt = torch.randn(2, 64, 3) * 0.1 + torch.tensor([0.0, 0.0, 1.4])
    views = ViewBatch(image_size=(32, 32), K=torch.tensor([[40.0, 40, 16, 16]] * 2), points=gt)
    return _HeadModel(head.train(), {"features": feats, "views": views}, head.conv_points.weight)


def _optimize_mvs_model():
    from meshrecon.modeling.heads.optimize_mvs import OptimizeMVSHead
    from meshrecon.modeling.heads.psgn import PSGNHead

    class Backbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.c2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)

        def forward(self, x):
            a = torch.relu(self.c1(x))
            return {"res2": a, "res3": torch.relu(self.c2(a))}

    torch.manual_seed(0)
    gen = PSGNHead(feature_channels=[8, 16], num_fc_points=16, conv_grid=(4, 4), fc_dims=(32,),
                   deconv_dim=8, noise_dim=6, mon_samples=1, center=(0.0, 0.0, 2.0))  # fmt: skip
    head = OptimizeMVSHead(backbone=Backbone(), generator=gen, samples_per_image=3,
                           zbuffer_size=8, front_distance="emd", diversity_distance="emd",
                           emd_points=32)  # fmt: skip
    depth = torch.zeros(2, 32, 32)
    depth[:, 8:24, 8:24] = 2.0
    views = {"K": torch.tensor([[40.0, 40, 16, 16]] * 2), "R": torch.eye(3).expand(2, 3, 3),
             "t": torch.tensor([[0.0, 0.0, 2.0]] * 2)}  # fmt: skip
    inputs = {"images": torch.randn(2, 3, 32, 32), "num_views": torch.tensor([2]),
              "targets": [{"depth": depth}], "views": views}  # fmt: skip
    return _HeadModel(head.train(), inputs, gen.conv_points.weight)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("build", [_psgn_model, _optimize_mvs_model], ids=["psgn", "optimize_mvs"])
def test_a_diverged_emd_model_is_stopped_by_the_nan_guard(build):
    # Before: EMD counted NaN pairs as distance 0 (a finite loss) and bid for minutes.
    model = build()
    assert all(torch.isfinite(v) for v in model(None).values())
    model.diverge()
    losses = model(None)
    assert all(torch.isnan(v) for v in losses.values()), losses  # every term shows it
    trainer = SimpleTrainer(
        model, _batches(), torch.optim.SGD(model.parameters(), lr=0.0), max_consecutive_nonfinite=2
    )
    with pytest.raises(FloatingPointError, match="2 iteration\\(s\\) in a row") as err:
        trainer.train(0, 10)
    assert all(f"{name}=nan" in str(err.value) for name in losses)


# ------------------------------------------------------------- distributed: skip together
def train_bad_label_main(output_dir: str, overrides: dict) -> None:
    """``toy_task.train_toy_main`` on the dataset with one NaN label (spawned by ``launch``)."""
    import toy_task

    _register_bad_label_dataset()
    toy_task.train_toy_main(output_dir, {"DATASETS.TRAIN": (BAD_LABEL,), **overrides})


@pytest.mark.slow
def test_two_processes_skip_a_bad_step_together_and_match_one_process(tmp_path):
    """The bad record lands in one process's half of the batch: both processes must skip that
    step (no process waits for the other's gradients) and end with one process's weights."""
    import json
    import os

    from meshrecon.engine import launch

    overrides = {"SOLVER.MAX_ITER": 8, "SOLVER.CHECKPOINT_PERIOD": 100, "SOLVER.STEPS": (6,)}
    single, double = str(tmp_path / "single"), str(tmp_path / "double")
    os.makedirs(single)
    os.makedirs(double)
    launch(train_bad_label_main, 1, args=(single, overrides))
    launch(train_bad_label_main, 2, dist_url="auto", args=(double, overrides))

    def final(output_dir):
        path = os.path.join(output_dir, "model_final.pth")
        return torch.load(path, weights_only=True)["model"]

    def skipped(output_dir):
        with open(os.path.join(output_dir, "metrics.json")) as f:
            lines = [json.loads(line) for line in f]
        return [d["train/skipped_iterations"] for d in lines if "train/skipped_iterations" in d]

    w1, w2 = final(single), final(double)
    for key in w1:
        assert torch.isfinite(w1[key]).all()
        torch.testing.assert_close(w2[key], w1[key], rtol=1e-5, atol=1e-6)
    assert skipped(single) and skipped(single)[-1] == skipped(double)[-1] >= 1
