"""Export a model's programs with ``torch.export`` or ONNX, check them against eager mode.

:func:`export_programs` lists what a model exports (:class:`ProgramSpec`: a tensor-only module,
sample inputs and the dynamic dimensions); :func:`export_model` writes each program, runs it on
fresh inputs of another batch size and compares its outputs with the eager model's
(:func:`eager_outputs`), and records everything in ``export_info.json``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from meshrecon.modeling.backbone import Backbone
from meshrecon.modeling.meta_arch.depth import DepthEstimator
from meshrecon.modeling.meta_arch.rcnn import GeneralizedRCNN
from meshrecon.modeling.meta_arch.single_view import SingleViewReconstructor
from meshrecon.structures import Boxes, Meshes

from .depth import DepthProgram
from .mesh_tensors import meshes_to_tensors
from .rcnn import RCNNBackboneProgram, RCNNBoxHeadProgram
from .single_view import SingleViewProgram

__all__ = [
    "FORMATS",
    "TOLERANCES",
    "ProgramSpec",
    "compare_outputs",
    "eager_outputs",
    "export_model",
    "export_programs",
]

logger = logging.getLogger(__name__)

FORMATS = ("torch.export", "onnx")

# (rtol, atol) of the equality check: a float output passes when
# max |exported - eager| <= atol + rtol * max |eager| (integer outputs must be equal). The
# exported program runs the same ATen kernels as eager mode, but some ops take another route
# (graph convolutions: index_add instead of a sparse CSR product; resizes and sums decomposed),
# which reorders float32 sums: ~1e-7 relative per op, ~1e-6 after a backbone and a few graph
# convolutions; 1e-5 leaves a factor of ten. ONNX Runtime has its own convolution kernels
# (other blockings and summation orders, some Winograd): 1e-4.
TOLERANCES = {"torch.export": (1e-5, 1e-5), "onnx": (1e-4, 1e-4)}

# Single-view images default to R2N2 / Mesh R-CNN ShapeNet renders: 137 x 137.
DEFAULT_SINGLE_VIEW_SIZE = (137, 137)


@dataclass
class ProgramSpec:
    """One program to export.

    Attributes:
        name: file stem (``model``, ``backbone``, ``box_head``).
        module: the tensor-only module (eval mode).
        make_inputs: ``batch_size -> tuple of input tensors`` (random, seeded by the caller).
        input_names: a name per input.
        dynamic: per input, ``{dim: name}`` of its dynamic dimensions (``batch``, ...).
        reference: ``inputs -> dict`` of the eager model's outputs in the program's form.
        notes: what is fixed and why, for ``export_info.json``.
        bounds: ``{dim name: (min, max)}`` of dynamic dimensions (default 1 .. 4096).
    """

    name: str
    module: nn.Module
    make_inputs: Callable[[int], tuple[torch.Tensor, ...]]
    input_names: list[str]
    dynamic: list[dict[int, str]]
    reference: Callable[..., dict[str, torch.Tensor]]
    notes: list[str] = field(default_factory=list)
    bounds: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def output_names(self) -> list[str]:
        return list(self.module.output_names)


def _random_images(n: int, size: Sequence[int]) -> torch.Tensor:
    return torch.rand(n, 3, int(size[0]), int(size[1])) * 255.0


def _single_view_spec(model: SingleViewReconstructor, image_size) -> ProgramSpec:
    size = tuple(image_size or DEFAULT_SINGLE_VIEW_SIZE)
    program = SingleViewProgram(model)
    K = model.default_K(size).cpu()

    def make_inputs(n: int) -> tuple[torch.Tensor, ...]:
        return _random_images(n, size), K.expand(n, 4).clone()

    def reference(images: torch.Tensor, K: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            outs = model([{"image": im, "K": k} for im, k in zip(images, K)])
        ref: dict[str, torch.Tensor] = {}
        if "voxels" in outs[0]:
            ref["voxels"] = torch.stack([o["voxels"] for o in outs])
        if "mesh" in outs[0]:
            meshes = Meshes(verts=[o["mesh"][0] for o in outs], faces=[o["mesh"][1] for o in outs])
            ref.update(meshes_to_tensors(meshes))
        if "points" in outs[0]:
            ref["points"] = torch.stack([o["points"] for o in outs])
        return ref

    notes = [
        f"image size fixed at {size[0]} x {size[1]}: the heads' cameras (K, the projection "
        "matrices) are in pixels of the exported size; the batch size is dynamic",
        "K: (N, 4) [fx, fy, cx, cy]; for R2N2 renders use default_K",
    ]
    if "mesh_verts" in program.output_names and model.voxel_head is not None:
        notes.append(
            "VoxMesh: the mesh sizes are data-dependent (cubify): mesh_verts / mesh_faces are "
            "padded to the batch's largest mesh"
        )
    return ProgramSpec(
        "model",
        program,
        make_inputs,
        ["images", "K"],
        [{0: "batch"}, {0: "batch"}],
        reference,
        notes,
    )


def _depth_spec(model: DepthEstimator, cfg, image_size) -> ProgramSpec:
    size = tuple(image_size or cfg.INPUT.DEPTH.BASE_SIZE or model.input_size)
    program = DepthProgram(model)

    def make_inputs(n: int) -> tuple[torch.Tensor, ...]:
        return (_random_images(n, size),)

    def reference(images: torch.Tensor) -> dict[str, torch.Tensor]:
        H, W = images.shape[-2:]
        with torch.no_grad():
            outs = model([{"image": im, "height": H, "width": W} for im in images])
        return {k: torch.stack([o[k] for o in outs]) for k in outs[0]}

    return ProgramSpec(
        "model",
        program,
        make_inputs,
        ["images"],
        [{0: "batch", 2: "height", 3: "width"}],
        reference,
        ["batch, height and width are dynamic; depth comes back at the input's size"],
    )


def _rcnn_specs(model: GeneralizedRCNN, cfg, image_size) -> list[ProgramSpec]:
    size = tuple(image_size or (cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST))
    backbone = RCNNBackboneProgram(model)

    def make_images(n: int) -> tuple[torch.Tensor, ...]:
        return (_random_images(n, size),)

    def backbone_reference(images: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            batch = model.preprocess_image([{"image": im} for im in images])
            features = model.backbone(batch.tensor)
            rpn = model.proposal_generator
            maps = [features[f] for f in rpn.in_features]
            logits, deltas = rpn.rpn_head(maps)
            anchors = rpn.anchor_generator(maps)
        out = {f"features_{f}": features[f] for f in backbone.feature_names}
        for name, lg, dl, an in zip(rpn.in_features, logits, deltas, anchors):
            out.update({f"rpn_objectness_{name}": lg, f"rpn_deltas_{name}": dl})
            out[f"anchors_{name}"] = an.tensor
        return out

    box = RCNNBoxHeadProgram(model)
    box_maps = box.in_features

    def make_box_inputs(n: int) -> tuple[torch.Tensor, ...]:
        # The maps of two images and n rois over both, sorted by image as the pooler's format
        # is, with a spread of sizes so that every pyramid level gets some.
        images = _random_images(2, size)
        with torch.no_grad():
            batch = model.preprocess_image([{"image": im} for im in images])
            feats = model.backbone(batch.tensor)
        H, W = size
        xy = torch.rand(n, 2) * torch.tensor([W * 0.7, H * 0.7])
        wh = torch.exp(torch.linspace(2.5, 5.5, n))[torch.randperm(n)][:, None].expand(n, 2)
        image_idx = (torch.arange(n) >= n // 2).float()[:, None]
        rois = torch.cat([image_idx, xy, xy + wh.clamp(max=min(H, W) * 0.3)], 1)
        return (*[feats[f].contiguous() for f in box_maps], rois)

    def box_reference(*args: torch.Tensor) -> dict[str, torch.Tensor]:
        *maps, rois = args
        heads = model.roi_heads
        per_image = [Boxes(rois[rois[:, 0] == i, 1:]) for i in range(maps[0].shape[0])]
        with torch.no_grad():
            pooled = heads.box_pooler(list(maps), per_image)
            logits, deltas = heads.box_predictor(heads.box_head(pooled))
        return {"class_logits": logits, "box_deltas": deltas}

    return [
        ProgramSpec(
            "backbone",
            backbone,
            make_images,
            ["images"],
            [{0: "batch", 2: "height", 3: "width"}],
            backbone_reference,
            [
                "batch, height and width are dynamic (padded inside to the size divisibility); "
                "height and width from 65 px: below, the coarsest maps have one cell and the "
                "tracer specializes their shapes"
            ],
            bounds={"height": (65, 4096), "width": (65, 4096)},
        ),
        ProgramSpec(
            "box_head",
            box,
            make_box_inputs,
            [f"features_{f}" for f in box_maps] + ["rois"],
            [{0: "images", 2: f"{f}_height", 3: f"{f}_width"} for f in box_maps]
            + [{0: "num_rois"}],
            box_reference,
            [
                "the number of rois, the batch and the maps' sizes are dynamic; the outputs "
                "follow the rois' order",
                "needs torchvision's operators at load time (torchvision::roi_align)",
            ],
            bounds={f"{f}_{d}": (2, 4096) for f in box_maps for d in ("height", "width")},
        ),
    ]


def export_programs(model: nn.Module, cfg, image_size: Sequence[int] | None = None):
    """Return the :class:`ProgramSpec` list of ``model`` (put in eval mode, its backbones in
    float32: ``MODEL.BACKBONE.AUTOCAST`` is for training and eager inference on this machine,
    and an exported file should not depend on the bfloat16 hardware of the one that made it).

    Args:
        model: a ``SingleViewReconstructor``, ``DepthEstimator`` or ``GeneralizedRCNN``.
        cfg: its config (sample sizes: ``INPUT.DEPTH.BASE_SIZE``, ``INPUT.MIN/MAX_SIZE_TEST``).
        image_size: (H, W) of the sample inputs, overriding the config's.

    Raises:
        ValueError: for another meta-architecture (named in the message).
    """
    model.eval()
    for module in model.modules():
        if isinstance(module, Backbone):
            module.autocast_dtype = None
    if isinstance(model, SingleViewReconstructor):
        return [_single_view_spec(model, image_size)]
    if isinstance(model, DepthEstimator):
        return [_depth_spec(model, cfg, image_size)]
    if isinstance(model, GeneralizedRCNN):
        return _rcnn_specs(model, cfg, image_size)
    raise ValueError(
        f"{type(model).__name__} cannot be exported; supported: SingleViewReconstructor, "
        "DepthEstimator, GeneralizedRCNN (backbone + RPN head, box head)"
    )


def eager_outputs(spec: ProgramSpec, inputs: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The eager model's outputs on ``inputs``, in the program's tensor form."""
    return spec.reference(*inputs)


def compare_outputs(
    got: dict[str, torch.Tensor],
    want: dict[str, torch.Tensor],
    rtol: float,
    atol: float,
) -> dict[str, float]:
    """Check ``got`` against ``want`` key by key; return the max absolute difference of each.

    Raises:
        AssertionError: on a missing key, a shape mismatch, an integer difference or a float
            difference beyond ``atol + rtol * max |want|`` (per output).
    """
    if set(got) != set(want):
        raise AssertionError(f"output keys differ: got {sorted(got)}, want {sorted(want)}")
    diffs = {}
    for key, ref in want.items():
        out = got[key]
        if tuple(out.shape) != tuple(ref.shape):
            raise AssertionError(f"{key}: shape {tuple(out.shape)}, want {tuple(ref.shape)}")
        if ref.is_floating_point():
            if ref.numel() == 0:
                diffs[key] = 0.0
                continue
            diffs[key] = float((out.double() - ref.double()).abs().max())
            # Relative to the output's largest magnitude: kernels that sum in another order
            # err in proportion to the values summed, not to each (possibly tiny) result.
            limit = atol + rtol * float(ref.double().abs().max())
            if not diffs[key] <= limit:
                raise AssertionError(
                    f"{key}: max |difference| {diffs[key]:.3g} beyond {limit:.3g} "
                    f"(atol={atol} + rtol={rtol} x max |output|)"
                )
        else:
            diffs[key] = float((out.long() - ref.long()).abs().max()) if ref.numel() else 0.0
            if diffs[key] != 0:
                raise AssertionError(f"{key}: integer outputs differ (max {diffs[key]})")
    return diffs


def _torch_dynamic_shapes(spec: ProgramSpec) -> dict[str, dict[int, Any]]:
    dims: dict[str, Any] = {}
    shapes = {}
    for name, dyn in zip(spec.input_names, spec.dynamic):
        entry = {}
        for axis, dim_name in dyn.items():
            if dim_name not in dims:
                low, high = spec.bounds.get(dim_name, (1, 4096))
                dims[dim_name] = torch.export.Dim(dim_name, min=low, max=high)
            entry[axis] = dims[dim_name]
        shapes[name] = entry
    return shapes


def export_torch(spec: ProgramSpec, inputs: Sequence[torch.Tensor]):
    """``torch.export.export`` of a spec (non-strict) with its dynamic dimensions."""
    module = spec.module
    shapes: Any = _torch_dynamic_shapes(spec)
    if isinstance(module, RCNNBoxHeadProgram):
        # forward(*args): dynamic shapes then go as one tuple for the varargs.
        shapes = {"args": tuple(shapes[n] for n in spec.input_names)}
    return torch.export.export(module, tuple(inputs), dynamic_shapes=shapes, strict=False)


def _onnx_available() -> tuple[bool, str]:
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        return False, "onnxscript is not installed: the TorchScript-based exporter is used"
    return True, "the dynamo-based exporter (torch.onnx.export(dynamo=True))"


def export_onnx(spec: ProgramSpec, inputs: Sequence[torch.Tensor], path: Path):
    """Write ``path`` with ``torch.onnx.export``.

    Returns:
        ``(which exporter was used, the ExportedProgram it converted or None)``.
    """
    dynamo, how = _onnx_available()
    if dynamo:
        ep = export_torch(spec, inputs)
        program = torch.onnx.export(
            ep,
            tuple(inputs),
            input_names=spec.input_names,
            output_names=spec.output_names,
            dynamo=True,
            external_data=False,
        )
        program.save(str(path))
        return how, ep
    if getattr(spec.module, "data_dependent_sizes", False):
        # Tracing records .item() results (the largest mesh) as constants: a wrong graph.
        raise RuntimeError(
            f"{type(spec.module.model).__name__} with data-dependent mesh sizes (VoxMesh) needs "
            "the dynamo-based ONNX exporter: pip install onnx onnxscript"
        )
    axes = {
        name: {axis: dim for axis, dim in dyn.items()}
        for name, dyn in zip(spec.input_names, spec.dynamic)
    }
    torch.onnx.export(
        spec.module,
        tuple(inputs),
        str(path),
        input_names=spec.input_names,
        output_names=spec.output_names,
        dynamic_axes=axes,
        dynamo=False,
    )
    return how, None


def _symbolic_outputs(ep, spec: ProgramSpec) -> list[dict]:
    """Outputs with their symbolic shapes: input dimensions by name (``batch``), sizes known
    only at run time as the tracer's ``u<k>`` symbols (e.g. VoxMesh's largest mesh)."""
    names: dict[str, str] = {}
    placeholders = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    for node_name, dyn in zip(ep.graph_signature.user_inputs, spec.dynamic):
        shape = placeholders[node_name].meta["val"].shape
        for axis, dim_name in dyn.items():
            names[str(shape[axis])] = dim_name
    output = next(n for n in ep.graph.nodes if n.op == "output")
    rows = []
    for name, node in zip(spec.output_names, output.args[0]):
        val = node.meta["val"]
        shape = [d if isinstance(d, int) else names.get(str(d), str(d)) for d in val.shape]
        rows.append({"name": name, "shape": shape, "dtype": str(val.dtype).replace("torch.", "")})
    return rows


def _describe(tensors: Sequence[torch.Tensor], names: Sequence[str], dynamic=None) -> list[dict]:
    rows = []
    for i, (name, t) in enumerate(zip(names, tensors)):
        dyn = dynamic[i] if dynamic else {}
        shape = [dyn.get(axis, int(s)) for axis, s in enumerate(t.shape)]
        rows.append({"name": name, "shape": shape, "dtype": str(t.dtype).replace("torch.", "")})
    return rows


def export_model(
    model: nn.Module,
    cfg,
    output_dir: str | Path,
    fmt: str = "torch.export",
    *,
    image_size: Sequence[int] | None = None,
    batch_size: int = 2,
    check_batch_size: int = 3,
    check: bool = True,
    seed: int = 0,
    extra_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Export every program of ``model`` into ``output_dir`` and check it against eager mode.

    Writes ``<program>.pt2`` (``fmt="torch.export"``) or ``<program>.onnx`` and
    ``export_info.json`` (inputs, outputs, dynamic dimensions, tolerances, measured
    differences, notes).

    Args:
        model: see :func:`export_programs`.
        cfg: the model's config.
        output_dir: created if needed.
        fmt: ``"torch.export"`` or ``"onnx"``.
        image_size: (H, W) of the sample inputs (default: from the config).
        batch_size: batch of the tracing inputs (>= 2: a batch of 1 would be fixed).
        check_batch_size: batch of the check inputs (another size exercises the dynamic batch).
        check: run the check (for ONNX only when ``onnxruntime`` is installed).
        seed: seed of the random sample inputs.
        extra_info: more entries for ``export_info.json`` (e.g. the config file).

    Returns:
        The ``export_info.json`` contents.

    Raises:
        ValueError: an unknown ``fmt`` or model.
        AssertionError: an exported program whose outputs differ from eager mode's.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if batch_size < 2:
        # torch.export takes a dimension that is 1 in the sample inputs for a constant.
        raise ValueError(f"batch_size must be >= 2 to export a dynamic batch, got {batch_size}")
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rtol, atol = TOLERANCES[fmt]
    info: dict[str, Any] = {
        "format": fmt,
        "torch": torch.__version__,
        "input_format": cfg.INPUT.FORMAT,
        "meta_architecture": type(model).__name__,
        "weights": cfg.MODEL.WEIGHTS,
        "tolerance": {"rtol": rtol, "atol": atol},
        **(extra_info or {}),
        "programs": {},
    }
    torch.manual_seed(seed)
    for spec in export_programs(model, cfg, image_size):
        inputs = spec.make_inputs(batch_size)
        start = time.perf_counter()
        entry: dict[str, Any] = {"notes": spec.notes}
        if fmt == "torch.export":
            path = out_dir / f"{spec.name}.pt2"
            ep = export_torch(spec, inputs)
            torch.export.save(ep, str(path))
        else:
            path = out_dir / f"{spec.name}.onnx"
            entry["exporter"], ep = export_onnx(spec, inputs, path)
        entry["file"] = path.name
        entry["export_seconds"] = round(time.perf_counter() - start, 2)
        entry["inputs"] = _describe(inputs, spec.input_names, spec.dynamic)
        if check:
            check_inputs = spec.make_inputs(check_batch_size)
            want = eager_outputs(spec, check_inputs)
            got = run_exported(path, check_inputs, spec.input_names)
            if got is None:
                entry["check"] = "skipped: onnxruntime is not installed"
            else:
                entry["max_abs_diff"] = compare_outputs(got, want, rtol, atol)
                entry["check_batch_size"] = check_batch_size
        if ep is not None:
            entry["outputs"] = _symbolic_outputs(ep, spec)
        else:
            with torch.no_grad():
                example = spec.module(*inputs)
            entry["outputs"] = _describe(list(example.values()), list(example))
        info["programs"][spec.name] = entry
        logger.info("exported %s in %.1f s", path, entry["export_seconds"])
    (out_dir / "export_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def run_exported(
    path: str | Path, inputs: Sequence[torch.Tensor], input_names: Sequence[str]
) -> dict[str, torch.Tensor] | None:
    """Run an exported ``.pt2`` or ``.onnx`` file; None for ONNX without ``onnxruntime``."""
    path = Path(path)
    if path.suffix == ".pt2":
        with torch.no_grad():
            return dict(torch.export.load(str(path)).module()(*inputs))
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # The TorchScript-based exporter drops inputs that the graph does not use (PSGN's K).
    wanted = {i.name for i in session.get_inputs()}
    feed = {name: t.numpy() for name, t in zip(input_names, inputs) if name in wanted}
    names = [o.name for o in session.get_outputs()]
    return {n: torch.from_numpy(v) for n, v in zip(names, session.run(names, feed))}
