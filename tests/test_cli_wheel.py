"""The `meshrecon` command from a built wheel installed into a fresh virtual environment, run
from an empty folder: no clone on sys.path, so every file it needs must ship in the wheel."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Toy sizes: one model per category, one view each, small samples, two iterations.
TOY = [
    "DATASETS.SYNTHETIC.SCALE", "0.02",
    "DATASETS.SYNTHETIC.SHAPENET_VIEWS", "1",
    "SOLVER.IMS_PER_BATCH", "2",
    "DATALOADER.NUM_WORKERS", "0",
    "INPUT.SHAPENET.NUM_SAMPLES", "300",
    "TEST.SHAPENET.NUM_SAMPLES", "300",
    # No pretraining of the full recipe in a test: the encoder starts from random weights.
    "MODEL.BACKBONE.PRETRAINED", "",
    "OUTPUT_DIR", "run",
]  # fmt: skip


def _run(cmd: list[str], cwd: Path, env: dict, timeout: float = 900) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_wheel_in_fresh_venv_from_an_empty_folder(tmp_path):
    # Build from a copy: setuptools writes build/ and egg-info next to the sources.
    src = tmp_path / "src"
    shutil.copytree(REPO / "meshrecon", src / "meshrecon", ignore=shutil.ignore_patterns("__py*"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    dist = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(src)],
         tmp_path, dict(os.environ))  # fmt: skip
    (wheel,) = dist.glob("meshrecon-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    # Every file of the package ships: modules, configs, the report viewer's scripts.
    package = REPO / "meshrecon"
    files = sorted(
        p.relative_to(REPO).as_posix()
        for p in package.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert any(f.endswith("synthetic/voxmesh.yaml") for f in files)
    assert [f for f in files if f not in names] == []
    assert "meshrecon/cli/train_net.py" in names and "meshrecon/__main__.py" in names
    assert any(n.endswith("entry_points.txt") for n in names)

    # A fresh environment that sees this interpreter's installed dependencies (torch is not
    # downloaded again) but not the meshrecon of this checkout: its site-packages hold the
    # wheel, and a .pth adds the dependency folders after it (their own .pth files, such as
    # an editable meshrecon's, are not processed).
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, dict(os.environ))
    python = venv / "bin" / "python"
    venv_site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            tmp_path,
            dict(os.environ),
        ).strip()  # fmt: skip
    )
    deps = {*site.getsitepackages(), sysconfig.get_paths()["purelib"]}
    (venv_site / "zz_dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    _run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
         tmp_path, env)  # fmt: skip

    empty = tmp_path / "empty"
    empty.mkdir()
    env.update(
        MESHRECON_DATASETS=str(tmp_path / "datasets"),
        MESHRECON_CACHE=str(tmp_path / "cache"),
        OMP_NUM_THREADS="1",
    )
    where = _run([str(python), "-c", "import meshrecon; print(meshrecon.__file__)"], empty, env)
    assert where.strip().startswith(str(venv_site)), where
    meshrecon = str(venv / "bin" / "meshrecon")
    out = _run([meshrecon, "--help"], empty, env)
    assert all(
        f"  {name}" in out
        for name in ("train", "eval", "demo", "benchmark", "zoo", "render-shapes")
    )
    assert "usage: python -m meshrecon" in _run(
        [str(python), "-m", "meshrecon", "--help"], empty, env
    )
    out = _run([meshrecon, "zoo", "synthetic"], empty, env)
    assert "synthetic/psgn.yaml" in out and "pix3d/" not in out
    assert "FutureWarning" not in out

    # Train a shipped config by name, then evaluate the result.
    out = _run([meshrecon, "train", "--config-file", "synthetic/psgn.yaml", "--no-eval",
                "SOLVER.MAX_ITER", "2", *TOY], empty, env)  # fmt: skip
    assert (empty / "run" / "model_final.pth").is_file()
    assert "Generating synthetic_shapenet_train" in out and "\r" not in out
    assert not (empty / "run" / "inference").exists()
    out = _run([meshrecon, "eval", "--config-file", "synthetic/psgn.yaml",
                "MODEL.WEIGHTS", "run/model_final.pth", *TOY], empty, env)  # fmt: skip
    assert (empty / "run" / "inference" / "synthetic_shapenet_test" / "results.json").is_file()
    assert "Chamfer" in out and "\r" not in out
    assert sorted(p.name for p in empty.iterdir()) == ["run"]  # everything else went elsewhere
