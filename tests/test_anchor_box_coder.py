"""Box2BoxTransform, Matcher, subsample_labels, DefaultAnchorGenerator and ROIPooler levels."""

import math

import pytest
import torch

from meshrecon.modeling.anchor_generator import DefaultAnchorGenerator, generate_cell_anchors
from meshrecon.modeling.box_regression import Box2BoxTransform, smooth_l1_loss
from meshrecon.modeling.matcher import Matcher
from meshrecon.modeling.poolers import ROIPooler, assign_boxes_to_levels
from meshrecon.modeling.sampling import subsample_labels
from meshrecon.structures import Boxes


def _random_boxes(n, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=dtype) * 100
    wh = torch.rand(n, 2, generator=g, dtype=dtype) * 50 + 1
    return torch.cat([xy, xy + wh], dim=1)


# ------------------------------------------------------------------ Box2BoxTransform


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_box2box_round_trip(weights):
    t = Box2BoxTransform(weights)
    src, tgt = _random_boxes(50, 0), _random_boxes(50, 1)
    deltas = t.get_deltas(src, tgt)
    torch.testing.assert_close(t.apply_deltas(deltas, src), tgt, rtol=0, atol=1e-10)
    # Identity deltas for identical boxes.
    torch.testing.assert_close(t.get_deltas(src, src), torch.zeros_like(deltas))


def test_box2box_hand_values():
    t = Box2BoxTransform((10.0, 10.0, 5.0, 5.0))
    src = torch.tensor([[0.0, 0.0, 10.0, 20.0]], dtype=torch.float64)
    tgt = torch.tensor([[5.0, 0.0, 25.0, 20.0]], dtype=torch.float64)  # centre +10 px, width x2
    d = t.get_deltas(src, tgt)
    torch.testing.assert_close(
        d, torch.tensor([[10.0 * 10 / 10, 0.0, 5.0 * math.log(2.0), 0.0]], dtype=torch.float64)
    )


def test_box2box_class_specific_and_clamp():
    t = Box2BoxTransform((1.0, 1.0, 1.0, 1.0))
    src = _random_boxes(4, 2)
    tgt_a, tgt_b = _random_boxes(4, 3), _random_boxes(4, 4)
    deltas = torch.cat([t.get_deltas(src, tgt_a), t.get_deltas(src, tgt_b)], dim=1)
    out = t.apply_deltas(deltas, src)
    assert out.shape == (4, 8)
    torch.testing.assert_close(out[:, :4], tgt_a)
    torch.testing.assert_close(out[:, 4:], tgt_b)
    # A huge dw is clamped at log(1000 / 16): the width grows at most 62.5x.
    big = torch.tensor([[0.0, 0.0, 100.0, 0.0]], dtype=torch.float64)
    box = torch.tensor([[0.0, 0.0, 2.0, 2.0]], dtype=torch.float64)
    w = t.apply_deltas(big, box)[0, 2] - t.apply_deltas(big, box)[0, 0]
    assert w.item() == pytest.approx(2.0 * 1000 / 16)


def test_box2box_keeps_float64_and_rejects_bad_shapes():
    t = Box2BoxTransform((1.0, 1.0, 1.0, 1.0))
    src = _random_boxes(3, 5)
    assert t.apply_deltas(torch.zeros(3, 4, dtype=torch.float64), src).dtype == torch.float64
    assert t.apply_deltas(torch.zeros(3, 4, dtype=torch.float16), src.half()).dtype == torch.float32
    with pytest.raises(ValueError, match="deltas"):
        t.apply_deltas(torch.zeros(3, 5), src)
    with pytest.raises(ValueError, match="weights"):
        Box2BoxTransform((1.0, 1.0))


def test_smooth_l1_loss():
    x = torch.tensor([0.0, 0.05, 0.5, -2.0])
    loss = smooth_l1_loss(x, torch.zeros(4), beta=0.1)
    torch.testing.assert_close(loss, torch.tensor([0.0, 0.5 * 0.05**2 / 0.1, 0.45, 1.95]))
    torch.testing.assert_close(smooth_l1_loss(x, torch.zeros(4), 0.0, "sum"), x.abs().sum())


# ------------------------------------------------------------------ Matcher


def test_matcher_labels_by_interval():
    m = Matcher([0.3, 0.7], [0, -1, 1])
    q = torch.tensor([[0.1, 0.5, 0.8, 0.3, 0.7], [0.2, 0.0, 0.9, 0.0, 0.0]])
    matches, labels = m(q)
    assert matches.tolist() == [1, 0, 1, 0, 0]
    assert labels.tolist() == [0, -1, 1, -1, 1]  # intervals are [low, high)
    assert labels.dtype == torch.int8


def test_matcher_low_quality_matches():
    q = torch.tensor([[0.1, 0.4, 0.4, 0.2], [0.05, 0.0, 0.1, 0.6]])
    _, plain = Matcher([0.3, 0.7], [0, -1, 1])(q)
    assert plain.tolist() == [0, -1, -1, -1]
    matches, labels = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)(q)
    # gt 0's best IoU 0.4 is reached by predictions 1 and 2 (a tie): both positive; gt 1's by 3.
    assert labels.tolist() == [0, 1, 1, 1]
    assert matches.tolist() == [0, 0, 0, 1]


def test_matcher_empty_and_invalid():
    matches, labels = Matcher([0.5], [0, 1])(torch.zeros(0, 6))
    assert matches.tolist() == [0] * 6 and labels.tolist() == [0] * 6
    _, labels = Matcher([0.2, 0.5], [-1, 0, 1])(torch.zeros(0, 2))
    assert labels.tolist() == [-1, -1]
    with pytest.raises(ValueError, match="labels"):
        Matcher([0.5], [0, 1, 1])
    with pytest.raises(ValueError, match="thresholds"):
        Matcher([0.0], [0, 1])


# ------------------------------------------------------------------ subsample_labels


def test_subsample_labels_counts_and_membership():
    torch.manual_seed(0)
    labels = torch.tensor([1] * 30 + [0] * 100 + [-1] * 20 + [2] * 5)
    pos, neg = subsample_labels(labels, num_samples=64, positive_fraction=0.25, bg_label=0)
    assert len(pos) == 16 and len(neg) == 48
    assert set(labels[pos].tolist()) <= {1, 2} and set(labels[neg].tolist()) == {0}
    assert len(set(pos.tolist())) == 16  # without replacement
    # Too few positives: negatives fill the batch.
    pos, neg = subsample_labels(torch.tensor([1, 0, 0, 0, 0, -1]), 4, 0.5, 0)
    assert len(pos) == 1 and len(neg) == 3
    # Too few of both: everything that exists.
    pos, neg = subsample_labels(torch.tensor([1, 0, -1]), 100, 0.5, 0)
    assert pos.tolist() == [0] and neg.tolist() == [1]


# ------------------------------------------------------------------ anchors


def test_cell_anchors_hand_values():
    a = generate_cell_anchors([32], [0.5, 1.0, 2.0])
    w = math.sqrt(32 * 32 / 0.5)
    expected = [
        [-w / 2, -0.5 * w / 2, w / 2, 0.5 * w / 2],
        [-16.0, -16.0, 16.0, 16.0],
        [-w / 4, -w / 2, w / 4, w / 2],
    ]
    assert a.dtype == torch.float32
    torch.testing.assert_close(a, torch.tensor(expected))


def test_anchor_grid_hand_values_and_order():
    gen = DefaultAnchorGenerator(sizes=[[8], [16]], aspect_ratios=[1.0, 2.0], strides=[4, 8])
    assert gen.num_anchors == [2, 2]
    feats = [torch.zeros(1, 1, 2, 3), torch.zeros(1, 1, 1, 2)]
    a0, a1 = (b.tensor for b in gen(feats))
    assert a0.shape == (2 * 3 * 2, 4) and a1.shape == (2 * 2, 4)
    # Cell-major: cell (y=0, x=1) holds anchors 2 and 3, centred at (4, 0).
    torch.testing.assert_close(a0[2], torch.tensor([0.0, -4.0, 8.0, 4.0]))
    # Cell (y=1, x=2) is cell 5: centre (8, 4).
    torch.testing.assert_close(a0[10], torch.tensor([4.0, 0.0, 12.0, 8.0]))
    torch.testing.assert_close(a1[2], torch.tensor([0.0, -8.0, 16.0, 8.0]))
    half = DefaultAnchorGenerator(sizes=[8], aspect_ratios=[1.0], strides=[4], offset=0.5)
    torch.testing.assert_close(
        half([torch.zeros(1, 1, 1, 1)])[0].tensor, torch.tensor([[-2.0, -2.0, 6.0, 6.0]])
    )


def test_anchor_generator_float64_keeps_float32_cell_sizes():
    gen = DefaultAnchorGenerator(sizes=[[32]], aspect_ratios=[[0.5]], strides=[4]).double()
    (anchors,) = gen([torch.zeros(1, 1, 1, 1, dtype=torch.float64)])
    assert anchors.tensor.dtype == torch.float64
    half_w = math.sqrt(2048.0) / 2
    # Detectron2 builds cell anchors in float32; the float64 model keeps that rounding.
    assert anchors.tensor[0, 2].item() == float(torch.tensor(half_w, dtype=torch.float32))
    assert anchors.tensor[0, 2].item() != half_w
    assert gen.state_dict() == {}  # anchors are not checkpointed (Detectron2's keys)


def test_anchor_generator_bad_arguments():
    with pytest.raises(ValueError, match="sizes"):
        DefaultAnchorGenerator(sizes=[[8], [16], [32]], aspect_ratios=[1.0], strides=[4, 8])
    gen = DefaultAnchorGenerator(sizes=[8], aspect_ratios=[1.0], strides=[4, 8])
    with pytest.raises(ValueError, match="features"):
        gen([torch.zeros(1, 1, 2, 2)])


# ------------------------------------------------------------------ ROIPooler


def test_assign_boxes_to_levels():
    # sqrt(area) 224 -> level 4; 112 -> 3; 448 -> 5; 10 -> clamped to 2; 2000 -> clamped to 5.
    sizes = [224, 112, 448, 10, 2000, 223.9]
    boxes = Boxes(torch.tensor([[0.0, 0.0, s, s] for s in sizes], dtype=torch.float64))
    levels = assign_boxes_to_levels([boxes[:3], boxes[3:]], 2, 5, 224, 4)
    assert levels.tolist() == [2, 1, 3, 0, 3, 1]


def test_roi_pooler_pools_each_box_from_its_level():
    # Each level is a constant map equal to its level index: the pooled value tells the level.
    scales = [1 / 4, 1 / 8, 1 / 16, 1 / 32]
    feats = [torch.full((2, 3, 64 // 2**i, 64 // 2**i), float(i)) for i in range(4)]
    pooler = ROIPooler(4, scales, sampling_ratio=2, pooler_type="ROIAlignV2")
    b0 = Boxes(torch.tensor([[0.0, 0.0, 50.0, 50.0], [0.0, 0.0, 130.0, 130.0]]))
    b1 = Boxes(torch.tensor([[10.0, 10.0, 250.0, 250.0]]))
    out = pooler(feats, [b0, b1])
    assert out.shape == (3, 3, 4, 4)
    assert out[:, 0, 0, 0].tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="pooler_type"):
        ROIPooler(4, scales, 2, "ROIAlignV3")
    with pytest.raises(ValueError, match="scales"):
        ROIPooler(4, [1 / 4, 1 / 16], 2, "ROIAlign")


def test_roi_pooler_aligned_vs_not():
    # A ramp along x: ROIAlign (not aligned) samples half a pixel to the right of ROIAlignV2.
    x = torch.arange(16.0).repeat(16, 1)[None, None].double()
    box = [Boxes(torch.tensor([[2.0, 2.0, 6.0, 6.0]], dtype=torch.float64))]
    v1 = ROIPooler(1, [1.0], 1, "ROIAlign")([x], box)
    v2 = ROIPooler(1, [1.0], 1, "ROIAlignV2")([x], box)
    assert v1.item() == pytest.approx(4.0) and v2.item() == pytest.approx(3.5)
    assert v1.dtype == torch.float64
