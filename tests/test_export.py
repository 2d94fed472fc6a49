"""Exported programs (torch.export) give eager mode's outputs, with dynamic batch sizes.

Every model is built from its config in configs/ with narrow, random-weight heads and 64 x 64
images, so that each export takes seconds. Equality is checked at the tolerances of
:data:`meshrecon.export.TOLERANCES` (integer outputs exactly), at the tracing batch size's
neighbours (batch 1 and 3, the export traces batch 2). A subprocess without meshrecon on its
path loads and runs the ``.pt2`` files.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from meshrecon.cli.export import main as export_main
from meshrecon.config import get_cfg
from meshrecon.export import (
    TOLERANCES,
    compare_outputs,
    eager_outputs,
    export_model,
    export_programs,
    meshes_from_tensors,
    run_exported,
)
from meshrecon.modeling import build_model

ROOT = Path(__file__).resolve().parents[1]
SIZE = (64, 64)

# Narrow heads over the real configs; random weights.
CASES = {
    "voxmesh": (
        "synthetic/voxmesh.yaml",
        [
            "MODEL.VOXEL_HEAD.VOXEL_SIZE", 12, "INPUT.SHAPENET.VOXEL_SIZE", 12,
            "MODEL.VOXEL_HEAD.CONV_DIM", 16, "MODEL.VOXEL_HEAD.NUM_CONV", 1,
            "MODEL.MESH_HEAD.NUM_STAGES", 2, "MODEL.MESH_HEAD.NUM_GRAPH_CONVS", 1,
            "MODEL.MESH_HEAD.GRAPH_CONV_DIM", 16,
        ],
    ),
    "sphereinit": (
        "synthetic/sphereinit.yaml",
        [
            "MODEL.MESH_HEAD.ICO_SPHERE_LEVEL", 1, "MODEL.MESH_HEAD.NUM_STAGES", 2,
            "MODEL.MESH_HEAD.NUM_GRAPH_CONVS", 1, "MODEL.MESH_HEAD.GRAPH_CONV_DIM", 16,
        ],
    ),
    "pixel2mesh_plus": (
        "shapenet/pixel2mesh_R50.yaml",
        [
            "MODEL.BACKBONE.NAME", "resnet18", "MODEL.MESH_HEAD.ICO_SPHERE_LEVEL", 0,
            "MODEL.MESH_HEAD.NUM_STAGES", 2, "MODEL.MESH_HEAD.NUM_GRAPH_CONVS", 1,
            "MODEL.MESH_HEAD.GRAPH_CONV_DIM", 16,
        ],
    ),
    "pixel2mesh": (
        "synthetic/pixel2mesh.yaml",
        ["MODEL.PIXEL2MESH.NUM_BLOCKS", 2, "MODEL.PIXEL2MESH.NUM_GCONVS", 2,
         "MODEL.PIXEL2MESH.HIDDEN_DIM", 16],
    ),
    "psgn": (
        "synthetic/psgn.yaml",
        ["MODEL.PSGN.FC_DIMS", [32], "MODEL.PSGN.DECONV_DIM", 16, "MODEL.PSGN.CONV_GRID", [4, 6],
         "MODEL.PSGN.NUM_FC_POINTS", 16],
    ),
    "eigen_coarse": ("synthetic/eigen_coarse.yaml", ["MODEL.DEPTH.FC_DIM", 32]),
    "eigen_fine": ("synthetic/eigen_fine.yaml", ["MODEL.DEPTH.FC_DIM", 32, "MODEL.WEIGHTS", ""]),
}  # fmt: skip
DEPTH_CASES = ("eigen_coarse", "eigen_fine")
# The mesh heads take the longest to trace (tens of seconds on a busy 2-core machine).
SLOW_CASES = ("sphereinit", "pixel2mesh_plus", "pixel2mesh")


def _cfg(name: str):
    path, overrides = CASES[name]
    cfg = get_cfg()
    cfg.merge_from_file(str(ROOT / "configs" / path))
    cfg.merge_from_list([str(v) if not isinstance(v, str) else v for v in overrides])
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def _model(name: str):
    cfg = _cfg(name)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    if name == "voxmesh":
        # Mixed occupancy (the initial predictor gives 0.5 everywhere): meshes of different
        # sizes, so that the data-dependent mesh sizes are exercised.
        with torch.no_grad():
            model.voxel_head.predictor.weight.normal_(std=0.05)
            model.voxel_head.predictor.bias.normal_(std=1.0)
    return cfg, model


@functools.cache
def _exported(name: str, out_root: str):
    """Export ``name`` once per test session: (model, cfg, spec, info, out_dir)."""
    cfg, model = _model(name)
    size = None if name in DEPTH_CASES else SIZE
    out = Path(out_root) / name
    info = export_model(model, cfg, out, "torch.export", image_size=size)
    (spec,) = export_programs(model, cfg, size)
    return model, cfg, spec, info, out


@pytest.fixture(scope="module")
def out_root(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("exported"))


def _params(names):
    return [
        pytest.param(n, marks=pytest.mark.slow) if n in SLOW_CASES else pytest.param(n)
        for n in names
    ]


def test_export_computes_the_backbone_in_float32(tmp_path):
    # A model trained with MODEL.BACKBONE.AUTOCAST bfloat16 exports a float32 program: the file
    # must not depend on the bfloat16 hardware of the machine that made it.
    cfg = _cfg("psgn")
    cfg.MODEL.BACKBONE.AUTOCAST = "bfloat16"
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    assert model.backbone.autocast_dtype is torch.bfloat16
    export_model(model, cfg, tmp_path, "torch.export", image_size=SIZE)
    assert model.backbone.autocast_dtype is None
    program = torch.export.load(str(tmp_path / "model.pt2"))
    code = program.graph_module.code
    assert "conv" in code and "bfloat16" not in code and "autocast" not in code


@pytest.mark.parametrize("name", _params(CASES))
def test_exported_program_matches_eager(name, out_root):
    model, cfg, spec, info, out = _exported(name, out_root)
    entry = info["programs"]["model"]
    # export_model checked a batch of 3 against eager mode; the file is there.
    assert entry["check_batch_size"] == 3
    assert set(entry["max_abs_diff"]) == set(spec.output_names)
    assert (out / "model.pt2").is_file()
    assert json.loads((out / "export_info.json").read_text())["programs"]["model"]
    # Batch 1 (the dynamic batch's lower end) and, for depth, another image size.
    rtol, atol = TOLERANCES["torch.export"]
    torch.manual_seed(1)
    inputs = spec.make_inputs(1)
    cases = [inputs]
    if name in DEPTH_CASES:
        cases.append((torch.rand(2, 3, 90, 131) * 255,))
        assert entry["inputs"][0]["shape"] == ["batch", 3, "height", "width"]
        assert entry["outputs"][0] == {
            "name": "depth",
            "shape": ["batch", "height", "width"],
            "dtype": "float32",
        }
    else:
        assert all(o["shape"][0] == "batch" for o in entry["outputs"])
    for args in cases:
        got = run_exported(out / "model.pt2", args, spec.input_names)
        compare_outputs(got, eager_outputs(spec, args), rtol, atol)


def test_voxmesh_meshes_have_data_dependent_sizes(out_root):
    model, cfg, spec, info, out = _exported("voxmesh", out_root)
    torch.manual_seed(2)
    images, K = spec.make_inputs(4)
    got = run_exported(out / "model.pt2", (images, K), spec.input_names)
    # export_info.json: the largest mesh is a size known only at run time (an unbacked "u").
    shapes = {o["name"]: o["shape"] for o in info["programs"]["model"]["outputs"]}
    assert shapes["mesh_verts"][0] == "batch" and shapes["mesh_verts"][1].startswith("u")
    assert shapes["mesh_verts"][2] == 3 and shapes["mesh_num_faces"] == ["batch"]
    counts = got["mesh_num_verts"].tolist()
    assert len(set(counts)) > 1, counts  # different sizes in one batch
    with torch.no_grad():
        eager = model([{"image": im, "K": k} for im, k in zip(images, K)])
    meshes = meshes_from_tensors(*(got[k] for k in spec.output_names[1:]))
    rtol, atol = TOLERANCES["torch.export"]
    for (v, f), out_v, out_f in zip(
        (e["mesh"] for e in eager), meshes.verts_list(), meshes.faces_list()
    ):
        assert torch.equal(out_f, f)
        torch.testing.assert_close(out_v, v, rtol=rtol, atol=atol)


_CHILD = r"""
import json, sys
try:
    import meshrecon  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("meshrecon is importable in the child: " + meshrecon.__file__)
import torch
request = json.loads(sys.argv[1])
result = {}
for name, job in request.items():
    data = torch.load(job["data"], weights_only=True)
    program = torch.export.load(job["program"])
    with torch.no_grad():
        got = program.module()(*data["inputs"])
    diffs = {}
    for key, want in data["outputs"].items():
        out = got[key]
        if out.shape != want.shape:
            diffs[key] = "shape %s != %s" % (tuple(out.shape), tuple(want.shape))
        elif want.is_floating_point():
            ok = torch.allclose(out, want, rtol=job["rtol"], atol=job["atol"])
            diffs[key] = None if ok else float((out - want).abs().max())
        else:
            diffs[key] = None if torch.equal(out, want) else "integers differ"
    result[name] = diffs
print(json.dumps(result))
"""


def _site_without_meshrecon(dest: Path) -> Path:
    """A folder of links to torch's site-packages entries, less meshrecon and ``.pth`` files."""
    site = Path(torch.__file__).resolve().parents[1]
    dest.mkdir()
    for entry in site.iterdir():
        name = entry.name.lower()
        if name.startswith(("meshrecon", "__editable__")) or name.endswith(".pth"):
            continue
        (dest / entry.name).symlink_to(entry)
    return dest


def test_exported_programs_run_without_meshrecon(out_root, tmp_path):
    """``python -I -S`` with only torch's packages on the path loads and runs the programs."""
    rtol, atol = TOLERANCES["torch.export"]
    request = {}
    for name in ("voxmesh", "eigen_fine"):
        model, cfg, spec, info, out = _exported(name, out_root)
        torch.manual_seed(3)
        inputs = spec.make_inputs(3)
        data = tmp_path / f"{name}.pt"
        torch.save({"inputs": list(inputs), "outputs": eager_outputs(spec, inputs)}, data)
        request[name] = {
            "program": str(out / "model.pt2"),
            "data": str(data),
            "rtol": rtol,
            "atol": atol,
        }
    site = _site_without_meshrecon(tmp_path / "site")
    stdlib = sysconfig.get_paths()["stdlib"]
    code = f"import sys; sys.path[:] = [{stdlib!r}, {stdlib + '/lib-dynload'!r}, {str(site)!r}]\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code + _CHILD, json.dumps(request)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result) == set(request)
    for name, diffs in result.items():
        assert diffs and all(v is None for v in diffs.values()), (name, diffs)


@pytest.mark.slow
def test_meshrcnn_backbone_and_box_head(tmp_path):
    """Mesh R-CNN: backbone + RPN head (dynamic batch and size) and the box head (dynamic R)."""
    cfg = get_cfg()
    cfg.merge_from_file(str(ROOT / "configs" / "synthetic" / "meshrcnn_R18_FPN.yaml"))
    cfg.merge_from_list(
        ["MODEL.FPN.OUT_CHANNELS", "16", "MODEL.ROI_BOX_HEAD.FC_DIM", "32"]
        + ["MODEL.MEMORY_FORMAT", "contiguous", "MODEL.DEVICE", "cpu"]
    )
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    info = export_model(model, cfg, tmp_path, "torch.export", image_size=(96, 128))
    assert set(info["programs"]) == {"backbone", "box_head"}
    specs = {s.name: s for s in export_programs(model, cfg, (96, 128))}
    rtol, atol = TOLERANCES["torch.export"]
    # Another batch and an image size that needs padding (100 x 150 -> 128 x 160).
    images = torch.rand(1, 3, 100, 150) * 255
    got = run_exported(tmp_path / "backbone.pt2", (images,), ["images"])
    compare_outputs(got, eager_outputs(specs["backbone"], (images,)), rtol, atol)
    assert got["features_p2"].shape[-2:] == (32, 40)
    # The RPN's own proposals of that image through the box head: 1 roi and many.
    with torch.no_grad():
        batch = model.preprocess_image([{"image": images[0]}])
        feats = model.backbone(batch.tensor)
        proposals, _ = model.proposal_generator(batch, feats, None)
    boxes = proposals[0].proposal_boxes.tensor
    maps = [feats[f] for f in specs["box_head"].module.in_features]
    for rois in (boxes[:1], boxes):
        rois = torch.cat([torch.zeros(len(rois), 1), rois], 1)
        args = (*maps, rois)
        got = run_exported(tmp_path / "box_head.pt2", args, specs["box_head"].input_names)
        compare_outputs(got, eager_outputs(specs["box_head"], args), rtol, atol)


def test_channels_last_rcnn_is_refused():
    cfg = get_cfg()
    cfg.merge_from_file(str(ROOT / "configs" / "synthetic" / "meshrcnn_R18_FPN.yaml"))
    cfg.merge_from_list(["MODEL.MEMORY_FORMAT", "channels_last", "MODEL.DEVICE", "cpu"])
    model = build_model(cfg)
    with pytest.raises(ValueError, match="MEMORY_FORMAT 'contiguous'"):
        export_programs(model, cfg)


def test_unsupported_model_is_refused():
    cfg = get_cfg()
    cfg.merge_from_file(str(ROOT / "configs" / "synthetic" / "r2n2_res_gru.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    with pytest.raises(ValueError, match="MultiViewReconstructor cannot be exported"):
        export_programs(build_model(cfg), cfg)


def test_cli_exports_the_given_weights(tmp_path):
    """tools/export_model.py's main: the .pt2 computes with MODEL.WEIGHTS, not random ones."""
    cfg, model = _model("eigen_coarse")
    with torch.no_grad():
        model.head.coarse.fc2.bias.uniform_(-1, 1)  # weights a fresh build would not have
    weights = tmp_path / "model.pth"
    torch.save({"model": model.state_dict()}, weights)
    path, overrides = CASES["eigen_coarse"]
    argv = ["--config-file", str(ROOT / "configs" / path), "--format", "torch.export"]
    argv += ["--output", str(tmp_path / "out"), "--batch-size", "3"]
    argv += [str(v) for v in overrides] + ["MODEL.WEIGHTS", str(weights)]
    assert export_main(argv) == 0
    info = json.loads((tmp_path / "out" / "export_info.json").read_text())
    assert info["config_file"].endswith("eigen_coarse.yaml")
    assert info["weights"] == str(weights)
    assert info["programs"]["model"]["outputs"][0]["name"] == "depth"
    assert info["programs"]["model"]["check_batch_size"] == 4
    images = torch.rand(2, 3, 70, 90) * 255
    got = run_exported(tmp_path / "out" / "model.pt2", (images,), ["images"])
    with torch.no_grad():
        want = model([{"image": im, "height": 70, "width": 90} for im in images])
    torch.testing.assert_close(got["depth"], torch.stack([o["depth"] for o in want]))


def test_cli_rejects_unknown_format_and_batch_of_one(tmp_path, capsys):
    with pytest.raises(SystemExit):
        export_main(["--config-file", "x.yaml", "--format", "tflite", "--output", str(tmp_path)])
    assert "invalid choice: 'tflite'" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--batch-size must be >= 2"):
        export_main(["--config-file", "x.yaml", "--output", str(tmp_path), "--batch-size", "1"])
