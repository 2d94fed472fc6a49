"""Random augmentations (transforms with drawn parameters) and Eigen's depth augmentations.

See :mod:`meshrecon.data.transforms` for the conventions every transform follows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from .transforms import (
    CropTransform,
    HFlipTransform,
    NoOpTransform,
    ResizeTransform,
    Transform,
    TransformList,
    VFlipTransform,
    _as_K,
)

__all__ = [
    "Augmentation",
    "RandomCrop",
    "RandomFlip",
    "ResizeShortestEdge",
    "apply_augmentations",
    "build_augmentation",
    "color_jitter",
    "depth_scale_augment",
    "random_crop",
]


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    # Drawing the seed from numpy's global state keeps runs reproducible under the loader's
    # per-worker seeding (worker_init_reset_seed).
    return rng if rng is not None else np.random.default_rng(np.random.randint(0, 2**31 - 1))  # noqa: NPY002


class Augmentation:
    """Draws a :class:`Transform` for an image of a given size."""

    def get_transform(self, h: int, w: int, rng: np.random.Generator | None = None) -> Transform:
        raise NotImplementedError


class ResizeShortestEdge(Augmentation):
    """Scale the short edge to a size drawn from ``short_edge_length``, capping the long edge.

    Args:
        short_edge_length: sizes; "choice" picks one, "range" draws an int in [min, max].
            A size of 0 disables resizing.
        max_size: the long edge is scaled down to at most this.
        sample_style: "choice" or "range".
    """

    def __init__(
        self,
        short_edge_length: int | Sequence[int],
        max_size: int = 10**9,
        sample_style: str = "range",
        interp: int = Image.BILINEAR,
    ):
        if isinstance(short_edge_length, int):
            short_edge_length = (short_edge_length, short_edge_length)
        if sample_style not in ("range", "choice"):
            raise ValueError(f"sample_style must be 'range' or 'choice', got {sample_style!r}")
        if sample_style == "range" and len(short_edge_length) != 2:
            raise ValueError(f"sample_style 'range' needs (min, max), got {short_edge_length!r}")
        self.short_edge_length = tuple(short_edge_length)
        self.max_size, self.sample_style, self.interp = max_size, sample_style, interp

    @staticmethod
    def get_output_shape(h: int, w: int, short: int, max_size: int) -> tuple[int, int]:
        """(new_h, new_w): short edge to ``short``, long edge at most ``max_size``."""
        scale = short / min(h, w)
        new_h, new_w = (short, scale * w) if h < w else (scale * h, short)
        if max(new_h, new_w) > max_size:
            s = max_size / max(new_h, new_w)
            new_h, new_w = new_h * s, new_w * s
        return int(new_h + 0.5), int(new_w + 0.5)

    def get_transform(self, h: int, w: int, rng: np.random.Generator | None = None) -> Transform:
        r = _rng(rng)
        if self.sample_style == "range":
            size = int(r.integers(self.short_edge_length[0], self.short_edge_length[1] + 1))
        else:
            size = int(self.short_edge_length[int(r.integers(len(self.short_edge_length)))])
        if size == 0:
            return NoOpTransform()
        new_h, new_w = self.get_output_shape(h, w, size, self.max_size)
        if (new_h, new_w) == (h, w):
            return NoOpTransform()
        return ResizeTransform(h, w, new_h, new_w, self.interp)


class RandomFlip(Augmentation):
    """Flip with probability ``prob``, horizontally or vertically."""

    def __init__(self, prob: float = 0.5, horizontal: bool = True, vertical: bool = False):
        if horizontal == vertical:
            raise ValueError("RandomFlip needs exactly one of horizontal / vertical")
        self.prob, self.horizontal = prob, horizontal

    def get_transform(self, h: int, w: int, rng: np.random.Generator | None = None) -> Transform:
        if _rng(rng).random() >= self.prob:
            return NoOpTransform()
        return HFlipTransform(w) if self.horizontal else VFlipTransform(h)


class RandomCrop(Augmentation):
    """Detectron2's RandomCrop: "relative_range", "relative", "absolute", "absolute_range"."""

    def __init__(self, crop_type: str, crop_size: Sequence[float]):
        if crop_type not in ("relative_range", "relative", "absolute", "absolute_range"):
            raise ValueError(f"unknown INPUT.CROP.TYPE {crop_type!r}")
        self.crop_type, self.crop_size = crop_type, tuple(crop_size)

    def get_transform(self, h: int, w: int, rng: np.random.Generator | None = None) -> Transform:
        r = _rng(rng)
        ch, cw = self.crop_size
        if self.crop_type == "relative":
            ch, cw = int(h * ch + 0.5), int(w * cw + 0.5)
        elif self.crop_type == "relative_range":
            fh, fw = r.uniform(ch, 1.0), r.uniform(cw, 1.0)
            ch, cw = int(h * fh + 0.5), int(w * fw + 0.5)
        elif self.crop_type == "absolute_range":
            lo, hi = int(self.crop_size[0]), int(self.crop_size[1])
            ch = int(r.integers(min(h, lo), min(h, hi) + 1))
            cw = int(r.integers(min(w, lo), min(w, hi) + 1))
        ch, cw = min(int(ch), h), min(int(cw), w)
        y0 = int(r.integers(0, h - ch + 1))
        x0 = int(r.integers(0, w - cw + 1))
        return CropTransform(x0, y0, cw, ch)


def apply_augmentations(
    augmentations: Sequence[Augmentation],
    image: np.ndarray,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, TransformList]:
    """Draw and apply each augmentation in turn; returns the image and the transforms."""
    transforms = []
    for aug in augmentations:
        t = aug.get_transform(image.shape[0], image.shape[1], rng)
        image = t.apply_image(image)
        transforms.append(t)
    return image, TransformList(transforms)


def build_augmentation(cfg, is_train: bool) -> list[Augmentation]:
    """Detectron2's default: shortest-edge resize, plus the configured flip and crop in training."""
    if is_train:
        augs: list[Augmentation] = [
            ResizeShortestEdge(
                cfg.INPUT.MIN_SIZE_TRAIN,
                cfg.INPUT.MAX_SIZE_TRAIN,
                cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING,
            )
        ]
        if cfg.INPUT.CROP.ENABLED:
            augs.insert(0, RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE))
        flip = cfg.INPUT.RANDOM_FLIP
        if flip not in ("horizontal", "vertical", "none"):
            raise ValueError(f"INPUT.RANDOM_FLIP must be horizontal/vertical/none, got {flip!r}")
        if flip != "none":
            augs.append(RandomFlip(horizontal=flip == "horizontal", vertical=flip == "vertical"))
        return augs
    return [ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice")]


# ------------------------------------------------------------------------------------------
# Depth-estimation helpers (Eigen et al.'s augmentations).
# ------------------------------------------------------------------------------------------
def depth_scale_augment(
    image: np.ndarray, depth: np.ndarray, K: Sequence[float], s: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigen's scale augmentation: the image is resized by ``s`` and depths divided by ``s``.

    Magnifying the picture by s is what the camera would see with every point s times closer,
    so the focal lengths stay and only the principal point moves with the pixels.

    Returns:
        image (round(s H), round(s W)[, C]), depth (same size, nearest, / s), K
        ``[fx, fy, sx cx, sy cy]`` with (sx, sy) the exact per-axis resize factors.
    """
    h, w = image.shape[:2]
    new_h, new_w = max(1, int(round(h * s))), max(1, int(round(w * s)))
    t = ResizeTransform(h, w, new_h, new_w)
    k = _as_K(K).copy()
    k[2:] = t.apply_intrinsics(k)[2:]
    return t.apply_image(image), t.apply_depth(depth).astype(np.float32) / np.float32(s), k


def random_crop(
    image: np.ndarray,
    depth: np.ndarray | None,
    K: Sequence[float] | None,
    crop_size: tuple[int, int],
    rng: np.random.Generator | None = None,
    center: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, CropTransform]:
    """Crop (H, W) = ``crop_size`` at a random (or the central) position; K's principal point
    moves with it. Returns (image, depth, K, the crop)."""
    h, w = image.shape[:2]
    ch, cw = int(crop_size[0]), int(crop_size[1])
    if ch > h or cw > w:
        raise ValueError(f"crop size {(ch, cw)} is larger than the image {(h, w)}")
    if center:
        y0, x0 = (h - ch) // 2, (w - cw) // 2
    else:
        r = _rng(rng)
        y0, x0 = int(r.integers(0, h - ch + 1)), int(r.integers(0, w - cw + 1))
    t = CropTransform(x0, y0, cw, ch)
    return (
        t.apply_image(image),
        None if depth is None else t.apply_depth(depth),
        None if K is None else t.apply_intrinsics(K),
        t,
    )


def color_jitter(image: np.ndarray, gains: Sequence[float]) -> np.ndarray:
    """Multiply each colour channel by its gain (Eigen: U[0.8, 1.2]) and clip to 0..255."""
    g = np.asarray(gains, dtype=np.float32).reshape(1, 1, -1)
    if g.shape[2] != image.shape[2]:
        raise ValueError(f"{g.shape[2]} gains for an image of {image.shape[2]} channels")
    out = np.clip(image.astype(np.float32) * g, 0, 255)
    return np.round(out).astype(np.uint8) if image.dtype == np.uint8 else out
