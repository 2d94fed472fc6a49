"""meshrecon's Caffe2 weight fills equal fvcore's, and importing the models warns no more."""

import subprocess
import sys
import warnings

import torch
from torch import nn

from meshrecon.layers import weight_init


def test_fills_draw_the_same_numbers_as_fvcore():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # fvcore.nn's TorchScript warning
        from fvcore.nn import weight_init as fvcore_init

    for name in ("c2_msra_fill", "c2_xavier_fill"):
        for make in (lambda: nn.Conv2d(8, 16, 3), lambda: nn.Linear(32, 5, bias=False)):
            ours, theirs = make(), make()
            nn.init.normal_(ours.weight)  # not the fill's result by chance
            torch.manual_seed(3)
            getattr(weight_init, name)(ours)
            torch.manual_seed(3)
            getattr(fvcore_init, name)(theirs)
            assert torch.equal(ours.weight, theirs.weight), name
            if ours.bias is not None:
                assert torch.equal(ours.bias, torch.zeros_like(ours.bias))


def test_no_future_warning_on_import():
    """The FutureWarning printed on every command came from importing fvcore.nn (its focal
    loss is compiled with torch.jit.script at import)."""
    code = (
        "import meshrecon.modeling, meshrecon.engine, meshrecon.cli.train_net, sys; "
        "assert not [m for m in sys.modules if m.startswith('fvcore.nn')]"
    )
    proc = subprocess.run(
        [sys.executable, "-W", "error::FutureWarning", "-c", code], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
