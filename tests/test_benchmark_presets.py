"""The benchmark's presets (default, full, quickstart, toy), the pretraining ablation row, the
pretraining step before the runs, and the report's plot of validation metric against time."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import meshrecon.pretrain as pretrain
from meshrecon.apps.method_benchmark import methods as M
from meshrecon.apps.method_benchmark import presets as P
from meshrecon.apps.method_benchmark.quality import (
    metric_label,
    plot_validation_curves,
    validation_curves,
)
from meshrecon.apps.method_benchmark.report import NO_VALIDATION, write_report
from meshrecon.apps.method_benchmark.runner import (
    RunRecord,
    config_fingerprint,
    prepare_pretrained,
    pretrained_weights_needed,
)
from meshrecon.cli import benchmark_methods as B

TOY_DATA = ["DATASETS.SYNTHETIC.SCALE", "0.02", "DATASETS.SYNTHETIC.SHAPENET_VIEWS", "1"]


def _setup(preset: str, *extra: str, tmp_path: Path | None = None) -> B.Setup:
    argv = ["--preset", preset, *extra]
    if tmp_path is not None:
        argv += ["--runs-dir", str(tmp_path / "runs")]
    return B.plan_invocation(B.build_parser().parse_args(argv))


def _pairs(opts) -> dict[str, str]:
    assert len(opts) % 2 == 0
    return dict(zip(opts[::2], opts[1::2]))


# ----------------------------------------------------------------------------- full preset


def test_full_preset_validates_every_trained_method_and_stops_on_its_plateau():
    opts = P.full_method_opts(M.METHODS, iter_scale=P.FULL_CAP_FACTOR, iters={})
    setup = _setup("full")
    plans = {p.spec.name: p for p in setup.plans}
    trained = [m for m in M.METHODS if m.train]
    assert set(opts) == {m.name for m in trained}
    for spec in trained:
        o = _pairs(opts[spec.name])
        assert o["DATASETS.VAL"] == repr((spec.val_dataset,))
        assert o["SOLVER.STOP_ON_PLATEAU"] == "True" and o["TEST.EVAL_BEST"] == "True"
        assert o["SOLVER.PLATEAU_LR_STEP"] == "True"  # a plateau first brings the LR step on
        assert o["TEST.BEST_METRIC"] == spec.val_metric and o["TEST.BEST_MODE"] == "max"
        # The merged config: the cap is 8x the config's schedule, 15-30 validations before it.
        cfg = plans[spec.name].cfg
        from meshrecon.model_zoo import get_config

        assert cfg.SOLVER.MAX_ITER == round(8 * get_config(spec.config).SOLVER.MAX_ITER)
        assert cfg.TEST.EVAL_PERIOD > 0 and cfg.SOLVER.STOP_ON_PLATEAU and cfg.TEST.EVAL_BEST
        assert 15 <= cfg.SOLVER.MAX_ITER / cfg.TEST.EVAL_PERIOD <= 30
        assert cfg.TEST.PLATEAU_MIN_DELTA == spec.val_min_delta
        assert tuple(cfg.DATASETS.VAL) == (spec.val_dataset,)
        assert not set(cfg.DATASETS.VAL) & set(cfg.DATASETS.TEST)
        # Batch-norm statistics of the current weights at each validation.
        assert cfg.TEST.PRECISE_BN.ENABLED and cfg.TEST.PRECISE_BN.NUM_ITER == 20
        # Eigen's stages train on five times the rooms (they overfit 200), R2N2 on three times
        # the shapes (it overfits 90); the rest as usual.
        scale = {"eigen_coarse": 5.0, "eigen_fine": 5.0, "r2n2_res_gru": 3.0}.get(spec.name, 1.0)
        assert cfg.DATASETS.SYNTHETIC.TRAIN_SCALE == scale, spec.name
        # R2N2's recurrent state has the paper's 128 channels (its config: 32).
        if spec.name == "r2n2_res_gru":
            assert cfg.MODEL.R2N2.HIDDEN == 128 != get_config(spec.config).MODEL.R2N2.HIDDEN
        # PSGN: 3328 points (a 48 x 64 deconvolution map and 256 FC points) and Chamfer-L1.
        if spec.name == "psgn":
            assert (
                list(cfg.MODEL.PSGN.CONV_GRID) == [48, 64] and cfg.MODEL.PSGN.LOSS == "chamfer_l1"
            )
            assert get_config(spec.config).MODEL.PSGN.LOSS == "chamfer"
        # VoxMesh and its ablation predict (and are supervised on) a 32^3 grid, whose cubes can
        # score higher; the other methods keep their configs' grids.
        if spec.name in ("voxmesh", "voxmesh_scratch"):
            assert cfg.MODEL.VOXEL_HEAD.VOXEL_SIZE == cfg.INPUT.SHAPENET.VOXEL_SIZE == 32
            assert cfg.MODEL.MESH_ON, spec.name
        else:
            base = get_config(spec.config).MODEL.VOXEL_HEAD.VOXEL_SIZE
            assert cfg.MODEL.VOXEL_HEAD.VOXEL_SIZE == base, spec.name
    # --iters / --iter-scale move the validation period with the cap.
    short = _pairs(P.full_method_opts(M.METHODS, iter_scale=8.0, iters={"psgn": 240})["psgn"])
    assert short["TEST.EVAL_PERIOD"] == "10"
    with pytest.raises(ValueError, match="val_dataset"):
        P.validation_opts(M.get_method("psgn").__class__("x", "x", "single_view", "c", dict), 5)


def _model_ids(name: str) -> set[str]:
    """The ShapeNet-style records' model ids; the Pix3D-style scenes' models by the hash of
    their mesh file (each split has its own library, whose folder names repeat)."""
    import hashlib

    from meshrecon.data import DatasetCatalog

    ids = set()
    for record in DatasetCatalog.get(name):
        if "model_id" in record:
            ids.add(record["model_id"])
        for ann in record.get("annotations", []):
            if isinstance(ann.get("mesh"), str):
                ids.add(hashlib.sha256(Path(ann["mesh"]).read_bytes()).hexdigest())
    return ids


def test_method_opts_change_one_method_and_win_over_every_other_override():
    # Eigen's fine stage tuned from the command line while its coarse stage keeps the preset's
    # config, so a coarse run already trained is reused (its fingerprint is unchanged).
    methods = ["--methods", "eigen_coarse,eigen_fine"]
    plain = {p.spec.name: p.cfg for p in _setup("full", *methods).plans}
    tuned = _setup(
        "full",
        *methods,
        *("--method-opts", "eigen_fine", "SOLVER.BASE_LR", "0.0005", "SOLVER.WARMUP_ITERS", "7"),
        *("--method-opts", "eigen_fine", "DATASETS.SYNTHETIC.TRAIN_SCALE", "3"),
        *("--opts", "SEED", "5", "SOLVER.BASE_LR", "0.002"),
    )
    cfg = {p.spec.name: p.cfg for p in tuned.plans}
    fine, coarse = cfg["eigen_fine"], cfg["eigen_coarse"]
    assert fine.SOLVER.BASE_LR == 0.0005 and fine.SOLVER.WARMUP_ITERS == 7
    # It wins over the full preset's TRAIN_SCALE (5) for that method only.
    assert fine.DATASETS.SYNTHETIC.TRAIN_SCALE == 3
    assert coarse.DATASETS.SYNTHETIC.TRAIN_SCALE == 5
    assert coarse.SOLVER.BASE_LR == 0.002 and coarse.SEED == fine.SEED == 5
    only_fine = _setup(
        "full", *methods, "--method-opts", "eigen_fine", "SOLVER.BASE_LR", "0.0005"
    ).plans
    assert config_fingerprint(only_fine[0].cfg) == config_fingerprint(plain["eigen_coarse"])
    assert only_fine[1].cfg.SOLVER.BASE_LR == 0.0005 != plain["eigen_fine"].SOLVER.BASE_LR
    with pytest.raises(SystemExit, match="not a method of this run"):
        _setup("full", *methods, "--method-opts", "psgn", "SEED", "1")
    with pytest.raises(SystemExit, match="KEY VALUE pairs"):
        _setup("full", *methods, "--method-opts", "eigen_fine", "SEED")
    with pytest.raises(SystemExit, match="KEY VALUE pairs"):
        _setup("full", *methods, "--method-opts", "eigen_fine")


@pytest.mark.slow
def test_every_validation_split_is_registered_and_shares_no_model_with_its_test_split(tmp_path):
    from meshrecon.data import DatasetCatalog
    from meshrecon.data.datasets import configure_synthetic
    from meshrecon.data.datasets.synthetic.generator import split_spec

    registered = set(DatasetCatalog.list())
    setup = _setup("full", "--opts", *TOY_DATA, "DATASETS.SYNTHETIC.ROOT", str(tmp_path))
    seen = set()
    for plan in setup.plans:
        if not plan.spec.train:
            continue
        (val,), test = tuple(plan.cfg.DATASETS.VAL), plan.cfg.DATASETS.TEST[0]
        assert val in registered and val.startswith("synthetic_") and "_val" in val
        if (val, test) in seen:
            continue
        seen.add((val, test))
        kind = val.split("_")[1]
        configure_synthetic(plan.cfg)
        if kind == "nyu":  # rooms, no models: the two splits draw from their own streams
            assert split_spec("nyu", "val")["split"] != split_spec("nyu", "test")["split"]
            continue
        val_ids, test_ids = _model_ids(val), _model_ids(test)
        assert val_ids and test_ids, (val, test)
        assert val_ids.isdisjoint(test_ids), (val, test)


# ----------------------------------------------------------------------------- default preset


def test_default_preset_fits_its_budget_and_keeps_the_best_where_validation_is_cheap():
    setup = _setup("default")
    plans = {p.spec.name: p for p in setup.plans}
    # Every method but the Clustering baselines (34 min; the full preset runs them).
    assert set(plans) == {m.name for m in M.METHODS} - {"clustering", "clustering_multiview"}
    assert set(P.DEFAULT_SCHEDULE) == set(plans) == set(P.DEFAULT_METHODS)
    estimate = P.estimate_default_minutes(M.METHODS, pretraining=False)
    assert 80 <= sum(estimate.values()) <= 95  # "about 90 minutes" of runs
    assert 2 <= P.estimate_default_minutes([])["pretraining"] <= 20  # once, on a clean cache
    for name, plan in plans.items():
        budget = P.DEFAULT_SCHEDULE[name]
        if plan.spec.train:
            assert plan.cfg.SOLVER.MAX_ITER == budget.iters
        assert bool(len(plan.cfg.DATASETS.VAL)) == budget.validate
        if budget.validate:
            assert plan.cfg.TEST.EVAL_BEST and not plan.cfg.SOLVER.STOP_ON_PLATEAU
            assert not plan.cfg.SOLVER.PLATEAU_LR_STEP
            assert plan.cfg.TEST.EVAL_PERIOD == budget.iters // 4
    # The runs go to the preset's folder, not the configs' OUTPUT_DIRs.
    assert plans["voxmesh"].output_dir == os.path.join("output/benchmark/runs", "voxmesh")
    # --iter-scale asks for the configs' schedules instead of the preset's counts.
    scaled = {p.spec.name: p.cfg for p in _setup("default", "--iter-scale", "1").plans}
    assert scaled["voxmesh"].SOLVER.MAX_ITER == 800


# ----------------------------------------------------------------------------- ablation


def test_the_ablation_row_is_voxmesh_with_a_random_encoder():
    plans = {
        p.spec.name: p for p in _setup("default", "--methods", "voxmesh,voxmesh_scratch").plans
    }
    pre, scratch = plans["voxmesh"].cfg.clone(), plans["voxmesh_scratch"].cfg.clone()
    assert pre.MODEL.BACKBONE.PRETRAINED == "synthetic://resnet18_pretrained.pth"
    assert scratch.MODEL.BACKBONE.PRETRAINED == ""
    assert plans["voxmesh"].output_dir != plans["voxmesh_scratch"].output_dir
    for cfg in (pre, scratch):
        cfg.defrost()
        cfg.MODEL.BACKBONE.PRETRAINED = ""
        cfg.OUTPUT_DIR = ""
    assert pre.dump() == scratch.dump()  # everything else is the same config
    # In the configs' own folders too, the two runs never share one.
    own = {p.spec.name: p for p in _setup("default", "--runs-dir", "").plans}
    assert own["voxmesh"].output_dir != own["voxmesh_scratch"].output_dir


# ----------------------------------------------------------------------------- pretraining


def _forbid_pretraining(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("this preset must not pretrain")

    monkeypatch.setattr(pretrain, "ensure_pretrained", fail)
    monkeypatch.setattr(pretrain.cache, "ensure_pretrained", fail)


@pytest.mark.parametrize("preset", ["quickstart", "toy"])
def test_quickstart_and_toy_never_pretrain(preset, monkeypatch, tmp_path):
    _forbid_pretraining(monkeypatch)
    setup = _setup(preset, tmp_path=tmp_path)
    for plan in setup.plans:
        assert plan.cfg.MODEL.BACKBONE.PRETRAINED == "", plan.spec.name
        assert plan.cfg.MODEL.DEPTH.PRETRAINED == "", plan.spec.name
    needed = pretrained_weights_needed(setup.plans, retrain=True)
    assert needed == {}
    assert prepare_pretrained(needed) == []
    # The same check finds the default preset's weights (so it can fail).
    default = _setup("default", tmp_path=tmp_path)
    needed = pretrained_weights_needed(default.plans, retrain=True)
    assert set(needed) == {"resnet18_pretrained.pth"}
    assert "voxmesh" in needed["resnet18_pretrained.pth"]
    assert "voxmesh_scratch" not in needed["resnet18_pretrained.pth"]
    # Eigen trains from scratch in every preset (the synthetic AlexNet-width weights scored
    # lower), unless a run asks for them.
    eigen = {p.spec.name: p.cfg for p in default.plans if p.spec.name.startswith("eigen")}
    assert eigen and all(cfg.MODEL.DEPTH.PRETRAINED == "" for cfg in eigen.values())
    runs = str(tmp_path / "runs")
    asked = _setup(
        "default", "--methods", "eigen_coarse", "--runs-dir", runs, "--opts", *P.EIGEN_PRETRAINED
    )
    needed = pretrained_weights_needed(asked.plans, retrain=True)
    assert needed == {"eigen_alexnet_pretrained.pth": ["eigen_coarse"]}
    with pytest.raises(AssertionError, match="must not pretrain"):
        prepare_pretrained({"not_cached_here.pth": ["x"]})


def test_the_benchmark_makes_missing_weights_once_before_the_runs(monkeypatch):
    made, lines = [], []
    monkeypatch.setattr(pretrain, "is_cached", lambda name: name == "cached.pth")
    monkeypatch.setattr(pretrain, "PRETRAINED_RECIPES", {"cached.pth": None, "new.pth": None})
    monkeypatch.setattr(pretrain, "ensure_pretrained", lambda n, progress: made.append(n))
    out = prepare_pretrained({"cached.pth": ["a"], "new.pth": ["b", "c"]}, log=lines.append)
    assert made == ["new.pth"]
    assert [o["seconds"] is None for o in out] == [True, False]
    assert any("pretraining synthetic://new.pth for b, c" in x for x in lines)
    assert any(x.startswith("[benchmark] made synthetic://new.pth in") for x in lines)


# ----------------------------------------------------------------------------- the plot


def _write_validation(folder: Path, metric: str, curve, best_it, stopped=None) -> None:
    folder.mkdir(parents=True)
    entries = [
        {
            "iteration": it,
            "wall_time_s": wall,
            "validation_time_s": val,
            "metrics": {metric: v, "other/x": 1.0},
        }
        for it, wall, val, v in curve
    ]
    best = next(e for e in entries if e["iteration"] == best_it)
    data = {
        "metric": metric,
        "mode": "max",
        "best": {"iteration": best_it, "value": best["metrics"][metric]},
        "plateau_rule": {"window_frac": 0.2, "min_delta": 1.0},
        "plateau": None,
        "stopped_early_at": stopped,
        "final_evaluation": f"best (iteration {best_it})",
        "curve": entries,
    }
    (folder / "validation.json").write_text(json.dumps(data))


def _fake_runs(tmp_path: Path) -> list[RunRecord]:
    # VoxMesh: four validations, the best at 200, the plateau stopped it at 400; validating
    # took 30 s each (cumulative), which the time axis leaves out.
    _write_validation(
        tmp_path / "voxmesh",
        "shapenet/F1@0.300000",
        [
            (100, 90.0, 30.0, 20.0),
            (200, 180.0, 60.0, 31.0),
            (300, 270.0, 90.0, 30.5),
            (400, 360.0, 120.0, 30.8),
        ],  # fmt: skip
        best_it=200,
        stopped=400,
    )
    _write_validation(
        tmp_path / "meshrcnn",
        "shape/mesh_ap@0.5",
        [(50, 130.0, 10.0, 0.02), (99, 250.0, 20.0, 0.05)],
        best_it=99,
    )
    row = {"F1@0.3": 30.0}
    return [
        RunRecord("voxmesh", "trained", output_dir=str(tmp_path / "voxmesh"), row=row),
        RunRecord("meshrcnn_R18_FPN", "trained", output_dir=str(tmp_path / "meshrcnn"), row={}),
        # No validation file: no line.
        RunRecord("psgn", "trained", output_dir=str(tmp_path / "psgn"), row=row),
    ]


def test_validation_plot_marks_the_best_and_the_plateau_stop(tmp_path):
    records = _fake_runs(tmp_path)
    curves = validation_curves(records, M.METHODS)
    assert [c.method for c in curves] == ["voxmesh", "meshrcnn_R18_FPN"]
    drawn = plot_validation_curves(curves, str(tmp_path / "fig.png"))
    assert (tmp_path / "fig.png").stat().st_size > 1000
    single = drawn[metric_label("shapenet/F1@0.300000")]
    title = M.get_method("voxmesh").title
    xs, ys = single["lines"][title]
    assert xs == pytest.approx([1.0, 2.0, 3.0, 4.0])  # (wall - validation) / 60
    assert ys == [20.0, 31.0, 30.5, 30.8]
    assert single["best"][title] == pytest.approx((2.0, 31.0))
    assert single["stopped"][title] == pytest.approx((4.0, 30.8))
    det = drawn[metric_label("shape/mesh_ap@0.5")]
    mtitle = M.get_method("meshrcnn_R18_FPN").title
    assert det["lines"][mtitle][0] == pytest.approx([2.0, 230 / 60])
    assert det["best"][mtitle] == pytest.approx((230 / 60, 0.05)) and det["stopped"] == {}
    assert len(drawn) == 2  # one panel per metric
    assert plot_validation_curves([], str(tmp_path / "none.png")) is None
    assert not (tmp_path / "none.png").exists()


def test_report_carries_the_curves_or_says_how_to_get_them(tmp_path):
    records = _fake_runs(tmp_path / "runs")
    paths = write_report(str(tmp_path / "report"), records, M.METHODS, {}, {"title": "t"})
    report = tmp_path / "report"
    assert (report / "figures" / "validation_curves.png").is_file()
    payload = json.loads((report / "report.json").read_text())
    curves = payload["validation"]["curves"]
    assert set(curves) == {"voxmesh", "meshrcnn_R18_FPN"}
    assert curves["voxmesh"]["best"] == {"iteration": 200, "minutes": 2.0, "value": 31.0}
    assert curves["voxmesh"]["stopped"]["iteration"] == 400
    assert curves["meshrcnn_R18_FPN"]["values"] == [0.02, 0.05]
    assert "figures/validation_curves.png" in (report / "report.md").read_text()
    assert "Quality per CPU-minute" in (report / "report.html").read_text()
    assert paths["html"].endswith("report.html")
    # Without validation records: one line, no plot.
    bare = [RunRecord("psgn", "trained", output_dir=str(tmp_path / "nothing"), row={})]
    write_report(str(tmp_path / "bare"), bare, M.METHODS, {}, {"title": "t"})
    assert not (tmp_path / "bare" / "figures" / "validation_curves.png").exists()
    assert NO_VALIDATION in (tmp_path / "bare" / "report.md").read_text()
    assert json.loads((tmp_path / "bare" / "report.json").read_text())["validation"] == {
        "curves": {}
    }


def test_the_time_estimate_counts_only_the_pretrained_encoders_the_runs_name():
    from meshrecon.cli.benchmark_methods import synthetic_weights_named

    assert synthetic_weights_named(_setup("default").plans) == {"resnet18_pretrained.pth"}
    assert synthetic_weights_named(_setup("quickstart").plans) == set()
    eigen = _setup("default", "--methods", "eigen_coarse", "--opts", *P.EIGEN_PRETRAINED)
    assert synthetic_weights_named(eigen.plans) == {"eigen_alexnet_pretrained.pth"}
