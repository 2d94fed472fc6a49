"""``ShapeSpec``: the (channels, height, width, stride) description of a feature map."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ShapeSpec"]


@dataclass(frozen=True)
class ShapeSpec:
    """What a module needs to know about a tensor it will receive, not the tensor itself.

    Backbones describe their outputs with it (``Backbone.output_shape()``) and heads are built
    from it. Any field may be ``None`` when it is unknown or irrelevant (an image's height and
    width, for instance, vary per batch).

    Attributes:
        channels: number of channels ``C`` of an ``(N, C, H, W)`` map.
        height: ``H``.
        width: ``W``.
        stride: input pixels per feature-map pixel (4 for ``res2`` of a ResNet).
    """

    channels: int | None = None
    height: int | None = None
    width: int | None = None
    stride: int | None = None
