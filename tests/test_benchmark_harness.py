"""The benchmark harness measures what it runs and the runner formats what it measured."""

import importlib.util
import time
from pathlib import Path

import torch

from meshrecon.utils.benchmark import BenchCase, run_case

TOOLS = Path(__file__).resolve().parent.parent / "tools" / "benchmark.py"


def _load_tool():
    spec = importlib.util.spec_from_file_location("benchmark_tool", TOOLS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_case_times_forward_and_backward_separately():
    calls = {"fwd": 0, "bwd": 0}

    def make(device):
        x = torch.randn(64, device=device, requires_grad=True)

        def run(backward):
            calls["fwd"] += 1
            time.sleep(0.004)
            y = (x * x).sum()
            if backward:
                calls["bwd"] += 1
                time.sleep(0.004)
                y.backward()

        return run

    case = BenchCase(op="toy", size="64", make=make, reference_ms={"fwd": 40.0}, repeats=3)
    result = run_case(case, torch.device("cpu"))
    # One warm-up plus three timed runs for each mode.
    assert calls == {"fwd": 8, "bwd": 4}
    assert 4.0 <= result.fwd_ms < 200.0
    assert result.fwd_bwd_ms >= 8.0 and result.fwd_bwd_ms > result.fwd_ms
    assert result.peak_mb >= 0.0


def test_table_reports_speed_ratio_to_reference():
    tool = _load_tool()
    row = {
        "op": "chamfer_distance",
        "size": "B=16",
        "device": "cpu",
        "fwd_ms": 50.0,
        "fwd_bwd_ms": 120.0,
        "peak_mb": 12.0,
        "reference_ms": {"fwd+bwd": 2400.0},
    }
    table = tool.format_table([row])
    assert "20.0x vs 2400 ms (fwd+bwd)" in table
    assert table.count("\n") == 2
