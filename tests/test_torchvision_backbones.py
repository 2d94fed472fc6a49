import json
from pathlib import Path

import pytest
import torch
import torchvision
import yaml
from torch import nn

from meshrecon.checkpoint import Checkpointer, cache_path_for_url, catalog, resolve_url
from meshrecon.config import get_cfg
from meshrecon.layers import FrozenBatchNorm2d, ShapeSpec
from meshrecon.modeling.backbone import (
    VGG16,
    TorchvisionResNet,
    build_backbone,
    torchvision_backbone_rename_hook,
    translate_meshrcnn_backbone_key,
)

MANIFESTS = Path(__file__).parent / "data" / "golden" / "meshrcnn" / "manifests"
LEVELS = ["res2", "res3", "res4", "res5"]


def _cfg_from_meshrcnn_yaml(path: Path):
    merged = translate_meshrcnn_backbone_key(yaml.safe_load(path.read_text()))
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = merged["MODEL"]["BACKBONE"]["NAME"]
    cfg.MODEL.BACKBONE.FREEZE_AT = merged["MODEL"]["BACKBONE"]["FREEZE_AT"]
    return cfg


@pytest.mark.parametrize("name", ["voxmesh", "sphereinit", "pixel2mesh"])
def test_backbone_state_dict_matches_shapenet_manifest(name):
    cfg = _cfg_from_meshrcnn_yaml(MANIFESTS / f"shapenet_{name}_R50.yaml")
    assert cfg.MODEL.BACKBONE.NAME == "resnet50" and cfg.MODEL.BACKBONE.FREEZE_AT == 0
    manifest = json.loads((MANIFESTS / f"shapenet_{name}_R50.json").read_text())
    expected = [(k, v) for k, v in manifest.items() if k.startswith("backbone.")]
    with torch.device("meta"):
        backbone = build_backbone(cfg)
    got = [("backbone." + k, list(v.shape)) for k, v in backbone.state_dict().items()]
    assert got == expected
    # Mesh R-CNN sizes its heads from these: voxel head res5 (2048), mesh head the sum (3840).
    shapes = backbone.output_shape()
    assert [shapes[n].channels for n in LEVELS] == [256, 512, 1024, 2048]
    assert [shapes[n].stride for n in LEVELS] == [4, 8, 16, 32]


def test_translate_meshrcnn_backbone_key():
    legacy = {"MODEL": {"BACKBONE": "resnet50", "MESH_ON": True}, "SOLVER": {"BASE_LR": 1.0}}
    out = translate_meshrcnn_backbone_key(legacy)
    assert out == {
        "MODEL": {"BACKBONE": {"NAME": "resnet50", "FREEZE_AT": 0}, "MESH_ON": True},
        "SOLVER": {"BASE_LR": 1.0},
    }
    assert legacy["MODEL"]["BACKBONE"] == "resnet50"  # input untouched
    modern = {"MODEL": {"BACKBONE": {"NAME": "build_resnet_fpn_backbone"}}}
    assert translate_meshrcnn_backbone_key(modern) == modern
    # The result merges into meshrecon's config.
    cfg = get_cfg()
    cfg.merge_from_other_cfg(type(cfg)({"MODEL": out["MODEL"]}))
    assert cfg.MODEL.BACKBONE.NAME == "resnet50"


def _torchvision_stages(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    outs = []
    for i in range(1, 5):
        x = getattr(net, f"layer{i}")(x)
        outs.append(x)
    return outs


@pytest.mark.parametrize("depth", [18, 50])
def test_torchvision_weights_load_and_features_match(depth, tmp_path, monkeypatch):
    # torchvision://resnetN served from a private cache: no network in tests.
    monkeypatch.setenv("MESHRECON_CACHE", str(tmp_path))

    def no_network(url, dst, timeout=0):
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(catalog, "_download", no_network)
    torch.manual_seed(depth)
    reference = getattr(torchvision.models, f"resnet{depth}")(weights=None).eval()
    with torch.no_grad():  # non-trivial statistics, so a mix-up would show
        for m in reference.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    url = resolve_url(f"torchvision://resnet{depth}")
    cached = Path(cache_path_for_url(url))
    cached.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), cached)

    model = nn.Module()
    model.backbone = TorchvisionResNet(depth=depth)
    model.voxel_head = nn.Conv2d(4, 4, 1)  # other modules are left alone
    ckpt = Checkpointer(model, rename_hook=torchvision_backbone_rename_hook)
    ckpt.load(f"torchvision://resnet{depth}")
    inc = ckpt.last_incompatible
    assert not inc.unexpected_keys and not inc.incorrect_shapes
    assert all(k.startswith("voxel_head.") for k in inc.missing_keys)
    assert torch.equal(model.backbone.stem[0].weight, reference.conv1.weight)

    model.eval()
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        ours = model.backbone(x)
        theirs = _torchvision_stages(reference, x)
    assert list(ours) == LEVELS
    for name, ref in zip(LEVELS, theirs):
        torch.testing.assert_close(ours[name], ref, rtol=1e-5, atol=1e-5)
        assert ours[name].shape[1] == model.backbone.output_shape()[name].channels


def test_torchvision_resnet_options():
    net = TorchvisionResNet(depth=34, out_features=["res3"])
    assert not hasattr(net, "stage3") and net.output_shape() == {"res3": ShapeSpec(128, stride=8)}
    out = net(torch.randn(1, 3, 32, 32))
    assert list(out) == ["res3"] and out["res3"].shape == (1, 128, 4, 4)
    frozen = TorchvisionResNet(depth=18, freeze_at=2)
    assert isinstance(frozen.stem[1], FrozenBatchNorm2d)
    assert isinstance(frozen.stage1[0].bn1, FrozenBatchNorm2d)
    assert isinstance(frozen.stage2[0].bn1, nn.BatchNorm2d)
    assert not any(p.requires_grad for p in frozen.stage1.parameters())
    assert all(p.requires_grad for p in frozen.stage2.parameters())
    gray = TorchvisionResNet(depth=18, in_channels=1, out_features=["res2"])
    assert gray(torch.randn(1, 1, 32, 32))["res2"].shape == (1, 64, 8, 8)
    dbl = TorchvisionResNet(depth=18, out_features=["res2"]).double().eval()
    assert dbl(torch.randn(1, 3, 32, 32, dtype=torch.float64))["res2"].dtype == torch.float64
    with pytest.raises(ValueError, match="depth"):
        TorchvisionResNet(depth=152)
    with pytest.raises(ValueError, match="out_features"):
        TorchvisionResNet(depth=18, out_features=["p2"])
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "resnet18"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    net = build_backbone(cfg)
    assert isinstance(net, TorchvisionResNet) and len(net.stage1) == 2


def test_vgg16_matches_torchvision_layout_and_features(tmp_path):
    torch.manual_seed(0)
    layers = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
    reference = nn.Module()
    reference.features = layers
    reference.classifier = nn.Linear(8, 2)  # stands in for torchvision's classifier

    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "vgg16"
    model = nn.Module()
    model.backbone = build_backbone(cfg)
    assert isinstance(model.backbone, VGG16)
    ours = {k: tuple(v.shape) for k, v in model.backbone.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in layers.state_dict().items()}
    assert {"features." + k: v for k, v in theirs.items()} == ours

    path = tmp_path / "vgg16.pth"
    torch.save(reference.state_dict(), path)
    ckpt = Checkpointer(model, rename_hook=torchvision_backbone_rename_hook)
    ckpt.load(str(path))
    inc = ckpt.last_incompatible
    assert not inc.missing_keys and not inc.unexpected_keys and not inc.incorrect_shapes

    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        out = model.backbone(x)
        expected = {"conv3_3": layers[:16](x), "conv4_3": layers[:23](x), "conv5_3": layers[:30](x)}
    assert list(out) == list(expected)
    for name, ref in expected.items():
        torch.testing.assert_close(out[name], ref)
    shapes = model.backbone.output_shape()
    assert [(s.channels, s.stride) for s in shapes.values()] == [(256, 4), (512, 8), (512, 16)]
    assert sum(s.channels for s in shapes.values()) == 1280


def test_vgg16_out_features():
    net = VGG16(out_features=["conv1_2", "conv2_2"])
    assert len(net.features) == 9  # stops after conv2_2's ReLU
    out = net(torch.randn(1, 3, 16, 16))
    assert out["conv1_2"].shape == (1, 64, 16, 16) and out["conv2_2"].shape == (1, 128, 8, 8)
    with pytest.raises(ValueError, match="out_features"):
        VGG16(out_features=["conv6_1"])


def test_rename_hook_rules():
    sd = {
        "conv1.weight": 1,
        "bn1.running_mean": 2,
        "layer3.5.conv2.weight": 3,
        "fc.weight": 4,
        "classifier.0.bias": 5,
        "features.28.weight": 6,
        "mesh_head.conv1.weight": 7,
    }
    assert torchvision_backbone_rename_hook(sd, "state_dict") == {
        "stem.0.weight": 1,
        "stem.1.running_mean": 2,
        "stage3.5.conv2.weight": 3,
        "features.28.weight": 6,
        "mesh_head.conv1.weight": 7,
    }
    # meshrecon / Detectron2 checkpoints pass through untouched.
    assert torchvision_backbone_rename_hook(sd, "meshrecon") == sd
