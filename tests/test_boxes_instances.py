import pytest
import torch

from meshrecon.structures import Boxes, ImageList, Instances, pairwise_iou


def _naive_iou(a, b):
    out = torch.zeros(len(a), len(b))
    for i, p in enumerate(a.tolist()):
        for j, q in enumerate(b.tolist()):
            iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            inter = iw * ih
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
            out[i, j] = inter / union if inter > 0 else 0.0
    return out


def _random_boxes(n, gen):
    xy = torch.rand(n, 2, generator=gen) * 50
    wh = torch.rand(n, 2, generator=gen) * 30
    return torch.cat([xy, xy + wh], dim=1)


def test_boxes_basic_ops():
    b = Boxes([[0, 0, 10, 20], [5, 5, 5, 8], [-5, -5, 200, 30]])
    assert b.area().tolist() == [200, 0, 205 * 35]
    assert b.nonempty().tolist() == [True, False, True]
    assert b.get_centers().tolist() == [[5, 10], [5, 6.5], [97.5, 12.5]]
    c = b.clone()
    c.clip((25, 100))
    assert c.tensor[2].tolist() == [0, 0, 100, 25] and b.tensor[2, 0] == -5
    c.scale(2.0, 0.5)
    assert c.tensor[0].tolist() == [0, 0, 20, 10]
    assert len(b[0]) == 1 and b[0].tensor.shape == (1, 4)
    assert b[torch.tensor([True, False, True])].tensor[1, 2] == 200
    assert len(b[1:]) == 2
    assert Boxes(torch.zeros(0)).tensor.shape == (0, 4)
    assert len(Boxes.cat([b, b[:1]])) == 4 and len(Boxes.cat([])) == 0
    assert b.to("cpu").device == torch.device("cpu")
    assert b.inside_box((30, 300)).tolist() == [True, True, False]
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        Boxes(torch.zeros(3, 5))


def test_pairwise_iou_matches_naive_loop():
    gen = torch.Generator().manual_seed(0)
    a, b = _random_boxes(7, gen), _random_boxes(5, gen)
    torch.testing.assert_close(pairwise_iou(Boxes(a), Boxes(b)), _naive_iou(a, b))
    same = Boxes([[0, 0, 2, 2], [1, 1, 3, 3]])
    torch.testing.assert_close(pairwise_iou(same, same), torch.tensor([[1.0, 1 / 7], [1 / 7, 1.0]]))
    empty = Boxes([[1, 1, 1, 1]])
    assert pairwise_iou(empty, empty).item() == 0.0


def test_instances_fields_and_indexing():
    inst = Instances((480, 640))
    inst.gt_boxes = Boxes(torch.arange(12.0).view(3, 4))
    inst.set("gt_classes", torch.tensor([2, 0, 1]))
    inst.names = ["a", "b", "c"]
    assert len(inst) == 3 and inst.image_size == (480, 640)
    assert inst.has("gt_classes") and not inst.has("scores")
    assert inst.get("gt_classes").tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match="length 2"):
        inst.scores = torch.zeros(2)
    with pytest.raises(AttributeError, match="scores"):
        inst.scores  # noqa: B018

    one = inst[1]
    assert len(one) == 1 and one.names == ["b"] and one.gt_classes.tolist() == [0]
    assert inst[-1].names == ["c"]
    with pytest.raises(IndexError):
        inst[3]
    masked = inst[inst.gt_classes > 0]
    assert masked.names == ["a", "c"] and masked.gt_boxes.tensor[:, 0].tolist() == [0, 8]
    picked = inst[torch.tensor([2, 0])]
    assert picked.names == ["c", "a"] and picked.gt_classes.tolist() == [1, 2]

    inst.remove("names")
    assert set(inst.get_fields()) == {"gt_boxes", "gt_classes"}
    moved = inst.to("cpu")
    assert moved is not inst and torch.equal(moved.gt_classes, inst.gt_classes)

    cat = Instances.cat([inst, inst[:1]])
    assert len(cat) == 4 and cat.gt_classes.tolist() == [2, 0, 1, 2]
    assert cat.gt_boxes.tensor.shape == (4, 4)
    with pytest.raises(ValueError, match="image sizes differ"):
        Instances.cat(
            [inst, Instances((1, 1), gt_boxes=Boxes(torch.zeros(3, 4)), gt_classes=torch.zeros(3))]
        )
    assert "num_instances=3" in repr(inst)


def test_image_list_pads_and_unpads():
    a = torch.full((3, 5, 7), 1.0)
    b = torch.full((3, 8, 4), 2.0)
    il = ImageList.from_tensors([a, b], size_divisibility=4, pad_value=-1.0)
    assert il.tensor.shape == (2, 3, 8, 8)
    assert il.image_sizes == [(5, 7), (8, 4)]
    assert torch.equal(il[0], a) and torch.equal(il[1], b)
    assert (il.tensor[0, :, 5:, :] == -1).all() and (il.tensor[1, :, :, 4:] == -1).all()
    single = ImageList.from_tensors([a], size_divisibility=32)
    assert single.tensor.shape == (1, 3, 32, 32) and torch.equal(single[0], a)
    assert len(single) == 1
    with pytest.raises(ValueError, match="leading shape"):
        ImageList.from_tensors([a, torch.zeros(1, 5, 5)])
