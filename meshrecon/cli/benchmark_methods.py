"""``meshrecon benchmark``: train and evaluate every method on the synthetic benchmark; one report.

    meshrecon benchmark --preset quickstart          # ~4 min on 2 idle CPU cores
    meshrecon benchmark                              # every method, config sizes
    meshrecon benchmark --methods psgn,sphereinit --iter-scale 0.25
    meshrecon benchmark --iters meshrcnn_R18_FPN=2000 --retrain
    meshrecon benchmark --real                       # also the real datasets present

In a clone, ``python tools/benchmark_methods.py ARGS`` is the same command.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import torch

import meshrecon
import meshrecon.data.datasets  # noqa: F401  (registers the datasets)
import meshrecon.modeling  # noqa: F401  (registers the models)
from meshrecon.utils.logger import setup_logger
from meshrecon.utils.method_benchmark.gallery import build_gallery
from meshrecon.utils.method_benchmark.methods import METHODS, TASKS, real_variants
from meshrecon.utils.method_benchmark.report import format_seconds, write_report
from meshrecon.utils.method_benchmark.runner import (
    RunRecord,
    count_parameters,
    plan_methods,
    prepare_datasets,
    run_plan,
)

_EPILOG = """\
Each method trains in its own 'meshrecon train' process (OMP_NUM_THREADS=--threads) and is
evaluated on its task's test split. A run folder that already holds model_final.pth trained
with the identical config is reused (--retrain forces training).

what it writes:
  --runs-dir/<method>/ (or each config's OUTPUT_DIR, e.g. ./output/synthetic_voxmesh):
      the runs, as 'meshrecon train' writes them (checkpoints, log.txt, metrics.json,
      inference/<dataset>/results.json)
  --output (default ./output/benchmark, ./output/quickstart for --preset quickstart):
      report.html (static, works offline), report.md, report.json, figures/ (training
      curves, gallery grids), gallery/ and meshes/ (OBJ / PLY / GLB), viewer/ (the gallery's
      interactive 3D viewer: three.js and the models, ~2.6 MB plus the models; --no-viewer
      leaves it out), logs/<method>.log
  $MESHRECON_DATASETS/synthetic (default ./datasets): the synthetic splits, generated once
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

PRESETS: dict[str, dict] = {
    # Every method at its synthetic config's schedule (each about 5-30 minutes on a 2-core CPU;
    # the whole benchmark fits in an afternoon). Runs go one at a time, two threads each.
    "default": {
        "methods": None,
        "iter_scale": 1.0,
        "iters": {},
        "opts": [],
        "samples": 4,
        "threads": 2,
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
        ],
        "samples": 4,
        "runs_dir": "output/quickstart/runs",
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
        ],
        "method_opts": {
            "r2n2_res_gru": ["MODEL.R2N2.EVAL_MESH_SAMPLES", "300"],
            # Recognition baselines: a coarse descriptor, and fewer clusters than the toy
            # training set's 45 (model, view) entries / 9 models.
            **{
                name: ["MODEL.RECOGNITION.DESCRIPTOR_SIZE", "8"]
                + ["MODEL.RECOGNITION.DESCRIPTOR_POINTS", "300"]
                + ["MODEL.RECOGNITION.NUM_CLUSTERS", "4"]
                + (["MODEL.R2N2.EVAL_MESH_SAMPLES", "300"] if name.endswith("multiview") else [])
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
        help="folder of the runs (<runs-dir>/<method>); '' keeps each config's OUTPUT_DIR, so "
        "that runs of tools/train_net.py with the same config are reused (the default preset)",
    )
    p.add_argument("--iter-scale", type=float, default=None, help="multiplies every schedule")
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
        "--opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="config KEY VALUE overrides for every method (must come last)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    preset = PRESETS[args.preset]
    started = time.perf_counter()
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
    iters = _parse_iters(preset["iters"], names)
    iters.update(_parse_iters(args.iters, names))
    iter_scale = args.iter_scale if args.iter_scale is not None else preset["iter_scale"]
    runs_dir = args.runs_dir if args.runs_dir is not None else preset.get("runs_dir", "")
    output = args.output or (
        "output/quickstart" if args.preset == "quickstart" else "output/benchmark"
    )
    samples = args.gallery_samples if args.gallery_samples is not None else preset["samples"]
    if samples < 0:
        raise SystemExit(f"--gallery-samples must be >= 0, got {samples}")
    threads = args.threads if args.threads is not None else preset.get("threads", 1)
    if threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {threads}")
    opts = list(preset["opts"]) + list(args.opts or [])
    method_opts = {k: v for k, v in preset.get("method_opts", {}).items() if k in names}

    plans, records = plan_methods(
        methods,
        runs_dir=runs_dir,
        iter_scale=iter_scale,
        iters={k: v for k, v in iters.items() if k in names},
        opts=opts,
        method_opts=method_opts,
        tasks=tasks,
    )
    for r in records:
        print(f"[benchmark] skipping {r.name}: {r.reason}")
    print(f"[benchmark] {len(plans)} method(s): {', '.join(p.spec.name for p in plans)}")
    print("[benchmark] preparing the datasets (generated once, then cached)")
    # The data layer says when it generates a split, and why (parameters, cache key).
    setup_logger(name="meshrecon.data")
    prepare_datasets(plans)

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
                weights = os.path.join(plan.output_dir, "model_final.pth")
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
    if args.real:
        absent = sorted({d for _, d in missing_real})
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
