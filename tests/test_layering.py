"""The package's import direction (docs/ARCHITECTURE.md): nothing imports upward.

Every module of ``meshrecon`` is parsed (never imported) and each of its imports of another
meshrecon module, at module level or inside a function, is checked against the layer table
below: a module may import its own component and any component of a lower layer; an import of a
higher layer, or of another component of the same layer, or of a pair kept :data:`SEPARATE`,
fails unless :data:`ALLOWED` lists it.
``ALLOWED`` holds today's known exceptions, each with the step that removes it or why it stays,
so a new upward import fails here.

``python tests/test_layering.py`` prints the figures (function-level imports, exceptions).
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "meshrecon"

# Bottom to top. Each layer holds components (module prefixes; the longest prefix owning a
# module wins). Components of one layer are siblings: they must not import each other.
LAYERS: list[tuple[str, list[str]]] = [
    ("package", ["meshrecon"]),  # meshrecon/__init__.py: the version
    ("foundation", ["meshrecon.utils", "meshrecon.config"]),
    ("structures", ["meshrecon.structures", "meshrecon.layers"]),
    (
        "geometry",
        [
            "meshrecon.ops",
            "meshrecon.io",
            "meshrecon.render",
            "meshrecon.checkpoint",
        ],
    ),
    # Built on one op each (the loss aliases; PyTorch3D's alias pytorch3d.utils.ico_sphere) or
    # on io + render (depth pictures).
    (
        "geometry helpers",
        ["meshrecon.loss", "meshrecon.utils.ico_sphere", "meshrecon.utils.depth_vis"],
    ),
    ("data and models", ["meshrecon.data", "meshrecon.modeling", "meshrecon.solver"]),
    ("evaluation", ["meshrecon.evaluation", "meshrecon.model_zoo", "meshrecon.export"]),
    ("training", ["meshrecon.engine", "meshrecon.pretrain"]),
    # The applications (meshrecon/apps/): nothing below imports them.
    # The report's 3D viewer (HTML + scripts; imports nothing of meshrecon).
    ("report rendering", ["meshrecon.apps.viewer3d"]),
    # The demo's parts: reading photos, vertex colours, its index page.
    (
        "application parts",
        [
            "meshrecon.apps.demo.inputs",
            "meshrecon.apps.demo.colors",
            "meshrecon.apps.demo.index",
        ],
    ),
    (
        "applications",
        [
            "meshrecon.apps.method_benchmark",
            "meshrecon.apps.demo.single_view",
            "meshrecon.apps.voxel_ceiling",
        ],
    ),
    # The detector demo reuses the single-view demo's camera note.
    ("applications built on applications", ["meshrecon.apps.demo.detector"]),
    # The applications' old paths under utils/, kept one release with a DeprecationWarning.
    (
        "deprecated aliases",
        [
            "meshrecon.utils.method_benchmark",
            "meshrecon.utils.viewer3d",
            "meshrecon.utils.demo_single_view",
        ],
    ),
    ("entry points", ["meshrecon.cli"]),
    ("python -m meshrecon", ["meshrecon.__main__"]),
]

# Downward imports that are still wrong: evaluators judge (inputs, outputs) with the dataset's
# metadata, and must not reach into a model's modules (Detectron2's evaluators import data and
# structures only).
SEPARATE: list[tuple[str, str]] = [("meshrecon.evaluation", "meshrecon.modeling")]

# Known exceptions: (importing module, imported module) -> the reason, and when it goes.
ALLOWED: dict[tuple[str, str], str] = {
    # --- permanent, by design ---
    # PyTorch3D's Pointclouds.estimate_normals imports its op lazily the same way: the structure
    # offers the method, the op holds the maths.
    ("meshrecon.structures.pointclouds", "meshrecon.ops.points_normals"): "kept (PyTorch3D's)",
    # Meshes.adjacency_packed keeps GraphConv's matrices, which the op builds (PyTorch3D's
    # Meshes reaches its Laplacian op the same way).
    ("meshrecon.structures.meshes", "meshrecon.ops.graph_conv"): "kept (PyTorch3D's pattern)",
    # Voxels.to_points / .cubify the same way: the voxel <-> point maps and cubify are ops.
    ("meshrecon.structures.voxels", "meshrecon.ops"): "kept (PyTorch3D's pattern)",
    # `from meshrecon.utils import ico_sphere` (PyTorch3D's name for the op); a lazy
    # module __getattr__ would be shadowed by the submodule of the same name once imported.
    ("meshrecon.utils", "meshrecon.utils.ico_sphere"): "kept (PyTorch3D's alias)",
    # The synthetic:// path handler makes missing pretrained weights on first use, by the
    # pretraining recipes: a plugin reached through a URL, imported only when one is opened.
    ("meshrecon.checkpoint.synthetic_weights", "meshrecon.pretrain"): "kept (lazy plugin)",
    # The one place where a model reaches the data layer while it is built: heads built with
    # statistics of their training split (the mean shape, the recognition baselines' shape
    # database) get them through train_statistics.training_statistics, computed and cached by
    # data/shape_statistics.py; their checkpoints carry them, so a model built without a
    # registered training split takes them from its checkpoint (issue 19, "mean shape as data").
    ("meshrecon.modeling.heads.train_statistics", "meshrecon.data.shape_statistics"): (
        "kept (one explicit function)"
    ),
    # The recognition baselines answer with a training model: its mesh file (and, multi-view,
    # its voxel file), named by the database and read at inference with the datasets' readers
    # (every format the datasets use, .pt and Pix3D's .mat included). Would go if read_mesh /
    # read_voxel moved down into io (which would load trimesh on `import meshrecon.data`).
    ("meshrecon.modeling.heads.recognition", "meshrecon.data.readers"): "answers' files",
    ("meshrecon.modeling.heads.recognition_multiview", "meshrecon.data.readers"): (
        "answers' files"
    ),
}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported meshrecon module (or package)
    line: int
    function_level: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str, modules: dict[str, Path]) -> str:
    """The longest prefix of dotted ``name`` that is a module (``a.b.func`` -> ``a.b``)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return name


def collect_imports(modules: dict[str, Path] | None = None) -> list[Import]:
    """Every import of a meshrecon module by a meshrecon module, with its line and level."""
    modules = _modules() if modules is None else modules
    found = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                parents[child] = node
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            up, in_function = node, False
            while up in parents:
                up = parents[up]
                if isinstance(up, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                    in_function = True
                    break
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = package[: len(package) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                # `from pkg import submodule` imports the submodule.
                targets = [f"{mod}.{alias.name}" for alias in node.names]
            for target in targets:
                if target == "meshrecon" or target.startswith("meshrecon."):
                    found.append(Import(name, _resolve(target, modules), node.lineno, in_function))
    return found


def component_of(module: str) -> tuple[int, str]:
    """(layer index, component prefix) owning ``module``: the longest matching prefix."""
    best: tuple[int, str] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > len(best[1]):
                    best = (index, prefix)
    if best is None:
        raise KeyError(f"module {module!r} belongs to no layer of LAYERS")
    return best


def _allowed_key(imp: Import) -> tuple[str, str] | None:
    for (source, target), _ in ALLOWED.items():
        if imp.source == source and (imp.target == target or imp.target.startswith(target + ".")):
            return (source, target)
    return None


def violations(imports: list[Import]) -> tuple[list[Import], set[tuple[str, str]]]:
    """(imports against the layering not in ALLOWED, the ALLOWED entries that were used)."""
    bad, used = [], set()
    for imp in imports:
        src_layer, src_comp = component_of(imp.source)
        dst_layer, dst_comp = component_of(imp.target)
        separate = (src_comp, dst_comp) in SEPARATE
        if src_comp == dst_comp or (dst_layer < src_layer and not separate):
            continue
        key = _allowed_key(imp)
        if key is None:
            bad.append(imp)
        else:
            used.add(key)
    return bad, used


def _describe(imp: Import) -> str:
    level = "function-level" if imp.function_level else "module-level"
    src, src_comp = component_of(imp.source)
    dst, dst_comp = component_of(imp.target)
    why = (
        "kept SEPARATE"
        if (src_comp, dst_comp) in SEPARATE
        else f"{LAYERS[src][0]} -> {LAYERS[dst][0]}"
    )
    return f"{imp.source}:{imp.line} imports {imp.target} ({level}; {why})"


def test_every_module_has_a_layer():
    for name in _modules():
        component_of(name)


def test_no_upward_or_sideways_import():
    bad, _ = violations(collect_imports())
    assert not bad, (
        "imports against docs/ARCHITECTURE.md's layers (move the code down, or pass the "
        "dependency in):\n" + "\n".join(_describe(imp) for imp in bad)
    )


def test_allowlist_has_no_stale_entry():
    # An exception that no longer occurs must leave ALLOWED, so it cannot come back unnoticed.
    _, used = violations(collect_imports())
    stale = sorted(set(ALLOWED) - used)
    assert not stale, f"ALLOWED entries no import needs any more: {stale}"


def test_checker_sees_upward_and_function_level_imports(tmp_path):
    # The analysis itself: a made-up package with one module-level and one function-level
    # upward import, and one relative import.
    pkg = tmp_path / "meshrecon"
    (pkg / "ops").mkdir(parents=True)
    (pkg / "data").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "ops" / "__init__.py").write_text("from meshrecon.data import readers\n")
    (pkg / "data" / "__init__.py").write_text("")
    (pkg / "data" / "readers.py").write_text("from ..ops import knn\n")
    (pkg / "ops" / "knn.py").write_text("def f():\n    from meshrecon.data.readers import x\n")
    global ROOT
    saved = ROOT
    ROOT = tmp_path
    try:
        modules = {module_name(p): p for p in sorted(pkg.rglob("*.py"))}
        imports = collect_imports(modules)
    finally:
        ROOT = saved
    by_pair = {(i.source, i.target): i for i in imports}
    assert by_pair[("meshrecon.ops", "meshrecon.data.readers")].function_level is False
    assert by_pair[("meshrecon.ops.knn", "meshrecon.data.readers")].function_level is True
    assert ("meshrecon.data.readers", "meshrecon.ops.knn") in by_pair
    bad, _ = violations(imports)
    assert {(i.source, i.target) for i in bad} == {
        ("meshrecon.ops", "meshrecon.data.readers"),
        ("meshrecon.ops.knn", "meshrecon.data.readers"),
    }


def summary() -> str:
    """Function-level imports of meshrecon modules (statements and files) and exceptions."""
    imports = collect_imports()
    statements = {(i.source, i.line) for i in imports if i.function_level}
    files = Counter(source for source, _ in statements)
    lines = [
        f"function-level imports of meshrecon modules: {len(statements)} statements "
        f"in {len(files)} modules",
        f"allowed exceptions to the layering: {len(ALLOWED)}",
    ]
    lines += [f"  {count:3d}  {name}" for name, count in files.most_common(10)]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary())
    bad, _ = violations(collect_imports())
    for imp in bad:
        print("VIOLATION", _describe(imp))
    sys.exit(1 if bad else 0)
