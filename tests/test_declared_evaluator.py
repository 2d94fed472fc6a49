"""Evaluation chosen by a declared contract (issue 19): a multi-view head class says what scores
its predictions (``evaluator_type``), the engine reads it and builds that evaluator in place of
the dataset's ``evaluator_type`` metadata; evaluation itself never looks at the head's name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from torch import nn

from meshrecon.config import get_cfg
from meshrecon.data import DatasetCatalog, MetadataCatalog
from meshrecon.engine import DefaultTrainer
from meshrecon.evaluation import (
    DatasetEvaluator,
    OptimizeMVSEvaluator,
    R2N2Evaluator,
    build_evaluator,
    registered_evaluator_types,
)
from meshrecon.evaluation import evaluator as evaluator_module
from meshrecon.modeling.heads import MULTIVIEW_HEAD_REGISTRY, declared_evaluator_type

ROOT = Path(__file__).resolve().parent.parent
DATASET = "declared_evaluator_test_multiview"


@pytest.fixture
def multiview_dataset(tmp_path):
    """A multi-view dataset (no records) whose metadata names the ``"multiview"`` default."""
    DatasetCatalog.register(DATASET, lambda: [])
    MetadataCatalog.get(DATASET).set(evaluator_type="multiview", thing_classes=["chair"])
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    yield cfg
    DatasetCatalog.remove(DATASET)
    MetadataCatalog.remove(DATASET)


def _register_head(monkeypatch, name: str, **attrs) -> None:
    # Registered for this test only (monkeypatch restores the registry afterwards).
    head = type(name, (nn.Module,), attrs)
    monkeypatch.setitem(MULTIVIEW_HEAD_REGISTRY._obj_map, name, head)


def test_head_declaring_optimize_mvs_gets_its_evaluator_under_any_name(
    monkeypatch, multiview_dataset
):
    # Neither "OptimizeMVSHead" nor any name the evaluators know: only the declaration counts.
    _register_head(monkeypatch, "ContractTestPointHead", evaluator_type="optimize_mvs")
    cfg = multiview_dataset
    cfg.MODEL.MULTIVIEW_HEAD.NAME = "ContractTestPointHead"
    evaluator = DefaultTrainer.build_evaluator(cfg, DATASET)
    assert type(evaluator) is OptimizeMVSEvaluator
    assert evaluator.output_dir == str(Path(cfg.OUTPUT_DIR) / "inference" / DATASET)


def test_declared_r2n2_and_undeclared_heads_get_the_voxel_evaluator(monkeypatch, multiview_dataset):
    cfg = multiview_dataset
    _register_head(monkeypatch, "ContractTestVoxelHead", evaluator_type="r2n2")
    _register_head(monkeypatch, "ContractTestSilentHead")  # declares nothing: metadata decides
    for name in ("ContractTestVoxelHead", "ContractTestSilentHead"):
        cfg.MODEL.MULTIVIEW_HEAD.NAME = name
        evaluator = DefaultTrainer.build_evaluator(cfg, DATASET)
        assert type(evaluator) is R2N2Evaluator, name
        assert evaluator.class_names == ["chair"]


def test_the_declaration_overrides_the_metadata_with_any_registered_type(
    monkeypatch, multiview_dataset
):
    class Marker(DatasetEvaluator):
        def __init__(self, dataset_name):
            self.dataset_name = dataset_name

    monkeypatch.setitem(
        evaluator_module._EVALUATOR_BUILDERS,
        "contract_test_kind",
        lambda cfg, name, output_dir: Marker(name),
    )
    _register_head(monkeypatch, "ContractTestMarkedHead", evaluator_type="contract_test_kind")
    cfg = multiview_dataset
    cfg.MODEL.MULTIVIEW_HEAD.NAME = "ContractTestMarkedHead"
    evaluator = DefaultTrainer.build_evaluator(cfg, DATASET)
    assert isinstance(evaluator, Marker) and evaluator.dataset_name == DATASET
    # The evaluation builder alone: the argument wins, the metadata is the default.
    assert isinstance(build_evaluator(cfg, DATASET, evaluator_type="contract_test_kind"), Marker)
    assert type(build_evaluator(cfg, DATASET)) is R2N2Evaluator


def test_bad_declarations_are_named(monkeypatch, multiview_dataset):
    cfg = multiview_dataset
    _register_head(monkeypatch, "ContractTestUnknownKind", evaluator_type="no_such_evaluator")
    cfg.MODEL.MULTIVIEW_HEAD.NAME = "ContractTestUnknownKind"
    with pytest.raises(KeyError, match="evaluator_type='no_such_evaluator'.*registered: "):
        DefaultTrainer.build_evaluator(cfg, DATASET)
    _register_head(monkeypatch, "ContractTestEmptyKind", evaluator_type="")
    cfg.MODEL.MULTIVIEW_HEAD.NAME = "ContractTestEmptyKind"
    with pytest.raises(ValueError, match="ContractTestEmptyKind.evaluator_type"):
        declared_evaluator_type(cfg)
    cfg.MODEL.MULTIVIEW_HEAD.NAME = "ContractTestNotRegistered"
    with pytest.raises(KeyError, match="MODEL.MULTIVIEW_HEAD.NAME"):
        declared_evaluator_type(cfg)
    cfg.MODEL.MULTIVIEW_HEAD.NAME = ""
    assert declared_evaluator_type(cfg) is None


def test_every_shipped_multiview_head_declares_a_registered_type():
    declared = {
        name: getattr(MULTIVIEW_HEAD_REGISTRY.get(name), "evaluator_type", None)
        for name in MULTIVIEW_HEAD_REGISTRY._obj_map
    }
    assert declared == {
        "OptimizeMVSHead": "optimize_mvs",
        "R2N2Head": "r2n2",
        "MultiViewRetrievalHead": "r2n2",
        "MultiViewClusteringHead": "r2n2",
        "MultiViewOracleNNHead": "r2n2",
    }
    assert set(declared.values()) <= set(registered_evaluator_types())
    assert "multiview" in registered_evaluator_types()  # the datasets' default stays


MODEL_ZOO = ROOT / "meshrecon" / "model_zoo" / "configs"


def _multiview_configs() -> dict[str, str]:
    """Shipped config (relative path) -> its multi-view head, for every config naming one
    (itself or through ``_BASE_``)."""
    found = {}
    for path in sorted(MODEL_ZOO.rglob("*.yaml")):
        cfg = get_cfg()
        cfg.merge_from_file(str(path))
        if cfg.MODEL.MULTIVIEW_HEAD.NAME:
            found[str(path.relative_to(MODEL_ZOO))] = cfg.MODEL.MULTIVIEW_HEAD.NAME
    return found


MULTIVIEW_CONFIGS = _multiview_configs()


def test_shipped_multiview_configs_found():
    # R2N2 (three cells, two sizes), OptimizeMVS (two stages, two sizes), the recognition
    # baselines: the parametrized test below must not pass by finding none.
    assert len(MULTIVIEW_CONFIGS) >= 12, MULTIVIEW_CONFIGS
    assert "OptimizeMVSHead" in MULTIVIEW_CONFIGS.values()


@pytest.mark.parametrize("config", sorted(MULTIVIEW_CONFIGS))
def test_shipped_configs_keep_the_evaluator_the_head_name_chose(config):
    # Before issue 19 the "multiview" builder compared MODEL.MULTIVIEW_HEAD.NAME with
    # "OptimizeMVSHead"; the declarations must give every shipped config the same evaluator.
    cfg = get_cfg()
    cfg.merge_from_file(str(MODEL_ZOO / config))
    old = "optimize_mvs" if MULTIVIEW_CONFIGS[config] == "OptimizeMVSHead" else "r2n2"
    assert declared_evaluator_type(cfg) == old


def test_evaluation_reads_no_head_name():
    # The layering test keeps evaluation from importing modeling; this keeps it from reading
    # the head's config name instead (the old branch on "OptimizeMVSHead").
    offenders = []
    for path in sorted((ROOT / "meshrecon" / "evaluation").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "MULTIVIEW_HEAD":
                offenders.append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.Constant) and node.value == "OptimizeMVSHead":
                offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders, offenders
