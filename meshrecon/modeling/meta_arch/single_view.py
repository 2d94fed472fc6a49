"""``SingleViewReconstructor``: one image in, one object's shape (mesh, points, voxels) out.

The ShapeNet-style methods (Mesh R-CNN's VoxMesh / Sphere-Init / Pixel2Mesh+, the original
Pixel2Mesh, PSGN, a mean-shape baseline) differ only in their whole-image heads; this module
holds what they share: image normalization, the backbone, the camera of each view, and the
routing of targets to heads and of predictions back to the caller.

Inputs (``ShapeNetMapper`` output): ``image`` (3, H, W) in ``INPUT.FORMAT`` 0..255, and when
known ``K`` (4,) ``[fx, fy, cx, cy]``, ``R`` (3, 3), ``t`` (3,); in training ``points`` /
``normals`` (P, 3), ``voxels`` (V, V, V), ``mesh`` (verts, faces), all in the camera frame.
A view without ``K`` is taken as a Blender / R2N2 render: the ``K`` buffer (Mesh R-CNN's 4x4
projection matrix, part of its checkpoints) gives its intrinsics.

Outputs: training, a dict of weighted scalar losses (``loss_*``); inference, one dict per image
with ``mesh`` (verts (V, 3), faces (F, 3)), ``points`` (P, 3) and / or ``voxels`` (V, V, V)
occupancy probabilities, in the camera frame of the input view.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from meshrecon.config import configurable
from meshrecon.layers import PixelNormalization
from meshrecon.modeling.backbone import build_backbone
from meshrecon.modeling.heads.build import build_head
from meshrecon.modeling.meta_arch.build import META_ARCH_REGISTRY
from meshrecon.render.cameras import blender_projection_matrix, camera_from_opengl
from meshrecon.structures.view_batch import ViewBatch
from meshrecon.utils.events import get_event_storage
from meshrecon.utils.stage_timer import stage

# ViewBatch is a structure (meshrecon.structures); this module, its first home, re-exports it.
__all__ = ["SingleViewReconstructor", "ViewBatch"]


def _stack_optional(inputs: Sequence[dict], key: str, device: torch.device) -> torch.Tensor | None:
    if not all(key in x and x[key] is not None for x in inputs):
        return None
    values = [torch.as_tensor(x[key]) for x in inputs]
    shapes = {tuple(v.shape) for v in values}
    if len(shapes) != 1:
        raise ValueError(f"inputs[*][{key!r}] must all have one shape to batch, got {shapes}")
    return torch.stack(values).to(device=device, dtype=torch.float32)


@META_ARCH_REGISTRY.register()
class SingleViewReconstructor(PixelNormalization, nn.Module):
    """Backbone + whole-image heads: voxel head, mesh head and / or point head.

    Attribute names follow Mesh R-CNN's ShapeNet models (``K``, ``backbone``, ``voxel_head``,
    ``mesh_head``) so that their released checkpoints load key for key. The heads are called as

    * ``voxel_head(features) -> (N, 1, V, V, V)`` logits, with ``.losses(logits, views)``;
    * ``mesh_head(features, views, voxel_scores=..., voxel_only=...)`` and
      ``point_head(features, views)``: a dict of losses in training, a list of N prediction
      dicts in inference.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        voxel_head: nn.Module | None = None,
        mesh_head: nn.Module | None = None,
        point_head: nn.Module | None = None,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        in_features: Sequence[str] | None = None,
        voxel_only_iters: int = 0,
    ) -> None:
        """
        Args:
            backbone: returns a dict of feature maps.
            voxel_head, mesh_head, point_head: the heads; at least one must be given.
            pixel_mean, pixel_std: per-channel normalization of the 0..255 input image.
            in_features: backbone outputs given to the heads, in this order; None: all, in the
                backbone's order.
            voxel_only_iters: for this many training iterations (``EventStorage.iter``) only the
                voxel loss counts (Mesh R-CNN's ``VOXEL_ONLY_ITERS``).
        """
        super().__init__()
        if voxel_head is None and mesh_head is None and point_head is None:
            raise ValueError("SingleViewReconstructor needs a voxel, mesh or point head")
        # Mesh R-CNN's ShapeNet models keep Blender's 4x4 projection matrix as buffer "K".
        self.register_buffer("K", blender_projection_matrix())
        self.backbone = backbone
        self.voxel_head = voxel_head
        self.mesh_head = mesh_head
        self.point_head = point_head
        self.register_pixel_normalization(pixel_mean, pixel_std)
        self.in_features = list(in_features) if in_features else None
        self.voxel_only_iters = int(voxel_only_iters)

    @classmethod
    def from_config(cls, cfg) -> dict[str, Any]:
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        heads: dict[str, nn.Module | None] = {"voxel_head": None, "mesh_head": None}
        if cfg.MODEL.VOXEL_ON:
            # Mesh R-CNN's ShapeNet YAMLs name no voxel head: theirs is the only one.
            heads["voxel_head"] = build_head(cfg, "voxel", shapes, default_name="VoxelHead")
        if cfg.MODEL.MESH_ON:
            heads["mesh_head"] = build_head(cfg, "mesh", shapes)
        point_head = None
        if cfg.MODEL.POINT_HEAD.NAME:
            point_head = build_head(cfg, "point", shapes)
        return {
            "backbone": backbone,
            **heads,
            "point_head": point_head,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "voxel_only_iters": cfg.MODEL.VOXEL_HEAD.VOXEL_ONLY_ITERS,
        }

    @property
    def device(self) -> torch.device:
        return self.K.device

    # ------------------------------------------------------------------ inputs
    def preprocess_image(self, inputs: Sequence[dict]) -> torch.Tensor:
        """Stack and normalize the images: (N, C, H, W) ``(image - mean) / std``."""
        images = [torch.as_tensor(x["image"]) for x in inputs]
        for i, image in enumerate(images):
            self.check_image(image, f"inputs[{i}]['image']")
        shapes = {tuple(im.shape) for im in images}
        if len(shapes) != 1:
            raise ValueError(f"inputs[*]['image'] must share one size to batch, got {shapes}")
        return self.normalize_pixels(torch.stack(images))

    def default_K(self, image_size: tuple[int, int]) -> torch.Tensor:
        """(4,) intrinsics that the ``K`` projection buffer gives an image of ``image_size``."""
        eye = torch.eye(4, device=self.K.device, dtype=self.K.dtype)
        K, _, _ = camera_from_opengl(self.K, eye, image_size)
        return K

    def view_batch(self, inputs: Sequence[dict], image_size: tuple[int, int]) -> ViewBatch:
        """Cameras and (when present) targets of the inputs, as a :class:`ViewBatch`."""
        dev = self.device
        K = _stack_optional(inputs, "K", dev)
        if K is None:
            K = self.default_K(image_size).to(dev).expand(len(inputs), 4).clone()
        meshes = None
        if all(x.get("mesh") is not None for x in inputs):
            meshes = [
                (
                    torch.as_tensor(x["mesh"][0]).to(dev).float(),
                    torch.as_tensor(x["mesh"][1]).to(dev),
                )
                for x in inputs
            ]
        return ViewBatch(
            image_size=image_size,
            K=K,
            R=_stack_optional(inputs, "R", dev),
            t=_stack_optional(inputs, "t", dev),
            points=_stack_optional(inputs, "points", dev),
            normals=_stack_optional(inputs, "normals", dev),
            voxels=_stack_optional(inputs, "voxels", dev),
            meshes=meshes,
        )

    def _voxel_only(self) -> bool:
        if not self.training or self.voxel_only_iters <= 0 or self.voxel_head is None:
            return False
        try:
            return get_event_storage().iter < self.voxel_only_iters
        except (AssertionError, RuntimeError, ValueError):
            return False

    # ------------------------------------------------------------------ forward
    def extract_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Backbone feature maps in ``in_features`` order (all outputs by default)."""
        with stage("backbone"):
            feats = self.backbone(images)
        names = self.in_features or list(feats)
        return [feats[name] for name in names]

    def forward(self, batched_inputs: Sequence[dict]) -> dict[str, torch.Tensor] | list[dict]:
        """Losses (training) or per-image predictions (inference); see the module docstring."""
        if not batched_inputs:
            raise ValueError("batched_inputs is empty")
        images = self.preprocess_image(batched_inputs)
        views = self.view_batch(batched_inputs, tuple(images.shape[-2:]))
        features = self.extract_features(images)
        voxel_scores = self.voxel_head(features[-1]) if self.voxel_head is not None else None
        if self.training:
            losses: dict[str, torch.Tensor] = {}
            if self.voxel_head is not None:
                losses.update(self.voxel_head.losses(voxel_scores, views))
            if self.mesh_head is not None:
                losses.update(
                    self.mesh_head(
                        features, views, voxel_scores=voxel_scores, voxel_only=self._voxel_only()
                    )
                )
            if self.point_head is not None:
                losses.update(self.point_head(features, views))
            return losses
        outputs: list[dict] = [{} for _ in batched_inputs]
        if voxel_scores is not None:
            probs = voxel_scores.sigmoid()[:, 0]
            for out, p in zip(outputs, probs):
                out["voxels"] = p
        for head in (self.mesh_head, self.point_head):
            if head is None:
                continue
            kwargs = {"voxel_scores": voxel_scores} if head is self.mesh_head else {}
            for out, pred in zip(outputs, head(features, views, **kwargs)):
                out.update(pred)
        return outputs
