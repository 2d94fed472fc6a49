"""ONNX export (torch.onnx.export, dynamo path): valid graphs, dynamic batch, eager's outputs.

Skipped without ``onnx`` and ``onnxscript`` (optional, in the ``dev`` extra). With
``onnxruntime`` installed the outputs are compared with eager mode's at a batch size other
than the traced one (inside ``export_model``, at ``TOLERANCES["onnx"]``); without it only the
graph is checked with ``onnx.checker``.
"""

from __future__ import annotations

import pytest
import torch
from test_export import CASES, SIZE, _model

from meshrecon.export import (
    TOLERANCES,
    compare_outputs,
    eager_outputs,
    export_model,
    export_programs,
    run_exported,
)

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

# ONNX export is slow (the graph is translated op by op): the default run keeps the depth
# network (the cheapest), the rest run with -m slow.
SLOW = ("psgn", "sphereinit", "voxmesh")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
        for n in ("psgn", "eigen_fine", "sphereinit", "voxmesh")
    ],
)
def test_onnx_export(name, tmp_path):
    assert name in CASES
    cfg, model = _model(name)
    size = None if name.startswith("eigen") else SIZE
    info = export_model(model, cfg, tmp_path, "onnx", image_size=size)
    entry = info["programs"]["model"]
    assert entry["exporter"].startswith("the dynamo-based exporter")
    graph = onnx.load(str(tmp_path / "model.onnx"))
    onnx.checker.check_model(graph)
    # The batch is symbolic in the graph's inputs.
    first = graph.graph.input[0].type.tensor_type.shape.dim[0]
    assert first.dim_param and not first.HasField("dim_value")
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        assert entry["check"].startswith("skipped")
        return
    assert set(entry["max_abs_diff"]) == set(export_programs(model, cfg, size)[0].output_names)
    # And at batch 1.
    (spec,) = export_programs(model, cfg, size)
    torch.manual_seed(5)
    inputs = spec.make_inputs(1)
    got = run_exported(tmp_path / "model.onnx", inputs, spec.input_names)
    compare_outputs(got, eager_outputs(spec, inputs), *TOLERANCES["onnx"])


@pytest.mark.slow
def test_torchscript_fallback_without_onnxscript(tmp_path, monkeypatch):
    """Without onnxscript the TorchScript-based exporter writes the file (PSGN)."""
    import meshrecon.export.exporter as exporter

    monkeypatch.setattr(exporter, "_onnx_available", lambda: (False, "TorchScript-based"))
    cfg, model = _model("psgn")
    info = export_model(model, cfg, tmp_path, "onnx", image_size=SIZE)
    assert info["programs"]["model"]["exporter"] == "TorchScript-based"
    onnx.checker.check_model(onnx.load(str(tmp_path / "model.onnx")))
    if "max_abs_diff" in info["programs"]["model"]:  # checked at batch 3 with onnxruntime
        assert set(info["programs"]["model"]["max_abs_diff"]) == {"points"}


@pytest.mark.slow
def test_meshrcnn_onnx(tmp_path):
    """Mesh R-CNN's backbone + RPN head and box head as ONNX (box head: ONNX's RoiAlign)."""
    from test_export import ROOT

    from meshrecon.config import get_cfg
    from meshrecon.modeling import build_model

    cfg = get_cfg()
    cfg.merge_from_file(str(ROOT / "configs" / "synthetic" / "meshrcnn_R18_FPN.yaml"))
    cfg.merge_from_list(
        ["MODEL.FPN.OUT_CHANNELS", "16", "MODEL.ROI_BOX_HEAD.FC_DIM", "32"]
        + ["MODEL.MEMORY_FORMAT", "contiguous", "MODEL.DEVICE", "cpu"]
    )
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    info = export_model(model, cfg, tmp_path, "onnx", image_size=(96, 128))
    for name in ("backbone", "box_head"):
        onnx.checker.check_model(onnx.load(str(tmp_path / f"{name}.onnx")))
        assert "max_abs_diff" in info["programs"][name] or "check" in info["programs"][name]


def test_torchscript_fallback_refuses_voxmesh(tmp_path, monkeypatch):
    import meshrecon.export.exporter as exporter

    monkeypatch.setattr(exporter, "_onnx_available", lambda: (False, "TorchScript-based"))
    cfg, model = _model("voxmesh")
    with pytest.raises(RuntimeError, match="needs the dynamo-based ONNX exporter"):
        export_model(model, cfg, tmp_path, "onnx", image_size=SIZE)
