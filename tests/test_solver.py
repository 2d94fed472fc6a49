import math

import pytest
import torch
from torch import nn

from meshrecon.config import get_cfg
from meshrecon.solver import (
    WarmupCosineLR,
    WarmupMultiStepLR,
    build_gradient_clipper,
    build_lr_scheduler,
    build_optimizer,
    get_default_optimizer_params,
)


def _lrs(scheduler, n):
    out = []
    for _ in range(n):
        out.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return out


def _optimizer(lr=1.0):
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)


def test_multistep_with_linear_warmup_known_values():
    sched = WarmupMultiStepLR(_optimizer(), [10, 15], gamma=0.1, warmup_factor=0.1,
                              warmup_iters=5, warmup_method="linear")  # fmt: skip
    lrs = _lrs(sched, 20)
    expected = [0.1 + 0.9 * i / 5 for i in range(5)] + [1.0] * 5 + [0.1] * 5 + [0.01] * 5
    assert lrs == pytest.approx(expected)


def test_multistep_with_constant_warmup():
    sched = WarmupMultiStepLR(_optimizer(2.0), [3], gamma=0.5, warmup_factor=0.25,
                              warmup_iters=2, warmup_method="constant")  # fmt: skip
    assert _lrs(sched, 5) == pytest.approx([0.5, 0.5, 2.0, 1.0, 1.0])


def test_cosine_known_values_and_end_factor():
    sched = WarmupCosineLR(_optimizer(), max_iters=10, warmup_iters=0)
    lrs = _lrs(sched, 12)
    assert lrs[0] == pytest.approx(1.0)
    assert lrs[5] == pytest.approx(0.5)
    assert lrs[10] == pytest.approx(0.0, abs=1e-12) and lrs[11] == pytest.approx(0.0, abs=1e-12)
    sched = WarmupCosineLR(_optimizer(), max_iters=4, warmup_factor=0.5, warmup_iters=2,
                           end_factor=0.2)  # fmt: skip
    c = [0.5 * (1 + math.cos(math.pi * i / 4)) for i in range(5)]
    warm = [0.5, 0.75, 1.0, 1.0, 1.0]
    assert _lrs(sched, 5) == pytest.approx([w * (0.2 + 0.8 * ci) for w, ci in zip(warm, c)])


def test_scheduler_state_dict_resumes_the_schedule():
    reference = _lrs(WarmupMultiStepLR(_optimizer(), [6], warmup_iters=4, warmup_factor=0.1), 10)
    first = WarmupMultiStepLR(_optimizer(), [6], warmup_iters=4, warmup_factor=0.1)
    _lrs(first, 3)
    state = first.state_dict()
    resumed = WarmupMultiStepLR(_optimizer(), [6], warmup_iters=4, warmup_factor=0.1)
    resumed.load_state_dict(state)
    for group in resumed.optimizer.param_groups:
        group["lr"] = resumed.get_last_lr()[0]
    assert _lrs(resumed, 7) == pytest.approx(reference[3:])


def test_scheduler_argument_errors():
    with pytest.raises(ValueError, match="warmup method"):
        WarmupMultiStepLR(_optimizer(), [1], warmup_method="exp")
    with pytest.raises(ValueError, match="increasing"):
        WarmupMultiStepLR(_optimizer(), [5, 2])


def _cfg(**solver):
    cfg = get_cfg()
    for k, v in solver.items():
        setattr(cfg.SOLVER, k, v)
    return cfg


def test_build_lr_scheduler_from_config_and_unknown_name():
    cfg = _cfg(LR_SCHEDULER_NAME="WarmupMultiStepLR", STEPS=(2, 100), MAX_ITER=10,
               WARMUP_ITERS=0, BASE_LR=1.0, GAMMA=0.5)  # fmt: skip
    sched = build_lr_scheduler(cfg, _optimizer())
    assert isinstance(sched, WarmupMultiStepLR) and sched.milestones == [2]
    assert _lrs(sched, 4) == pytest.approx([1.0, 1.0, 0.5, 0.5])
    cfg.SOLVER.LR_SCHEDULER_NAME = "WarmupCosineLR"
    assert isinstance(build_lr_scheduler(cfg, _optimizer()), WarmupCosineLR)
    cfg.SOLVER.LR_SCHEDULER_NAME = "Nope"
    with pytest.raises(ValueError, match="Nope"):
        build_lr_scheduler(cfg, _optimizer())


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)


def test_default_optimizer_params_per_parameter_settings():
    net = _Net()
    groups = get_default_optimizer_params(net, base_lr=0.1, weight_decay=1e-4,
                                          weight_decay_norm=0.0, bias_lr_factor=2.0,
                                          weight_decay_bias=0.0)  # fmt: skip
    settings = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    assert settings[id(net.conv.weight)] == (0.1, 1e-4)
    assert settings[id(net.fc.weight)] == (0.1, 1e-4)
    assert settings[id(net.conv.bias)] == (0.2, 0.0)
    assert settings[id(net.norm.weight)] == (0.1, 0.0)
    assert settings[id(net.norm.bias)] == (0.1, 0.0)
    assert len(settings) == len(list(net.parameters()))
    assert len(groups) == 3  # equal settings share a group


def test_build_optimizer_sgd_adam_and_errors():
    net = _Net()
    sgd = build_optimizer(_cfg(OPTIMIZER="SGD", MOMENTUM=0.8), net)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.8
    assert isinstance(build_optimizer(_cfg(OPTIMIZER="adam"), net), torch.optim.Adam)
    with pytest.raises(ValueError, match="RMSPROP"):
        build_optimizer(_cfg(OPTIMIZER="RMSPROP"), net)
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable"):
        build_optimizer(_cfg(), frozen)


@pytest.mark.parametrize("name", ["SGD", "ADAM"])
def test_fused_optimizer_takes_the_per_tensor_loops_steps(name):
    # SOLVER.FUSED (default) picks torch's fused kernel; the trajectory is the per-tensor
    # loop's up to float rounding, weight decay, momentum and per-group rates included.
    nets = [_Net(), _Net()]
    nets[1].load_state_dict(nets[0].state_dict())
    start = [p.detach().clone() for p in nets[0].parameters()]
    opts = [
        build_optimizer(_cfg(OPTIMIZER=name, FUSED=fused, BASE_LR=0.01, WEIGHT_DECAY=1e-2), net)
        for fused, net in zip((False, True), nets)
    ]
    assert [o.param_groups[0].get("fused") for o in opts] == [None, True]
    torch.manual_seed(0)
    for _ in range(5):
        x = torch.randn(3, 3, 6, 6)
        for net, opt in zip(nets, opts):
            opt.zero_grad()
            net.fc(net.norm(net.conv(x)).mean((2, 3))).square().sum().backward()
            opt.step()
    moved = [(a - b).abs().max() for a, b in zip(nets[0].parameters(), start)]
    assert min(moved) > 1e-4 and max(moved) > 1e-2  # the steps did something
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_optimizer_is_not_fused_where_torch_cannot():
    net = _Net().to(torch.float16)
    net.fc.to(torch.float32)  # mixed dtypes are fine for the fused kernels...
    assert build_optimizer(_cfg(OPTIMIZER="ADAM"), net).param_groups[0]["fused"]
    with torch.device("meta"):  # ...another device type is not
        meta = _Net()
    assert not build_optimizer(_cfg(OPTIMIZER="ADAM"), meta).param_groups[0].get("fused")


def test_custom_groups_given_as_generators_reach_the_optimizer_whole():
    # torch takes a group's tensors as any iterable; the fused-kernel check reads them first,
    # which must not leave the optimizer an empty (spent) generator.
    class Custom(_Net):
        def optimizer_param_groups(self, cfg):
            return (
                {"params": (p for p in m.parameters()), "lr": 0.1} for m in (self.conv, self.fc)
            )

    net = Custom()
    opt = build_optimizer(_cfg(OPTIMIZER="ADAM"), net)
    assert [len(g["params"]) for g in opt.param_groups] == [2, 2]
    assert opt.param_groups[0]["fused"] and opt.param_groups[0]["lr"] == 0.1


def _grads(values):
    params = [nn.Parameter(torch.zeros(len(v))) for v in values]
    for p, v in zip(params, values):
        p.grad = torch.tensor(v, dtype=torch.float32)
    return params


def test_gradient_clippers():
    cfg = get_cfg()
    assert build_gradient_clipper(cfg) is None
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1.0
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "value"
    params = _grads([[3.0, -0.5], [-4.0]])
    build_gradient_clipper(cfg)(params)
    assert params[0].grad.tolist() == [1.0, -0.5] and params[1].grad.tolist() == [-1.0]

    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "norm"
    params = _grads([[3.0, 4.0], [0.5]])
    build_gradient_clipper(cfg)(params)
    assert params[0].grad.norm().item() == pytest.approx(1.0, rel=1e-4)
    assert params[1].grad.tolist() == [0.5]  # under the limit on its own: unchanged

    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "full_model"
    params = _grads([[3.0], [4.0]])
    build_gradient_clipper(cfg)(params)
    total = torch.cat([p.grad for p in params]).norm().item()
    assert total == pytest.approx(1.0, rel=1e-4)
    assert params[1].grad.item() / params[0].grad.item() == pytest.approx(4.0 / 3.0)

    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "bogus"
    with pytest.raises(ValueError, match="bogus"):
        build_gradient_clipper(cfg)
