"""The demo's inputs: which files to run on, photos in any PIL mode, masks, and the object crop.

A photo becomes an (H, W, 3) uint8 RGB array at a bounded working size (:data:`WORK_SIDE`),
turned upright by its EXIF orientation, with its alpha channel (if any) kept as the object's
mask; grayscale and 16-bit images are converted. Single-view models were trained on square
renders of one centred object (R2N2's 137 x 137 views and the synthetic ShapeNet views, whose
object spans :data:`OBJECT_FRACTION` of the side), so :func:`crop_object` cuts a square around
the object's mask with that margin, puts the training background colour outside the mask, and
gives the pixel mapping back to the photo (:class:`Crop`) so that the model's fixed camera
projects its prediction onto the photo.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from meshrecon.utils.image_limits import ImageTooLargeError, open_image

__all__ = [
    "OBJECT_FRACTION",
    "WORK_SIDE",
    "Crop",
    "DemoImage",
    "DemoInputError",
    "NotAnImageError",
    "collect_inputs",
    "crop_object",
    "load_demo_image",
    "load_mask",
    "mask_box",
]

WORK_SIDE = 1024
"""Longer side (pixels) a photo is reduced to before anything else: colours are sampled and
pictures drawn at this size, so a 50-megapixel photo costs no more than a 1-megapixel one."""

OBJECT_FRACTION = 0.66
"""Share of the square crop's side that the object's longer box side takes: the median over the
synthetic ShapeNet views (90 of 137 pixels; 5th-95th percentile 67-116), whose framing follows
R2N2's renders."""


class DemoInputError(ValueError):
    """An input file the demo cannot use (the run skips it and goes on)."""


class NotAnImageError(DemoInputError):
    """A file given to the demo is not an image PIL can read."""


@dataclass
class DemoImage:
    """A photo ready for the demo.

    Attributes:
        rgb: (H, W, 3) uint8, upright, longer side at most the working size.
        alpha: (H, W) bool object mask from the file's alpha channel, or None.
        original_size: (width, height) of the upright file before reduction.
        mode: the file's PIL mode (e.g. "RGB", "I;16", "LA").
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    original_size: tuple[int, int]
    mode: str


def collect_inputs(inputs: Sequence[str]) -> list[str]:
    """The files to run on: each file as given, each folder's files (not recursive, sorted,
    hidden ones left out), in the order given.

    Raises:
        FileNotFoundError: an input that does not exist (named).
    """
    files: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            names = sorted(n for n in os.listdir(item) if not n.startswith("."))
            files += [os.path.join(item, n) for n in names if os.path.isfile(os.path.join(item, n))]
        elif os.path.isfile(item):
            files.append(item)
        else:
            raise FileNotFoundError(f"--input {item}: no such file or folder")
    return files


def _to_rgb_and_alpha(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W, 3) uint8 and an (H, W) bool alpha mask (None: opaque) of any PIL mode."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16-bit (or 32-bit) grey: scaled to 8 bits by the type's range, not clipped.
        values = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        if img.mode == "F":
            top = max(float(np.nanmax(values)), 1e-12) if values.size else 1.0
        grey = np.clip(np.round(np.nan_to_num(values) / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2), None
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode == "P" and "transparency" in img.info
    )
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"))
        alpha = rgba[:, :, 3] >= 128
        # A fully opaque alpha channel says nothing about the object.
        return np.ascontiguousarray(rgba[:, :, :3]), (None if alpha.all() else alpha)
    return np.asarray(img.convert("RGB")).copy(), None


def load_demo_image(path: str, work_side: int = WORK_SIDE) -> DemoImage:
    """Read any image file for the demo (see the module's docstring).

    Args:
        path: the image file.
        work_side: the longer side the image is reduced to (never enlarged).

    Raises:
        NotAnImageError: PIL cannot read the file as an image (the message names it).
        ImageTooLargeError: more than ``MAX_IMAGE_PIXELS`` pixels (from the header).
    """
    try:
        with open_image(path) as img:
            mode = img.mode
            # JPEG decodes at 1/2, 1/4 or 1/8 scale in draft mode; nothing is decoded at full
            # size that will be thrown away.
            img.draft(img.mode, (work_side, work_side))
            img = ImageOps.exif_transpose(img)
            original = img.size
            if max(img.size) > work_side:
                scale = work_side / max(img.size)
                size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
                if img.mode in ("P", "1"):
                    img = img.convert("RGBA" if "transparency" in img.info else "RGB")
                if img.mode.startswith("I;16"):
                    img = img.convert("I")
                img = img.resize(size, Image.LANCZOS, reducing_gap=3.0)
            rgb, alpha = _to_rgb_and_alpha(img)
    except ImageTooLargeError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise NotAnImageError(f"{path}: not an image PIL can read ({err})") from None
    return DemoImage(rgb, alpha, original, mode)


def load_mask(path: str, size: tuple[int, int]) -> np.ndarray:
    """A mask file as an (H, W) bool array at ``size`` = (width, height) of the demo image.

    Non-zero grey (or alpha, for an RGBA mask) is the object; the mask is turned upright by its
    EXIF orientation and resized (nearest) to the image's size, so it may be given at the
    photo's full resolution.

    Raises:
        NotAnImageError: the file is not an image.
        DemoInputError: the mask is empty.
    """
    try:
        with open_image(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "PA"):
                grey = np.asarray(img.convert("RGBA"))[:, :, 3]
            elif img.mode in ("I;16", "I;16B", "I", "F"):
                grey = (np.asarray(img, dtype=np.float64) > 0).astype(np.uint8) * 255
            else:
                grey = np.asarray(img.convert("L"))
    except ImageTooLargeError:
        raise
    except (OSError, ValueError, SyntaxError) as err:
        raise NotAnImageError(f"--mask {path}: not an image PIL can read ({err})") from None
    mask = Image.fromarray((grey > 0).astype(np.uint8) * 255).resize(size, Image.NEAREST)
    out = np.asarray(mask) > 0
    if not out.any():
        raise DemoInputError(f"--mask {path}: the mask is empty (no non-zero pixel)")
    return out


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)`` of an (H, W) bool mask's foreground, pixel indices inclusive (None
    when empty)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


@dataclass
class Crop:
    """A square of the image, ``side`` pixels from ``(x0, y0)`` (its top-left corner, may lie
    outside the image), resized to ``size`` x ``size``.

    Pixel centres are at integer coordinates; image pixel u maps to crop pixel
    ``(u + 0.5 - x0) * size / side - 0.5``.
    """

    x0: int
    y0: int
    side: int
    size: int

    def K_to_image(self, K: Sequence[float]) -> list[float]:
        """``[fx, fy, cx, cy]`` of the crop -> the same camera in the image's pixels."""
        s = self.size / self.side
        fx, fy, cx, cy = (float(k) for k in K)
        return [fx / s, fy / s, (cx + 0.5) / s + self.x0 - 0.5, (cy + 0.5) / s + self.y0 - 0.5]


def crop_object(
    rgb: np.ndarray,
    mask: np.ndarray | None,
    size: int,
    background: Sequence[float],
    fraction: float = OBJECT_FRACTION,
) -> tuple[np.ndarray, Crop]:
    """Cut the square a single-view model expects: the object centred, its longer box side
    ``fraction`` of the square's side, resized to ``size``; outside the mask (and outside the
    image) the training ``background`` colour.

    Args:
        rgb: (H, W, 3) uint8.
        mask: (H, W) bool object mask, or None: the whole image, centred in a square.
        size: the model's input side (e.g. 137).
        background: RGB 0..255 (``INPUT.BACKGROUND_COLOR``).
        fraction: the object's share of the side, in (0, 1].

    Returns:
        (size, size, 3) uint8 crop, and the :class:`Crop` (for the camera).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    H, W = rgb.shape[:2]
    box = mask_box(mask) if mask is not None else None
    if box is None:
        x0, y0, x1, y1, frac = 0, 0, W - 1, H - 1, 1.0
    else:
        (x0, y0, x1, y1), frac = box, fraction
    extent = max(x1 - x0 + 1, y1 - y0 + 1)
    side = max(1, round(extent / frac))
    # Centre of the box in corner coordinates (pixel u spans [u, u + 1)).
    cx, cy = (x0 + x1 + 1) / 2.0, (y0 + y1 + 1) / 2.0
    crop = Crop(round(cx - side / 2.0), round(cy - side / 2.0), side, size)
    bg = tuple(int(round(float(c))) for c in background)
    if mask is not None:
        alpha = mask.astype(np.float32)[:, :, None]
        rgb = np.round(rgb * alpha + np.asarray(bg, np.float32) * (1 - alpha)).astype(np.uint8)
    canvas = Image.new("RGB", (side, side), bg)
    # The part of the image inside the square, pasted at its place in it.
    left, top = max(crop.x0, 0), max(crop.y0, 0)
    right, bottom = min(crop.x0 + side, W), min(crop.y0 + side, H)
    if right > left and bottom > top:
        piece = Image.fromarray(rgb).crop((left, top, right, bottom))
        canvas.paste(piece, (left - crop.x0, top - crop.y0))
    out = canvas.resize((size, size), Image.LANCZOS) if side != size else canvas
    return np.asarray(out).copy(), crop
