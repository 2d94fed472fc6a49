#!/usr/bin/env python
"""Record Mesh R-CNN's training objective and evaluators with the original code.

Runs only where the original PyTorch3D, Detectron2 and Mesh R-CNN are installed (README.md in
this folder says how to build them); meshrecon is not imported. Writes into ``--output``
(default: ``tests/data/golden/meshrcnn_training``):

- ``pix3d_inputs.pt``: fixed FPN features (2 images, 8 channels, p2-p6), fixed proposals and
  fixed ground truth (boxes, classes, masks, K, dz, voxels as camera-frame points, meshes).
- ``pix3d_<config>.pt`` for the Pix3D configs (Mesh R-CNN, Sphere-Init, Pixel2Mesh+,
  Voxel-only; released structure, narrow widths): the ROI heads' weights; which proposals
  Detectron2's sampler kept; the surface samples drawn (packed face indices and barycentric
  weights, per call); every loss term; the gradient of their sum with respect to every head
  parameter and every feature map. ``pix3d_meshrcnn.pt`` also holds the RPN's (weights,
  sampled anchors, losses, gradients).
- ``shapenet_<config>.pt`` for voxmesh / sphereinit / pixel2mesh: the heads' weights, fixed
  features, GT points / normals / voxels, the draws, every (unweighted) loss term, the total
  loss and its gradients.
- ``pix3d_eval.pt`` (+ the small dataset ``pix3d_eval/``) and ``shapenet_eval.pt``: see
  ``_evaluation.py``.

Everything runs in float64 (``_originals.float64_originals``) and on CPU.

    python tools/golden/record_training.py [--output DIR]
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _originals import (  # noqa: E402
    capture_samples,
    check_originals_importable,
    default_dtype,
    float64_originals,
)

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "tests" / "data" / "golden" / "meshrcnn" / "manifests"
PROVENANCE = (
    "Recorded by tools/golden/record_training.py with facebookresearch/meshrcnn {meshrcnn}, "
    "Detectron2 {detectron2} and PyTorch3D {pytorch3d} (commits in tools/golden/README.md), "
    "CPU, float64 (float32 guards relaxed as that README says)."
)

# Narrow versions of the released Pix3D configs: same structure, small widths and counts.
PIX3D_OVERRIDES = [
    ("MODEL.RPN.BATCH_SIZE_PER_IMAGE", 32),
    ("MODEL.RPN.PRE_NMS_TOPK_TRAIN", 200),
    ("MODEL.RPN.POST_NMS_TOPK_TRAIN", 50),
    ("MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 16),
    ("MODEL.ROI_BOX_HEAD.FC_DIM", 16),
    ("MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION", 4),
    ("MODEL.ROI_MASK_HEAD.CONV_DIM", 8),
    ("MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION", 6),
    ("MODEL.ROI_Z_HEAD.FC_DIM", 16),
    ("MODEL.ROI_Z_HEAD.POOLER_RESOLUTION", 4),
    ("MODEL.ROI_VOXEL_HEAD.CONV_DIM", 8),
    ("MODEL.ROI_VOXEL_HEAD.POOLER_RESOLUTION", 4),
    ("MODEL.ROI_VOXEL_HEAD.NUM_DEPTH", 8),
    ("MODEL.ROI_MESH_HEAD.GRAPH_CONV_DIM", 8),
    ("MODEL.ROI_MESH_HEAD.POOLER_RESOLUTION", 4),
    ("MODEL.ROI_MESH_HEAD.GT_NUM_SAMPLES", 48),
    ("MODEL.ROI_MESH_HEAD.PRED_NUM_SAMPLES", 48),
]
PIX3D_CONFIGS = {
    "meshrcnn": [],
    "sphereinit": [("MODEL.ROI_MESH_HEAD.ICO_SPHERE_LEVEL", 2)],
    "pixel2mesh": [("MODEL.ROI_MESH_HEAD.ICO_SPHERE_LEVEL", 1)],
    "voxelrcnn": [],
}
CHANNELS = 8
STRIDES = {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
IMAGE_HW = (64, 96)
FOCAL = 70.0
# (class, pixel centre (u, v), depth, radius) of each object, per image.
OBJECTS = [
    [(2, (26.0, 30.0), 3.0, 0.45), (6, (66.0, 34.0), 3.4, 0.6)],
    [(0, (46.0, 30.0), 2.5, 0.55)],
]


# ------------------------------------------------------------------------------ inputs
def _rotation(gen: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=gen))
    q = q * torch.sign(torch.diagonal(r))[None]
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _project(X: torch.Tensor) -> torch.Tensor:
    """Camera points -> pixels, Mesh R-CNN's convention (u = W/2 - 1 - f X / Z, +X left)."""
    H, W = IMAGE_HW
    u = W / 2.0 - 1.0 - FOCAL * X[:, 0] / X[:, 2]
    v = H / 2.0 - 1.0 - FOCAL * X[:, 1] / X[:, 2]
    return torch.stack([u, v], dim=1)


def _object(gen, center, depth, radius):
    from pytorch3d.utils import ico_sphere

    sphere = ico_sphere(1)
    verts = sphere.verts_packed().double()
    faces = sphere.faces_packed()
    verts = verts * (1.0 + 0.15 * torch.randn(verts.shape[0], 1, generator=gen))
    scale = radius * (0.7 + 0.6 * torch.rand(3, generator=gen))
    R = _rotation(gen)
    H, W = IMAGE_HW
    t = torch.tensor(
        [
            (W / 2.0 - 1.0 - center[0]) * depth / FOCAL,
            (H / 2.0 - 1.0 - center[1]) * depth / FOCAL,
            depth,
        ]
    )
    verts = (verts * scale) @ R.T + t
    g = torch.linspace(-1.0, 1.0, 9)
    grid = torch.stack(torch.meshgrid(g, g, g, indexing="ij"), dim=-1).reshape(-1, 3)
    grid = grid[grid.norm(dim=1) <= 1.0]
    voxels = (grid * scale) @ R.T + t
    uv = _project(verts)
    box = torch.cat([uv.min(0).values, uv.max(0).values])
    z = verts[:, 2]
    dz = (z.max() - z.min()) / ((z.max() + z.min()) / 2.0) * FOCAL
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    rx, ry = (box[2] - box[0]) / 2, (box[3] - box[1]) / 2
    mask = (((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1.0).to(torch.uint8)
    return box, verts, faces, voxels, dz, mask


def _jitter(gen, box, n, frac):
    w, h = box[2] - box[0], box[3] - box[1]
    noise = (torch.rand(n, 4, generator=gen) * 2 - 1) * frac
    return box[None] + noise * torch.stack([w, h, w, h])[None]


def make_pix3d_inputs() -> dict:
    """Features, proposals and ground truth of two images (deterministic)."""
    gen = torch.Generator().manual_seed(18)
    H, W = IMAGE_HW
    # float32 values (stored as float32, run in float64): the records stay small and exact.
    features = {
        name: torch.randn(
            2, CHANNELS, math.ceil(H / s), math.ceil(W / s), generator=gen, dtype=torch.float32
        )
        for name, s in STRIDES.items()
    }
    targets, proposals = [], []
    for objects in OBJECTS:
        t = {
            k: [] for k in ("gt_boxes", "gt_classes", "gt_masks", "gt_dz", "gt_voxels", "gt_meshes")
        }
        props = []
        for cls, center, depth, radius in objects:
            box, verts, faces, voxels, dz, mask = _object(gen, center, depth, radius)
            t["gt_boxes"].append(box)
            t["gt_classes"].append(cls)
            t["gt_masks"].append(mask)
            t["gt_dz"].append(dz)
            t["gt_voxels"].append(voxels)
            t["gt_meshes"].append((verts, faces))
            props.append(_jitter(gen, box, 3, 0.15))
        n_rand = 5
        xy = torch.rand(n_rand, 2, generator=gen) * torch.tensor([W - 24.0, H - 20.0])
        wh = 10.0 + torch.rand(n_rand, 2, generator=gen) * 24.0
        props.append(torch.cat([xy, xy + wh], dim=1))
        boxes = torch.cat(props)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, W)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, H)
        proposals.append(
            {"boxes": boxes, "objectness_logits": torch.randn(boxes.shape[0], generator=gen)}
        )
        n = len(objects)
        targets.append(
            {
                "gt_boxes": torch.stack(t["gt_boxes"]),
                "gt_classes": torch.tensor(t["gt_classes"], dtype=torch.int64),
                "gt_masks": torch.stack(t["gt_masks"]),
                "gt_K": torch.tensor([[FOCAL, W / 2.0, H / 2.0]] * n),
                "gt_dz": torch.stack(t["gt_dz"]),
                "gt_voxels": t["gt_voxels"],
                "gt_meshes": t["gt_meshes"],
            }
        )
    return {
        "image_sizes": [IMAGE_HW, IMAGE_HW],
        "strides": dict(STRIDES),
        "features": features,
        "proposals": proposals,
        "targets": targets,
    }


# ------------------------------------------------------------------------------ models
def pix3d_cfg(name: str, overrides):
    from detectron2.config import get_cfg
    from meshrcnn.config import get_meshrcnn_cfg_defaults

    cfg = get_cfg()
    get_meshrcnn_cfg_defaults(cfg)
    cfg.merge_from_file(str(MANIFESTS / f"pix3d_{name}_R50_FPN.yaml"))
    cfg.merge_from_list([x for kv in overrides for x in kv])
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def randomize(module: torch.nn.Module, gen: torch.Generator, offset_scale: float = 0.1) -> None:
    """Seeded weights, N(0, 1/fan_in) for weights and N(0, 0.1) for biases, with float32 values
    (stored as float32, exact in the float64 run). The vertex-offset layers get ``offset_scale``
    of that, so that their tanh is not saturated (a saturated tanh passes no gradient), and the
    graph convolutions, which sum about six neighbours, a third."""
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            std = 1.0 / math.sqrt(p[0].numel()) if p.dim() > 1 else 0.1
            if "offset" in name:
                std *= offset_scale
            elif "gconvs" in name:
                std /= 3.0
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * std)


def _float32(tensors: dict) -> dict:
    """Weights / gradients for storage: float32 (weights are float32 values; gradients lose at
    most 2^-24 of their value, far below the tests' 1e-6)."""
    return {k: (v.detach().float() if v is not None else None) for k, v in tensors.items()}


def _packbits(x: torch.Tensor) -> dict:
    """A 0/1 tensor as numpy packbits over its last axis (small records)."""
    import numpy as np

    return {
        "shape": list(x.shape),
        "bits": torch.from_numpy(np.packbits(x.bool().numpy(), axis=-1)),
    }


def _instances(image_size, fields: dict, boxes_fields=("gt_boxes",)):
    from detectron2.structures import Boxes, Instances
    from meshrcnn.structures import MeshInstances, VoxelInstances

    inst = Instances(image_size)
    for key, value in fields.items():
        if key in boxes_fields:
            value = Boxes(value)
        elif key == "gt_meshes":
            value = MeshInstances([(v, f) for v, f in value])
        elif key == "gt_voxels":
            value = VoxelInstances(list(value))
        elif key == "gt_masks":
            value = value.double()
        inst.set(key, value)
    return inst


class _SubsampleRecorder:
    """Wrap Detectron2's ``subsample_labels`` in a module; keep its inputs and outputs."""

    def __init__(self, module) -> None:
        self.module, self.calls = module, []
        self.original = module.subsample_labels

    def __enter__(self):
        def recording(labels, num_samples, positive_fraction, bg_label):
            pos, neg = self.original(labels, num_samples, positive_fraction, bg_label)
            self.calls.append({"labels": labels.clone(), "pos": pos.clone(), "neg": neg.clone()})
            return pos, neg

        self.module.subsample_labels = recording
        return self.calls

    def __exit__(self, *exc) -> None:
        self.module.subsample_labels = self.original


def _grads(total, named_params, features: dict) -> dict:
    names = [n for n, _ in named_params] + [f"features.{k}" for k in features]
    tensors = [p for _, p in named_params] + list(features.values())
    grads = torch.autograd.grad(total, tensors, allow_unused=True)
    return {n: (g.detach() if g is not None else None) for n, g in zip(names, grads)}


def record_pix3d(name: str, inputs: dict, seed: int) -> dict:
    d2_rpn = importlib.import_module("detectron2.modeling.proposal_generator.rpn")
    d2_roi_heads = importlib.import_module("detectron2.modeling.roi_heads.roi_heads")
    mr_mesh_head = importlib.import_module("meshrcnn.modeling.roi_heads.mesh_head")
    from detectron2.layers import ShapeSpec
    from detectron2.modeling import build_proposal_generator, build_roi_heads
    from detectron2.structures import ImageList
    from detectron2.utils.events import EventStorage

    torch.manual_seed(seed)  # Detectron2's sampling and PyTorch3D's draw from the global RNG
    overrides = PIX3D_OVERRIDES + PIX3D_CONFIGS[name]
    cfg = pix3d_cfg(name, overrides)
    shapes = {k: ShapeSpec(channels=CHANNELS, stride=s) for k, s in inputs["strides"].items()}
    gen = torch.Generator().manual_seed(seed)
    roi_heads = build_roi_heads(cfg, shapes).double()
    randomize(roi_heads, gen)
    if cfg.MODEL.VOXEL_ON:
        # Centre the voxel logits near the cubify threshold so that the cubified meshes have
        # holes and varying topology rather than filling the grid.
        with torch.no_grad():
            roi_heads.voxel_head.predictor.bias.add_(-1.2)
    roi_heads.train()
    image_sizes = [tuple(s) for s in inputs["image_sizes"]]
    H, W = image_sizes[0]
    images = ImageList(torch.zeros(2, 3, H, W), image_sizes)
    features = {k: v.double().requires_grad_(True) for k, v in inputs["features"].items()}
    proposals = []
    for size, p in zip(image_sizes, inputs["proposals"]):
        inst = _instances(size, {"proposal_boxes": p["boxes"]}, boxes_fields=("proposal_boxes",))
        inst.objectness_logits = p["objectness_logits"]
        proposals.append(inst)
    targets = [_instances(size, t) for size, t in zip(image_sizes, inputs["targets"])]

    out = {
        "config": f"pix3d_{name}_R50_FPN",
        "overrides": [list(kv) for kv in overrides],
        "roi_heads_state_dict": _float32(roi_heads.state_dict()),
    }
    # The voxel head's targets: Mesh R-CNN fits the box frustum with a float SVD, whose
    # rounding moves the far-plane voxels to either of two cells (see the tests).
    mr_roi_heads = importlib.import_module("meshrcnn.modeling.roi_heads.roi_heads")
    voxel_loss, voxel_targets = mr_roi_heads.voxel_rcnn_loss, []

    def recording_voxel_loss(*args, **kwargs):
        loss, target = voxel_loss(*args, **kwargs)
        voxel_targets.append(target.detach().clone())
        return loss, target

    mr_roi_heads.voxel_rcnn_loss = recording_voxel_loss
    try:
        with (
            EventStorage(),
            _SubsampleRecorder(d2_roi_heads) as sampled,
            capture_samples([mr_mesh_head]) as draws,
        ):
            sampled_props, losses = roi_heads(images, features, proposals, targets)
    finally:
        mr_roi_heads.voxel_rcnn_loss = voxel_loss
    del sampled_props  # MeshRCNNROIHeads returns [] in training
    total = sum(losses.values())
    out["roi_sampling"] = sampled
    out["mesh_draws"] = draws
    if voxel_targets:
        out["voxel_targets"] = _packbits(voxel_targets[0])
    out["roi_losses"] = {k: v.detach() for k, v in losses.items()}
    in_feats = {k: features[k] for k in cfg.MODEL.ROI_HEADS.IN_FEATURES}
    out["roi_grads"] = _float32(_grads(total, list(roi_heads.named_parameters()), in_feats))

    if name == "meshrcnn":
        rpn = build_proposal_generator(cfg, shapes).double()
        randomize(rpn, gen)
        rpn.train()
        gt = [
            _instances(size, {"gt_boxes": t["gt_boxes"]})
            for size, t in zip(image_sizes, inputs["targets"])
        ]
        for inst, t in zip(gt, inputs["targets"]):
            inst.gt_classes = t["gt_classes"]
        with EventStorage(), _SubsampleRecorder(d2_rpn) as rpn_sampled:
            _, rpn_losses = rpn(images, features, gt)
        out["rpn_state_dict"] = _float32(rpn.state_dict())
        out["rpn_sampling"] = rpn_sampled
        out["rpn_losses"] = {k: v.detach() for k, v in rpn_losses.items()}
        rpn_feats = {k: features[k] for k in cfg.MODEL.RPN.IN_FEATURES}
        out["rpn_grads"] = _float32(
            _grads(sum(rpn_losses.values()), list(rpn.named_parameters()), rpn_feats)
        )
    return out


# ------------------------------------------------------------------------------ ShapeNet
SHAPENET_OVERRIDES = [
    ("MODEL.VOXEL_HEAD.VOXEL_SIZE", 8),
    ("MODEL.VOXEL_HEAD.CONV_DIM", 8),
    ("MODEL.MESH_HEAD.GRAPH_CONV_DIM", 8),
    ("MODEL.MESH_HEAD.GT_NUM_SAMPLES", 48),
    ("MODEL.MESH_HEAD.PRED_NUM_SAMPLES", 48),
]
SHAPENET_CONFIGS = {
    "voxmesh": [],
    # The released ShapeNet configs weigh the normal loss 0; one record turns it on.
    "sphereinit": [
        ("MODEL.MESH_HEAD.ICO_SPHERE_LEVEL", 2),
        ("MODEL.MESH_HEAD.NORMALS_LOSS_WEIGHT", 0.1),
    ],
    "pixel2mesh": [("MODEL.MESH_HEAD.ICO_SPHERE_LEVEL", 1)],
}
SHAPENET_FEATURE_SIZES = [16, 8, 4, 2]
SHAPENET_POINTS = 48


class _FixedFeatures(torch.nn.Module):
    """Stands in for the ShapeNet backbone: returns the given feature maps."""

    def __init__(self, feats) -> None:
        super().__init__()
        self.feats = feats

    def forward(self, imgs):
        return self.feats


def make_shapenet_inputs() -> dict:
    gen = torch.Generator().manual_seed(1818)
    N = 2
    feats = [
        torch.randn(N, CHANNELS, s, s, generator=gen, dtype=torch.float32)
        for s in SHAPENET_FEATURE_SIZES
    ]
    # GT surface samples of an ellipsoid in front of the (OpenGL, -Z forward) camera, with
    # exact normals, as Mesh R-CNN's ShapeNet loader hands precomputed samples.
    d = torch.randn(N, SHAPENET_POINTS, 3, generator=gen)
    d = d / d.norm(dim=2, keepdim=True)
    axes = 0.15 + 0.2 * torch.rand(N, 1, 3, generator=gen)
    centre = torch.tensor([0.0, 0.0, -1.4]) + 0.05 * torch.randn(N, 1, 3, generator=gen)
    points = d * axes + centre
    normals = d / axes
    normals = normals / normals.norm(dim=2, keepdim=True)
    return {
        "features": feats,
        "points": points,
        "normals": normals,
        "voxels": torch.rand(N, 8, 8, 8, generator=gen) > 0.6,
    }


def shapenet_cfg(name: str, overrides):
    from shapenet.config import get_shapenet_cfg

    cfg = get_shapenet_cfg()
    # The manifest holds keys the model computes at construction (COMPUTED_INPUT_CHANNELS).
    cfg.set_new_allowed(True)
    cfg.merge_from_file(str(MANIFESTS / f"shapenet_{name}_R50.yaml"))
    cfg.merge_from_list([x for kv in overrides for x in kv])
    for head in (cfg.MODEL.VOXEL_HEAD, cfg.MODEL.MESH_HEAD):
        head.pop("COMPUTED_INPUT_CHANNELS", None)  # recomputed for the narrow features
    return cfg


def record_shapenet(name: str, inputs: dict, seed: int) -> dict:
    sn_mesh_loss = importlib.import_module("shapenet.modeling.heads.mesh_loss")
    mesh_arch = importlib.import_module("shapenet.modeling.mesh_arch")
    from shapenet.modeling import MeshLoss

    torch.manual_seed(seed)
    overrides = SHAPENET_OVERRIDES + SHAPENET_CONFIGS[name]
    cfg = shapenet_cfg(name, overrides)
    original_build = mesh_arch.build_backbone
    mesh_arch.build_backbone = lambda _name: (torch.nn.Identity(), [CHANNELS] * 4)
    try:
        model = mesh_arch.build_model(cfg)
    finally:
        mesh_arch.build_backbone = original_build
    model = model.double()
    gen = torch.Generator().manual_seed(seed)
    # The ShapeNet stages see projected positions (up to ~1/eps = 10 for a sphere around the
    # camera): smaller offset weights keep their tanh away from saturation.
    randomize(model, gen, offset_scale=0.01)
    if cfg.MODEL.VOXEL_ON:
        with torch.no_grad():
            model.voxel_head.predictor.bias.add_(-1.2)
    features = [f.double().requires_grad_(True) for f in inputs["features"]]
    model.backbone = _FixedFeatures(features)
    model.train()
    m = cfg.MODEL.MESH_HEAD
    loss_fn = MeshLoss(
        chamfer_weight=m.CHAMFER_LOSS_WEIGHT,
        normal_weight=m.NORMALS_LOSS_WEIGHT,
        edge_weight=m.EDGE_LOSS_WEIGHT,
        voxel_weight=cfg.MODEL.VOXEL_HEAD.LOSS_WEIGHT,
        gt_num_samples=m.GT_NUM_SAMPLES,
        pred_num_samples=m.PRED_NUM_SAMPLES,
    )
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    imgs = torch.zeros(2, 3, 8, 8)
    with capture_samples([sn_mesh_loss]) as draws:
        voxel_scores, meshes_pred = model(imgs)
        total, losses = loss_fn(
            voxel_scores,
            meshes_pred,
            inputs["voxels"].double(),
            (inputs["points"], inputs["normals"]),
        )
    named = [(n, p) for n, p in model.named_parameters() if not n.startswith("backbone")]
    feats = {f"res{i + 2}": f for i, f in enumerate(features)}
    return {
        "config": f"shapenet_{name}_R50",
        "overrides": [list(kv) for kv in overrides],
        "state_dict": _float32(
            {k: v for k, v in state.items() if k.startswith(("voxel_head.", "mesh_head."))}
        ),
        "loss_weights": {
            "chamfer": m.CHAMFER_LOSS_WEIGHT,
            "normals": m.NORMALS_LOSS_WEIGHT,
            "edge": m.EDGE_LOSS_WEIGHT,
            "voxel": cfg.MODEL.VOXEL_HEAD.LOSS_WEIGHT,
        },
        "mesh_draws": draws,
        "losses": {k: v.detach() for k, v in losses.items()},
        "total_loss": total.detach(),
        "grads": _float32(_grads(total, named, feats)),
    }


# ------------------------------------------------------------------------------ main
def _versions() -> dict:
    import detectron2
    import pytorch3d

    return {
        "meshrcnn": "(latest commit)",
        "detectron2": detectron2.__version__,
        "pytorch3d": pytorch3d.__version__,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--output", default=str(REPO / "tests" / "data" / "golden" / "meshrcnn_training")
    )
    parser.add_argument(
        "--only", nargs="*", default=None, help="parts: pix3d shapenet pix3d_eval shapenet_eval"
    )
    args = parser.parse_args(argv)
    check_originals_importable()
    float64_originals()
    torch.set_num_threads(1)
    os.makedirs(args.output, exist_ok=True)
    parts = set(args.only or ["pix3d", "shapenet", "pix3d_eval", "shapenet_eval"])
    provenance = PROVENANCE.format(**_versions())

    def save(name: str, record: dict) -> None:
        record["provenance"] = provenance
        path = os.path.join(args.output, name)
        torch.save(record, path)
        print(f"wrote {path} ({os.path.getsize(path) / 1024:.0f} KiB)")

    with default_dtype(torch.float64):
        if "pix3d" in parts:
            inputs = make_pix3d_inputs()
            save("pix3d_inputs.pt", dict(inputs))
            for i, name in enumerate(PIX3D_CONFIGS):
                save(f"pix3d_{name}.pt", record_pix3d(name, inputs, seed=100 + i))
        if "shapenet" in parts:
            inputs = make_shapenet_inputs()
            save("shapenet_inputs.pt", dict(inputs))
            for i, name in enumerate(SHAPENET_CONFIGS):
                save(f"shapenet_{name}.pt", record_shapenet(name, inputs, seed=200 + i))
    if parts & {"pix3d_eval", "shapenet_eval"}:
        import _evaluation

        if "pix3d_eval" in parts:
            save("pix3d_eval.pt", _evaluation.record_pix3d_eval(args.output))
        if "shapenet_eval" in parts:
            with default_dtype(torch.float64):
                save("shapenet_eval.pt", _evaluation.record_shapenet_eval())


if __name__ == "__main__":
    main()
