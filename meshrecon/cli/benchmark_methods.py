"""``meshrecon benchmark``: train and evaluate every method on the synthetic benchmark; one report.

    meshrecon benchmark --preset quickstart          # ~4 min on 2 idle CPU cores
    meshrecon benchmark                              # every method, ~90 min on 2 idle cores
    meshrecon benchmark --preset full                # every method to its validation plateau
    meshrecon benchmark --iter-scale 1               # every method at its config's schedule
    meshrecon benchmark --methods psgn,sphereinit --iter-scale 0.25
    meshrecon benchmark --iters meshrcnn_R18_FPN=2000 --retrain
    meshrecon benchmark --preset full --method-opts eigen_fine SOLVER.BASE_LR 5e-4
    meshrecon benchmark --real                       # also the real datasets present

In a clone, ``python tools/benchmark_methods.py ARGS`` is the same command.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass

import torch

import meshrecon
import meshrecon.data.datasets  # noqa: F401  (registers the datasets)
import meshrecon.modeling  # noqa: F401  (registers the models)
from meshrecon.apps.method_benchmark.gallery import build_gallery
from meshrecon.apps.method_benchmark.methods import METHODS, TASKS, real_variants
from meshrecon.apps.method_benchmark.presets import (
    DEFAULT_METHODS,
    FULL_CAP_FACTOR,
    NO_PRETRAINING,
    PRETRAIN_MINUTES,
    TOY_RECOGNITION_OPTS,
    default_iters,
    default_method_opts,
    estimate_default_minutes,
    full_method_opts,
)
from meshrecon.apps.method_benchmark.report import format_seconds, write_report
from meshrecon.apps.method_benchmark.runner import (
    RunRecord,
    count_parameters,
    plan_methods,
    prepare_datasets,
    prepare_pretrained,
    pretrained_weights_needed,
    run_plan,
    synthetic_weights_named,
    tested_checkpoint,
)
from meshrecon.utils.logger import setup_logger

_EPILOG = """\
Each method trains in its own 'meshrecon train' process (OMP_NUM_THREADS=--threads) and is
evaluated on its task's test split. A run folder that already holds model_final.pth trained
with the identical config is reused (--retrain forces training).

what it writes:
  --runs-dir/<method>/ (default: the preset's, output/benchmark/runs, output/benchmark_full/runs
      or output/quickstart/runs; '': each config's OUTPUT_DIR, e.g.
      ./output/synthetic_voxmesh): the runs, as 'meshrecon train' writes them (checkpoints,
      log.txt, metrics.json, validation.json and model_best.pth when validated,
      inference/<dataset>/results.json)
  --output (default ./output/benchmark, ./output/benchmark_full for --preset full,
      ./output/quickstart for --preset quickstart):
      report.html (static, works offline), report.md, report.json, figures/ (training
      curves, validation metric against training time, gallery grids), gallery/ and meshes/
      (OBJ / PLY / GLB), viewer/ (the gallery's
      interactive 3D viewer: three.js and the models, ~2.6 MB plus the models; --no-viewer
      leaves it out), logs/<method>.log
  $MESHRECON_DATASETS/synthetic (default ./datasets): the synthetic splits, generated once
  $MESHRECON_CACHE/synthetic (default ~/.cache/meshrecon): the pretrained encoders the configs
      name (synthetic://...), made once before the first run that needs them
The tables are printed at the end.
"""

# Each method trains in its own process of this interpreter: `meshrecon train`.
TRAIN_COMMAND = (sys.executable, "-m", "meshrecon", "train")

# Presets: methods, schedule, overrides. Command-line options add to (or replace) these.
# Toy preset: the detectors at 128 x 96 pixels.
_TOY_DETECTOR_OPTS = [
    "INPUT.MIN_SIZE_TEST",
    "96",
    "INPUT.MAX_SIZE_TEST",
    "128",
    "INPUT.MIN_SIZE_TRAIN",
    "(96,)",
    "INPUT.MAX_SIZE_TRAIN",
    "128",
]

# "method_opts" is a dict, or a function (methods, iter_scale=, iters=) -> dict.
PRESETS: dict[str, dict] = {
    # Every method but the Clustering baselines, each for the iterations that make the runs fit
    # about 90 minutes on an idle 2-core CPU (plus ~4 min making the pretrained ResNet-18
    # once, on a clean cache; presets.DEFAULT_SCHEDULE has each method's count and estimate); the
    # detectors, depth networks and R2N2 (cheap validation splits) are validated 4 times and
    # tested with their best checkpoint. Runs go one at a time, two threads each, into their
    # own folders (not the configs' OUTPUT_DIRs, which hold runs of the configs' schedules).
    "default": {
        "methods": list(DEFAULT_METHODS),
        "iter_scale": 1.0,
        "iters": default_iters(),
        "opts": [],
        "method_opts": default_method_opts,
        "samples": 4,
        "threads": 2,
        "runs_dir": "output/benchmark/runs",
    },
    # Every method until its validation curve is flat: its config's schedule stretched 8x as
    # the cap, 24 validations on its task's validation split up to the cap, stop at the first
    # one where the best value of the last 20% of the iterations beats the best before them by
    # less than one point (1.0 F1 in %, 0.01 IoU / AP / delta<1.25; engine.plateau.detect_plateau,
    # at least two validations in that window), then the test split with the best validation
    # checkpoint (TEST.EVAL_BEST). Hours per method; see meshrecon/apps/method_benchmark/presets.
    "full": {
        "methods": None,
        "iter_scale": FULL_CAP_FACTOR,
        "iters": {},
        "opts": [],
        "method_opts": full_method_opts,
        "samples": 4,
        "threads": 2,
        "runs_dir": "output/benchmark_full/runs",
        "output": "output/benchmark_full",
    },
    # A first look on a fresh 2-core machine: VoxMesh (Mesh R-CNN's ShapeNet model) at its
    # synthetic config's schedule against the mean-shape baseline, on a lighter split (6 views
    # per object instead of 24), 4 gallery objects.
    "quickstart": {
        "methods": ["mean_shape", "voxmesh"],
        "iter_scale": 1.0,
        "iters": {},
        "threads": 2,
        "opts": [
            "DATASETS.SYNTHETIC.SHAPENET_VIEWS",
            "6",
            "TEST.SHAPENET.NUM_SAMPLES",
            "5000",
            # For now the encoder starts from random weights: its few minutes do not pay for
            # making the pretrained one (README "Pretrained backbones").
            *NO_PRETRAINING,
        ],
        "samples": 4,
        "runs_dir": "output/quickstart/runs",
        "output": "output/quickstart",
    },
    # The whole pipeline at toy size (tests): every method, two iterations, tiny data.
    "toy": {
        "methods": None,
        "iter_scale": 1.0,
        "iters": "all=2",
        "opts": [
            "DATASETS.SYNTHETIC.SCALE",
            "0.02",
            "DATASETS.SYNTHETIC.SHAPENET_VIEWS",
            "5",
            "DATASETS.SYNTHETIC.PIX3D_IMAGE_SIZE",
            "(128, 96)",
            "DATASETS.SYNTHETIC.NYU_IMAGE_SIZE",
            "(160, 120)",
            "SOLVER.IMS_PER_BATCH",
            "2",
            "DATALOADER.NUM_WORKERS",
            "0",
            "TEST.SHAPENET.NUM_SAMPLES",
            "300",
            "INPUT.SHAPENET.NUM_SAMPLES",
            "300",
            # Tests never make the full pretraining recipe.
            *NO_PRETRAINING,
        ],
        "method_opts": {
            "r2n2_res_gru": ["TEST.R2N2.MESH_SAMPLES", "300"],
            **{
                name: list(TOY_RECOGNITION_OPTS)
                + (["TEST.R2N2.MESH_SAMPLES", "300"] if name.endswith("multiview") else [])
                for name in (
                    "retrieval",
                    "clustering",
                    "oracle_nn",
                    "retrieval_multiview",
                    "clustering_multiview",
                    "oracle_nn_multiview",
                )
            },
            "meshrcnn_R18_FPN": _TOY_DETECTOR_OPTS,
            "voxelrcnn_R18_FPN": _TOY_DETECTOR_OPTS,
            "sphereinit_R18_FPN": _TOY_DETECTOR_OPTS,
        },
        "samples": 1,
    },
}


def _program_name() -> str:
    """How this command was started: "meshrecon benchmark" or "python tools/...py"."""
    prog = sys.argv[0]
    return prog if prog.startswith(("meshrecon", "python")) else f"python {prog}"


def _parse_iters(text: str | dict, names: list[str]) -> dict[str, int]:
    if isinstance(text, dict):
        return dict(text)
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not value.strip().isdigit():
            raise SystemExit(f"--iters: expected METHOD=N[,METHOD=N...], got {part!r}")
        targets = names if name.strip() == "all" else [name.strip()]
        for n in targets:
            out[n] = int(value)
    return out


def _parse_method_opts(groups: list[list[str]], names: list[str]) -> dict[str, list[str]]:
    """``--method-opts METHOD KEY VALUE ...`` (repeatable) as ``{METHOD: [KEY, VALUE, ...]}``."""
    out: dict[str, list[str]] = {}
    for group in groups:
        name, pairs = group[0], group[1:]
        if name not in names:
            raise SystemExit(
                f"--method-opts: {name!r} is not a method of this run; its methods: "
                f"{', '.join(names)}"
            )
        if not pairs or len(pairs) % 2:
            raise SystemExit(
                f"--method-opts {name}: expected KEY VALUE pairs after the method, got {pairs}"
            )
        out.setdefault(name, []).extend(pairs)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train and evaluate every method on the synthetic benchmark and write one "
        "comparison report.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", default="default", choices=sorted(PRESETS))
    p.add_argument("--methods", default="", help="comma-separated method names (default: all)")
    p.add_argument("--tasks", default="", help=f"only these tasks: {', '.join(TASKS)}")
    p.add_argument("--output", default="", help="report folder (default output/benchmark)")
    p.add_argument(
        "--runs-dir",
        default=None,
        help="folder of the runs (<runs-dir>/<method>; default: the preset's); '' keeps each "
        "config's OUTPUT_DIR, so that runs of tools/train_net.py with the same config are reused",
    )
    p.add_argument(
        "--iter-scale",
        type=float,
        default=None,
        help="every method at its config's schedule times this (instead of the preset's "
        "iteration counts; the full preset's cap is 8)",
    )
    p.add_argument("--iters", default="", help="per-method MAX_ITER: voxmesh=200,psgn=300")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="OMP_NUM_THREADS of each run (default: the preset's; 1 for the full benchmark)",
    )
    p.add_argument("--retrain", action="store_true", help="train even if a run can be reused")
    p.add_argument(
        "--gallery-samples",
        type=int,
        default=None,
        metavar="N",
        help="test samples shown per task in the gallery and its 3D viewer (default: the "
        "preset's, 4; toy: 1; 0: no gallery)",
    )
    p.add_argument("--no-gallery", action="store_true")
    p.add_argument(
        "--no-viewer",
        action="store_true",
        help="pictures only: leave out the interactive 3D viewer (and its ~2.6 MB of scripts)",
    )
    p.add_argument("--link-images", action="store_true", help="link PNGs instead of embedding")
    p.add_argument(
        "--real",
        action="store_true",
        help="also run the paper configs on the real datasets found under $MESHRECON_DATASETS",
    )
    p.add_argument(
        "--method-opts",
        nargs="+",
        action="append",
        default=[],
        metavar=("METHOD", "KEY VALUE"),
        help="config KEY VALUE overrides for one method, e.g. --method-opts eigen_fine "
        "SOLVER.BASE_LR 5e-4 (repeat for more methods); they win over --opts and the preset's",
    )
    p.add_argument(
        "--opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="config KEY VALUE overrides for every method; they win over the preset's "
        "(must come last)",
    )
    return p


@dataclass
class Setup:
    """What one invocation runs: the plans, the methods that cannot run, and the settings."""

    plans: list
    skipped: list
    methods: tuple
    tasks: dict
    output: str
    samples: int
    threads: int
    missing_real: list


def plan_invocation(args: argparse.Namespace) -> Setup:
    """Resolve the preset and the options into the runs' plans (nothing is run)."""
    preset = PRESETS[args.preset]
    all_names = [m.name for m in METHODS]
    wanted = [n for n in args.methods.split(",") if n] or preset["methods"] or all_names
    unknown = sorted(set(wanted) - set(all_names))
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; known: {', '.join(all_names)}")
    task_filter = [t for t in args.tasks.split(",") if t]
    bad_tasks = sorted(set(task_filter) - set(TASKS))
    if bad_tasks:
        raise SystemExit(f"unknown task(s) {bad_tasks}; known: {', '.join(TASKS)}")
    methods = tuple(
        m for m in METHODS if m.name in wanted and (not task_filter or m.task in task_filter)
    )
    tasks = dict(TASKS)
    missing_real = []
    if args.real:
        from meshrecon.data import DatasetCatalog

        real_specs, real_tasks, missing_real = real_variants(methods, set(DatasetCatalog.list()))
        methods += real_specs
        tasks.update(real_tasks)
    names = [m.name for m in methods]
    # --iter-scale asks for the configs' schedules (scaled): the preset's counts give way.
    iters = _parse_iters(preset["iters"] if args.iter_scale is None else {}, names)
    iters.update(_parse_iters(args.iters, names))
    iters = {k: v for k, v in iters.items() if k in names}
    iter_scale = args.iter_scale if args.iter_scale is not None else preset["iter_scale"]
    runs_dir = args.runs_dir if args.runs_dir is not None else preset.get("runs_dir", "")
    output = args.output or preset.get("output", "output/benchmark")
    samples = args.gallery_samples if args.gallery_samples is not None else preset["samples"]
    if samples < 0:
        raise SystemExit(f"--gallery-samples must be >= 0, got {samples}")
    threads = args.threads if args.threads is not None else preset.get("threads", 1)
    if threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {threads}")
    opts = list(preset["opts"]) + list(args.opts or [])
    method_opts = preset.get("method_opts", {})
    if callable(method_opts):
        method_opts = method_opts(methods, iter_scale=iter_scale, iters=iters)
    method_opts = {k: v for k, v in method_opts.items() if k in names}
    user_method_opts = _parse_method_opts(args.method_opts or [], names)

    plans, skipped = plan_methods(
        methods,
        runs_dir=runs_dir,
        iter_scale=iter_scale,
        iters=iters,
        opts=opts,
        method_opts=method_opts,
        user_method_opts=user_method_opts,
        tasks=tasks,
    )
    return Setup(plans, skipped, methods, tasks, output, samples, threads, missing_real)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    setup = plan_invocation(args)
    plans, records, methods, tasks = setup.plans, setup.skipped, setup.methods, setup.tasks
    output, samples, threads = setup.output, setup.samples, setup.threads
    for r in records:
        print(f"[benchmark] skipping {r.name}: {r.reason}")
    if args.preset == "default" and args.iter_scale is None and not args.iters:
        runs = sum(estimate_default_minutes([p.spec for p in plans], pretraining=False).values())
        encoders = synthetic_weights_named(plans)
        making = sum(PRETRAIN_MINUTES.get(name, 0.0) for name in encoders)
        print(
            f"[benchmark] estimated time on an idle 2-core CPU: ~{runs:.0f} min of runs"
            + (
                f", plus ~{making:.0f} min making {', '.join(sorted(encoders))} if not cached"
                if encoders
                else ""
            )
        )
    print(f"[benchmark] {len(plans)} method(s): {', '.join(p.spec.name for p in plans)}")
    print("[benchmark] preparing the datasets (generated once, then cached)")
    # The data layer says when it generates a split, and why (parameters, cache key).
    setup_logger(name="meshrecon.data")
    prepare_datasets(plans)
    # The pretrained encoders the runs start from, made here once, one after the other, before
    # any run starts (the runs then find them in the cache).
    setup_logger(name="meshrecon.pretrain")
    pretrained = prepare_pretrained(
        pretrained_weights_needed(plans, retrain=args.retrain), log=print
    )

    logs_dir = os.path.join(output, "logs")
    retrained: set[str] = set()
    by_name: dict[str, RunRecord] = {}
    for i, plan in enumerate(plans, 1):
        print(f"[benchmark] ({i}/{len(plans)}) {plan.spec.title}: {plan.output_dir}")
        record = run_plan(
            plan,
            train_script=TRAIN_COMMAND,
            logs_dir=logs_dir,
            threads=threads,
            retrain=args.retrain,
            upstream_retrained=bool(plan.spec.init_from and plan.spec.init_from in retrained),
        )
        if record.status == "trained":
            retrained.add(plan.spec.name)
        if record.ok:
            record.params = count_parameters(plan.cfg)
        by_name[plan.spec.name] = record
        msg = record.reason.strip().splitlines()[-1] if record.reason.strip() else ""
        print(
            f"[benchmark]     {record.status} in {format_seconds(record.wall_s)}"
            + (f" — {msg} (log: {record.log_path})" if not record.ok else "")
        )
    records = [by_name[p.spec.name] for p in plans] + records

    galleries = {}
    if not args.no_gallery and samples > 0:
        for key, task in tasks.items():
            runs = []
            for plan in plans:
                rec = by_name[plan.spec.name]
                if plan.spec.task != key or not rec.ok:
                    continue
                # The model the table's numbers come from.
                weights = tested_checkpoint(plan.cfg, plan.output_dir)
                runs.append((plan.spec, plan.cfg, weights if plan.spec.train else ""))
            if runs:
                print(f"[benchmark] rendering the gallery of {task.title}")
                galleries[key] = build_gallery(task, runs, output, num_samples=samples)

    total = time.perf_counter() - started
    info = {
        "title": "meshrecon: every method on one benchmark",
        "facts": {
            "preset": args.preset,
            "meshrecon": meshrecon.__version__,
            "torch": torch.__version__,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
            + (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"),
            "threads per run": threads,
            "wall time of this report": format_seconds(total),
            "command": " ".join([_program_name(), *(argv or sys.argv[1:])]),
        },
    }
    if pretrained:
        info["facts"]["pretrained encoders"] = "; ".join(
            f"synthetic://{p['name']} "
            + (
                "(cached)"
                if p["seconds"] is None
                else f"(made here in {format_seconds(p['seconds'])})"
            )
            for p in pretrained
        )
    if args.real:
        absent = sorted({d for _, d in setup.missing_real})
        info["facts"]["real datasets not present"] = ", ".join(absent) or "none"
    paths = write_report(
        output,
        records,
        methods,
        galleries,
        info,
        embed_images=not args.link_images,
        tasks=tasks,
        viewer=not args.no_viewer,
    )
    print()
    print(paths["markdown"])
    print()
    print(
        f"[benchmark] report: {os.path.abspath(paths['html'])} (wall time {format_seconds(total)})"
    )
    return 0 if all(r.ok or r.status == "skipped" for r in records) else 1


if __name__ == "__main__":
    raise SystemExit(main())
