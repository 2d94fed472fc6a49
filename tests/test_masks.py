"""BitMasks: crop_and_resize against hand-worked cases, boxes, indexing, cat."""

import pytest
import torch

from meshrecon.structures import Boxes, Instances
from meshrecon.structures.masks import BitMasks


def left_half_mask():
    m = torch.zeros(1, 4, 4, dtype=torch.bool)
    m[0, :, :2] = True
    return BitMasks(m)


def test_crop_and_resize_hand_cases():
    masks = left_half_mask()
    # Whole image to 2x2: each output cell samples one quadrant.
    out = masks.crop_and_resize(torch.tensor([[0.0, 0.0, 4.0, 4.0]]), 2)
    assert out.dtype == torch.bool
    assert out[0].tolist() == [[True, False], [True, False]]
    # The box of the left half is all foreground; the right half is all background.
    assert masks.crop_and_resize(torch.tensor([[0.0, 0.0, 2.0, 4.0]]), 3).all()
    assert not masks.crop_and_resize(torch.tensor([[2.0, 0.0, 4.0, 4.0]]), 3).any()
    # A box straddling the edge: left 3 of 4 output columns lie in x < 2 (box [0.5, 2.5]).
    out = masks.crop_and_resize(torch.tensor([[0.5, 0.0, 2.5, 4.0]]), 4)
    assert out[0, 0].tolist() == [True, True, True, False]


def test_crop_and_resize_each_box_reads_its_own_mask():
    m = torch.zeros(2, 6, 6, dtype=torch.bool)
    m[0, :3] = True  # top half
    m[1, 3:] = True  # bottom half
    out = BitMasks(m).crop_and_resize(Boxes(torch.tensor([[0.0, 0, 6, 3], [0.0, 3, 6, 6]])), 5)
    assert out.all()
    with pytest.raises(ValueError, match="shape"):
        BitMasks(m).crop_and_resize(torch.zeros(3, 4), 5)
    assert BitMasks(m[:0]).crop_and_resize(torch.zeros(0, 4), 7).shape == (0, 7, 7)


def test_bounding_boxes_nonempty_indexing_cat():
    m = torch.zeros(3, 5, 8, dtype=torch.bool)
    m[0, 1:3, 2:6] = True
    m[2, 4, 7] = True
    bm = BitMasks(m)
    assert bm.get_bounding_boxes().tensor.tolist() == [[2, 1, 6, 3], [0, 0, 0, 0], [7, 4, 8, 5]]
    assert bm.nonempty().tolist() == [True, False, True]
    assert len(bm[bm.nonempty()]) == 2 and bm[1].tensor.shape == (1, 5, 8)
    assert len(bm[1:]) == 2 and bm.image_size == (5, 8)
    cat = BitMasks.cat([bm, bm[0]])
    assert len(cat) == 4 and torch.equal(cat.tensor[3], m[0])
    with pytest.raises(ValueError, match="sizes differ"):
        BitMasks.cat([bm, BitMasks(torch.zeros(1, 2, 2))])
    with pytest.raises(ValueError, match="N, H, W"):
        BitMasks(torch.zeros(4, 4))
    assert BitMasks(torch.tensor([[[0, 2]]])).tensor.dtype == torch.bool
    assert bm.to("cpu").tensor.dtype == torch.bool


def test_bitmasks_as_instances_field():
    m = torch.zeros(3, 4, 4, dtype=torch.bool)
    inst = Instances((4, 4), gt_masks=BitMasks(m), gt_classes=torch.arange(3))
    sub = inst[torch.tensor([True, False, True])]
    assert len(sub.gt_masks) == 2
    assert len(Instances.cat([inst, sub]).gt_masks) == 5
