"""``GeneralizedRCNN``: backbone -> proposal generator -> ROI heads (Faster/Mask/Mesh R-CNN)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from meshrecon.config import configurable
from meshrecon.layers import PixelNormalization
from meshrecon.modeling.backbone import build_backbone
from meshrecon.modeling.meta_arch.build import META_ARCH_REGISTRY
from meshrecon.modeling.postprocessing import detector_postprocess
from meshrecon.modeling.proposal_generator import build_proposal_generator
from meshrecon.modeling.roi_heads import build_roi_heads
from meshrecon.structures import ImageList, Instances
from meshrecon.utils.stage_timer import stage

__all__ = ["GeneralizedRCNN"]


@META_ARCH_REGISTRY.register()
class GeneralizedRCNN(PixelNormalization, nn.Module):
    """A two-stage detector: features, proposals, then per-region predictions.

    Inputs are Detectron2's: a list of dicts, one per image, with ``"image"`` a ``(C, H, W)``
    tensor in ``input_format`` channel order and 0..255 range, optional ``"height"`` /
    ``"width"`` (the output size; default the input's), and ``"instances"`` (ground truth with
    ``gt_boxes``, ``gt_classes``, ...) in training.

    Args:
        backbone: maps the normalized image batch to named feature maps; has
            ``output_shape()`` and ``size_divisibility``.
        proposal_generator: the RPN (``None``: proposals come with the inputs as
            ``"proposals"``).
        roi_heads: the per-region stage.
        pixel_mean, pixel_std: per-channel normalization, in ``input_format`` order.
        input_format: ``"BGR"`` or ``"RGB"`` (recorded for visualization and users).
        vis_period: kept for Detectron2 compatibility (training visualization period).
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        proposal_generator: nn.Module | None,
        roi_heads: nn.Module,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        input_format: str | None = None,
        vis_period: int = 0,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        # NHWC backbone activations: oneDNN's convolutions are ~15% faster on CPU in that layout.
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        self.proposal_generator = proposal_generator
        self.roi_heads = roi_heads
        self.input_format = input_format
        self.vis_period = vis_period
        self.register_pixel_normalization(pixel_mean, pixel_std)

    @classmethod
    def from_config(cls, cfg) -> dict[str, Any]:
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        return {
            "backbone": backbone,
            "proposal_generator": build_proposal_generator(cfg, shapes),
            "roi_heads": build_roi_heads(cfg, shapes),
            "input_format": cfg.INPUT.FORMAT,
            "vis_period": cfg.VIS_PERIOD,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "channels_last": _use_channels_last(cfg),
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: Sequence[dict[str, Any]]) -> ImageList:
        """Normalize the images and pad them into one batch divisible by the backbone's
        ``size_divisibility``. Images are cast to the model's dtype (float64 after
        ``.double()``)."""
        images = []
        for i, x in enumerate(batched_inputs):
            if "image" not in x:
                raise ValueError(f"batched_inputs[{i}] has no 'image' key")
            self.check_image(x["image"], f"batched_inputs[{i}]['image']")
            images.append(self.normalize_pixels(x["image"]))
        batch = ImageList.from_tensors(images, getattr(self.backbone, "size_divisibility", 0))
        if self.channels_last:
            batch.tensor = batch.tensor.contiguous(memory_format=torch.channels_last)
        return batch

    def forward(
        self, batched_inputs: Sequence[dict[str, Any]]
    ) -> dict[str, torch.Tensor] | list[dict[str, Instances]]:
        """Training: a dict of named scalar losses (RPN's and the ROI heads').
        Inference: per image, ``{"instances": Instances}`` at the requested height / width."""
        if not self.training:
            return self.inference(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        if any("instances" not in x for x in batched_inputs):
            raise ValueError("training inputs need 'instances' (ground truth) for every image")
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        with stage("backbone"):
            features = self.backbone(images.tensor)
        if self.proposal_generator is not None:
            proposals, proposal_losses = self.proposal_generator(images, features, gt_instances)
        else:
            proposals = [x["proposals"].to(self.device) for x in batched_inputs]
            proposal_losses = {}
        _, detector_losses = self.roi_heads(images, features, proposals, gt_instances)
        losses: dict[str, torch.Tensor] = {}
        losses.update(detector_losses)
        losses.update(proposal_losses)
        return losses

    def inference(
        self,
        batched_inputs: Sequence[dict[str, Any]],
        detected_instances: Sequence[Instances] | None = None,
        do_postprocess: bool = True,
    ) -> list[dict[str, Instances]] | list[Instances]:
        """Detect objects.

        Args:
            batched_inputs: as for ``forward``.
            detected_instances: per image, known boxes (``pred_boxes``, ``pred_classes``): only
                the heads after the box stage run.
            do_postprocess: rescale to the requested size and paste masks; otherwise return
                the raw ``Instances`` at the network's input size.
        """
        if self.training:
            raise RuntimeError("inference() needs the model in eval mode")
        images = self.preprocess_image(batched_inputs)
        with stage("backbone"):
            features = self.backbone(images.tensor)
        if detected_instances is None:
            if self.proposal_generator is not None:
                proposals, _ = self.proposal_generator(images, features, None)
            else:
                proposals = [x["proposals"].to(self.device) for x in batched_inputs]
            results, _ = self.roi_heads(images, features, proposals, None)
        else:
            given = [x.to(self.device) for x in detected_instances]
            results = self.roi_heads.forward_with_given_boxes(features, given)
        if not do_postprocess:
            return results
        return self._postprocess(results, batched_inputs, images.image_sizes)

    @staticmethod
    def _postprocess(
        instances: Sequence[Instances],
        batched_inputs: Sequence[dict[str, Any]],
        image_sizes: Sequence[tuple[int, int]],
    ) -> list[dict[str, Instances]]:
        """Rescale each image's detections to its requested ``height`` / ``width``."""
        out = []
        for inst, inputs, size in zip(instances, batched_inputs, image_sizes):
            height = inputs.get("height", size[0])
            width = inputs.get("width", size[1])
            out.append({"instances": detector_postprocess(inst, height, width)})
        return out


_MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


def _use_channels_last(cfg) -> bool:
    """``MODEL.MEMORY_FORMAT``: "auto" is channels_last on CPU, contiguous elsewhere."""
    fmt = str(cfg.MODEL.MEMORY_FORMAT)
    if fmt not in _MEMORY_FORMATS:
        raise ValueError(f"MODEL.MEMORY_FORMAT must be one of {_MEMORY_FORMATS}, got {fmt!r}")
    if fmt == "auto":
        return torch.device(cfg.MODEL.DEVICE).type == "cpu"
    return fmt == "channels_last"
