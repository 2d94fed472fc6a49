"""RPN: golden parity with Mesh R-CNN (Detectron2 0.6) in float64, state-dict layout, losses."""

import json
from pathlib import Path

import pytest
import torch

from meshrecon.config import get_cfg
from meshrecon.layers import ShapeSpec
from meshrecon.modeling import build_proposal_generator
from meshrecon.modeling.proposal_generator import RPN, find_top_rpn_proposals
from meshrecon.structures import Boxes, ImageList, Instances
from meshrecon.utils.events import EventStorage

GOLDEN = Path(__file__).parent / "data" / "golden" / "meshrcnn" / "rcnn_heads.pt"
PREFIX = "proposal_generator."


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
    rpn = build_proposal_generator(cfg, shapes)
    ours = {PREFIX + k: list(v.shape) for k, v in rpn.state_dict().items()}
    manifest = {k: v for k, v in json.loads(golden["manifest"]).items() if k.startswith(PREFIX)}
    assert len(manifest) == 6
    assert ours == manifest


def test_rpn_golden_proposals_float64(golden):
    cfg, shapes = _cfg(golden["config_tiny"])
    rpn = build_proposal_generator(cfg, shapes)
    assert isinstance(rpn, RPN)
    weights = {k[len(PREFIX) :]: v for k, v in golden["state_dict"].items() if k.startswith(PREFIX)}
    rpn.load_state_dict(weights)
    rpn.double().eval()
    h, w = golden["image_size"]
    images = ImageList(torch.zeros(1, 3, 256, 320, dtype=torch.float64), [(h, w)])
    with torch.no_grad():
        proposals, losses = rpn(images, golden["features"])
    assert losses == {}
    (p,) = proposals
    want_boxes = golden["proposals"]["boxes"]
    want_logits = golden["proposals"]["objectness_logits"]
    assert p.proposal_boxes.tensor.dtype == torch.float64
    assert len(p) == len(want_boxes) == 1000
    # Same boxes in the same order (measured: ~2e-13 px, ~5e-15 logits).
    assert (p.proposal_boxes.tensor - want_boxes).abs().max().item() < 1e-3
    assert (p.objectness_logits - want_logits).abs().max().item() < 1e-4


def test_find_top_rpn_proposals_hand_case():
    # Level 0: three boxes, two overlapping; level 1: a box identical to level 0's best.
    boxes0 = torch.tensor([[[0.0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]]])
    boxes1 = torch.tensor([[[0.0, 0, 10, 10], [-5, -5, 0.5, 40]]])
    logits0 = torch.tensor([[3.0, 2.0, 1.0]])
    logits1 = torch.tensor([[2.5, 5.0]])
    out = find_top_rpn_proposals(
        [boxes0, boxes1], [logits0, logits1], [(25, 25)], 0.5, 2, 10, 1.0, False
    )[0]
    # Pre-NMS top-2 per level drops [20,20,30,30]; NMS suppresses [1,1,10,10] only within
    # level 0; the level-1 duplicate survives; the clipped box [0,0,0.5,25] is too thin.
    assert out.objectness_logits.tolist() == [3.0, 2.5]
    torch.testing.assert_close(out.proposal_boxes.tensor, torch.tensor([[0.0, 0, 10, 10]] * 2))


def _tiny_rpn():
    torch.manual_seed(0)
    cfg = get_cfg()
    cfg.MODEL.RPN.IN_FEATURES = ["p2", "p3"]
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[16], [32]]
    cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.RPN.SMOOTH_L1_BETA = 0.1
    shapes = {"p2": ShapeSpec(channels=4, stride=4), "p3": ShapeSpec(channels=4, stride=8)}
    return RPN(cfg, shapes)


def test_rpn_training_losses_and_labels():
    rpn = _tiny_rpn().train()
    feats = {"p2": torch.randn(2, 4, 16, 16), "p3": torch.randn(2, 4, 8, 8)}
    images = ImageList(torch.zeros(2, 3, 64, 64), [(64, 64), (60, 50)])
    gt = [Instances((64, 64)), Instances((60, 50))]
    gt[0].gt_boxes = Boxes(torch.tensor([[8.0, 8.0, 24.0, 24.0], [30.0, 20.0, 62.0, 52.0]]))
    gt[1].gt_boxes = Boxes(torch.zeros(0, 4))
    with EventStorage() as storage:
        proposals, losses = rpn(images, feats, gt)
        labels, matched = rpn.label_and_sample_anchors(
            rpn.anchor_generator([feats["p2"], feats["p3"]]), gt
        )
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc"}
    assert all(torch.isfinite(v) and v.requires_grad for v in losses.values())
    assert losses["loss_rpn_loc"] > 0
    (losses["loss_rpn_cls"] + losses["loss_rpn_loc"]).backward()
    assert rpn.rpn_head.anchor_deltas.weight.grad.abs().sum() > 0
    assert "rpn/num_pos_anchors" in storage.histories()
    # Image 0: every gt has a positive (low-quality matches), at most 32 sampled anchors.
    assert 2 <= (labels[0] == 1).sum() and (labels[0] >= 0).sum() == 32
    pos_boxes = matched[0][labels[0] == 1]
    assert {tuple(b.tolist()) for b in pos_boxes} <= {(8.0, 8.0, 24.0, 24.0), (30, 20, 62, 52)}
    # Image 1 has no ground truth: only negatives.
    assert (labels[1] == 1).sum() == 0 and (labels[1] == 0).sum() == 32
    assert len(proposals) == 2 and all(not p.proposal_boxes.tensor.requires_grad for p in proposals)
    assert proposals[1].proposal_boxes.tensor[:, 2].max() <= 50


def test_rpn_needs_gt_in_training_and_known_features():
    rpn = _tiny_rpn().train()
    feats = {"p2": torch.randn(1, 4, 16, 16), "p3": torch.randn(1, 4, 8, 8)}
    with pytest.raises(ValueError, match="gt_instances"):
        rpn(ImageList(torch.zeros(1, 3, 64, 64), [(64, 64)]), feats)
    cfg = get_cfg()
    cfg.MODEL.RPN.IN_FEATURES = ["p9"]
    with pytest.raises(ValueError, match="p9"):
        RPN(cfg, {"p2": ShapeSpec(channels=4, stride=4)})
