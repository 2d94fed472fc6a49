"""``PixelNormalization``: the per-channel image normalization every meta-architecture shares.

Detectron2's models keep the input statistics as buffers ``pixel_mean`` / ``pixel_std`` of the
model itself and compute ``(image - pixel_mean) / pixel_std``; so do ours (``GeneralizedRCNN``,
``SingleViewReconstructor``, ``MultiViewReconstructor``, ``DepthEstimator``, and the exporters
that trace them). This mixin holds that once: the buffers, under those names on the model (so
that ``model.pixel_mean`` and the models' state dicts are what they always were), their checks,
the check of an image's channel count, and the normalization.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["PixelNormalization"]


class PixelNormalization:
    """Mixin of an ``nn.Module`` that normalizes its 0..255 input images per channel.

    List it before ``nn.Module`` among the model's bases and call
    :meth:`register_pixel_normalization` in ``__init__`` (after ``nn.Module.__init__``).

    Buffers (on the model itself, not persistent: the statistics come from the config, as in
    Detectron2, and are not part of checkpoints):

    * ``pixel_mean``: (C, 1, 1) per-channel mean, in the images' channel order.
    * ``pixel_std``: (C, 1, 1) per-channel standard deviation.

    Both are created in torch's default dtype and follow the model's ``.to()`` / ``.double()``;
    images are normalized in the buffers' dtype, so a float64 model sees float64 images.
    """

    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def register_pixel_normalization(
        self, pixel_mean: Sequence[float], pixel_std: Sequence[float]
    ) -> None:
        """Register the ``pixel_mean`` / ``pixel_std`` buffers.

        Args:
            pixel_mean: C per-channel means (``MODEL.PIXEL_MEAN``).
            pixel_std: C per-channel standard deviations, each > 0 (``MODEL.PIXEL_STD``).

        Raises:
            ValueError: the two differ in length, are empty, or a std is not > 0.
        """
        mean = [float(v) for v in pixel_mean]
        std = [float(v) for v in pixel_std]
        if len(mean) != len(std):
            raise ValueError(
                f"pixel_mean ({len(mean)} values) and pixel_std ({len(std)}) differ in length "
                "(MODEL.PIXEL_MEAN, MODEL.PIXEL_STD)"
            )
        if not mean:
            raise ValueError("pixel_mean and pixel_std are empty (MODEL.PIXEL_MEAN, PIXEL_STD)")
        if not all(s > 0 for s in std):
            raise ValueError(f"pixel_std must be > 0 (MODEL.PIXEL_STD), got {std}")
        # torch's default dtype, as Detectron2: after .double() the statistics keep their
        # float32 rounding, which recorded float64 outputs depend on.
        register = self.register_buffer  # type: ignore[attr-defined]
        register("pixel_mean", torch.tensor(mean).view(-1, 1, 1), persistent=False)
        register("pixel_std", torch.tensor(std).view(-1, 1, 1), persistent=False)

    @property
    def pixel_channels(self) -> int:
        """C, the number of image channels the model normalizes."""
        return self.pixel_mean.shape[0]

    def check_image(self, image: torch.Tensor, name: str, leading: str = "") -> None:
        """Raise a ValueError naming ``name`` unless ``image`` is ``(C, H, W)``.

        Args:
            image: the tensor to check.
            name: how the error names it (``"batched_inputs[0]['image']"``).
            leading: the dims before ``C`` in the message, one more dim each (``"V, "``: a
                (V, C, H, W) stack of views).
        """
        C = self.pixel_channels
        ndim = 3 + (leading.count(",") if leading else 0)
        if image.dim() != ndim or image.shape[-3] != C:
            raise ValueError(
                f"{name} must be ({leading}{C}, H, W) for the {C} values of MODEL.PIXEL_MEAN, "
                f"got {tuple(image.shape)}"
            )

    def normalize_pixels(self, images: torch.Tensor) -> torch.Tensor:
        """``(images - pixel_mean) / pixel_std`` of (..., C, H, W) ``images``.

        The images are moved to the buffers' device and cast to their dtype first.
        """
        images = images.to(device=self.pixel_mean.device, dtype=self.pixel_mean.dtype)
        return (images - self.pixel_mean) / self.pixel_std
