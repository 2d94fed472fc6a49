"""The applications' old paths under ``meshrecon.utils`` (moved to ``meshrecon.apps``, issue 19)
keep working for one release: each warns once, naming the new path, and gives the new modules
themselves, so no module is loaded twice under two names (two registries, two ``METHODS``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Run in a fresh interpreter: in this one, another test may have imported the old paths already,
# and a module warns only when it is first imported.
SCRIPT = textwrap.dedent(
    """
    import sys
    import warnings

    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import meshrecon.utils.method_benchmark.methods as old_methods
        import meshrecon.utils.method_benchmark as old_benchmark
        from meshrecon.utils.method_benchmark import METHODS
        from meshrecon.utils.method_benchmark.runner import plan_methods
        import meshrecon.utils.method_benchmark.gallery as old_gallery
        import meshrecon.utils.viewer3d as old_viewer
        import meshrecon.utils.viewer3d.writer as old_writer
        from meshrecon.utils.viewer3d import write_viewer
        import meshrecon.utils.demo_single_view as old_demo
        from meshrecon.utils.demo_single_view import SINGLE_VIEW_INPUT_SIZE
        import meshrecon.utils.method_benchmark.methods  # again: no second warning

    import meshrecon.apps.demo.single_view as new_demo
    import meshrecon.apps.method_benchmark as new_benchmark
    import meshrecon.apps.method_benchmark.gallery as new_gallery
    import meshrecon.apps.method_benchmark.methods as new_methods
    import meshrecon.apps.method_benchmark.runner as new_runner
    import meshrecon.apps.viewer3d as new_viewer
    import meshrecon.apps.viewer3d.writer as new_writer

    assert old_methods is new_methods
    assert old_benchmark is new_benchmark
    assert old_gallery is new_gallery
    assert METHODS is new_methods.METHODS and plan_methods is new_runner.plan_methods
    assert old_viewer is new_viewer and old_writer is new_writer
    assert write_viewer is new_writer.write_viewer
    assert old_demo is new_demo and SINGLE_VIEW_INPUT_SIZE == 137
    # Each module is in sys.modules once, under the new name and (aliased) the old one.
    loaded = {
        id(m): m
        for name, m in sys.modules.items()
        if name.startswith("meshrecon") and getattr(m, "__file__", None)
    }
    files = [m.__file__ for m in loaded.values()]
    assert len(files) == len(set(files)), sorted(f for f in files if files.count(f) > 1)

    for w in caught:
        assert w.category is DeprecationWarning, w
        assert w.filename == __file__, (w.filename, str(w.message))  # the importer's line
    print("\\n".join(str(w.message) for w in caught))
    """
)


def _run(tmp_path: Path, script: str, *flags: str) -> str:
    path = tmp_path / "script.py"
    path.write_text(script)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, *flags, str(path)], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_old_paths_alias_the_new_modules_and_warn_once(tmp_path):
    messages = _run(tmp_path, SCRIPT).splitlines()
    assert messages == [
        "meshrecon.utils.method_benchmark moved to meshrecon.apps.method_benchmark; "
        "the old path goes in the next release",
        "meshrecon.utils.viewer3d moved to meshrecon.apps.viewer3d; "
        "the old path goes in the next release",
        "meshrecon.utils.demo_single_view moved to meshrecon.apps.demo.single_view; "
        "the old path goes in the next release",
    ]


def test_new_paths_do_not_warn(tmp_path):
    # The library and the CLI's modules use the new paths only: an old path's warning is an
    # error here, and no old path gets imported.
    script = (
        "import warnings\n"
        "warnings.filterwarnings('error', message='meshrecon.utils')\n"
        "import meshrecon.apps.method_benchmark.report, meshrecon.apps.demo.detector\n"
        "import meshrecon.apps.demo.index, meshrecon.cli.benchmark_methods, meshrecon.cli.demo\n"
        "import meshrecon.engine.defaults\n"
        "import sys\n"
        "assert not [m for m in sys.modules if m.startswith(('meshrecon.utils.method_benchmark',"
        " 'meshrecon.utils.viewer3d', 'meshrecon.utils.demo_'))]\n"
    )
    _run(tmp_path, script)
