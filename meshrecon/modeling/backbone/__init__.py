"""Backbones: image -> named feature maps, registered in ``BACKBONE_REGISTRY``."""

from meshrecon.modeling.backbone.backbone import Backbone
from meshrecon.modeling.backbone.build import BACKBONE_REGISTRY, build_backbone
from meshrecon.modeling.backbone.fpn import FPN, LastLevelMaxPool, build_resnet_fpn_backbone
from meshrecon.modeling.backbone.resnet import (
    BasicBlock,
    BasicStem,
    BottleneckBlock,
    CNNBlockBase,
    ResNet,
    build_resnet_backbone,
    make_stage,
)
from meshrecon.modeling.backbone.torchvision_resnet import (
    TorchvisionResNet,
    torchvision_backbone_rename_hook,
    translate_meshrcnn_backbone_key,
)
from meshrecon.modeling.backbone.vgg import VGG16

__all__ = [
    "BACKBONE_REGISTRY",
    "build_backbone",
    "Backbone",
    "BasicBlock",
    "BasicStem",
    "BottleneckBlock",
    "CNNBlockBase",
    "FPN",
    "LastLevelMaxPool",
    "ResNet",
    "TorchvisionResNet",
    "VGG16",
    "build_resnet_backbone",
    "build_resnet_fpn_backbone",
    "make_stage",
    "torchvision_backbone_rename_hook",
    "translate_meshrcnn_backbone_key",
]
