"""Backbones: image -> named feature maps, registered in ``BACKBONE_REGISTRY``."""

from meshrecon.modeling.backbone.build import BACKBONE_REGISTRY, build_backbone

__all__ = ["BACKBONE_REGISTRY", "build_backbone"]
