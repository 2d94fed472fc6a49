"""Layers shared by the models.

Detectron2-compatible normalization, convolution wrappers, ``ShapeSpec``, ``ROIAlign`` and the
models' input ``PixelNormalization``.
"""

from meshrecon.layers.batch_norm import FrozenBatchNorm2d, LayerNorm, get_norm, update_bn_stats
from meshrecon.layers.mask_ops import paste_masks_in_image
from meshrecon.layers.pixel_normalization import PixelNormalization
from meshrecon.layers.roi_align import ROIAlign
from meshrecon.layers.shape_spec import ShapeSpec
from meshrecon.layers.wrappers import Conv2d, ConvTranspose2d, cat, nonzero_tuple, shapes_to_tensor

__all__ = [
    "Conv2d",
    "ConvTranspose2d",
    "FrozenBatchNorm2d",
    "LayerNorm",
    "PixelNormalization",
    "ROIAlign",
    "ShapeSpec",
    "cat",
    "get_norm",
    "nonzero_tuple",
    "paste_masks_in_image",
    "shapes_to_tensor",
    "update_bn_stats",
]
