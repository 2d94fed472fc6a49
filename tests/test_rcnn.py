"""GeneralizedRCNN: preprocessing, training losses and their gradients, a short fit, inference."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from meshrecon.config import get_cfg
from meshrecon.modeling import BACKBONE_REGISTRY, build_model
from meshrecon.modeling.backbone import Backbone
from meshrecon.modeling.meta_arch import GeneralizedRCNN
from meshrecon.structures import Boxes, Instances
from meshrecon.structures.masks import BitMasks
from meshrecon.utils.events import EventStorage


class _TinyBackbone(Backbone):
    """Two maps, p2 (stride 4) and p3 (stride 8), from two strided convs."""

    def __init__(self, channels: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(3, channels, kernel_size=4, stride=4)
        self.down = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1)
        self._out_features = ["p2", "p3"]
        self._out_feature_channels = {"p2": channels, "p3": channels}
        self._out_feature_strides = {"p2": 4, "p3": 8}

    @property
    def size_divisibility(self) -> int:
        return 8

    def forward(self, x):
        p2 = F.relu(self.stem(x))
        return {"p2": p2, "p3": F.relu(self.down(p2))}


def _TestTinyRCNNBackbone(cfg, input_shape):  # noqa: N802 - the registered name
    return _TinyBackbone(channels=8)


if "_TestTinyRCNNBackbone" not in BACKBONE_REGISTRY:
    BACKBONE_REGISTRY.register(_TestTinyRCNNBackbone)


def _cfg():
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "_TestTinyRCNNBackbone"
    cfg.MODEL.MASK_ON = True
    cfg.MODEL.PIXEL_STD = [57.0, 57.0, 57.0]
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[16], [32]]
    cfg.MODEL.RPN.IN_FEATURES = ["p2", "p3"]
    cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 64
    cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 200
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 50
    cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 100
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 20
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 2
    cfg.MODEL.ROI_HEADS.IN_FEATURES = ["p2", "p3"]
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 1
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 32
    cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 4
    cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = 2
    cfg.MODEL.ROI_MASK_HEAD.NUM_CONV = 1
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 8
    cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION = 4
    cfg.MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO = 2
    return cfg


def _batch():
    """Two synthetic images (60x64 and 64x56): bright rectangles on a dark background."""
    g = torch.Generator().manual_seed(0)
    inputs = []
    for (h, w), boxes, classes in [
        ((60, 64), [[6, 8, 30, 40], [36, 10, 60, 30]], [0, 1]),
        ((64, 56), [[10, 20, 50, 58]], [1]),
    ]:
        img = torch.rand(3, h, w, generator=g) * 30
        masks = torch.zeros(len(boxes), h, w, dtype=torch.bool)
        for k, (x0, y0, x1, y1) in enumerate(boxes):
            img[:, y0:y1, x0:x1] += 150 + 60 * classes[k]
            masks[k, y0:y1, x0:x1] = True
        inst = Instances((h, w))
        inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        inst.gt_classes = torch.tensor(classes)
        inst.gt_masks = BitMasks(masks)
        inputs.append({"image": img, "height": h, "width": w, "instances": inst})
    return inputs


def test_preprocess_normalizes_and_pads():
    torch.manual_seed(0)
    model = build_model(_cfg())
    assert isinstance(model, GeneralizedRCNN)
    images = model.preprocess_image(_batch())
    assert images.tensor.shape == (2, 3, 64, 64)  # padded to a multiple of 8
    assert images.image_sizes == [(60, 64), (64, 56)]
    raw = _batch()[0]["image"]
    mean = torch.tensor([103.530, 116.280, 123.675]).view(3, 1, 1)
    torch.testing.assert_close(images.tensor[0, :, :60, :64], (raw - mean) / 57.0)
    assert (images.tensor[0, :, 60:] == 0).all()
    with pytest.raises(ValueError, match="image"):
        model.preprocess_image([{"image": torch.zeros(1, 8, 8)}])


def test_memory_format_channels_last_gives_same_detections():
    # MODEL.MEMORY_FORMAT only changes the activations' layout: same weights, same outputs.
    results = {}
    for fmt in ("contiguous", "channels_last"):
        cfg = _cfg()
        cfg.MODEL.MEMORY_FORMAT = fmt
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
        torch.manual_seed(0)
        model = build_model(cfg).eval()
        assert model.channels_last == (fmt == "channels_last")
        images = model.preprocess_image(_batch())
        assert images.tensor.is_contiguous(memory_format=torch.channels_last) == model.channels_last
        with torch.no_grad():
            results[fmt] = model(_batch())
    for a, b in zip(results["contiguous"], results["channels_last"]):
        a, b = a["instances"], b["instances"]
        torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor, rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(a.scores, b.scores, rtol=1e-4, atol=1e-5)
    cfg = _cfg()
    assert build_model(cfg).channels_last  # "auto" on a CPU device
    cfg.MODEL.MEMORY_FORMAT = "nhwc"
    with pytest.raises(ValueError, match="MEMORY_FORMAT"):
        build_model(cfg)


def test_training_losses_finite_with_gradients():
    torch.manual_seed(0)
    model = build_model(_cfg()).train()
    with EventStorage():
        losses = model(_batch())
    expected = {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_mask"}
    assert set(losses) == expected
    for name, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), name
    sum(losses.values()).backward()
    for name, module in [
        ("backbone", model.backbone.stem),
        ("rpn", model.proposal_generator.rpn_head.conv),
        ("box", model.roi_heads.box_predictor.bbox_pred),
        ("mask", model.roi_heads.mask_head.predictor),
    ]:
        assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0, name


def test_sgd_reduces_total_loss():
    torch.manual_seed(0)
    model = build_model(_cfg()).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    batch = _batch()
    totals = []
    with EventStorage():
        for _ in range(30):
            total = sum(model(batch).values())
            opt.zero_grad()
            total.backward()
            opt.step()
            totals.append(total.item())
    first, last = sum(totals[:3]) / 3, sum(totals[-3:]) / 3
    assert last < 0.7 * first, totals


def test_inference_rescales_to_requested_size_float64():
    torch.manual_seed(0)
    cfg = _cfg()
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    cfg.TEST.DETECTIONS_PER_IMAGE = 5
    model = build_model(cfg).double().eval()
    batch = [
        {"image": b["image"].double(), "height": 2 * b["height"], "width": b["width"]}
        for b in _batch()
    ]
    with torch.no_grad():
        raw = model.inference(batch, do_postprocess=False)
        out = model(batch)
    assert len(out) == 2
    for r, o, b in zip(raw, out, batch):
        inst = o["instances"]
        assert inst.image_size == (b["height"], b["width"])
        assert 0 < len(inst) <= 5
        assert inst.pred_boxes.tensor.dtype == torch.float64
        assert inst.pred_masks.shape == (len(inst), b["height"], b["width"])
        assert inst.pred_masks.dtype == torch.bool
        # Heights doubled, widths kept: y coordinates double.
        keep = r.pred_boxes.nonempty()
        torch.testing.assert_close(inst.pred_boxes.tensor[:, 1], 2 * r.pred_boxes.tensor[keep, 1])
        torch.testing.assert_close(inst.pred_boxes.tensor[:, 0], r.pred_boxes.tensor[keep, 0])
    # Given boxes: only the mask head runs.
    given = Instances((60, 64))
    given.pred_boxes = Boxes(torch.tensor([[6.0, 8.0, 30.0, 40.0]], dtype=torch.float64))
    given.pred_classes = torch.tensor([0])
    with torch.no_grad():
        (res,) = model.inference(batch[:1], detected_instances=[given])
    assert res["instances"].pred_masks.shape == (1, 120, 64)
