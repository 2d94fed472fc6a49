"""A run checkpointed with 2 processes resumes with 1, and the other way round.

With the same total batch (SOLVER.IMS_PER_BATCH), the iterations are the same ones: the resumed
run ends with the weights of an unbroken run. With a total batch scaled to the number of
processes (SOLVER.REFERENCE_WORLD_SIZE), progress is counted in samples: the resumed run starts
at the iteration holding the first sample not yet trained on, and its LR follows its own
schedule from there. The tests check the sample ids each process trained on.
"""

import itertools
import json
import os
import shutil

import pytest
import torch
import toy_task
from toy_task import read_records

from meshrecon.data import TrainingSampler
from meshrecon.engine import launch
from meshrecon.engine.defaults import restart_lr_schedule
from meshrecon.solver import WarmupMultiStepLR

TOY_SIZE = 64  # samples in toy_train
SAME_BATCH = {"SOLVER.MAX_ITER": 12, "SOLVER.STEPS": (8,), "SOLVER.CHECKPOINT_PERIOD": 6}
# Written for one process of 2 samples; on 2 processes it becomes 4 samples per step, LR x2,
# 12 iterations, STEPS (8,), warmup 2, a checkpoint every 6 iterations.
SCALED = {
    "SOLVER.REFERENCE_WORLD_SIZE": 1,
    "SOLVER.IMS_PER_BATCH": 2,
    "SOLVER.MAX_ITER": 24,
    "SOLVER.STEPS": (16,),
    "SOLVER.WARMUP_ITERS": 4,
    "SOLVER.CHECKPOINT_PERIOD": 5,
}


def _train(tmp_path, name, world_size, overrides, resume_from=None):
    """Train in ``world_size`` processes (resuming from a checkpoint file); return records."""
    out, rec = tmp_path / name, tmp_path / f"{name}_records"
    if resume_from is not None:
        # A run killed right after writing this checkpoint.
        out.mkdir()
        shutil.copy(resume_from, out / resume_from.name)
        (out / "last_checkpoint").write_text(resume_from.name)
    args = (str(out), overrides, str(rec), resume_from is not None)
    launch(toy_task.train_toy_record_main, world_size, dist_url="auto", args=args)
    return out, read_records(str(rec))


def _weights(output_dir):
    return torch.load(output_dir / "model_final.pth", weights_only=True)["model"]


def _union(records, it):
    """The sample ids of iteration ``it`` over all ranks, sorted."""
    return sorted(i for rank in records.values() for i in rank[it]["ids"])


def _start_iters(records_dir):
    starts = set()
    for name in os.listdir(records_dir):
        with open(os.path.join(records_dir, name)) as f:
            starts |= {json.loads(line).get("start_iter") for line in f} - {None}
    return starts


@pytest.mark.slow
def test_same_total_batch_resumes_across_world_sizes_to_unbroken_weights(tmp_path):
    unbroken, ref = _train(tmp_path, "unbroken", 1, SAME_BATCH)
    double, double_rec = _train(tmp_path, "double", 2, SAME_BATCH)
    # The checkpoint after iteration 5 of each run, resumed with the other number of processes.
    two_to_one, rec21 = _train(tmp_path, "two_to_one", 1, SAME_BATCH, double / "model_0000005.pth")
    one_to_two, rec12 = _train(
        tmp_path, "one_to_two", 2, SAME_BATCH, unbroken / "model_0000005.pth"
    )
    assert _start_iters(tmp_path / "two_to_one_records") == {6}
    assert _start_iters(tmp_path / "one_to_two_records") == {6}

    expected = _weights(unbroken)
    for resumed in (two_to_one, one_to_two, double):
        actual = _weights(resumed)
        for key in expected:
            torch.testing.assert_close(actual[key], expected[key], rtol=1e-5, atol=1e-5)
    for it in range(12):
        resumed = rec21 if it >= 6 else double_rec
        assert _union(resumed, it) == sorted(ref[0][it]["ids"])
        assert resumed[0][it]["lr"] == pytest.approx(ref[0][it]["lr"], rel=1e-12)
        if it >= 6:
            assert _union(rec12, it) == sorted(ref[0][it]["ids"])
            assert rec12[0][it]["lr"] == pytest.approx(ref[0][it]["lr"], rel=1e-12)


@pytest.mark.slow
def test_scaled_total_batch_resumes_at_the_same_sample_and_schedule(tmp_path):
    stream = list(itertools.islice(TrainingSampler(TOY_SIZE, seed=0, rank=0, world_size=1), 64))
    single, single_rec = _train(tmp_path, "single", 1, SCALED)  # 24 steps of 2
    double, double_rec = _train(tmp_path, "double", 2, SCALED)  # 12 steps of 4, LR x2

    # 2 -> 1: 6 steps of 4 samples are 12 steps of 2; the schedule continues at iteration 12.
    _, rec21 = _train(tmp_path, "two_to_one", 1, SCALED, double / "model_0000005.pth")
    assert _start_iters(tmp_path / "two_to_one_records") == {12}
    assert sorted(rec21[0]) == list(range(12, 24))
    for it in range(12, 24):
        assert rec21[0][it]["ids"] == single_rec[0][it]["ids"]
        assert rec21[0][it]["lr"] == pytest.approx(single_rec[0][it]["lr"], rel=1e-12)
    before = [i for it in range(6) for i in _union(double_rec, it)]
    after = [i for it in range(12, 24) for i in rec21[0][it]["ids"]]
    assert sorted(before + after) == sorted(stream[:48])  # no sample twice, none skipped
    assert len(set(before + after)) == 48

    # 1 -> 2 from 5 steps of 2 = 10 samples: iteration 2 of the 4-sample run, 2 samples in.
    _, rec12 = _train(tmp_path, "one_to_two", 2, SCALED, single / "model_0000004.pth")
    assert _start_iters(tmp_path / "one_to_two_records") == {2}
    assert sorted(rec12[0]) == list(range(2, 12))
    for it in range(2, 12):
        position = 10 + (it - 2) * 4
        assert _union(rec12, it) == sorted(stream[position : position + 4])
        assert rec12[0][it]["lr"] == pytest.approx(double_rec[0][it]["lr"], rel=1e-12)
    seen = [i for it in range(5) for i in single_rec[0][it]["ids"]]
    seen += [i for it in range(2, 12) for i in _union(rec12, it)]
    assert len(seen) == len(set(seen)) == 50


def test_restart_lr_schedule_follows_this_runs_schedule():
    def make(lr, milestones, warmup):
        param = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([param], lr=lr)
        return opt, WarmupMultiStepLR(opt, milestones, 0.1, 0.01, warmup)

    # The checkpointed run: LR 0.2, step at 8, warmup 2, stopped at iteration 6.
    old_opt, old = make(0.2, [8], 2)
    for _ in range(6):
        old_opt.step()
        old.step()
    # This run: LR 0.1, step at 16, warmup 4; the checkpoint's state overwrote its schedule.
    opt, sched = make(0.1, [16], 4)
    schedule = sched.state_dict()
    opt.load_state_dict(old_opt.state_dict())
    sched.load_state_dict(old.state_dict())
    restart_lr_schedule(sched, schedule, 15)

    ref_opt, ref = make(0.1, [16], 4)
    lrs, ref_lrs = [], []
    for it in range(20):
        if it >= 15:
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        ref_lrs.append(ref_opt.param_groups[0]["lr"])
        ref_opt.step()
        ref.step()
    assert lrs == pytest.approx(ref_lrs[15:], rel=1e-12)
    assert lrs[0] == pytest.approx(0.1) and lrs[1] == pytest.approx(0.01)  # step at 16

    with pytest.raises(TypeError, match="closed-form"):
        plain = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0)
        restart_lr_schedule(plain, plain.state_dict(), 3)


def test_processes_that_find_different_checkpoints_stop(tmp_path, monkeypatch):
    # Machines whose OUTPUT_DIRs differ (no shared file system): rank 1 found no checkpoint.
    from meshrecon.engine import DefaultTrainer
    from meshrecon.engine import defaults as defaults_module

    trainer = DefaultTrainer(toy_task.toy_cfg(str(tmp_path / "out"), **SAME_BATCH))
    monkeypatch.setattr(defaults_module.comm, "all_gather", lambda value: [value, 6])
    with pytest.raises(RuntimeError, match=r"different iterations \(by rank: \[0, 6\]\)"):
        trainer.resume_or_load(resume=True)
