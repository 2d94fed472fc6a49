"""MeshRCNNROIHeads: training losses of every variant, inference fields, frustum targets."""

from __future__ import annotations

import pytest
import torch

from meshrecon.config import get_cfg
from meshrecon.modeling import build_model
from meshrecon.modeling.roi_heads.box_frustum import (
    camera_to_box_frustum,
    crop_meshes_within_boxes,
    crop_voxels_within_boxes,
)
from meshrecon.modeling.roi_heads.mask_head import crop_masks_meshrcnn, mask_rcnn_loss
from meshrecon.ops import ico_sphere
from meshrecon.structures import Boxes, Instances
from meshrecon.structures.masks import BitMasks
from meshrecon.structures.shape_instances import MeshInstances, VoxelInstances
from meshrecon.utils.events import EventStorage

H, W = 64, 96
F = 60.0


def _cfg(variant: str):
    """The Pix3D structure (R50-FPN) at a tiny width (1/16, FPN 16 channels)."""
    cfg = get_cfg()
    cfg.merge_from_file("configs/pix3d/Base-MeshRCNN-FPN.yaml")
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 4
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = 8
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 16
    cfg.MODEL.FPN.OUT_CHANNELS = 16
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 32
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 8
    cfg.MODEL.ROI_Z_HEAD.FC_DIM = 16
    cfg.MODEL.ROI_VOXEL_HEAD.CONV_DIM = 8
    cfg.MODEL.ROI_VOXEL_HEAD.NUM_CONV = 1
    cfg.MODEL.ROI_VOXEL_HEAD.POOLER_RESOLUTION = 6
    cfg.MODEL.ROI_VOXEL_HEAD.NUM_DEPTH = 12
    cfg.MODEL.ROI_VOXEL_HEAD.CLS_AGNOSTIC_VOXEL = True
    cfg.MODEL.ROI_VOXEL_HEAD.CUBIFY_THRESH = 0.2
    cfg.MODEL.ROI_MESH_HEAD.NUM_STAGES = 2
    cfg.MODEL.ROI_MESH_HEAD.NUM_GRAPH_CONVS = 1
    cfg.MODEL.ROI_MESH_HEAD.GRAPH_CONV_DIM = 8
    cfg.MODEL.ROI_MESH_HEAD.GT_NUM_SAMPLES = 200
    cfg.MODEL.ROI_MESH_HEAD.PRED_NUM_SAMPLES = 200
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 16
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 50
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 20
    cfg.TEST.DETECTIONS_PER_IMAGE = 3
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    cfg.MODEL.VOXEL_ON = variant in ("meshrcnn", "voxelrcnn")
    cfg.MODEL.MESH_ON = variant != "voxelrcnn"
    if variant == "sphereinit":
        cfg.MODEL.ROI_MESH_HEAD.ICO_SPHERE_LEVEL = 1
    if variant == "pixel2mesh":
        cfg.MODEL.ROI_MESH_HEAD.NAME = "MeshRCNNGraphConvSubdHead"
        cfg.MODEL.ROI_MESH_HEAD.ICO_SPHERE_LEVEL = 0
    return cfg


def _sample():
    """One image with a sphere of radius 0.3 at depth 2.5 and its box, mask, mesh, voxels."""
    sphere = ico_sphere(2)
    verts = sphere.verts_packed() * 0.3 + torch.tensor([0.2, 0.1, 2.5])
    K = torch.tensor([[F, W / 2, H / 2]])
    u = W - 1 - K[0, 1] - F * verts[:, 0] / verts[:, 2]
    v = H - 1 - K[0, 2] - F * verts[:, 1] / verts[:, 2]
    box = torch.stack([u.min(), v.min(), u.max(), v.max()])[None]
    mask = torch.zeros(1, H, W, dtype=torch.bool)
    x0, y0, x1, y1 = box[0].round().long().tolist()
    mask[0, y0:y1, x0:x1] = True
    image = torch.rand(3, H, W, generator=torch.Generator().manual_seed(0)) * 50
    image[:, mask[0]] += 150
    inst = Instances((H, W))
    inst.gt_boxes = Boxes(box)
    inst.gt_classes = torch.tensor([2])
    inst.gt_masks = BitMasks(mask)
    inst.gt_meshes = MeshInstances([(verts, sphere.faces_packed())])
    inst.gt_voxels = VoxelInstances([verts])
    inst.gt_K = K
    z = verts[:, 2]
    inst.gt_dz = ((z.max() - z.min()) / ((z.max() + z.min()) / 2) * F)[None]
    return {"image": image, "height": H, "width": W, "instances": inst}


@pytest.mark.parametrize("variant", ["meshrcnn", "voxelrcnn", "sphereinit", "pixel2mesh"])
def test_training_losses_and_inference(variant):
    torch.manual_seed(0)
    model = build_model(_cfg(variant))
    model.train()
    with EventStorage():
        losses = model([_sample()])
    expected = {"loss_cls", "loss_box_reg", "loss_mask", "loss_z_reg", "loss_rpn_cls"}
    if variant in ("meshrcnn", "voxelrcnn"):
        expected.add("loss_voxel")
    if variant != "voxelrcnn":
        expected |= {"loss_chamfer", "loss_normals", "loss_edge"}
    assert expected <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    heads = model.roi_heads
    if variant != "voxelrcnn":
        grad = heads.mesh_head.stages[-1].verts_offset.weight.grad
        assert grad is not None and grad.abs().sum() > 0
    if variant in ("meshrcnn", "voxelrcnn"):
        assert heads.voxel_head.predictor.weight.grad.abs().sum() > 0
    assert heads.z_head.z_pred.weight.grad.abs().sum() > 0

    model.eval()
    with torch.no_grad():
        sample = _sample()
        inst = model([{k: sample[k] for k in ("image", "height", "width")}])[0]["instances"]
    assert len(inst) == 3
    assert inst.pred_dz.shape == (3, 1) and bool((inst.pred_dz > 0).all())
    assert len(inst.pred_meshes) == 3
    if variant in ("meshrcnn", "voxelrcnn"):
        assert inst.pred_voxels.shape == (3, 1, 12, 12, 12)
    if variant == "sphereinit":
        assert all(v.shape[0] == 42 for v, _ in inst.pred_meshes)
    if variant == "pixel2mesh":
        assert all(v.shape[0] == 42 for v, _ in inst.pred_meshes)  # 2 stages: 12 -> 42


def _homography_reference(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """3x3 homography mapping 4 points src -> dst (direct linear solve, h33 = 1)."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src.tolist(), dst.tolist()):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    h = torch.linalg.solve(torch.tensor(rows, dtype=torch.float64), torch.tensor(rhs).double())
    return torch.cat([h, torch.ones(1, dtype=torch.float64)]).reshape(3, 3)


def test_frustum_map_is_mesh_rcnn_homography():
    """The closed form equals the plane homographies Mesh R-CNN estimates from the frustum's
    corners (x-z and y-z planes), then negated in x and y."""
    torch.manual_seed(0)
    box = torch.tensor([[20.0, 10.0, 70.0, 50.0]], dtype=torch.float64)
    f, px, py = 60.0, W / 2, H / 2
    K = torch.tensor([[f, px, py]], dtype=torch.float64)
    zmin, zmax = 2.0, 3.0
    pts = torch.rand(30, 3, dtype=torch.float64) * torch.tensor([0.6, 0.6, 1.0]) + torch.tensor(
        [-0.3, -0.3, 2.0]
    )
    ours = camera_to_box_frustum(pts[None], box, K, torch.tensor([[zmin, zmax]]).double())[0]
    x1, y1, x2, y2 = (2 * px - 1 - box[0, 0] - px, 2 * py - 1 - box[0, 1] - py) + (
        2 * px - 1 - box[0, 2] - px,
        2 * py - 1 - box[0, 3] - py,
    )
    unit = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]]).double()
    for axis, (lo, hi) in ((0, (x2, x1)), (1, (y2, y1))):
        src = torch.tensor(
            [
                [lo * zmin / f, zmin],
                [hi * zmin / f, zmin],
                [lo * zmax / f, zmax],
                [hi * zmax / f, zmax],
            ]
        ).double()
        Hm = _homography_reference(src, unit)
        hom = torch.cat([pts[:, [axis, 2]], torch.ones(30, 1).double()], 1) @ Hm.T
        mapped = hom[:, :2] / hom[:, 2:]
        torch.testing.assert_close(-mapped[:, 0], ours[:, axis])
        torch.testing.assert_close(mapped[:, 1], ours[:, 2])


def test_gt_targets_fill_the_box():
    sample = _sample()["instances"]
    box = sample.gt_boxes.tensor
    meshes = crop_meshes_within_boxes(sample.gt_meshes, box, sample.gt_K)
    v = meshes.verts_packed()
    # The object's own box: x, y span [-1, 1], z spans its depth range exactly.
    assert torch.allclose(v.min(0).values, torch.tensor([-1.0, -1.0, -1.0]), atol=2e-3)
    assert torch.allclose(v.max(0).values, torch.tensor([1.0, 1.0, 1.0]), atol=2e-3)
    grid = crop_voxels_within_boxes(sample.gt_voxels, box, sample.gt_K, 8)
    assert grid.shape == (1, 8, 8, 8) and grid.sum() > 0
    # A box twice as large leaves the outer ring of the grid empty in x and y.
    w, h = box[0, 2] - box[0, 0], box[0, 3] - box[0, 1]
    big = box + torch.stack([-w / 2, -h / 2, w / 2, h / 2])
    grid = crop_voxels_within_boxes(sample.gt_voxels, big, sample.gt_K, 8)
    assert grid[:, :, :, 0].sum() == 0 and grid[:, :, 0, :].sum() == 0


def test_no_voxel_above_threshold_gives_empty_meshes():
    """Nothing to cubify: training gives zero mesh losses, inference one empty mesh per box."""
    torch.manual_seed(0)
    cfg = _cfg("meshrcnn")
    cfg.MODEL.ROI_VOXEL_HEAD.CUBIFY_THRESH = 1.5
    model = build_model(cfg)
    with EventStorage():
        losses = model([_sample()])
    assert losses["loss_chamfer"].item() == 0.0 and losses["loss_chamfer"].requires_grad
    model.eval()
    sample = _sample()
    with torch.no_grad():
        inst = model([{k: sample[k] for k in ("image", "height", "width")}])[0]["instances"]
    assert len(inst.pred_meshes) == len(inst) == 3
    assert all(v.shape == (0, 3) and f.shape == (0, 3) for v, f in inst.pred_meshes)


@pytest.mark.parametrize("variant", ["meshrcnn", "sphereinit"])
def test_mesh_head_trains_on_a_capped_subset(variant):
    """TRAIN_MAX_PROPOSALS_PER_IMAGE: the mesh head refines at most that many foreground
    proposals per image, each with its own box, GT and cubified voxels; the voxel and z heads
    still see every foreground proposal."""
    cfg = _cfg(variant)
    cfg.MODEL.ROI_MESH_HEAD.TRAIN_MAX_PROPOSALS_PER_IMAGE = 2
    torch.manual_seed(0)
    model = build_model(cfg)
    heads = model.roi_heads
    seen = {}

    def record(name, module):
        def hook(_module, args, output):
            seen[name] = (args, output)

        module.register_forward_hook(hook)

    record("mesh_head", heads.mesh_head)
    record("z_head", heads.z_head)
    if variant == "meshrcnn":
        record("voxel_head", heads.voxel_head)
    captured = {}
    subset = heads._mesh_training_subset

    def spy(fg):
        out = subset(fg)
        captured["fg"], captured["out"] = fg, out
        return out

    heads._mesh_training_subset = spy
    # Proposals around the object (every one foreground), as a trained RPN gives them.
    samples = [_sample(), _sample()]
    targets = [x["instances"] for x in samples]
    proposals = []
    for target in targets:
        jitter = torch.randn(10, 4, generator=torch.Generator().manual_seed(1)) * 0.5
        props = Instances(target.image_size)
        props.proposal_boxes = Boxes(target.gt_boxes.tensor + jitter)
        props.objectness_logits = torch.zeros(10)
        proposals.append(props)
    images = model.preprocess_image(samples)
    features = model.backbone(images.tensor)
    with EventStorage():
        _, losses = heads(images, features, proposals, targets)
    fg = captured["fg"]
    mesh_fg, rows = captured["out"]
    assert [len(x) for x in fg] == [4, 4]  # 16 ROIs per image, at most 25 % foreground
    assert [len(x) for x in mesh_fg] == [2, 2] and rows.shape == (4,)
    assert bool((rows[:2] < 4).all()) and bool((rows[2:] >= 4).all())
    all_boxes = torch.cat([x.proposal_boxes.tensor for x in fg])
    torch.testing.assert_close(
        torch.cat([x.proposal_boxes.tensor for x in mesh_fg]), all_boxes[rows]
    )
    assert seen["z_head"][1].shape[0] == 8
    pooled, init_meshes = seen["mesh_head"][0]
    assert pooled.shape[0] == 4 and len(init_meshes) == 4
    if variant == "meshrcnn":
        logits = seen["voxel_head"][1]
        assert logits.shape[0] == 8
        expected = heads._cubify(logits[rows], None, logits.dtype)
        for got, want in zip(init_meshes.verts_list(), expected.verts_list(), strict=True):
            torch.testing.assert_close(got, want)
    assert torch.isfinite(losses["loss_chamfer"]) and losses["loss_chamfer"] > 0
    sum(losses.values()).backward()


def test_mesh_head_training_cap_rejects_negative():
    cfg = _cfg("meshrcnn")
    cfg.MODEL.ROI_MESH_HEAD.TRAIN_MAX_PROPOSALS_PER_IMAGE = -1
    with pytest.raises(ValueError, match="mesh_train_max_per_image"):
        build_model(cfg)


def test_meshrcnn_mask_targets_truncate_the_box_and_keep_any_positive_value():
    """Mesh R-CNN's mask targets, by hand: the box [2.7, 2.9, 8.99, 8.2] is truncated to pixels
    [2, 2, 8, 8] (a 6x6 crop); resized to 3x3 with half-pixel centres, output cell k samples
    input 2k + 0.5, so the one foreground pixel (crop row / col 3) reaches only cell (1, 1),
    with weight 1/4, and any positive value is foreground. Detectron2's targets (ROIAlign,
    >= 0.5) see no foreground at all."""
    mask = torch.zeros(1, 10, 10, dtype=torch.bool)
    mask[0, 5, 5] = True
    boxes = torch.tensor([[2.7, 2.9, 8.99, 8.2]])
    want = torch.zeros(1, 3, 3, dtype=torch.bool)
    want[0, 1, 1] = True
    assert torch.equal(crop_masks_meshrcnn(BitMasks(mask), boxes, 3), want)
    assert not BitMasks(mask).crop_and_resize(boxes, 3).any()
    # A box covering no whole pixel after truncation gives background (Mesh R-CNN fails there).
    assert not crop_masks_meshrcnn(mask, torch.tensor([[4.2, 4.1, 4.9, 4.8]]), 3).any()
    with pytest.raises(ValueError, match="boxes must have shape"):
        crop_masks_meshrcnn(mask, torch.zeros(2, 4), 3)
    with pytest.raises(ValueError, match="target_crop"):
        mask_rcnn_loss(torch.zeros(1, 1, 3, 3), [], target_crop="nearest")
