"""The ``meshrecon`` command: one entry point, one subcommand per application.

    meshrecon --help
    meshrecon train --config-file synthetic/voxmesh.yaml        # a shipped config, by name
    meshrecon eval --config-file my.yaml MODEL.WEIGHTS model.pth
    python -m meshrecon zoo

The applications live in this package (``meshrecon.cli.train_net``, ``.demo``, ...) and sit
above the library: they may import anything from meshrecon, and nothing in the library imports
them. ``tools/*.py`` in a clone are thin wrappers around the same ``main`` functions.

Adding a subcommand: write a module whose ``main(argv: list[str] | None) -> int | None`` parses
its own arguments with ``argparse`` (leave ``prog`` unset: it becomes ``meshrecon NAME``) and
says in its ``--help`` what it writes where; then add one line to :data:`SUBCOMMANDS` below, or
call :func:`register_subcommand` from code that runs before :func:`main`. The module is
imported only when its subcommand runs, so ``meshrecon --help`` stays fast.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

# OpenMP threads that wait for each other in a spin loop burn the core that the thread they
# wait for needs: beside one other busy process, evaluations ran several times slower than the
# load explains (tests/benchmarks/cpu_contention.py; README, "Speed on a shared machine").
# Threads that sleep while they wait degrade gracefully. OpenMP reads this once, when torch is
# imported, so it is set here, before any subcommand imports torch, and child processes
# (launch, the benchmark's runs) inherit it; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["SUBCOMMANDS", "Subcommand", "main", "register_subcommand"]


@dataclass(frozen=True)
class Subcommand:
    """One subcommand: where its ``main`` lives and the one line ``meshrecon --help`` shows.

    Attributes:
        module: an importable module (imported only when the subcommand runs).
        help: one line for ``meshrecon --help``.
        func: the name of the function in ``module``; it takes the argument list.
        prefix: arguments put before the user's (``eval`` is ``train --eval-only``).
    """

    module: str
    help: str
    func: str = "main"
    prefix: tuple[str, ...] = ()


SUBCOMMANDS: dict[str, Subcommand] = {
    "train": Subcommand(
        "meshrecon.cli.train_net",
        "train a model from a config file or a shipped config name (then evaluate it)",
        func="invoke_main",
    ),
    "eval": Subcommand(
        "meshrecon.cli.train_net",
        "evaluate MODEL.WEIGHTS on the config's test datasets (train --eval-only)",
        func="invoke_main",
        prefix=("--eval-only",),
    ),
    "demo": Subcommand(
        "meshrecon.cli.demo", "run a trained model on an image: meshes and pictures"
    ),
    "benchmark": Subcommand(
        "meshrecon.cli.benchmark_methods",
        "train and evaluate every method on the synthetic benchmark; write one report",
    ),
    "visualize": Subcommand(
        "meshrecon.cli.visualize_data",
        "draw records of a registered dataset (images, boxes, masks, meshes, voxels, depth)",
    ),
    "zoo": Subcommand(
        "meshrecon.cli.zoo", "list the shipped configs and their weights (cached or not)"
    ),
    "render-shapes": Subcommand(
        "meshrecon.data.datasets.custom_shapes.cli",
        "render a folder of meshes into a registered ShapeNet-style dataset",
    ),
    "export": Subcommand(
        "meshrecon.cli.export",
        "export a model with torch.export (.pt2) or ONNX, checked against eager mode",
    ),
}


def register_subcommand(
    name: str, module: str, help: str, *, func: str = "main", prefix: Sequence[str] = ()
) -> None:
    """Add ``meshrecon NAME``, running ``module.func(argv)``.

    Raises:
        ValueError: when ``name`` is taken or is not a plain lower-case word (dashes allowed).
    """
    if name in SUBCOMMANDS:
        raise ValueError(f"subcommand {name!r} is already registered ({SUBCOMMANDS[name].module})")
    if not name or name.startswith("-") or not name.replace("-", "").isalnum():
        raise ValueError(f"subcommand name must be a word such as 'render-shapes', got {name!r}")
    SUBCOMMANDS[name] = Subcommand(module, help, func, tuple(prefix))


def _usage(prog: str) -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    lines = [
        f"usage: {prog} SUBCOMMAND [ARGS...]",
        "",
        "Learning 3D shape from images, mesh first. Subcommands:",
        "",
    ]
    lines += [f"  {name.ljust(width)}  {sub.help}" for name, sub in SUBCOMMANDS.items()]
    lines += [
        "",
        f"'{prog} SUBCOMMAND --help' says what a subcommand takes and what it writes where.",
        "Datasets are read from (and the synthetic ones generated into) $MESHRECON_DATASETS",
        "(default ./datasets); downloaded weights are cached in $MESHRECON_CACHE (default",
        "~/.cache/meshrecon).",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, prog: str = "meshrecon") -> int:
    """Run ``meshrecon SUBCOMMAND ARGS``; return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage(prog))
        return 0 if args else 2
    if args[0] == "--version":
        from meshrecon import __version__

        print(f"meshrecon {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        import difflib

        close = difflib.get_close_matches(name, list(SUBCOMMANDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        print(
            f"{prog}: unknown subcommand {name!r}{hint}; one of: {', '.join(SUBCOMMANDS)}",
            file=sys.stderr,
        )
        return 2
    sub = SUBCOMMANDS[name]
    func = getattr(importlib.import_module(sub.module), sub.func)
    # argparse names the program after sys.argv[0]: "meshrecon train" in usage and errors.
    saved = sys.argv
    sys.argv = [f"{prog} {name}", *sub.prefix, *rest]
    try:
        status = func([*sub.prefix, *rest])
    finally:
        sys.argv = saved
    return int(status or 0)
