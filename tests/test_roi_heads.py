"""StandardROIHeads (box + mask), Fast R-CNN / mask losses and inference, paste_masks_in_image."""

import json
from pathlib import Path

import pytest
import torch

from meshrecon.config import get_cfg
from meshrecon.layers import ShapeSpec
from meshrecon.layers.mask_ops import paste_masks_in_image
from meshrecon.modeling import build_roi_heads
from meshrecon.modeling.box_regression import Box2BoxTransform
from meshrecon.modeling.postprocessing import detector_postprocess
from meshrecon.modeling.roi_heads import (
    FastRCNNOutputLayers,
    StandardROIHeads,
    fast_rcnn_inference,
    mask_rcnn_loss,
    select_foreground_proposals,
)
from meshrecon.structures import Boxes, ImageList, Instances
from meshrecon.structures.masks import BitMasks
from meshrecon.utils.events import EventStorage

GOLDEN = Path(__file__).parent / "data" / "golden" / "meshrcnn" / "rcnn_heads.pt"
HEAD_PREFIXES = ("roi_heads.box_head.", "roi_heads.box_predictor.", "roi_heads.mask_head.")


@pytest.fixture(scope="module")
def golden():
    return torch.load(GOLDEN, weights_only=True)


def _cfg(config_json: str):
    """Our config with the detection keys of a recorded Mesh R-CNN config."""
    sub = json.loads(config_json)
    cfg = get_cfg()
    for node, values in sub["MODEL"].items():
        if isinstance(values, dict):
            for k, v in values.items():
                cfg.MODEL[node][k] = v
    cfg.MODEL.MASK_ON = sub["MODEL"]["MASK_ON"]
    cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    cfg.TEST.DETECTIONS_PER_IMAGE = sub["TEST"]["DETECTIONS_PER_IMAGE"]
    channels = sub["MODEL"]["FPN_OUT_CHANNELS"]
    shapes = {f"p{i}": ShapeSpec(channels=channels, stride=2**i) for i in range(2, 7)}
    return cfg, shapes


def test_state_dict_matches_manifest(golden):
    cfg, shapes = _cfg(golden["config_full"])
    heads = build_roi_heads(cfg, shapes)
    ours = {"roi_heads." + k: list(v.shape) for k, v in heads.state_dict().items()}
    manifest = json.loads(golden["manifest"])
    manifest = {k: v for k, v in manifest.items() if k.startswith(HEAD_PREFIXES)}
    assert len(manifest) == 20
    assert ours == manifest


def test_box_and_mask_heads_golden_float64(golden):
    cfg, shapes = _cfg(golden["config_tiny"])
    heads = build_roi_heads(cfg, shapes)
    assert heads.box_pooler.level_poolers[0].aligned is False  # POOLER_TYPE "ROIAlign"
    sd = {
        k[len("roi_heads.") :]: v
        for k, v in golden["state_dict"].items()
        if k.startswith(HEAD_PREFIXES)
    }
    heads.load_state_dict(sd)
    heads.double().eval()
    h, w = golden["image_size"]
    proposals = Instances((h, w))
    proposals.proposal_boxes = Boxes(golden["proposals"]["boxes"].clone())
    proposals.objectness_logits = golden["proposals"]["objectness_logits"].clone()
    images = ImageList(torch.zeros(1, 3, 256, 320, dtype=torch.float64), [(h, w)])
    with torch.no_grad():
        detections, extra = heads(images, golden["features"], [proposals])
    assert extra == {}
    assert detections[0].pred_masks.shape == (4, 1, 28, 28)
    result = detector_postprocess(detections[0], h, w)
    want = golden["outputs"]
    assert result.pred_boxes.tensor.dtype == torch.float64
    assert result.pred_classes.tolist() == want["classes"].tolist()
    # Measured: boxes ~3e-14 px, scores ~1e-15, 0 mask pixels differ.
    assert (result.pred_boxes.tensor - want["boxes"]).abs().max().item() < 1e-3
    assert (result.scores - want["scores"]).abs().max().item() < 1e-6
    assert result.pred_masks.shape == want["masks"].shape == (4, h, w)
    assert (result.pred_masks != want["masks"]).sum().item() <= 0.001 * want["masks"].numel()


def _naive_paste(mask, box, h, w):
    """Reference: bilinear sample (zero outside) of the M x M mask at every pixel centre."""
    m = mask.shape[0]
    out = torch.zeros(h, w, dtype=torch.float64)
    x0, y0, x1, y1 = box.tolist()
    for i in range(h):
        for j in range(w):
            # pixel centre -> continuous mask coordinate (cell centres at k + 0.5)
            u = (j + 0.5 - x0) / (x1 - x0) * m - 0.5
            v = (i + 0.5 - y0) / (y1 - y0) * m - 0.5
            acc = 0.0
            for yy in (int(torch.floor(torch.tensor(v))), int(torch.floor(torch.tensor(v))) + 1):
                for xx in (
                    int(torch.floor(torch.tensor(u))),
                    int(torch.floor(torch.tensor(u))) + 1,
                ):
                    if 0 <= yy < m and 0 <= xx < m:
                        acc += (1 - abs(v - yy)) * (1 - abs(u - xx)) * mask[yy, xx].item()
            out[i, j] = acc
    return out


def test_paste_masks_matches_naive_reference():
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(3, 5, 5, generator=g, dtype=torch.float64)
    boxes = torch.tensor([[2.3, 1.7, 9.1, 8.2], [0.0, 0.0, 12.0, 10.0], [7.5, 3.0, 14.5, 13.9]])
    boxes = boxes.double()
    soft = paste_masks_in_image(masks, boxes, (12, 14), threshold=-1)
    hard = paste_masks_in_image(masks, Boxes(boxes), (12, 14), threshold=0.5)
    assert soft.dtype == torch.uint8 and hard.dtype == torch.bool and hard.shape == (3, 12, 14)
    for k in range(3):
        ref = _naive_paste(masks[k], boxes[k], 12, 14)
        assert torch.equal(hard[k], ref >= 0.5)
        assert (soft[k].double() - (ref * 255).floor()).abs().max() <= 1
    assert paste_masks_in_image(masks[:0], boxes[:0], (4, 4)).shape == (0, 4, 4)
    with pytest.raises(ValueError, match="boxes"):
        paste_masks_in_image(masks, boxes[:2], (4, 4))


def test_fast_rcnn_inference_hand_case():
    # Two proposals, two classes; class-specific boxes.
    boxes = torch.tensor([[0.0, 0, 10, 10, 0, 0, 20, 20], [1.0, 1, 10, 10, 50, 50, 70, 70]])
    scores = torch.tensor([[0.7, 0.2, 0.1], [0.6, 0.35, 0.05]])
    (res,), (kept,) = fast_rcnn_inference([boxes], [scores], [(60, 60)], 0.25, 0.5, 10)
    # Class 0: the two boxes overlap (IoU 0.81) -> one survives; class 1's second box clipped.
    assert res.scores.tolist() == pytest.approx([0.7, 0.35])
    assert res.pred_classes.tolist() == [0, 1] and kept.tolist() == [0, 1]
    torch.testing.assert_close(res.pred_boxes.tensor[1], torch.tensor([50.0, 50, 60, 60]))


def _tiny_heads(mask_on=True):
    torch.manual_seed(0)
    cfg = get_cfg()
    cfg.MODEL.MASK_ON = mask_on
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3"]
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 16
    cfg.MODEL.ROI_HEADS.IOU_THRESHOLDS = [0.2, 0.5]
    cfg.MODEL.ROI_HEADS.IOU_LABELS = [-1, 0, 1]
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 1
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 16
    cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 4
    cfg.MODEL.ROI_MASK_HEAD.NUM_CONV = 1
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 8
    cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION = 4
    shapes = {"p2": ShapeSpec(channels=4, stride=4), "p3": ShapeSpec(channels=4, stride=8)}
    return StandardROIHeads(cfg, shapes)


def _targets():
    t = Instances((64, 64))
    t.gt_boxes = Boxes(torch.tensor([[4.0, 4.0, 30.0, 30.0], [32.0, 10.0, 60.0, 50.0]]))
    t.gt_classes = torch.tensor([2, 0])
    masks = torch.zeros(2, 64, 64, dtype=torch.bool)
    masks[0, 4:30, 4:30] = True
    masks[1, 10:50, 32:60] = True
    t.gt_masks = BitMasks(masks)
    t.gt_dz = torch.tensor([0.5, 1.5])  # any gt_* field rides along (Mesh R-CNN's)
    return t


def test_label_and_sample_proposals():
    heads = _tiny_heads()
    props = Instances((64, 64))
    props.proposal_boxes = Boxes(
        torch.tensor([[5.0, 5.0, 29.0, 31.0], [0.0, 0.0, 8.0, 8.0], [36.0, 30.0, 64.0, 64.0]])
    )
    props.objectness_logits = torch.tensor([1.0, 0.5, 0.2])
    with EventStorage() as storage:
        (sampled,) = heads.label_and_sample_proposals([props], [_targets()])
    # 3 proposals + 2 gt; [0,0,8,8] has IoU < 0.2 with every gt -> ignored; [36,30,64,64] has
    # IoU 0.30 with gt 1 -> background (class 3).
    assert len(sampled) == 4
    assert sorted(sampled.gt_classes.tolist()) == [0, 2, 2, 3]
    fg = sampled.gt_classes < 3
    assert fg[: int(fg.sum())].all()  # foreground first
    for name in ("gt_boxes", "gt_masks", "gt_dz"):
        assert sampled.has(name)
    cls_of_dz = {0.5: 2, 1.5: 0}
    for c, dz, is_fg in zip(sampled.gt_classes.tolist(), sampled.gt_dz.tolist(), fg.tolist()):
        if is_fg:
            assert cls_of_dz[dz] == c
    assert storage.history("roi_head/num_fg_samples").latest() == 3
    fg_props, masks = select_foreground_proposals([sampled], bg_label=3)
    assert len(fg_props[0]) == 3 and masks[0].tolist() == fg.tolist()


def test_training_losses_and_gradients():
    heads = _tiny_heads().train()
    feats = {"p2": torch.randn(1, 4, 16, 16, requires_grad=True), "p3": torch.randn(1, 4, 8, 8)}
    props = Instances((64, 64))
    props.proposal_boxes = Boxes(torch.tensor([[5.0, 5.0, 29.0, 31.0], [30.0, 12, 58, 47]]))
    props.objectness_logits = torch.tensor([1.0, 0.5])
    images = ImageList(torch.zeros(1, 3, 64, 64), [(64, 64)])
    with EventStorage():
        _, losses = heads(images, feats, [props], [_targets()])
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_mask"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for p in (heads.box_predictor.bbox_pred.weight, heads.mask_head.predictor.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert feats["p2"].grad.abs().sum() > 0


def test_mask_rcnn_loss_target_and_empty():
    inst = Instances((20, 20))
    inst.proposal_boxes = Boxes(torch.tensor([[0.0, 0.0, 10.0, 10.0]]))
    inst.gt_classes = torch.tensor([1])
    m = torch.zeros(1, 20, 20, dtype=torch.bool)
    m[0, :, :5] = True  # the left half of the box is foreground
    inst.gt_masks = m  # a plain tensor works too
    logits = torch.full((1, 2, 4, 4), -20.0)
    logits[0, 1, :, :2] = 20.0  # class 1 predicts exactly the target
    assert mask_rcnn_loss(logits, [inst]).item() < 1e-6
    logits[0, 0] = 20.0  # class 0 is not read
    assert mask_rcnn_loss(logits, [inst]).item() < 1e-6
    logits[0, 1] = 20.0
    assert mask_rcnn_loss(logits, [inst]).item() == pytest.approx(10.0, rel=1e-4)
    empty = torch.zeros(0, 2, 4, 4, requires_grad=True)
    zero = mask_rcnn_loss(empty, [inst[torch.zeros(0, dtype=torch.int64)]])
    assert zero.item() == 0.0


def test_box_predictor_losses_hand_values():
    torch.manual_seed(0)
    pred = FastRCNNOutputLayers(
        ShapeSpec(channels=3), box2box_transform=Box2BoxTransform((10, 10, 5, 5)), num_classes=2
    )
    p = Instances((50, 50))
    p.proposal_boxes = Boxes(torch.tensor([[0.0, 0, 10, 10], [20.0, 20, 30, 30]]))
    p.gt_classes = torch.tensor([1, 2])  # one foreground, one background
    p.gt_boxes = Boxes(torch.tensor([[1.0, 0, 11, 10], [0.0, 0, 1, 1]]))
    scores = torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    deltas = torch.zeros(2, 8)
    losses = pred.losses((scores, deltas), [p])
    want_cls = torch.nn.functional.cross_entropy(scores, p.gt_classes)
    torch.testing.assert_close(losses["loss_cls"], want_cls)
    # Foreground ROI: target dx = 10 * 1 / 10 = 1, L1 (beta 0) -> 1, divided by 2 ROIs.
    assert losses["loss_box_reg"].item() == pytest.approx(0.5)
