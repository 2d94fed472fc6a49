import json
import os

import pytest
import torch
import toy_task

from meshrecon.engine import launch
from meshrecon.engine.launch import _find_free_port
from meshrecon.utils import comm

# Batch 4 in total: 1 process x 4 samples, or 2 processes x 2 samples. Momentum, weight decay
# and an LR step are left on: with equal gradients the updates must match step for step.
OVERRIDES = {"SOLVER.MAX_ITER": 12, "SOLVER.CHECKPOINT_PERIOD": 100, "SOLVER.STEPS": (8,)}


def _weights(output_dir):
    return torch.load(os.path.join(output_dir, "model_final.pth"), weights_only=True)["model"]


def _report(output_dir, rank):
    with open(os.path.join(output_dir, f"report_rank{rank}.json")) as f:
        return json.load(f)


def test_two_process_gloo_training_matches_one_process(tmp_path):
    single, double = str(tmp_path / "single"), str(tmp_path / "double")
    os.makedirs(single)
    os.makedirs(double)
    launch(toy_task.train_toy_main, 1, args=(single, OVERRIDES))
    launch(toy_task.train_toy_main, 2, dist_url="auto", args=(double, OVERRIDES))

    w1, w2 = _weights(single), _weights(double)
    assert w1.keys() == w2.keys()
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], rtol=1e-5, atol=1e-6)
    initial = toy_task.ToyRegressor(None).state_dict()
    assert any(not torch.allclose(w1[k], initial[k]) for k in w1)  # training did move them

    r0, r1 = _report(double, 0), _report(double, 1)
    assert (r0["rank"], r1["rank"], r0["world_size"]) == (0, 1, 2)
    assert (r0["local_rank"], r1["local_rank"], r1["local_size"]) == (0, 1, 2)
    assert r0["all_gather"] == r1["all_gather"] == [0, 10]
    assert r0["gather"] == [1, 2] and r1["gather"] == []
    assert r0["shared_seed"][0] == r0["shared_seed"][1] == r1["shared_seed"][0]
    assert r0["reduce_dict"] == {"a": 1.5}  # mean of 1 and 2, in rank 0
    # Evaluation: each rank ran its shard; rank 0 holds all 13 test samples, once each.
    assert r0["results"]["toy"]["count"] == 13 and r0["results"]["toy"]["unique"] == 13
    single_mse = _report(single, 0)["results"]["toy"]["mse"]
    assert r0["results"]["toy"]["mse"] == pytest.approx(single_mse, rel=1e-4)


def test_single_process_helpers_without_distributed():
    assert comm.get_world_size() == 1 and comm.get_rank() == 0 and comm.is_main_process()
    assert comm.get_local_rank() == 0 and comm.get_local_size() == 1
    assert comm.all_gather({"x": 1}) == [{"x": 1}] and comm.gather(3) == [3]
    values = {"a": torch.tensor(2.0)}
    assert comm.reduce_dict(values) is values
    comm.synchronize()
    assert isinstance(comm.shared_random_seed(), int)


def test_launch_argument_errors():
    with pytest.raises(ValueError, match="machine_rank"):
        launch(print, 1, num_machines=2, machine_rank=2)
    with pytest.raises(ValueError, match="auto"):
        launch(print, 1, num_machines=2, machine_rank=0, dist_url="auto")
    assert 0 < _find_free_port() < 65536
