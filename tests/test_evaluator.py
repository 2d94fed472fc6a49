import logging

import pytest
import torch
from torch import nn

from meshrecon.config import get_cfg
from meshrecon.data import MetadataCatalog
from meshrecon.evaluation import (
    DatasetEvaluator,
    DatasetEvaluators,
    build_evaluator,
    create_small_table,
    flatten_results_dict,
    inference_on_dataset,
    print_csv_format,
    register_evaluator,
    verify_results,
)


class _Counter(DatasetEvaluator):
    def __init__(self, task):
        self.task = task
        self.seen = []

    def reset(self):
        self.seen = []

    def process(self, inputs, outputs):
        self.seen.extend(zip(inputs, outputs))

    def evaluate(self):
        return {self.task: {"n": len(self.seen), "sum": float(sum(o for _, o in self.seen))}}


class _Doubler(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(2.0))
        self.calls = []

    def forward(self, batch):
        self.calls.append((self.training, torch.is_grad_enabled()))
        return [float(self.w * x) for x in batch]


def test_inference_on_dataset_eval_mode_no_grad_and_results():
    model = _Doubler().train()
    loader = [[1.0, 2.0], [], [3.0]]  # the empty batch: every sample of it was skipped
    a, b = _Counter("a"), _Counter("b")
    a.seen = ["stale"]
    results = inference_on_dataset(model, loader, [a, b], show_progress=False)
    assert results == {"a": {"n": 3, "sum": 12.0}, "b": {"n": 3, "sum": 12.0}}
    assert model.calls == [(False, False), (False, False)]
    assert model.training  # the previous mode is restored
    assert inference_on_dataset(model, loader, None, show_progress=False) == {}


def test_dataset_evaluators_reject_duplicate_tasks():
    evaluators = DatasetEvaluators([_Counter("x"), _Counter("x")])
    with pytest.raises(KeyError, match="x"):
        inference_on_dataset(_Doubler(), [[1.0]], evaluators, show_progress=False)


def test_build_evaluator_by_metadata_type():
    register_evaluator("evaluator_test_kind", lambda cfg, name, out: _Counter(name))
    MetadataCatalog.get("evaluator_test_ds").evaluator_type = "evaluator_test_kind"
    evaluator = build_evaluator(get_cfg(), "evaluator_test_ds")
    assert isinstance(evaluator, _Counter) and evaluator.task == "evaluator_test_ds"
    with pytest.raises(KeyError, match="no evaluator_type"):
        build_evaluator(get_cfg(), "evaluator_test_untyped")
    MetadataCatalog.get("evaluator_test_bad").evaluator_type = "unknown_kind"
    with pytest.raises(KeyError, match="evaluator_test_kind"):
        build_evaluator(get_cfg(), "evaluator_test_bad")
    with pytest.raises(KeyError, match="already registered"):
        register_evaluator("evaluator_test_kind", lambda *a: None)


def test_tables_and_csv_format(caplog):
    assert flatten_results_dict({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {
        "a/b": 1, "a/c/d": 2, "e": 3,
    }  # fmt: skip
    table = create_small_table({"Chamfer-L2": 0.12345, "F1@0.3": 55.0})
    lines = table.splitlines()
    assert lines[0].split("|")[1].strip() == "Chamfer-L2"
    assert "0.1235" in lines[2] and "55.0000" in lines[2]
    assert len({len(line) for line in lines}) == 1  # aligned columns
    with caplog.at_level(logging.DEBUG):
        print_csv_format({"shapenet": {"Chamfer-L2": 0.5, "F1@0.3": 70.0}})
    assert "copypaste: Chamfer-L2,F1@0.3" in caplog.text
    assert "copypaste: 0.5000,70.0000" in caplog.text
    # The comma-separated lines are for the log file (DEBUG), not the console (INFO).
    copypaste = [r for r in caplog.records if r.getMessage().startswith("copypaste")]
    assert copypaste and {r.levelno for r in copypaste} == {logging.DEBUG}
    caplog.clear()
    # Many metrics: the table wraps so that no line exceeds max_width.
    many = {f"Precision@0.{i}00000": 0.5 + i for i in range(1, 10)}
    with caplog.at_level(logging.INFO):
        print_csv_format({"shapenet": many}, max_width=100)
    lines = caplog.records[0].getMessage().splitlines()[1:]
    assert max(len(line) for line in lines) <= 100 and len(lines) >= 6  # >= 2 tables
    for key, value in many.items():
        assert key in caplog.text and f"{value:.4f}" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        print_csv_format({"shapenet": many}, tables=False)
    assert not caplog.records  # an evaluator logged its own tables: nothing more on the console


def test_verify_results():
    cfg = get_cfg()
    assert verify_results(cfg, {})
    cfg.TEST.EXPECTED_RESULTS = [["toy", "mse", 1.0, 0.1]]
    assert verify_results(cfg, {"toy": {"mse": 1.05}})
    assert not verify_results(cfg, {"toy": {"mse": 1.5}})
    assert not verify_results(cfg, {"toy": {"mse": float("nan")}})
    assert not verify_results(cfg, {})
