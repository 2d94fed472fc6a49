"""tools/benchmark_methods.py and meshrecon.apps.method_benchmark: plans, readers, reuse,
results.json, and the whole pipeline at toy size checked file by file and in a real browser."""

from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from meshrecon.apps.method_benchmark import methods as M
from meshrecon.apps.method_benchmark.report import NOT_APPLICABLE, format_seconds
from meshrecon.apps.method_benchmark.runner import (
    LogProgress,
    config_fingerprint,
    iteration_overrides,
    log_progress,
    plan_methods,
)
from meshrecon.config import get_cfg
from meshrecon.engine import DefaultTrainer
from meshrecon.engine.defaults import write_results_json
from meshrecon.evaluation import DatasetEvaluator
from meshrecon.utils.progress import progress_bar

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / "tools" / "benchmark_methods.py"


# ----------------------------------------------------------------------------- results.json


class _FixedEvaluator(DatasetEvaluator):
    def reset(self):
        self.n = 0

    def process(self, inputs, outputs):
        self.n += len(inputs)

    def evaluate(self):
        return {"task": {"AP": torch.tensor(12.5), "nan": math.nan, "n": self.n}}


class _ListTrainer(DefaultTrainer):
    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return [[{"image_id": 0}], [{"image_id": 1}]]


class _Echo(nn.Module):
    def forward(self, batch):
        return [{} for _ in batch]


def test_trainer_test_writes_results_json(tmp_path):
    cfg = get_cfg()
    cfg.DATASETS.TEST = ("toy_test",)
    cfg.OUTPUT_DIR = str(tmp_path)
    results = _ListTrainer.test(cfg, _Echo(), evaluators=[_FixedEvaluator()])
    path = tmp_path / "inference" / "toy_test" / "results.json"
    saved = json.loads(path.read_text())
    assert saved == {"task": {"AP": 12.5, "nan": None, "n": 2}}
    assert results["task"]["n"] == 2


def test_write_results_json_plain_types(tmp_path):
    import numpy as np

    path = write_results_json({"a": np.float32(1.5), "b": [np.int64(2), float("inf")]}, tmp_path)
    assert json.loads(Path(path).read_text()) == {"a": 1.5, "b": [2, None]}


# ----------------------------------------------------------------------------- planning


def _cfg(max_iter=400, steps=(320,), warmup=50, checkpoint=500):
    cfg = get_cfg()
    cfg.SOLVER.MAX_ITER = max_iter
    cfg.SOLVER.STEPS = steps
    cfg.SOLVER.WARMUP_ITERS = warmup
    cfg.SOLVER.CHECKPOINT_PERIOD = checkpoint
    return cfg


def test_iteration_overrides_scale_the_schedule():
    ov = dict(zip(*[iter(iteration_overrides(_cfg(), scale=0.5))] * 2))
    assert ov["SOLVER.MAX_ITER"] == "200"
    assert ov["SOLVER.STEPS"] == "(160,)"
    assert ov["SOLVER.WARMUP_ITERS"] == "25"
    assert ov["SOLVER.CHECKPOINT_PERIOD"] == "250"
    ov = dict(zip(*[iter(iteration_overrides(_cfg(), max_iter=40))] * 2))
    assert ov["SOLVER.MAX_ITER"] == "40" and ov["SOLVER.STEPS"] == "(32,)"
    assert iteration_overrides(_cfg(), scale=1.0) == []
    with pytest.raises(ValueError, match="positive"):
        iteration_overrides(_cfg(), scale=0)


def test_fingerprint_ignores_only_what_does_not_change_the_training():
    a, b = _cfg(), _cfg()
    b.OUTPUT_DIR = "elsewhere"
    b.SOLVER.CHECKPOINT_MAX_KEEP = 1
    assert config_fingerprint(a) == config_fingerprint(b)
    b.SOLVER.CHECKPOINT_PERIOD += 1  # resumes from other iterations: not the same run
    assert config_fingerprint(a) != config_fingerprint(b)
    b = _cfg()
    b.SOLVER.BASE_LR = 0.123
    assert config_fingerprint(a) != config_fingerprint(b)
    assert config_fingerprint(a.dump()) == config_fingerprint(a)


def test_saved_config_of_an_older_version_is_read_over_todays_defaults(tmp_path):
    # A run saved before a key existed (here MODEL.MEMORY_FORMAT) still matches today's config;
    # a changed value or a key that no longer exists does not.
    import yaml

    from meshrecon.apps.method_benchmark.runner import _saved_fingerprint

    cfg = _cfg()
    data = yaml.safe_load(cfg.dump())
    del data["MODEL"]["MEMORY_FORMAT"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    assert _saved_fingerprint(str(tmp_path)) == config_fingerprint(cfg)
    data["SOLVER"]["BASE_LR"] = 0.123
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    assert _saved_fingerprint(str(tmp_path)) != config_fingerprint(cfg)
    data["MODEL"]["NO_SUCH_KEY"] = 1
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(data))
    assert _saved_fingerprint(str(tmp_path)) is None
    assert _saved_fingerprint(str(tmp_path / "absent")) is None


def _spec(name, config="synthetic/psgn.yaml", **kw):
    return M.MethodSpec(name, name, "single_view", config, M.shape_metrics_reader(), **kw)


def test_plan_orders_stages_and_skips_missing_configs(tmp_path):
    specs = (
        _spec("second", init_from="first"),
        _spec("first"),
        _spec("absent", config="synthetic/not_there.yaml"),
        _spec("orphan", init_from="absent"),
    )
    plans, skipped = plan_methods(
        specs, runs_dir=str(tmp_path), iters={"first": 7}, opts=["SEED", "3"]
    )
    assert [p.spec.name for p in plans] == ["first", "second"]
    first, second = plans
    assert first.cfg.SOLVER.MAX_ITER == 7 and first.cfg.SEED == 3
    # Of the periodic checkpoints every run keeps the latest (the default preset's runs took
    # 5.3 GB keeping all), unless the command line says otherwise.
    assert first.cfg.SOLVER.CHECKPOINT_MAX_KEEP == second.cfg.SOLVER.CHECKPOINT_MAX_KEEP == 1
    (mine,), _ = plan_methods(specs[1:2], opts=["SOLVER.CHECKPOINT_MAX_KEEP", "0"])
    assert mine.cfg.SOLVER.CHECKPOINT_MAX_KEEP == 0
    assert first.output_dir == str(tmp_path / "first")
    assert second.cfg.MODEL.WEIGHTS == str(tmp_path / "first" / "model_final.pth")
    # A first stage validated and tested with its best checkpoint (the full preset; the default
    # preset's Eigen): the next stage starts from that checkpoint, the one its row reports.
    val = {
        "first": [
            *("DATASETS.VAL", "('synthetic_shapenet_val',)", "TEST.EVAL_PERIOD", "5"),
            *("TEST.BEST_METRIC", "shapenet/F1@0.300000", "TEST.EVAL_BEST", "True"),
        ]
    }
    _, validated = plan_methods(specs[:2], runs_dir=str(tmp_path), method_opts=val)[0]
    assert validated.cfg.MODEL.WEIGHTS == str(tmp_path / "first" / "model_best.pth")
    # The command line wins over a preset's per-method override of the same key (the full
    # preset's TRAIN_SCALE); the preset's other keys stay.
    extra = {"first": ["DATASETS.SYNTHETIC.TRAIN_SCALE", "5", "SEED", "4"]}
    (preset,), _ = plan_methods(specs[1:2], method_opts=extra)
    assert preset.cfg.DATASETS.SYNTHETIC.TRAIN_SCALE == 5 and preset.cfg.SEED == 4
    (mine,), _ = plan_methods(
        specs[1:2], method_opts=extra, opts=["DATASETS.SYNTHETIC.TRAIN_SCALE", "10"]
    )
    assert mine.cfg.DATASETS.SYNTHETIC.TRAIN_SCALE == 10 and mine.cfg.SEED == 4
    reasons = {r.name: r.reason for r in skipped}
    assert "not in the model zoo" in reasons["absent"]
    assert "absent" in reasons["orphan"]
    with pytest.raises(KeyError, match="unknown method"):
        plan_methods(specs, iters={"nope": 3})
    with pytest.raises(ValueError, match="KEY VALUE"):
        plan_methods(specs, opts=["SEED"])


def test_tested_checkpoint_is_the_best_only_where_the_test_used_it(tmp_path):
    from meshrecon.apps.method_benchmark.runner import tested_checkpoint

    plain, best = _cfg(), _cfg()
    best.DATASETS.VAL = ("synthetic_shapenet_val",)
    best.TEST.EVAL_BEST = True
    final_path, best_path = str(tmp_path / "model_final.pth"), str(tmp_path / "model_best.pth")
    assert tested_checkpoint(plain, str(tmp_path), must_exist=False) == final_path
    assert tested_checkpoint(best, str(tmp_path), must_exist=False) == best_path
    # A run made before it validated: no model_best.pth, its test used the final weights.
    assert tested_checkpoint(best, str(tmp_path)) == final_path
    (tmp_path / "model_best.pth").write_bytes(b"")
    assert tested_checkpoint(best, str(tmp_path)) == best_path
    assert tested_checkpoint(plain, str(tmp_path)) == final_path


def test_prepare_datasets_generates_each_plans_own_version_of_a_split(tmp_path):
    # Two plans train on synthetic_nyu_train with different DATASETS.SYNTHETIC (the full preset
    # gives Eigen TRAIN_SCALE 5): both versions are generated up front, not only the first.
    from meshrecon.apps.method_benchmark.runner import MethodPlan, prepare_datasets
    from meshrecon.data.datasets.synthetic.generator import (
        dataset_dir,
        get_synthetic_config,
        set_synthetic_config,
    )

    def plan(train_scale):
        cfg = get_cfg()
        cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = ("synthetic_nyu_train",), ("synthetic_nyu_test",)
        cfg.DATASETS.SYNTHETIC.SCALE = 0.02
        cfg.DATASETS.SYNTHETIC.TRAIN_SCALE = train_scale
        cfg.DATASETS.SYNTHETIC.ROOT = str(tmp_path)
        cfg.DATASETS.SYNTHETIC.NYU_IMAGE_SIZE = (64, 48)
        return MethodPlan(_spec(f"ts{train_scale}"), "", str(tmp_path / "run"), [], cfg)

    previous = get_synthetic_config()
    try:
        names = prepare_datasets([plan(1.0), plan(3.0)])
        last = get_synthetic_config()  # the second plan's
    finally:
        set_synthetic_config(previous)
    assert names == ["synthetic_nyu_train", "synthetic_nyu_test"]
    folders = {dataset_dir("nyu", "train", replace(last, train_scale=t)) for t in (1.0, 3.0)}
    assert len(folders) == 2
    for folder in folders:
        assert os.path.isfile(os.path.join(folder, "records.json")), folder


def test_every_method_config_and_task_exist():
    from meshrecon.model_zoo import get_config_file

    for m in M.METHODS:
        assert m.task in M.TASKS
        get_config_file(m.config)  # raises if a config is missing from the zoo
        if m.real_config:
            get_config_file(m.real_config)
    assert len({m.name for m in M.METHODS}) == len(M.METHODS)


# ----------------------------------------------------------------------------- readers


def _shape(normals=True):
    out = {"Chamfer-L2": 0.5, "F1@0.100000": 10.0, "F1@0.300000": 30.0, "F1@0.500000": 50.0}
    if normals:
        out["NormalConsistency"] = 0.6
        out["AbsNormalConsistency"] = 0.7
    return out


def test_readers():
    row = M.shape_metrics_reader(normals=False)({"shapenet": _shape(False)})
    assert row["AbsNormalConsistency"] is None and row["F1@0.3"] == 30.0
    assert M.shape_metrics_reader()({"shapenet": _shape()})["AbsNormalConsistency"] == 0.7
    # The other protocols: present, absent (a run evaluated before them: NaN, not "—"), and
    # not applicable (no closed mesh, no voxels: "—").
    full = {
        "shapenet": _shape(),
        "shapenet_fscore": {"F-score@1%": 11.0, "Precision@1%": 12.0, "Recall@1%": 10.0},
        "shapenet_onet": {"Chamfer-L1": 0.9, "IoU": 0.4, "NumIoU": 5.0},
        "voxels": {"IoU": 0.3},
    }
    row = M.shape_metrics_reader()(full)
    assert (row["F@1%"], row["P@1%"], row["R@1%"]) == (11.0, 12.0, 10.0)
    assert (row["Chamfer-L1"], row["IoU-32"], row["VoxelIoU"]) == (0.9, 0.4, 0.3)
    full["shapenet_onet"]["NumIoU"] = 0.0
    del full["voxels"]
    row = M.shape_metrics_reader()(full)
    assert row["IoU-32"] is None and row["VoxelIoU"] is None
    old = M.shape_metrics_reader()({"shapenet": _shape()})
    assert math.isnan(old["F@1%"]) and math.isnan(old["Chamfer-L1"])
    r2n2 = {"voxel": {"IoU@1": 0.1, "IoU@3": 0.3, "IoU@5": 0.5}, "mesh@1": _shape()}
    r2n2["mesh@5"] = {**_shape(), "Chamfer-L2": 0.2}
    row = M.multiview_reader(r2n2)
    assert row["IoU@5"] == 0.5 and row["Chamfer-L2@all"] == 0.2 and row["Chamfer-L2@1"] == 0.5
    r2n2["mesh_fscore@5"] = {"F-score@1%": 7.0}
    r2n2["mesh_onet@1"] = {"Chamfer-L1": 2.5}
    row = M.multiview_reader(r2n2)
    assert row["F@1%@all"] == 7.0 and row["Chamfer-L1@1"] == 2.5 and math.isnan(row["F@1%@1"])
    mvs = {"single": _shape(False), "multiview": _shape(False)}
    mvs["multiview_fscore"] = {"F-score@1%": 4.0}
    row = M.multiview_reader(mvs)
    assert row["IoU@1"] is None and row["F1@0.3@all"] == 30.0 and row["F@1%@all"] == 4.0
    # Pix3DEvaluator reports fractions; the table's AP columns are in %.
    row = M.pix3d_reader({"shape": {"box_ap@0.5": 0.573, "mask_ap@0.5": 0.25}})
    assert row == pytest.approx({"AP_box": 57.3, "AP_mask": 25.0, "AP_mesh": None})
    with pytest.raises(KeyError, match="no 'depth' section"):
        M.depth_reader({"other": {}})
    assert format_seconds(3725) == "1 h 02 min" and format_seconds(None) == NOT_APPLICABLE


# ----------------------------------------------------------------------------- toy pipeline


def _run_tool(out: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(TOOL), "--preset", "toy", "--output", str(out / "report")]
    cmd += ["--runs-dir", str(out / "runs"), *args]
    cmd += ["--opts", "DATASETS.SYNTHETIC.ROOT", str(out / "datasets")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def check_report(report_dir: Path, expected_methods: set[str]) -> dict:
    """Every table cell is a number (or "—" where the metric does not apply to the method),
    and every picture and mesh the report names exists and opens."""
    from PIL import Image

    from meshrecon.io import load_mesh, load_pointcloud_ply

    payload = json.loads((report_dir / "report.json").read_text())
    seen = set()
    for task_key, task in payload["tasks"].items():
        spec_task = M.TASKS[task_key]
        ncols = len(spec_task.columns)
        assert task["rows"], f"{task_key}: empty table"
        for row in task["rows"]:
            for cell in row[1 : 1 + ncols]:
                assert cell == NOT_APPLICABLE or math.isfinite(float(cell)), (task_key, row)
            assert row[1 + ncols] != NOT_APPLICABLE  # parameters
            assert row[2 + ncols] != NOT_APPLICABLE  # wall time
        for name, m in task["methods"].items():
            assert m["status"] in ("trained", "reused", "evaluated"), (name, m["reason"])
            seen.add(name)
            for key, value in m["metrics"].items():
                assert value is None or math.isfinite(value), (name, key, value)
            spec = M.get_method(name)
            if spec.train:
                assert (Path(m["output_dir"]) / "model_final.pth").is_file()
        for g in task["gallery"]:
            for cell in g["cells"]:
                with Image.open(report_dir / cell["image"]) as im:
                    assert im.width > 0 and im.height > 0
                for fmt, rel in cell["downloads"].items():
                    path = report_dir / rel
                    assert path.is_file(), path
                    if (
                        path.suffix == ".ply"
                        and "ground_truth" not in rel
                        and fmt == "PLY"
                        and (len(cell["downloads"]) == 1)
                    ):
                        assert load_pointcloud_ply(path).points.shape[0] > 0
                    else:
                        verts, faces = load_mesh(path)
                        assert verts.shape[0] > 0 and faces.shape[0] > 0
        assert (report_dir / "figures" / f"curves_{task_key}.png").is_file() or all(
            not M.get_method(n).train for n in task["methods"]
        )
    assert seen == expected_methods
    html = (report_dir / "report.html").read_text()
    assert "http://" not in html and "https://" not in html  # offline: nothing external
    assert (report_dir / "report.md").read_text().count("|") > 10
    return payload


SINGLE_VIEW_TOY = ("mean_shape", "psgn", "clustering", "retrieval", "oracle_nn")


@pytest.fixture(scope="module")
def toy_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    args = ("--methods", ",".join(SINGLE_VIEW_TOY), "--gallery-samples", "2")
    first = _run_tool(out, *args)
    second = _run_tool(out, *args)
    return out / "report", first, second


def check_baselines(report_dir: Path, task_key: str, learned: list[str]) -> None:
    """The recognition rows of a task: the oracle last, shaded and never bold; a paragraph on
    each learned method against Retrieval; per-category tables with both means."""
    payload = json.loads((report_dir / "report.json").read_text())
    task = payload["tasks"][task_key]
    rows = task["rows"]
    assert task["upper_bound_rows"] == [len(rows) - 1]
    assert rows[-1][0] == "Oracle NN (upper bound)"
    md = (report_dir / "report.md").read_text()
    oracle_line = next(line for line in md.splitlines() if "Oracle NN (upper bound)" in line)
    assert "**" not in oracle_line and oracle_line.startswith("| *Oracle NN")
    html = (report_dir / "report.html").read_text()
    assert '<tr class="oracle">' in html and "<details>" in html
    assert "Beyond recognition?" in task["yardstick"]
    for title in learned:
        assert f"{title} beats it on" in task["yardstick"], task["yardstick"]
    assert task["yardstick"] in md
    per = task["per_category"]
    retrieval = "retrieval" if task_key == "single_view" else "retrieval_multiview"
    assert set(per[retrieval]) == set(M.TASKS[task_key].per_category)  # a closed mesh: all
    for name, tables in per.items():
        for key, table in tables.items():
            assert table["categories"], (name, key)
            for value in (table["category_mean"], table["instance_mean"]):
                assert value is None or math.isfinite(value)
    assert "mean over categories" in md and "mean over instances" in md


def test_toy_pipeline_single_view(toy_report):
    report, first, second = toy_report
    payload = check_report(report, set(SINGLE_VIEW_TOY))
    # --gallery-samples: two samples; each cell hands its GLB (mesh) or PLY (points) to the viewer.
    gallery = payload["tasks"]["single_view"]["gallery"]
    assert len(gallery) == 2
    for row in gallery:
        models = [c["model"] for c in row["cells"]]
        assert models[0] == "" and models[1].endswith("ground_truth.glb")
        # Cells in table order (METHODS order): the baselines, PSGN, the oracle.
        assert models[2].endswith("mean_shape.glb") and models[4].endswith("retrieval.glb")
        assert models[5].endswith("psgn.ply") and models[6].endswith("oracle_nn.glb")
    assert "trained in" in first.stdout and "| PSGN |" in first.stdout
    # The second invocation finds every run finished with identical configs.
    payload = json.loads((report / "report.json").read_text())
    statuses = {n: m["status"] for n, m in payload["tasks"]["single_view"]["methods"].items()}
    assert statuses == {n: "reused" for n in SINGLE_VIEW_TOY}
    assert "reused (trained in" in (report / "report.md").read_text()
    check_baselines(report, "single_view", ["PSGN"])


@pytest.mark.slow
def test_toy_pipeline_multi_view_baselines(tmp_path):
    names = {"retrieval_multiview", "clustering_multiview", "oracle_nn_multiview", "r2n2_res_gru"}
    _run_tool(tmp_path, "--methods", ",".join(sorted(names)))
    check_report(tmp_path / "report", names)
    check_baselines(tmp_path / "report", "multi_view", ["3D-R2N2 (Res3D-GRU)"])


@pytest.mark.slow
def test_toy_pipeline_every_method(tmp_path):
    _run_tool(tmp_path)
    check_report(tmp_path / "report", {m.name for m in M.METHODS})
    check_baselines(tmp_path / "report", "single_view", ["PSGN", "Pixel2Mesh", "Sphere-Init"])
    check_baselines(tmp_path / "report", "multi_view", ["3D-R2N2 (Res3D-GRU)", "OptimizeMVS"])


def test_tool_rejects_bad_input(tmp_path):
    spec = importlib.util.spec_from_file_location("benchmark_methods", TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    with pytest.raises(SystemExit, match="unknown method"):
        tool.main(["--methods", "nope", "--output", str(tmp_path)])
    with pytest.raises(SystemExit, match="METHOD=N"):
        tool.main(["--methods", "psgn", "--iters", "psgn=x", "--output", str(tmp_path)])
    with pytest.raises(SystemExit, match="--gallery-samples must be >= 0"):
        tool.main(["--methods", "psgn", "--gallery-samples", "-1", "--output", str(tmp_path)])


# ----------------------------------------------------------------------------- browser


def test_report_in_headless_chromium(toy_report, tmp_path):
    from fixtures_browser import check_viewer, open_page

    report, _, _ = toy_report
    with open_page((report / "report.html").as_uri(), width=1366) as (page, log):
        images = page.evaluate(
            "Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])"
        )
        links = page.evaluate(
            "Array.from(document.querySelectorAll('a[download]')).map(a => a.href)"
        )
        tables = page.evaluate("document.querySelectorAll('table').length")
        # The gallery's 3D viewer: per sample the input picture, then the ground truth and
        # each method's model in linked views; the pictures fold away under it.
        root = page.query_selector(".mrv")
        views = check_viewer(page, root)["rows"]
        assert [len(r) for r in views] == [1 + len(SINGLE_VIEW_TOY)] * 2  # GT + each method
        assert page.evaluate("document.querySelector('details.pictures').open") is False
        # Fits a laptop screen: nothing wider than the 1366-pixel window.
        width = page.evaluate("document.documentElement.scrollWidth")
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
    assert not log.errors, log.errors
    assert not log.failed and not log.external, (log.failed, log.external)
    assert images and all(done and width > 0 for _, done, width in images), images
    assert links and all(Path(sync_url_to_path(u)).is_file() for u in links)
    assert tables >= 1  # the metrics table
    assert width <= 1366
    assert shot.stat().st_size > 10_000


def sync_url_to_path(url: str) -> str:
    from urllib.parse import unquote, urlparse

    return unquote(urlparse(url).path)


# ----------------------------------------------------------------------------- baselines' report


def test_yardstick_paragraph_verdicts():
    from meshrecon.apps.method_benchmark.yardstick import yardstick_paragraph

    task = M.TASKS["single_view"]
    spec = lambda name, **kw: M.MethodSpec(name, name, "single_view", "", None, **kw)  # noqa: E731
    ret = {"Chamfer-L2": 2.0, "F1@0.3": 30.0, "F@1%": 5.0, "Chamfer-L1": 1.0, "F1@0.5": 40.0}
    better = {"Chamfer-L2": 1.0, "F1@0.3": 40.0, "F@1%": 6.0, "Chamfer-L1": 0.9, "F1@0.5": 39.0}
    worse = {"Chamfer-L2": 3.0, "F1@0.3": 20.0, "F@1%": 4.0, "Chamfer-L1": 1.5}
    mixed = {"Chamfer-L2": 1.5, "F1@0.3": 20.0, "F@1%": math.nan, "Chamfer-L1": None}
    entries = [
        (spec("Retrieval", kind="baseline", yardstick=True), ret),
        (spec("A"), better),
        (spec("B"), worse),
        (spec("C"), mixed),
        (spec("Oracle", kind="oracle"), better),
    ]
    text = yardstick_paragraph(task, entries)
    assert "A beats it on all 4; 4 of 5 columns in all: it reconstructs beyond" in text
    assert "B beats it on none of 4; 0 of 4 columns in all: no sign" in text
    # NaN and "not applicable" columns are left out of the count.
    assert "C beats it on 1 of 2 (Chamfer-L2 ↓ (edge/10)²) but not on F1@0.3 ↑ %" in text
    assert "Oracle" not in text  # the upper bound is not a method
    assert "not run" in yardstick_paragraph(task, entries[1:])
    assert yardstick_paragraph(M.TASKS["depth"], entries) == ""


def test_per_category_readers_and_tables():
    from meshrecon.apps.method_benchmark.per_category import per_category_tables

    results = {
        "shapenet": {"Chamfer-L2": 1.5, "AbsNormalConsistency": 0.5, "F1@0.300000": 30.0},
        "shapenet_category_mean": {"Chamfer-L2": 2.0, "F1@0.300000": 25.0},
        "shapenet_per_category": {"chair/Chamfer-L2": 1.0, "table/Chamfer-L2": 3.0},
        "shapenet_onet": {"Chamfer-L1": 0.5, "IoU": math.nan, "NumIoU": 0.0},
        "shapenet_onet_category_mean": {"Chamfer-L1": 0.6, "IoU": math.nan},
        "shapenet_onet_per_category": {"chair/Chamfer-L1": 0.4, "chair/IoU": math.nan},
    }
    pc = M.get_method("retrieval").read_per_category(results)
    assert pc["Chamfer-L2"] == {
        "categories": {"chair": 1.0, "table": 3.0},
        "category_mean": 2.0,
        "instance_mean": 1.5,
    }
    assert "IoU-32" not in pc  # no closed mesh: not applicable
    assert pc["Chamfer-L1"]["categories"] == {"chair": 0.4}
    mv = M.get_method("r2n2_res_gru").read_per_category(
        {
            "voxel": {
                "IoU@1": 0.2,
                "IoU@5": 0.4,
                "mIoU@5": 0.35,
                "IoU@5-chair": 0.3,
                "IoU@1-chair": 0.1,
            },
            "mesh@1": {"Chamfer-L2": 9.0},
            "mesh@5": {"Chamfer-L2": 2.0},
            "mesh_category_mean@5": {"Chamfer-L2": 2.5},
            "mesh_per_category@5": {"chair/Chamfer-L2": 2.5},
        }
    )
    assert mv["IoU@5"] == {
        "categories": {"chair": 0.3},
        "category_mean": 0.35,
        "instance_mean": 0.4,
    }
    assert mv["Chamfer-L2@all"]["instance_mean"] == 2.0
    cols = {c.key: c for c in M.SHAPE_COLUMNS}
    tables = per_category_tables(
        ["Chamfer-L2", "F@1%"],
        {k: c.header for k, c in cols.items()},
        {k: c.digits for k, c in cols.items()},
        {"A": pc, "B": {"Chamfer-L2": {"categories": {"sofa": 5.0}, "category_mean": 5.0}}},
    )
    assert len(tables) == 1  # nobody has F@1% here
    title, headers, rows = tables[0]
    assert headers == ["category", "A", "B"]
    assert rows[0] == ["chair", "1.0000", "—"] and rows[2] == ["table", "3.0000", "—"]
    assert rows[-2] == ["mean over categories", "2.0000", "5.0000"]
    assert rows[-1] == ["mean over instances", "1.5000", "—"]


def test_log_progress_follows_training_and_each_validation():
    """The benchmark's progress bar reads a train_net log's tail: iterations while training,
    an evaluation's batches while it runs, and iterations again once training goes on."""
    train = "[12/07 04:37:24 meshrecon.utils.events INFO] eta: 0:53:01  iter: 119  total_loss: 1\n"
    start = "[12/07 04:37:35 meshrecon.evaluation.evaluator INFO] Start inference on 432 batches\n"
    bar0 = "inference:   0%|          | 0/432 [00:00<?, ?it/s]\n"
    bar1 = "inference:  20%|██        | 87/432 [00:20<01:20,  4.28it/s]\r"
    later = train.replace("iter: 119", "iter: 139")
    assert log_progress("") == ("train", None, None)
    assert log_progress(train) == ("train", 119, None)
    assert log_progress(train + start) == ("eval", 0, None)
    assert log_progress(train + start + bar0 + bar1) == ("eval", 87, 432)
    # Training goes on after the validation: back to iterations (the old bar stayed on eval).
    assert log_progress(train + start + bar0 + bar1 + later) == ("train", 139, None)
    # A second validation's bar counts from its own start, not the first one's last count.
    assert log_progress(train + start + bar1 + later + start) == ("eval", 0, None)
    # The test evaluation after training, whose start line has left the tail.
    assert log_progress("inference:  50%|█   | 216/432 [00:50<00:50,  4.2it/s]") == (
        "eval",
        216,
        432,
    )
    # The bar those tails feed: each phase starts it over at the first count the log shows.
    out = io.StringIO()
    bar = progress_bar(total=6400, desc="voxmesh", file=out, mininterval=0, miniters=1)
    follow = LogProgress(bar, "voxmesh", 6400)
    resumed = train.replace("iter: 119", "iter: 3019")
    tails = ["", resumed, resumed + start, resumed + start + bar1, resumed + start + bar1 + later]
    seen = []
    for tail in tails:
        follow.show(tail)
        seen.append((bar.desc.rstrip(": "), bar.initial, bar.n, bar.total))
    assert seen == [
        ("voxmesh", 0, 0, 6400),
        ("voxmesh", 3019, 3019, 6400),  # a resumed run: 3019 is not progress made in a second
        ("voxmesh (evaluating)", 0, 0, None),
        ("voxmesh (evaluating)", 87, 87, 432),
        ("voxmesh", 139, 139, 6400),
    ]
    follow.show(resumed + start + bar1 + later.replace("iter: 139", "iter: 159"))
    assert (bar.initial, bar.n) == (139, 159)
    bar.close()
