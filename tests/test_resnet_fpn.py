import json
import pickle
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from meshrecon.checkpoint import Checkpointer
from meshrecon.config import get_cfg
from meshrecon.layers import FrozenBatchNorm2d, ShapeSpec
from meshrecon.modeling.backbone import (
    FPN,
    BasicBlock,
    BottleneckBlock,
    LastLevelMaxPool,
    ResNet,
    build_backbone,
    build_resnet_backbone,
    build_resnet_fpn_backbone,
)
from meshrecon.structures import ImageList

GOLDEN = Path(__file__).parent / "data" / "golden" / "meshrcnn"
PIX3D_CONFIGS = ["meshrcnn", "voxelrcnn", "sphereinit", "pixel2mesh"]
LEVELS = ["res2", "res3", "res4", "res5"]


def _backbone_cfg(merged: dict):
    """A default cfg with only the backbone keys of a full (Detectron2-era) merged config."""
    cfg = get_cfg()
    model = merged["MODEL"]
    cfg.merge_from_other_cfg(
        type(cfg)(
            {
                "MODEL": {
                    "BACKBONE": model["BACKBONE"],
                    "RESNETS": model["RESNETS"],
                    "FPN": model["FPN"],
                    "PIXEL_MEAN": model["PIXEL_MEAN"],
                    "PIXEL_STD": model["PIXEL_STD"],
                }
            }
        )
    )
    return cfg


def _tiny_cfg(**resnets):
    cfg = get_cfg()
    cfg.MODEL.RESNETS.WIDTH_PER_GROUP = 4
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = 8
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 16
    cfg.MODEL.RESNETS.OUT_FEATURES = list(LEVELS)
    for k, v in resnets.items():
        cfg.MODEL.RESNETS[k] = v
    return cfg


@pytest.mark.parametrize("name", PIX3D_CONFIGS)
def test_backbone_state_dict_matches_meshrcnn_manifest(name):
    merged = yaml.safe_load((GOLDEN / "manifests" / f"pix3d_{name}_R50_FPN.yaml").read_text())
    manifest = json.loads((GOLDEN / "manifests" / f"pix3d_{name}_R50_FPN.json").read_text())
    expected = [(k, v) for k, v in manifest.items() if k.startswith("backbone.")]
    with torch.device("meta"):  # shapes only: no memory, no initialization cost
        backbone = build_backbone(_backbone_cfg(merged))
    assert isinstance(backbone, FPN)
    got = [("backbone." + k, list(v.shape)) for k, v in backbone.state_dict().items()]
    assert dict(got) == dict(expected)
    assert [k for k, _ in got] == [k for k, _ in expected]  # same order, too


def _golden_features_run(mean_dtype):
    golden = torch.load(GOLDEN / "pix3d_meshrcnn_fpn_features.pt", weights_only=True)
    merged = yaml.safe_load(golden["config_yaml"])
    cfg = _backbone_cfg(merged)
    backbone = build_backbone(cfg)
    backbone.load_state_dict(golden["backbone_state_dict"], strict=True)
    backbone = backbone.double().eval()
    mean = torch.tensor(cfg.MODEL.PIXEL_MEAN, dtype=mean_dtype).view(-1, 1, 1).double()
    std = torch.tensor(cfg.MODEL.PIXEL_STD, dtype=mean_dtype).view(-1, 1, 1).double()
    image = (golden["image_bgr"].double() - mean) / std
    # 240 x 320 pads to 256 x 320 (size divisibility 32), with zeros after normalization.
    batch = ImageList.from_tensors([image], backbone.size_divisibility).tensor
    assert tuple(batch.shape) == (1, 3, 256, 320)
    with torch.no_grad():
        features = backbone(batch)
    return features, golden["features"]


def test_fpn_features_match_golden_float64():
    # Detectron2 keeps PIXEL_MEAN / PIXEL_STD as float32 buffers that model.double() casts:
    # with that, the float64 run agrees to rounding.
    features, expected = _golden_features_run(torch.float32)
    assert list(features) == ["p2", "p3", "p4", "p5", "p6"] == list(expected)
    for name, ref in expected.items():
        assert features[name].dtype == torch.float64
        assert features[name].shape == ref.shape
        torch.testing.assert_close(features[name], ref, rtol=1e-10, atol=1e-10 * ref.abs().max())


def test_fpn_features_match_golden_with_float64_mean_to_1e4():
    # Normalizing with the exact float64 mean differs from the recording by the float32
    # rounding of the mean (~1e-6 per pixel); still well within 1e-4 relative.
    features, expected = _golden_features_run(torch.float64)
    for name, ref in expected.items():
        err = (features[name] - ref).abs().max() / ref.abs().max()
        assert err < 1e-4, (name, err.item())


def test_golden_weights_load_through_detectron2_pkl(tmp_path):
    golden = torch.load(GOLDEN / "pix3d_meshrcnn_fpn_features.pt", weights_only=True)
    cfg = _backbone_cfg(yaml.safe_load(golden["config_yaml"]))
    model = nn.Module()
    model.backbone = build_backbone(cfg)
    blob = {
        "model": {"backbone." + k: v.numpy() for k, v in golden["backbone_state_dict"].items()},
        "__author__": "Detectron2 Model Zoo",
    }
    path = tmp_path / "model_final.pkl"
    path.write_bytes(pickle.dumps(blob))
    ckpt = Checkpointer(model)
    ckpt.load(str(path))
    inc = ckpt.last_incompatible
    assert not inc.missing_keys and not inc.unexpected_keys and not inc.incorrect_shapes
    for k, v in golden["backbone_state_dict"].items():
        assert torch.equal(model.backbone.state_dict()[k], v), k


def test_resnet_fpn_output_shape_and_forward():
    cfg = _tiny_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
    cfg.MODEL.FPN.IN_FEATURES = list(LEVELS)
    cfg.MODEL.FPN.OUT_CHANNELS = 8
    fpn = build_backbone(cfg)
    assert fpn.size_divisibility == 32
    assert fpn.padding_constraints == {"square_size": 0}
    shapes = fpn.output_shape()
    assert shapes == {f"p{i}": ShapeSpec(channels=8, stride=2**i) for i in range(2, 7)}
    bottom = fpn.bottom_up.output_shape()
    assert [bottom[n].channels for n in LEVELS] == [16, 32, 64, 128]
    assert [bottom[n].stride for n in LEVELS] == [4, 8, 16, 32]
    out = fpn(torch.randn(2, 3, 64, 96))
    for name, spec in shapes.items():
        assert out[name].shape == (2, 8, -(-64 // spec.stride), -(-96 // spec.stride))
    torch.testing.assert_close(out["p6"], out["p5"][:, :, ::2, ::2])


def test_fpn_top_down_average_fusion_reference():
    torch.manual_seed(0)
    bottom_up = build_resnet_backbone(_tiny_cfg(OUT_FEATURES=["res4", "res5"]))
    fpn = FPN(bottom_up, ["res4", "res5"], out_channels=4, top_block=None, fuse_type="avg")
    assert list(fpn.output_shape()) == ["p4", "p5"]
    x = torch.randn(1, 3, 64, 64)
    feats = bottom_up(x)
    top = fpn.fpn_lateral5(feats["res5"])
    p4 = fpn.fpn_output4(
        (fpn.fpn_lateral4(feats["res4"]) + top.repeat_interleave(2, -1).repeat_interleave(2, -2))
        / 2
    )
    out = fpn(x)
    torch.testing.assert_close(out["p5"], fpn.fpn_output5(top))
    torch.testing.assert_close(out["p4"], p4)


def test_fpn_validates_arguments():
    bottom_up = build_resnet_backbone(_tiny_cfg())
    with pytest.raises(ValueError, match="fuse_type"):
        FPN(bottom_up, LEVELS, 8, fuse_type="max")
    with pytest.raises(ValueError, match="in_features"):
        FPN(bottom_up, ["res2", "res7"], 8)
    with pytest.raises(ValueError, match="strides"):
        FPN(bottom_up, ["res2", "res4"], 8)
    with pytest.raises(ValueError, match="bottom_up"):
        FPN(nn.Conv2d(3, 3, 1), LEVELS, 8)
    fpn = FPN(bottom_up, LEVELS, 32, top_block=LastLevelMaxPool(), norm="GN")
    assert isinstance(fpn.fpn_output3.norm, nn.GroupNorm) and fpn.fpn_output3.bias is None


def test_freeze_at_and_norms():
    cfg = _tiny_cfg(NORM="BN")
    cfg.MODEL.BACKBONE.FREEZE_AT = 2
    net = build_resnet_backbone(cfg)
    assert isinstance(net.stem.conv1.norm, FrozenBatchNorm2d)
    assert isinstance(net.res2[0].conv1.norm, FrozenBatchNorm2d)
    assert isinstance(net.res3[0].conv1.norm, nn.BatchNorm2d)
    assert not any(p.requires_grad for p in net.stem.parameters())
    assert not any(p.requires_grad for p in net.res2.parameters())
    assert all(p.requires_grad for p in net.res3.parameters())
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    net = build_resnet_backbone(cfg)
    assert all(p.requires_grad for p in net.parameters())


def test_depths_block_types_and_counts():
    for depth, counts, block in [
        (18, [2, 2, 2, 2], BasicBlock),
        (34, [3, 4, 6, 3], BasicBlock),
        (50, [3, 4, 6, 3], BottleneckBlock),
        (101, [3, 4, 23, 3], BottleneckBlock),
    ]:
        res2 = 16 if depth >= 50 else 64
        with torch.device("meta"):
            net = build_resnet_backbone(_tiny_cfg(DEPTH=depth, RES2_OUT_CHANNELS=res2))
        assert [len(getattr(net, n)) for n in LEVELS] == counts
        assert all(isinstance(b, block) for n in LEVELS for b in getattr(net, n))
    net = build_resnet_backbone(_tiny_cfg(DEPTH=18, RES2_OUT_CHANNELS=64))
    out = net(torch.randn(1, 3, 32, 48))
    assert [out[n].shape[1] for n in LEVELS] == [64, 128, 256, 512]
    assert out["res5"].shape[-2:] == (1, 2)
    with pytest.raises(ValueError, match="res2_out_channels"):
        build_resnet_backbone(_tiny_cfg(DEPTH=34))
    with pytest.raises(ValueError, match="depth"):
        build_resnet_backbone(_tiny_cfg(DEPTH=152))


def test_stride_in_1x1_groups_dilation():
    net = build_resnet_backbone(_tiny_cfg(STRIDE_IN_1X1=True))
    assert net.res3[0].conv1.stride == (2, 2) and net.res3[0].conv2.stride == (1, 1)
    net = build_resnet_backbone(_tiny_cfg(STRIDE_IN_1X1=False))
    assert net.res3[0].conv1.stride == (1, 1) and net.res3[0].conv2.stride == (2, 2)
    net = build_resnet_backbone(_tiny_cfg(NUM_GROUPS=4, WIDTH_PER_GROUP=2))
    assert net.res2[0].conv2.groups == 4 and net.res2[0].conv2.weight.shape == (8, 2, 3, 3)
    net = build_resnet_backbone(_tiny_cfg(RES5_DILATION=2))
    assert net.output_shape()["res5"].stride == 16 and net.res5[0].conv2.dilation == (2, 2)
    out = net(torch.randn(1, 3, 64, 64))
    assert out["res5"].shape[-2:] == out["res4"].shape[-2:] == (4, 4)
    with pytest.raises(ValueError, match="DEFORM"):
        build_resnet_backbone(_tiny_cfg(DEFORM_ON_PER_STAGE=[False, True, False, False]))
    with pytest.raises(ValueError, match="res5_dilation"):
        build_resnet_backbone(_tiny_cfg(RES5_DILATION=3))


def test_out_features_truncate_stages_and_stem_output():
    net = build_resnet_backbone(_tiny_cfg(OUT_FEATURES=["stem", "res3"]))
    assert not hasattr(net, "res4") and not any(k.startswith("res4") for k in net.state_dict())
    out = net(torch.randn(1, 3, 32, 32))
    assert list(out) == ["stem", "res3"] and out["stem"].shape == (1, 8, 8, 8)
    assert net.output_shape() == {"stem": ShapeSpec(8, stride=4), "res3": ShapeSpec(32, stride=8)}
    with pytest.raises(ValueError, match="res9"):
        build_resnet_backbone(_tiny_cfg(OUT_FEATURES=["res9"]))
    with pytest.raises(ValueError, match="4-d|N, C, H, W"):
        net(torch.randn(3, 32, 32))


def test_resnet_classifier_head_and_explicit_args():
    net = build_resnet_fpn_backbone(
        bottom_up=build_resnet_backbone(
            depth=50,
            out_features=["res4", "res5"],
            width_per_group=2,
            stem_out_channels=4,
            res2_out_channels=8,
        ),
        in_features=["res4", "res5"],
        out_channels=4,
    )
    assert list(net.output_shape()) == ["p4", "p5", "p6"]
    stem = build_resnet_backbone(depth=18, res2_out_channels=64, out_features=["res2"]).stem
    clf = ResNet(stem, [[BasicBlock(64, 64)]], num_classes=5, out_features=["res2", "linear"])
    out = clf(torch.randn(2, 3, 16, 16))
    assert out["linear"].shape == (2, 5) and "linear" not in clf.output_shape()
