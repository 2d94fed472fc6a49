"""A bound on the size of every image meshrecon decodes, and the one way to open image files.

An image file states its size in a few header bytes and may decode to far more memory than it
takes on disk (a "decompression bomb"; a 100 kB PNG can claim 100000 x 100000 pixels). Every
image read from a dataset or given to a demo is opened with :func:`open_image`, which reads the
header only, refuses more than :data:`MAX_IMAGE_PIXELS` pixels with an error naming the file,
and turns PIL's own decompression-bomb warning or error into the same error.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from typing import IO

from PIL import Image

__all__ = ["MAX_IMAGE_PIXELS", "ImageTooLargeError", "check_image_pixels", "open_image"]

MAX_IMAGE_PIXELS = 8192 * 8192
"""Most pixels (width x height) of an image meshrecon decodes: 67,108,864, an 8192 x 8192
picture, about 200 MB as 8-bit RGB. It is below PIL's own warning threshold (about 89.5 million),
so PIL never warns first; larger photos must be downscaled before use."""


class ImageTooLargeError(ValueError):
    """An image has more pixels than :data:`MAX_IMAGE_PIXELS` (or than PIL allows)."""


def check_image_pixels(width: int, height: int, name: str) -> None:
    """Raise :class:`ImageTooLargeError` if a ``width`` x ``height`` image is over the bound.

    Args:
        width, height: the image size in pixels.
        name: the file (or source) named in the error.
    """
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageTooLargeError(
            f"image {name} is {width} x {height} = {width * height} pixels, more than "
            f"MAX_IMAGE_PIXELS ({MAX_IMAGE_PIXELS}, meshrecon.utils.image_limits); downscale it "
            "first (e.g. with PIL's Image.thumbnail)"
        )


@contextlib.contextmanager
def open_image(
    path: str | os.PathLike | IO[bytes], name: str | None = None
) -> Iterator[Image.Image]:
    """Open an image file lazily (header only) after checking its pixel count.

    Args:
        path: a local image file, or a binary file object.
        name: how to name the file in errors (default: ``path``; required for a file object).

    Yields:
        The open ``PIL.Image``; it is closed on exit.

    Raises:
        ImageTooLargeError: the image has more than :data:`MAX_IMAGE_PIXELS` pixels, or PIL
            flags it as a decompression bomb.
        OSError, ValueError: whatever PIL raises on an unreadable file.
    """
    name = name or (os.fspath(path) if isinstance(path, str | os.PathLike) else repr(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise ImageTooLargeError(
                f"image {name} is refused as a decompression bomb: {err} (meshrecon decodes at "
                f"most MAX_IMAGE_PIXELS = {MAX_IMAGE_PIXELS} pixels)"
            ) from None
    with img:
        check_image_pixels(img.width, img.height, name)
        yield img
