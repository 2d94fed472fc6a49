"""Meta-architectures: whole models, registered in ``META_ARCH_REGISTRY``."""

from meshrecon.modeling.meta_arch.build import META_ARCH_REGISTRY, build_model, resolve_device
from meshrecon.modeling.meta_arch.rcnn import GeneralizedRCNN

__all__ = ["META_ARCH_REGISTRY", "build_model", "resolve_device", "GeneralizedRCNN"]
