"""Pretrained image encoders made on the synthetic world (``synthetic://`` weights).

Every paper this project reproduces starts its image encoder from ImageNet weights; with no
download possible, :func:`ensure_pretrained` pretrains the encoders the synthetic configs use
(ResNet-18; Eigen et al.'s AlexNet-width coarse convolutions) on renders of procedural objects
that no dataset split contains (:mod:`.data`), with category, silhouette, depth and normal
targets (:mod:`.net`, :mod:`.recipe`), and caches the result (:mod:`.cache`). Configs name the
weights ``synthetic://resnet18_pretrained.pth`` (``MODEL.BACKBONE.PRETRAINED``) or
``synthetic://eigen_alexnet_pretrained.pth`` (``MODEL.DEPTH.PRETRAINED``).
"""

from .cache import (
    PRETRAINED_RECIPES,
    SCHEME,
    ensure_pretrained,
    is_cached,
    pretrained_dir,
    recipe_key,
    register_pretrain_recipe,
)
from .data import pretrain_model_id, pretrain_objects, render_pretraining_set
from .recipe import IMAGENET_PIXEL_MEAN, IMAGENET_PIXEL_STD, PretrainRecipe, pretrain

__all__ = [
    "IMAGENET_PIXEL_MEAN",
    "IMAGENET_PIXEL_STD",
    "PRETRAINED_RECIPES",
    "PretrainRecipe",
    "SCHEME",
    "ensure_pretrained",
    "is_cached",
    "pretrain",
    "pretrain_model_id",
    "pretrain_objects",
    "pretrained_dir",
    "recipe_key",
    "register_pretrain_recipe",
    "render_pretraining_set",
]
