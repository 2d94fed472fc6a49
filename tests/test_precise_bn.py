"""Precise BN: batch-norm statistics recomputed on training data before each evaluation."""

import json

import pytest
import torch
from torch import nn
from toy_task import TOY_CURVE_VAL, TOY_DIM, toy_cfg, toy_dicts

from meshrecon.engine import DefaultTrainer
from meshrecon.engine.hooks import PreciseBN
from meshrecon.engine.validation import ValidationHook
from meshrecon.layers import FrozenBatchNorm2d, update_bn_stats
from meshrecon.modeling import META_ARCH_REGISTRY
from meshrecon.utils.env import seed_all_rng
from meshrecon.utils.events import EventStorage, get_event_storage


def test_update_bn_stats_gives_the_mean_of_the_batches_statistics():
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(16, 3, generator=g) * (i + 1) + 2.0 * i for i in range(4)]
    bn = nn.BatchNorm1d(3, momentum=0.1)
    frozen = FrozenBatchNorm2d(3)
    model = nn.Sequential(bn, nn.Unflatten(1, (3, 1, 1)), frozen)
    model.train()
    assert update_bn_stats(model, iter(batches), 4) == 1
    want_mean = torch.stack([b.mean(0) for b in batches]).mean(0)
    want_var = torch.stack([b.var(0, unbiased=True) for b in batches]).mean(0)
    assert torch.allclose(bn.running_mean, want_mean, atol=1e-6)
    assert torch.allclose(bn.running_var, want_var, atol=1e-5)
    # The momentum, the batch count, the frozen layer and the mode are as they were.
    assert bn.momentum == 0.1 and int(bn.num_batches_tracked) == 0 and model.training
    assert torch.equal(frozen.running_mean, torch.zeros(3))
    # A momentum average over the same batches lags towards the last ones; the update does not.
    lagging = nn.BatchNorm1d(3, momentum=0.1).train()
    for b in batches:
        lagging(b)
    assert (lagging.running_mean - want_mean).abs().max() > 0.5


def test_update_bn_stats_leaves_the_statistics_on_failure():
    bn = nn.BatchNorm1d(2).train()
    before = (bn.running_mean.clone(), bn.running_var.clone())
    with pytest.raises(ValueError, match="ended after 2 of 3 batches"):
        update_bn_stats(bn, iter([torch.randn(4, 2), torch.randn(4, 2) + 5]), 3)
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert bn.momentum == 0.1
    with pytest.raises(ValueError, match="num_iters must be >= 1"):
        update_bn_stats(bn, [], 0)
    # Nothing in training mode: nothing read, nothing changed.
    bn.eval()
    assert update_bn_stats(bn, iter(()), 5) == 0


class ToyBNRegressor(nn.Module):
    """The toy task's MLP with a batch norm; it logs a scalar in training, as heads do."""

    def __init__(self, cfg) -> None:
        super().__init__()
        self.fc = nn.Linear(TOY_DIM, 8)
        self.bn = nn.BatchNorm1d(8)
        self.out = nn.Linear(8, 1)
        self.bn_inputs: list[torch.Tensor] = []

    def forward(self, batched_inputs):
        x = torch.stack([torch.as_tensor(d["x"], dtype=torch.float32) for d in batched_inputs])
        h = self.fc(x)
        pred = self.out(torch.relu(self.bn(h))).squeeze(1)
        if self.training:
            get_event_storage().put_scalar("toy_bn/logged_in_forward", 1.0)
            y = torch.tensor([d["y"] for d in batched_inputs], dtype=torch.float32)
            return {"loss_mse": ((pred - y) ** 2).mean()}
        return [{"pred": float(p)} for p in pred]


if "ToyBNRegressor" not in META_ARCH_REGISTRY:
    META_ARCH_REGISTRY.register(ToyBNRegressor)


def _train(tmp_path, precise: bool):
    cfg = toy_cfg(
        str(tmp_path),
        **{
            "MODEL.META_ARCHITECTURE": "ToyBNRegressor",
            "DATASETS.VAL": (TOY_CURVE_VAL,),
            "TEST.BEST_METRIC": "curve/score",
            "TEST.EVAL_PERIOD": 10,
            "SOLVER.MAX_ITER": 30,
            "SOLVER.BASE_LR": 0.05,
            "TEST.PRECISE_BN.ENABLED": precise,
            # 16 batches of 4: one pass over the 64 training samples.
            "TEST.PRECISE_BN.NUM_ITER": 16,
        },
    )
    seed_all_rng(cfg.SEED)  # as default_setup does: both runs start from the same weights
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    return trainer


def test_precise_bn_hook_in_training(tmp_path):
    plain = _train(tmp_path / "plain", precise=False)
    precise = _train(tmp_path / "precise", precise=True)
    kinds = [type(h) for h in precise._hooks]
    assert PreciseBN in kinds and PreciseBN not in [type(h) for h in plain._hooks]
    # Before the validation, which must see the recomputed statistics.
    assert kinds.index(PreciseBN) < kinds.index(ValidationHook)
    # Training itself is untouched: the hook reads its own loader, so the same batches give the
    # same weights.
    a, b = plain.model.state_dict(), precise.model.state_dict()
    for k in ("fc.weight", "out.weight", "bn.weight"):
        assert torch.equal(a[k], b[k]), k
    # After the last step the running mean is the mean of the batch norm's inputs over one pass
    # of the training data, computed by the final weights; the momentum average is not.
    x = torch.tensor([d["x"] for d in toy_dicts(64, seed=0)])
    with torch.no_grad():
        population = precise.model.fc(x).mean(0)
    assert torch.allclose(b["bn.running_mean"], population, atol=1e-5)
    assert not torch.allclose(a["bn.running_mean"], population, atol=1e-3)
    # The hook's forward passes log nothing: the scalar the model logs was put 30 times, once
    # per training step, as without the hook.
    with open(tmp_path / "precise" / "metrics.json") as f:
        rows = [json.loads(line) for line in f]
    assert any("toy_bn/logged_in_forward" in r for r in rows)
    assert len(precise.storage.history("toy_bn/logged_in_forward").values()) == 30


def test_precise_bn_hook_without_batch_norm_does_nothing(caplog):
    model = nn.Sequential(nn.Linear(2, 2)).train()
    calls = []
    hook = PreciseBN(5, model, lambda: calls.append(1) or [], 3)

    class Trainer:
        iter, max_iter = 4, 10

    hook.trainer = Trainer()
    with EventStorage(0), caplog.at_level("INFO"):
        hook.after_step()
    assert not calls and "no batch norm in training mode" in caplog.text
    with pytest.raises(ValueError, match="num_iter >= 1"):
        PreciseBN(5, model, list, 0)
