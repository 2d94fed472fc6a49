"""Damaged checkpoints (killed saves, truncation, flipped bits, a full disk, NaN weights) versus
refused ones (pickles that ask for code); resuming past damage; the benchmark's reuse check."""

from __future__ import annotations

import errno
import io
import logging
import os
import pickle

import numpy as np
import pytest
import torch
import yaml
from torch import nn
from toy_task import toy_cfg

from meshrecon.apps.method_benchmark import methods as M
from meshrecon.apps.method_benchmark.runner import MethodPlan, reusable
from meshrecon.checkpoint import (
    CheckpointDamagedError,
    Checkpointer,
    NonFiniteWeightsError,
    UnsafePickleError,
    recorded_config,
)
from meshrecon.checkpoint.integrity import is_interrupted_save, remove_interrupted_saves
from meshrecon.engine import CallbackHook, DefaultTrainer


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def log(caplog):
    """caplog that also sees meshrecon's loggers (``setup_logger`` stops their propagation)."""
    logger = logging.getLogger("meshrecon")
    level = logger.level
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.INFO)
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.setLevel(level)


# ----------------------------------------------------------------------- damage versus attack


def _damaged_files(tmp_path):
    """(name, path) of a good checkpoint damaged in the ways a killed save or a disk does."""
    good = tmp_path / "good.pth"
    Checkpointer(_net(), str(tmp_path)).save("good", iteration=7)
    raw = good.read_bytes()
    cases = {
        "truncated": raw[: len(raw) // 2],
        "header only": raw[:100],
        "empty": b"",
        "not a checkpoint": b"these bytes are no checkpoint at all",
    }
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0xFF  # inside a tensor: torch.load alone loads it silently
    cases["flipped bit"] = bytes(flipped)
    out = []
    for name, data in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.pth"
        path.write_bytes(data)
        out.append((name, path))
    legacy = tmp_path / "legacy.pth"
    torch.save({"model": _net().state_dict()}, legacy, _use_new_zipfile_serialization=False)
    legacy_raw = legacy.read_bytes()
    legacy.write_bytes(legacy_raw[: len(legacy_raw) - 100])
    out.append(("truncated legacy format", legacy))
    pkl = pickle.dumps({"model": {"w": np.zeros(50, np.float32)}, "__author__": "x"})
    for name, data in (("truncated pkl", pkl[: len(pkl) // 2]), ("empty pkl", b"")):
        path = tmp_path / f"{name.replace(' ', '_')}.pkl"
        path.write_bytes(data)
        out.append((name, path))
    return out


def test_damaged_files_are_reported_as_damage_naming_the_file(tmp_path):
    for name, path in _damaged_files(tmp_path):
        model = _net(1)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with pytest.raises(CheckpointDamagedError) as err:
            Checkpointer(model).load(str(path))
        message = str(err.value)
        assert str(path) in message and "damaged" in message, (name, message)
        assert "could run code" not in message and "Refusing" not in message, name
        for key, value in model.state_dict().items():
            assert torch.equal(value, before[key]), (name, key)  # untouched
    # What each message says is wrong.
    checks = {"truncated.pth": "truncated", "flipped_bit.pth": "CRC", "empty.pth": "empty"}
    for file, words in checks.items():
        with pytest.raises(CheckpointDamagedError, match=words):
            Checkpointer(_net()).load(str(tmp_path / file))
    with pytest.raises(CheckpointDamagedError, match="pickle"):
        Checkpointer(_net()).load(str(tmp_path / "truncated_pkl.pkl"))


def test_hostile_pickles_are_refused_as_such_not_as_damage(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"model": {}, "x": _Evil(marker)}, tmp_path / "evil.pth")
    with pytest.raises(ValueError) as err:
        Checkpointer(_net()).load(str(tmp_path / "evil.pth"))
    assert not isinstance(err.value, CheckpointDamagedError)
    assert "Refusing" in str(err.value) and "system" in str(err.value)
    assert "could run code" in str(err.value) and "weights_only" in str(err.value)
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"model": {"w": _Evil(marker)}, "__author__": "x"}, f)
    with pytest.raises(UnsafePickleError):
        Checkpointer(_net()).load(str(tmp_path / "evil.pkl"))
    assert not marker.exists()


# ------------------------------------------------------------------------------ NaN weights


def test_nan_and_inf_weights_are_refused_naming_the_tensors(tmp_path):
    bad = _net(0)
    with torch.no_grad():
        bad[0].weight[1, 2] = float("nan")
        bad[2].bias[0] = float("inf")
    Checkpointer(bad, str(tmp_path)).save("diverged")
    model = _net(1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(NonFiniteWeightsError) as err:
        Checkpointer(model).load(str(tmp_path / "diverged.pth"))
    message = str(err.value)
    assert "0.weight (1 NaN, 0 inf of 32)" in message and "2.bias (0 NaN, 1 inf of 2)" in message
    assert "diverged.pth" in message and "2 tensor(s)" in message
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # nothing was copied in
    # Detectron2 .pkl weights (numpy arrays) are checked too.
    with open(tmp_path / "nan.pkl", "wb") as f:
        pickle.dump(
            {"model": {"0.weight": np.full((8, 4), np.nan, np.float32)}, "__author__": "x"}, f
        )
    with pytest.raises(NonFiniteWeightsError, match=r"0.weight \(32 NaN"):
        Checkpointer(_net()).load(str(tmp_path / "nan.pkl"))


# ------------------------------------------------------------------------------- full disk


class _DiskFullAfter(io.RawIOBase):
    """A file whose writes fail with ENOSPC once ``limit`` bytes have been written."""

    def __init__(self, f, limit: int) -> None:
        self.f, self.limit, self.written = f, limit, 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self.written + len(data) > self.limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.written += len(data)
        return self.f.write(data)


def test_full_disk_during_save_says_so_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = _net(0)
    ckpt = Checkpointer(model, str(tmp_path))
    ckpt.save("model_final", iteration=1)
    before = (tmp_path / "model_final.pth").read_bytes()
    real_save = torch.save

    def save_on_full_disk(obj, f, *args, **kwargs):
        return real_save(obj, _DiskFullAfter(f, limit=300), *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_on_full_disk)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    with pytest.raises(OSError) as err:
        ckpt.save("model_final", iteration=2)
    assert err.value.errno == errno.ENOSPC
    path = os.path.join(str(tmp_path), "model_final.pth")
    assert f"no space left on device writing {path}" in str(err.value)
    # torch's own report ("unexpected pos ...") stays in the chain for the curious.
    assert "unexpected pos" in str(err.value.__cause__)
    assert (tmp_path / "model_final.pth").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_final.pth"]  # no temp file


# -------------------------------------------------------------------- killed save, resume


def _toy(tmp_path, **overrides):
    opts = {"SOLVER.MAX_ITER": 30, "SOLVER.CHECKPOINT_PERIOD": 10, "DATASETS.TEST": ()}
    opts.update(overrides)
    return toy_cfg(str(tmp_path), **opts)


def _train(cfg, *, resume=False, crash_at=None):
    torch.manual_seed(0)
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=resume)
    if crash_at is not None:

        def crash(t):
            if t.iter == crash_at:
                raise RuntimeError("killed")

        trainer.register_hooks([CallbackHook(after_step=crash)])
        with pytest.raises(RuntimeError, match="killed"):
            trainer.train()
    else:
        trainer.train()
    return trainer


def test_resume_after_a_killed_save_falls_back_to_the_last_intact_checkpoint(tmp_path, log):
    straight = _train(_toy(tmp_path / "straight"))
    expected = straight.checkpointer.model.state_dict()

    run = tmp_path / "broken"
    _train(_toy(run), crash_at=25)  # checkpoints after iterations 9 and 19
    assert (run / "last_checkpoint").read_text() == "model_0000019.pth"
    # The save after iteration 19 was killed half-way: a truncated file (the rename happened,
    # the disk lost the tail) and the temp file of the next save, the checkpoint's size.
    newest = run / "model_0000019.pth"
    raw = newest.read_bytes()
    temp = run / ".model_0000029.pth.q7x2k9a1.tmp"
    temp.write_bytes(raw)
    newest.write_bytes(raw[: len(raw) // 3])

    resumed = DefaultTrainer(_toy(run))
    assert not temp.exists()  # cleaned at the start, under the OUTPUT_DIR lock
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 10  # model_0000009.pth records iteration 9
    assert "Removed" in log.text and temp.name in log.text
    assert "Not resuming from" in log.text and "model_0000019.pth" in log.text
    assert "truncated" in log.text and "could run code" not in log.text
    assert "Resumed from" in log.text and "model_0000009.pth (iteration 9)" in log.text
    resumed.train()
    actual = resumed.checkpointer.model.state_dict()
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key  # as if never interrupted


def test_checkpoint_max_keep_deletes_older_periodic_checkpoints_and_resume_still_works(tmp_path):
    straight = _train(_toy(tmp_path / "straight"))  # keeps all: 0 is Detectron2's behaviour
    names = sorted(p.name for p in (tmp_path / "straight").glob("model_*.pth"))
    assert names == [f"model_{i:07d}.pth" for i in (9, 19, 29)] + ["model_final.pth"]

    run = tmp_path / "keep1"
    keep1 = {"SOLVER.CHECKPOINT_MAX_KEEP": 1}
    _train(_toy(run, **keep1), crash_at=25)  # saved after 9, then after 19 (9 deleted)
    assert sorted(p.name for p in run.glob("model_*.pth")) == ["model_0000019.pth"]
    resumed = _train(_toy(run, **keep1), resume=True)
    assert resumed.start_iter == 20
    # The resumed process counts the earlier process's model_0000019.pth (deleted once 29 is
    # saved); the final model is never counted among the periodic ones, nor deleted.
    assert sorted(p.name for p in run.glob("model_*.pth")) == [
        "model_0000029.pth",
        "model_final.pth",
    ]
    expected = straight.checkpointer.model.state_dict()
    actual = resumed.checkpointer.model.state_dict()
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key


def test_resume_never_skips_to_a_later_leftover_nor_past_an_unsafe_file(tmp_path):
    model = _net(0)
    ckpt = Checkpointer(model, str(tmp_path))
    for it in (9, 19, 29):
        ckpt.save(f"model_{it:07d}", iteration=it)
    ckpt.tag_last_checkpoint("model_0000019.pth")  # 29 is a leftover of an earlier run
    (tmp_path / "model_0000019.pth").write_bytes(b"")
    assert Checkpointer(_net(1), str(tmp_path)).resume_or_load("", resume=True)["iteration"] == 9

    torch.save({"model": {}, "x": _Evil(tmp_path / "pwned")}, tmp_path / "model_0000019.pth")
    with pytest.raises(ValueError, match="Refusing"):
        Checkpointer(_net(1), str(tmp_path)).resume_or_load("", resume=True)

    for it in (9, 19):
        (tmp_path / f"model_{it:07d}.pth").write_bytes(b"PK\x03\x04cut")
    with pytest.raises(CheckpointDamagedError, match="No intact checkpoint") as err:
        Checkpointer(_net(1), str(tmp_path)).resume_or_load("", resume=True)
    assert "model_0000019.pth" in str(err.value) and "model_0000009.pth" in str(err.value)


def test_resume_skips_a_checkpoint_of_nan_weights(tmp_path):
    model = _net(0)
    ckpt = Checkpointer(model, str(tmp_path))
    ckpt.save("model_0000009", iteration=9)
    with torch.no_grad():
        model[0].bias.fill_(float("nan"))
    ckpt.save("model_0000019", iteration=19)
    fresh = _net(1)
    assert Checkpointer(fresh, str(tmp_path)).resume_or_load("", resume=True)["iteration"] == 9
    assert torch.isfinite(fresh[0].bias).all()


def test_only_temp_files_of_checkpoint_saves_are_removed(tmp_path):
    ours = [".model_0000009.pth.ab3_k9z1.tmp", ".last_checkpoint.0a1b2c3d.tmp"]
    others = [
        ".results.json.ab3_k9z1.tmp",  # not a checkpoint
        ".model.pth.tmp",  # not mkstemp's form
        "notes.tmp",
        "model_0000009.pth",
        ".model_0000009.pth.ABCDEFGH.tmp",  # mkstemp writes lower case only
    ]
    for name in ours + others:
        (tmp_path / name).write_bytes(b"x" * 10)
    removed = remove_interrupted_saves(str(tmp_path))
    assert sorted(os.path.basename(p) for p in removed) == sorted(ours)
    assert sorted(os.listdir(tmp_path)) == sorted(others)
    assert is_interrupted_save(".model_final.pth.x_y1z2w3.tmp")


# ------------------------------------------------------------ recorded config, reuse check


def _plan(cfg, output_dir) -> MethodPlan:
    spec = M.MethodSpec("toy", "Toy", "single_view", "unused.yaml", M.shape_metrics_reader())
    return MethodPlan(spec, "unused.yaml", str(output_dir), [], cfg)


def test_benchmark_reuse_compares_the_config_recorded_in_the_checkpoint(tmp_path):
    run = tmp_path / "run"
    trained = _toy(run, **{"SOLVER.MAX_ITER": 3})
    _train(trained)
    assert yaml.safe_load(recorded_config(str(run / "model_final.pth"))) == yaml.safe_load(
        trained.dump()
    )
    assert reusable(_plan(trained, run)) == (True, "")

    # Another run (a different learning rate) rewrote config.yaml beside the model: the model
    # must not be credited to that config, and the true one still matches.
    other = _toy(run, **{"SOLVER.MAX_ITER": 3, "SOLVER.BASE_LR": 0.5})
    (run / "config.yaml").write_text(other.dump())
    ok, why = reusable(_plan(other, run))
    assert not ok and "recorded in the earlier run's model_final.pth differs" in why
    assert reusable(_plan(trained, run)) == (True, "")

    # A checkpoint that records no config (saved before they did) is not reused.
    data = torch.load(run / "model_final.pth", weights_only=True)
    del data["config"]
    torch.save(data, run / "model_final.pth")
    ok, why = reusable(_plan(trained, run))
    assert not ok and "records no config" in why
    # Nor is a damaged one.
    raw = (run / "model_final.pth").read_bytes()
    (run / "model_final.pth").write_bytes(raw[: len(raw) // 2])
    ok, why = reusable(_plan(trained, run))
    assert not ok and "damaged" in why
