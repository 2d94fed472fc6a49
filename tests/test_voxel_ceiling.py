"""The voxel ceiling (meshrecon.apps.voxel_ceiling, tools/voxel_ceiling.py): the cubified
ground-truth frustum voxels, scored by the ShapeNet evaluator, lie on the ground-truth surface,
the closer the finer the grid, and only with the alignment the targets were voxelized with."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

from meshrecon.apps.voxel_ceiling import GroundTruthVoxelMeshes, voxel_ceiling
from meshrecon.config import get_cfg
from meshrecon.data.datasets.synthetic import get_synthetic_config, set_synthetic_config
from meshrecon.model_zoo import get_config_file


def _toy_opts(root, samples: int) -> list[str]:
    """A one-view-per-object synthetic world under ``root``, and a light evaluation."""
    return [
        "DATASETS.SYNTHETIC.ROOT", str(root / "datasets"),
        "DATASETS.SYNTHETIC.SCALE", "0.02",
        "DATASETS.SYNTHETIC.SHAPENET_VIEWS", "1",
        "MODEL.BACKBONE.PRETRAINED", "",
        "TEST.SHAPENET.NUM_SAMPLES", str(samples),
        "TEST.SHAPENET.ONET_PROTOCOL", "False",
        "TEST.SHAPENET.FSCORE_PROTOCOL", "False",
        "OUTPUT_DIR", str(root / "out"),
    ]  # fmt: skip


@contextmanager
def _restoring_synthetic_config():
    # voxel_ceiling applies the config's DATASETS.SYNTHETIC to the process, as a training does.
    previous = get_synthetic_config()
    try:
        yield
    finally:
        set_synthetic_config(previous)


@pytest.fixture(scope="module")
def ceiling(tmp_path_factory):
    cfg = get_cfg()
    cfg.merge_from_file(get_config_file("synthetic/voxmesh.yaml"))
    cfg.merge_from_list(_toy_opts(tmp_path_factory.mktemp("ceiling"), 3000))
    with _restoring_synthetic_config():
        rows = voxel_ceiling(cfg, [12, 32], ["center"])
        rows += voxel_ceiling(cfg, [32], ["topleft"])
    return {(r["size"], r["align"]): r["results"] for r in rows}


def test_the_cubified_targets_approach_the_surface_as_the_grid_refines(ceiling):
    f1 = {k: r["shapenet"]["F1@0.300000"] for k, r in ceiling.items()}
    cham = {k: r["shapenet"]["Chamfer-L2"] for k, r in ceiling.items()}
    # Measured on this toy split: 12^3 13.6, 24^3 47.9, 32^3 65.7 (Quickstart test views: 24^3
    # 47.2, 32^3 65.6, 48^3 78.9).
    assert f1[(32, "center")] > f1[(12, "center")] + 20
    assert cham[(32, "center")] < cham[(12, "center")]
    assert f1[(32, "center")] > 45


def test_only_the_targets_alignment_lands_on_the_surface(ceiling):
    # The targets are voxelized at cell centres; cubify's "topleft" cubes are half a cell off
    # (on the Quickstart's test views at 24^3: 47.2 against 39.2).
    f1 = {k: r["shapenet"]["F1@0.300000"] for k, r in ceiling.items()}
    assert f1[(32, "center")] > f1[(32, "topleft")] + 5


def test_the_stand_in_returns_the_ground_truth_voxels(ceiling):
    # Its voxel output is the target itself: the evaluator's IoU is 1.
    assert ceiling[(32, "center")]["voxels"]["IoU"] == pytest.approx(1.0)


def test_a_model_without_a_cubifying_head_is_refused():
    with pytest.raises(ValueError, match="VoxMeshHead"):
        GroundTruthVoxelMeshes(torch.nn.Linear(1, 1))


def test_the_tool_prints_one_row_per_grid(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "voxel_ceiling.py"
    spec = importlib.util.spec_from_file_location("voxel_ceiling_tool", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    with _restoring_synthetic_config():
        rc = tool.main(
            [
                "--config-file", get_config_file("synthetic/voxmesh.yaml"),
                "--sizes", "16",
                "--aligns", "center,topleft",
                *_toy_opts(tmp_path, 1000),
            ]
        )  # fmt: skip
    assert rc == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 16^3")]
    assert [row.split("|")[2].strip() for row in rows] == ["center", "topleft"]
    # Every figure is a number (F1 in %, Chamfer > 0).
    for row in rows:
        cells = [float(c) for c in row.strip("|").split("|")[2:]]
        assert 0 <= cells[0] <= 100 and cells[2] > 0


def test_an_unknown_alignment_is_named():
    with pytest.raises(ValueError, match="unknown CUBIFY_ALIGN"):
        voxel_ceiling(get_cfg(), [16], ["DATASETS.SYNTHETIC.SCALE"])
