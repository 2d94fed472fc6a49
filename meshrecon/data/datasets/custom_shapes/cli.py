"""``meshrecon render-shapes``: the command line of :func:`.build.render_shapes`."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]

_DESCRIPTION = """\
Turn a folder of meshes (OBJ, PLY, OFF, STL, GLB/glTF) into a ShapeNet-style dataset in the
format of synthetic_shapenet, and register it as NAME_train, NAME_val and NAME_test.

Input: MESH_FOLDER/<category>/**/<mesh> (the first folder level is the category), or any
layout with --csv FILE listing 'file,category' rows (files relative to MESH_FOLDER).

Output: ROOT/custom/NAME/ (ROOT: --root, else $MESHRECON_DATASETS, else ./datasets), holding
per model <category>/<model_id>/ with model.obj, samples.pt (surface points and normals),
voxels.npz and rendering/ (RGBA views, 16-bit depth PNGs, rendering_metadata.txt); the split
files train.json, val.json, test.json; models.json (every model's source and split, every
skipped file with its reason); and dataset.json (categories, recipe, counts), written last.
Each mesh is normalised like the synthetic shapes (bounding-box centre at the origin, diagonal
1) and rendered with its file's colours or texture (shaded grey without).

Interrupted? Run the same command again: finished models are kept, the rest is redone. Any
later meshrecon command run with the same ROOT finds the dataset, e.g.
  meshrecon train --config-file configs/synthetic/voxmesh.yaml \\
      DATASETS.TRAIN '("NAME_train",)' DATASETS.TEST '("NAME_test",)'
"""


def build_parser(prog: str = "meshrecon render-shapes") -> argparse.ArgumentParser:
    """The argument parser of the command (a subcommand registry may reuse it)."""
    from .model import CAMERA_RANGES, Recipe

    d = Recipe()
    p = argparse.ArgumentParser(
        prog=prog, description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("mesh_folder", metavar="MESH_FOLDER", help="folder of meshes")
    p.add_argument("--name", required=True, help="dataset name (letters, digits, _ and -)")
    p.add_argument(
        "--root",
        default=None,
        help="datasets root (default $MESHRECON_DATASETS, else ./datasets); the dataset goes "
        "to ROOT/custom/NAME",
    )
    p.add_argument("--csv", default=None, help="CSV of 'file,category' rows (flat layout)")
    p.add_argument(
        "--default-category", default=None, help="category of meshes directly in MESH_FOLDER"
    )
    p.add_argument(
        "--views",
        type=int,
        default=d.views,
        help="renders per model (default %(default)s, as R2N2)",
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=d.image_size,
        help="square render side (default %(default)s, as R2N2)",
    )
    p.add_argument(
        "--cameras",
        choices=sorted(CAMERA_RANGES),
        default=d.cameras,
        help="r2n2 (default): elevation 25-30 degrees; random: -30 to 60; both: any azimuth, "
        "distance 1.75 x U[0.65, 0.95) as R2N2",
    )
    p.add_argument(
        "--samples",
        type=int,
        default=d.num_samples,
        help="surface samples per model (default %(default)s)",
    )
    p.add_argument(
        "--voxel-sizes",
        type=int,
        nargs="+",
        default=list(d.voxel_sizes),
        help="occupancy grid sizes, the first is the default grid (default %(default)s)",
    )
    p.add_argument(
        "--texture-size",
        type=int,
        default=d.texture_size,
        help="texels per face side of a UV texture (default %(default)s)",
    )
    p.add_argument(
        "--up", choices=("y", "z"), default=d.up, help="the files' up axis (default %(default)s)"
    )
    p.add_argument(
        "--split",
        type=float,
        nargs=3,
        default=(0.7, 0.1, 0.2),
        metavar=("TRAIN", "VAL", "TEST"),
        help="fractions of the models per split, by model, per category (default 0.7 0.1 0.2)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        help="seed of cameras, samples, splits (default %(default)s)",
    )
    p.add_argument(
        "--workers", type=int, default=None, help="processes (default: usable cores, max 8)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def format_summary(summary, root_was_given: bool) -> str:
    """The text the command prints after a run."""
    from .registry import custom_datasets_root

    shown = os.path.relpath(summary.folder)
    if shown.startswith(".."):
        shown = summary.folder  # outside the working folder: the absolute path is clearer
    lines = [f"render-shapes: dataset {summary.name!r} in {shown}"]
    lines.append(
        f"  meshes: {summary.found} found, {summary.done} written, {summary.reused} already "
        f"done, {len(summary.skipped)} skipped"
        + (f", {summary.removed} stale models removed" if summary.removed else "")
    )
    if summary.skipped:
        width = max(len(p.rel) for p in summary.skipped)
        for p in summary.skipped:
            lines.append(f"    {p.rel:<{width}}  {p.kind}: {p.reason}")
    if summary.ignored:
        lines.append(
            "  other files ignored: "
            + ", ".join(f"{n} x {ext}" for ext, n in summary.ignored.items())
        )
    lines.append(f"  categories ({len(summary.categories)}): {', '.join(summary.categories)}")
    lines.append(
        "  splits (by model): "
        + ", ".join(f"{s} {summary.splits[s]} ({summary.views[s]} views)" for s in summary.splits)
    )
    empty = [s for s, n in summary.splits.items() if n == 0]
    if empty:
        lines.append(
            f"  warning: no {' / '.join(empty)} models; add meshes or change --split to use "
            + " / ".join(f"{summary.name}_{s}" for s in empty)
        )
    root = os.path.dirname(os.path.dirname(summary.folder))
    env_root = custom_datasets_root(None)
    lines.append(
        f"  registered: {summary.name}_train, {summary.name}_val, {summary.name}_test "
        "(and their _multiview twins)"
    )
    if root_was_given and os.path.abspath(root) != env_root:
        lines.append(f"  other commands find it with: export MESHRECON_DATASETS={_quote(root)}")
    train = f"'(\"{summary.name}_train\",)'"
    test = f"'(\"{summary.name}_test\",)'"
    command = "meshrecon train" if shutil.which("meshrecon") else "python tools/train_net.py"
    lines.append(
        f"  train: {command} --config-file configs/synthetic/voxmesh.yaml "
        f"DATASETS.TRAIN {train} DATASETS.TEST {test}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit status (0: dataset written, 1: failed, 130: interrupted)."""
    args = build_parser().parse_args(argv)
    from .build import render_shapes
    from .model import Recipe

    try:
        recipe = Recipe(
            views=args.views,
            image_size=args.image_size,
            cameras=args.cameras,
            num_samples=args.samples,
            voxel_sizes=tuple(args.voxel_sizes),
            texture_size=args.texture_size,
            up=args.up,
            seed=args.seed,
        )
        summary = render_shapes(
            args.mesh_folder,
            args.name,
            root=args.root,
            csv_path=args.csv,
            default_category=args.default_category,
            recipe=recipe,
            split_fractions=tuple(args.split),
            workers=args.workers,
            progress=not args.no_progress,
        )
    except KeyboardInterrupt:
        print(
            "render-shapes: interrupted; run the same command again to resume (finished "
            "models are kept)",
            file=sys.stderr,
        )
        return 130
    except (ValueError, OSError) as err:
        print(f"render-shapes: error: {err}", file=sys.stderr)
        return 1
    print(format_summary(summary, args.root is not None))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
