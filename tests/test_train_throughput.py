"""``tools/benchmark.py train``: training throughput per config, at toy size, split by stage."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "benchmark.py"


def _load_tool():
    spec = importlib.util.spec_from_file_location("benchmark_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("toy_datasets")


def _run_tool(tmp_path: Path, root: Path, *args: str) -> tuple[list[dict], str]:
    out = tmp_path / "results.json"
    cmd = [sys.executable, str(TOOL), "train", "--toy", "--device", "cpu", "--threads", "1"]
    cmd += ["--steps", "2", "--warmup", "1", "--json", str(out), *args]
    cmd += ["--opts", "DATASETS.SYNTHETIC.ROOT", str(root)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def _check_split(result: dict, stages: tuple[str, ...]) -> None:
    for name in stages:
        assert result["stages"][name] > 0.0, (result["config"], name, result["stages"])
    # The stages partition the step: what none of them holds is the loop's own cost.
    total = sum(result["stages"].values())
    assert total == pytest.approx(result["step_s"], rel=0.05, abs=0.01), result
    assert result["images_per_s"] == pytest.approx(result["images_per_step"] / result["step_s"])


def test_toy_run_times_every_stage_of_a_training_step(tmp_path, toy_root):
    tool = _load_tool()
    stages = tool._train_module().STAGES
    assert stages == ("data", "backbone", "heads", "losses", "backward", "optimizer")
    results, stdout = _run_tool(tmp_path, toy_root, "--filter", "voxmesh")
    assert len(results) == 1
    result = results[0]
    assert Path(result["config"]).name == "voxmesh.yaml"
    assert (result["images_per_step"], result["steps"], result["threads"]) == (2, 2, 1)
    _check_split(result, stages)
    assert result["map_s_per_image"] > 0.0
    assert 0.0 < result["cpu_s"] < 4 * result["step_s"]
    assert "| voxmesh | cpu | 1 | 0 | 2 |" in stdout
    # By default the steps start at MAX_ITER // 2, past the voxel-only warm-up: every head trains.
    from meshrecon.model_zoo import get_config

    cfg = get_config("synthetic/voxmesh.yaml")
    assert result["start_iter"] == cfg.SOLVER.MAX_ITER // 2 >= cfg.MODEL.VOXEL_HEAD.VOXEL_ONLY_ITERS
    assert "loss_voxel" in result["losses"]
    assert any(name.startswith("loss_chamfer") for name in result["losses"]), result["losses"]


def test_start_iter_picks_which_kind_of_step_is_timed(tmp_path, toy_root):
    # VoxMesh's first VOXEL_ONLY_ITERS steps train the voxel branch alone: a before/after
    # comparison across schedules names the iteration to compare like with like.
    results, _ = _run_tool(tmp_path, toy_root, "--filter", "voxmesh", "--start-iter", "0")
    assert len(results) == 1
    assert results[0]["start_iter"] == 0
    losses = results[0]["losses"]
    assert "loss_voxel" in losses  # beside it only the zero that keeps the mesh head in the graph
    assert not any(name.startswith(("loss_chamfer", "loss_edge")) for name in losses), losses


@pytest.mark.slow
def test_toy_run_of_every_synthetic_config(tmp_path, toy_root):
    tool = _load_tool()
    names = tool._train_configs(REPO, "")
    results, _ = _run_tool(tmp_path, toy_root)
    assert sorted(Path(r["config"]).stem for r in results) == names
    for result in results:
        # Every model marks its image encoder; mean_shape's only "loss" is a zero from it.
        stages = ("data", "backbone", "heads", "backward", "optimizer")
        if Path(result["config"]).stem != "mean_shape":
            stages += ("losses",)
        _check_split(result, stages)


def test_config_list_and_comparison_table():
    tool = _load_tool()
    names = tool._train_configs(REPO, "")
    assert "meshrcnn_R18_FPN" in names and "psgn" in names
    assert not any(n.startswith(("Base-", "oracle_nn")) for n in names)
    assert {"clustering", "clustering_multiview", "retrieval", "retrieval_multiview"} <= set(names)
    assert tool._train_configs(REPO, "rcnn") == [n for n in names if "rcnn" in n]
    tt = tool._train_module()

    def run(images_per_s, cpu_s):
        return tt.TrainThroughput("psgn.yaml", "cpu", 1, 0, 2, 5, 2 / images_per_s, {}, None, cpu_s)

    before = [run(2.0, 1.2), run(3.0, 1.0), run(4.0, 0.8)]
    after = [run(6.0, 0.5), run(6.0, 0.5)]
    table = tt.format_comparison([("psgn", before, after)])
    # Medians: 3 -> 6 images/s; CPU seconds per image 0.5 -> 0.25.
    assert "| psgn | 3.00 | 6.00 | 2.00x | 2.00x |" in table


def test_bad_baseline_is_refused(tmp_path, capsys):
    tool = _load_tool()
    code = tool.main(["train", "--device", "cpu", "--baseline", str(tmp_path)])
    assert code == 2
    assert "not a meshrecon checkout" in capsys.readouterr().err


def test_cache_warming_maps_one_record_per_new_shape_file():
    tt = _load_tool()._train_module()
    records = [
        {"file_name": "a.png", "mesh": "m1.obj", "samples": "s1.pt"},  # new files
        {"file_name": "b.png", "mesh": "m1.obj", "samples": "s1.pt"},  # the same model again
        {"file_name": "c.png", "annotations": [{"mesh": "m1.obj"}, {"voxel": "v2.mat"}]},
        {"views": [{"mesh": "m3.obj"}, {"mesh": "m3.obj"}], "voxel": "v2.mat"},
        {"file_name": "d.png", "depth": {"path": "d.png"}},  # no shape file
    ]
    assert tt._shape_files(records[2]) == {"m1.obj", "v2.mat"}
    mapped = []
    assert tt.warm_shape_cache(mapped.append, records) == 3
    assert [r.get("file_name") for r in mapped] == ["a.png", "c.png", None]
    assert tt.warm_shape_cache(None, records) == 0
