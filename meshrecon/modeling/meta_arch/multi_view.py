"""``MultiViewReconstructor``: a 3D shape from a variable number of views of one object.

Hosts every method whose input is several views of one object (3D-R2N2; OptimizeMVS later). The
meta-architecture only batches views: it normalizes each object's ``images`` (V_b, 3, H, W),
packs the views of all objects of a batch into one tensor (object after object) with their
counts ``num_views`` (B,), and hands them, with the packed cameras and the per-object targets,
to the head named by ``MODEL.MULTIVIEW_HEAD.NAME``. How views are fused (a recurrence, pooling,
...) is the head's business; objects in a batch may have different view counts and the views
may come in any order.

Inference can also report the prediction from the first k views for every k (``by_num_views``),
which the multi-view evaluator scores: a head whose prefixes come for free (an RNN,
``supports_prefix_outputs = True``) returns them itself, otherwise the head is run once per k.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from meshrecon.config import configurable
from meshrecon.layers import PixelNormalization
from meshrecon.modeling.heads.build import build_head
from meshrecon.modeling.meta_arch.build import META_ARCH_REGISTRY

__all__ = ["MultiViewReconstructor", "pack_views"]

# Per-view camera fields the mapper emits, packed like the images when every object has them.
_CAMERA_KEYS = ("K", "R", "t")
# Per-object ground-truth fields moved to the model's device for the head's losses.
_TARGET_KEYS = ("voxels", "points", "normals", "depth", "mesh")


def pack_views(
    batched_inputs: Sequence[dict[str, Any]], key: str = "images"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate the per-object view tensors ``x[key]`` (V_b, ...) along the first dim.

    Returns:
        packed: (sum V_b, ...), the views of object 0, then of object 1, ...
        num_views: (B,) long.

    Raises:
        ValueError: an item lacks ``key``, has no view, or its views' shape differs from the
            first item's.
    """
    tensors = []
    for i, x in enumerate(batched_inputs):
        if key not in x:
            raise ValueError(f"batched_inputs[{i}] has no {key!r} key")
        v = x[key]
        if not torch.is_tensor(v) or v.dim() < 1 or v.shape[0] < 1:
            shape = tuple(v.shape) if torch.is_tensor(v) else type(v).__name__
            raise ValueError(f"batched_inputs[{i}][{key!r}] must be (V, ...) with V >= 1: {shape}")
        if tensors and v.shape[1:] != tensors[0].shape[1:]:
            raise ValueError(
                f"batched_inputs[{i}][{key!r}] has views of shape {tuple(v.shape[1:])}, "
                f"batched_inputs[0] of {tuple(tensors[0].shape[1:])}: crop views to one size"
            )
        tensors.append(v)
    if not tensors:
        raise ValueError("batched_inputs is empty")
    num_views = torch.tensor([t.shape[0] for t in tensors], dtype=torch.long)
    return torch.cat(tensors, 0), num_views


@META_ARCH_REGISTRY.register()
class MultiViewReconstructor(PixelNormalization, nn.Module):
    """Views of one object in, one shape out; see the module docstring.

    Inputs: a list of dicts (one per object, from ``MultiViewMapper``) with ``images``
    (V, 3, H, W) in ``input_format`` order and 0..255 range, optional per-view ``K`` (V, 4),
    ``R`` (V, 3, 3), ``t`` (V, 3), and in training the targets the head needs (``voxels``
    (D, H, W), ``points`` (P, 3), ...).

    Outputs: training, the head's dict of named scalar losses; inference, one dict per object
    (R2N2: ``voxels`` (D, H, W) occupancy probabilities) with ``by_num_views`` when
    ``eval_all_view_counts``.

    Args:
        head: called as ``head(images (sum V, 3, H, W), num_views (B,), targets=..., [views=
            {K, R, t packed}])``; the ``views`` argument is passed when the head accepts it.
            ``targets`` is None in inference unless the head's ``needs_targets_at_inference``
            is true (an oracle that reads the ground truth).
        pixel_mean, pixel_std: per-channel normalization, in ``input_format`` order.
        input_format: ``"RGB"`` or ``"BGR"``.
        eval_all_view_counts: in inference, also predict from the first k views, k = 1 .. V.
    """

    @configurable
    def __init__(
        self,
        *,
        head: nn.Module,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        input_format: str = "RGB",
        eval_all_view_counts: bool = True,
    ) -> None:
        super().__init__()
        self.register_pixel_normalization(pixel_mean, pixel_std)
        self.head = head
        self.input_format = input_format
        self.eval_all_view_counts = eval_all_view_counts
        self._head_takes_views = "views" in inspect.signature(head.forward).parameters

    @classmethod
    def from_config(cls, cfg) -> dict[str, Any]:
        return {
            "head": build_head(cfg, "multiview"),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "input_format": cfg.INPUT.FORMAT,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess(
        self, batched_inputs: Sequence[dict[str, Any]]
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor] | None]:
        """Return normalized packed images (sum V, C, H, W), ``num_views`` (B,) and the packed
        cameras ``{K, R, t}`` (None unless every object has all three)."""
        images, num_views = pack_views(batched_inputs, "images")
        # pack_views checked that every object's views have the first one's shape.
        self.check_image(images, "batched_inputs[*]['images'] (packed)", leading="sum V, ")
        images = self.normalize_pixels(images)
        views = None
        if all(k in x for x in batched_inputs for k in _CAMERA_KEYS):
            views = {}
            for k in _CAMERA_KEYS:
                packed, counts = pack_views(batched_inputs, k)
                if not torch.equal(counts, num_views):
                    raise ValueError(
                        f"per-view {k!r} counts {counts.tolist()} differ from the "
                        f"image counts {num_views.tolist()}"
                    )
                views[k] = packed.to(self.device)
        return images, num_views.to(self.device), views

    def _targets(self, batched_inputs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for x in batched_inputs:
            out.append(
                {
                    k: (x[k].to(self.device) if torch.is_tensor(x[k]) else x[k])
                    for k in _TARGET_KEYS
                    if k in x
                }
            )
        return out

    def _run_head(self, images, num_views, views, targets=None):
        kwargs: dict[str, Any] = {"targets": targets}
        if self._head_takes_views:
            kwargs["views"] = views
        return self.head(images, num_views, **kwargs)

    def forward(
        self, batched_inputs: Sequence[dict[str, Any]]
    ) -> dict[str, torch.Tensor] | list[dict[str, Any]]:
        """Training: the head's losses. Inference: one dict of predictions per object."""
        images, num_views, views = self.preprocess(batched_inputs)
        if self.training:
            return self._run_head(images, num_views, views, self._targets(batched_inputs))
        # A head that reads the ground truth at test time (an oracle baseline) says so.
        targets = None
        if getattr(self.head, "needs_targets_at_inference", False):
            targets = self._targets(batched_inputs)
        results = self._run_head(images, num_views, views, targets)
        if not self.eval_all_view_counts or getattr(self.head, "supports_prefix_outputs", False):
            return results
        return self._prefix_results(images, num_views, views, results)

    def _prefix_results(self, images, num_views, views, results):
        """Run the head on the first k views of every object for k = 1 .. max V."""
        starts = torch.cumsum(num_views, 0) - num_views
        for res in results:
            res["by_num_views"] = []
        for k in range(1, int(num_views.max()) + 1):
            active = torch.nonzero(num_views >= k).flatten()
            index = torch.cat(
                [torch.arange(s, s + k, device=images.device) for s in starts[active].tolist()]
            )
            sub_views = None if views is None else {n: v[index] for n, v in views.items()}
            counts = torch.full((len(active),), k, dtype=torch.long, device=images.device)
            for j, res in zip(active.tolist(), self._run_head(images[index], counts, sub_views)):
                results[j]["by_num_views"].append(res)
        return results
