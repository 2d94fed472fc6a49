"""Tensor-in, tensor-out form of ``DepthEstimator`` (Eigen et al.) for export."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from meshrecon.modeling.meta_arch.depth import DepthEstimator

__all__ = ["DepthProgram"]


class DepthProgram(nn.Module):
    """``DepthEstimator`` inference as ``images -> {"depth", ["depth_coarse"]}``.

    ``forward(images)``: (N, 3, H, W) float 0..255 in ``INPUT.FORMAT`` order, any H, W. As the
    eager model does, the normalized images are resized (bilinearly) to ``MODEL.DEPTH.INPUT_SIZE``
    and the log-depth prediction is resized back to H x W in log space; the outputs are metres:
    ``depth`` (N, H, W) (the fine network's when there is one) and, with a fine network,
    ``depth_coarse`` (N, H, W). The eager model skips a resize whose size already matches; here
    both resizes always run (their size is symbolic), which changes nothing: a bilinear resize
    to the same size (``align_corners=False``) weighs each input pixel by exactly 1.

    Args:
        model: the model (put in eval mode; parameters shared).
    """

    def __init__(self, model: DepthEstimator) -> None:
        super().__init__()
        if not isinstance(model, DepthEstimator):
            raise ValueError(f"expected a DepthEstimator, got {type(model).__name__}")
        self.model = model.eval()
        # The wrapper too: an exporter that re-applies its mode must not train the model.
        self.eval()

    @property
    def output_names(self) -> list[str]:
        return ["depth", "depth_coarse"] if self.model.head.fine is not None else ["depth"]

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        model = self.model
        size = (images.shape[-2], images.shape[-1])
        x = model.normalize_pixels(images)
        x = F.interpolate(x, size=model.input_size, mode="bilinear", align_corners=False)
        preds = model.head(x)

        def metres(log_depth: torch.Tensor) -> torch.Tensor:
            up = F.interpolate(log_depth[:, None], size=size, mode="bilinear", align_corners=False)
            return torch.exp(up[:, 0])

        if "fine" in preds:
            return {"depth": metres(preds["fine"]), "depth_coarse": metres(preds["coarse"])}
        return {"depth": metres(preds["coarse"])}
