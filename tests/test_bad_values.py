"""Simple bad values get a ValueError naming the key (or a clear refusal), not a bare error from
deep inside a library or a run that silently does nothing."""

from __future__ import annotations

import glob
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from toy_task import toy_cfg

from meshrecon.config import get_cfg
from meshrecon.config.checks import check_config
from meshrecon.engine import DefaultTrainer, default_argument_parser, default_setup
from meshrecon.model_zoo import get_config_file

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "key, value, words",
    [
        # ZeroDivisionError inside fvcore's PeriodicCheckpointer before.
        ("SOLVER.CHECKPOINT_PERIOD", 0, "positive integer, got 0"),
        # Both "completed" with no model before.
        ("SOLVER.MAX_ITER", 0, "positive integer, got 0"),
        ("SOLVER.MAX_ITER", -5, "positive integer, got -5"),
        # An error about INPUT.MAPPER before.
        ("DATASETS.TRAIN", (), "is empty"),
        ("SOLVER.IMS_PER_BATCH", 0, "positive integer"),
        ("TEST.EVAL_PERIOD", -1, "integer >= 0"),
        ("TEST.PLATEAU_START_ITER", -1, "integer >= 0"),
        ("SOLVER.CHECKPOINT_MAX_KEEP", -1, "integer >= 0"),
        ("DATALOADER.NUM_WORKERS", -2, "integer >= 0"),
        ("SOLVER.BASE_LR", float("nan"), "finite number"),
        ("SOLVER.STEPS", (10, -3), "positive iterations"),
        ("INPUT.SHAPENET.NUM_SAMPLES", 0, "positive integer"),
        ("MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 0, "positive integer"),
        ("TEST.R2N2.MESH_SAMPLES", -1, "integer >= 0"),
    ],
)
def test_bad_training_value_names_its_key_before_anything_is_written(tmp_path, key, value, words):
    out = tmp_path / "out"
    cfg = toy_cfg(str(out), **{key: value})
    with pytest.raises(ValueError) as err:
        DefaultTrainer(cfg)
    assert key in str(err.value) and words in str(err.value)
    assert not out.exists()  # failed before the folder was made or locked
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        default_setup(cfg)  # tools/train_net.py checks before it writes config.yaml
    assert not out.exists()


def test_r2n2_evaluation_without_mesh_metrics_is_allowed():
    # TEST.R2N2.MESH_SAMPLES 0 scores the voxel IoU alone (refused as "not positive" before).
    check_config(toy_cfg("", **{"TEST.R2N2.MESH_SAMPLES": 0}))


def test_every_problem_is_listed_at_once():
    cfg = toy_cfg("", **{"SOLVER.MAX_ITER": 0, "SOLVER.CHECKPOINT_PERIOD": 0})
    with pytest.raises(ValueError) as err:
        check_config(cfg)
    assert "SOLVER.MAX_ITER" in str(err.value) and "SOLVER.CHECKPOINT_PERIOD" in str(err.value)


def test_auto_scaling_that_rounds_a_period_to_zero_is_named(tmp_path, monkeypatch):
    from meshrecon.utils import comm

    # Scaled from 1 reference process to 4: a checkpoint period of 1 becomes round(1 / 4) = 0.
    monkeypatch.setattr(comm, "get_world_size", lambda: 4)
    cfg = toy_cfg(
        str(tmp_path / "out"),
        **{"SOLVER.REFERENCE_WORLD_SIZE": 1, "SOLVER.CHECKPOINT_PERIOD": 1},
    )
    with pytest.raises(ValueError) as err:
        DefaultTrainer(cfg)
    assert "after auto-scaling from SOLVER.REFERENCE_WORLD_SIZE 1 to 4 processes" in str(err.value)
    assert "SOLVER.CHECKPOINT_PERIOD must be a positive integer, got 0" in str(err.value)


def test_evaluation_needs_a_test_dataset(tmp_path):
    args = default_argument_parser().parse_args(["--eval-only"])
    cfg = toy_cfg(str(tmp_path / "out"), **{"DATASETS.TEST": (), "SOLVER.MAX_ITER": 0})
    # MAX_ITER is a training value: not checked for an evaluation; an empty TEST is.
    with pytest.raises(ValueError, match=r"DATASETS\.TEST is empty") as err:
        default_setup(cfg, args)
    assert "SOLVER.MAX_ITER" not in str(err.value)


def test_every_model_zoo_config_passes_the_checks():
    zoo = os.path.dirname(os.path.dirname(get_config_file("synthetic/sphereinit.yaml")))
    files = sorted(glob.glob(os.path.join(zoo, "**", "*.yaml"), recursive=True))
    assert len(files) > 20
    checked = 0
    for path in files:
        cfg = get_cfg()
        cfg.merge_from_file(path)
        if cfg.DATASETS.TRAIN:
            check_config(cfg, training=True)
            checked += 1
        if cfg.DATASETS.TEST:
            check_config(cfg, training=False)
    assert checked > 20


def _load_demo():
    spec = importlib.util.spec_from_file_location("demo", REPO / "tools" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_without_weights_refuses_unless_told(tmp_path, capsys):
    image = tmp_path / "object.png"
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (137, 137, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "out"
    argv = ["--config-file", get_config_file("synthetic/sphereinit.yaml")]
    argv += ["--input", str(image), "--output", str(out)]
    demo = _load_demo()
    with pytest.raises(SystemExit) as exit_info:
        demo.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "MODEL.WEIGHTS is empty" in err and "--allow-random-weights" in err
    assert not out.exists()  # nothing was predicted
    assert demo.main([*argv, "--allow-random-weights"]) == 0
    assert "random weights" in capsys.readouterr().err
    assert (out / "object_mesh.obj").exists()


@pytest.mark.parametrize(
    "max_iter, voxel_only, warned", [(200, 400, True), (400, 400, True), (600, 400, False)]
)
def test_a_run_shorter_than_its_voxel_only_phase_is_warned_about(max_iter, voxel_only, warned):
    import logging

    from meshrecon.config import checks

    cfg = get_cfg()
    cfg.merge_from_file(get_config_file("synthetic/voxmesh.yaml"))
    cfg.merge_from_list(
        ["SOLVER.MAX_ITER", max_iter, "MODEL.VOXEL_HEAD.VOXEL_ONLY_ITERS", voxel_only]
    )
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    checks.logger.addHandler(handler)
    try:
        check_config(cfg, training=True)
        check_config(cfg, training=False)  # an evaluation trains nothing: never warned
    finally:
        checks.logger.removeHandler(handler)
    messages = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(messages) == int(warned)
    if warned:
        assert "VOXEL_ONLY_ITERS" in messages[0] and "never trained" in messages[0]
        assert f"VOXEL_ONLY_ITERS {2 * max_iter // 3}" in messages[0]
