"""Mesh R-CNN's ShapeNet baselines that start from a sphere: Sphere-Init and Pixel2Mesh+.

Both deform an icosphere with the same refinement stages as VoxMesh. Sphere-Init starts from
level 4 (2562 vertices) and keeps the topology; Pixel2Mesh+ starts from level 2 (162 vertices)
and subdivides mesh and vertex features between stages (162 -> 642 -> 2562). As in Mesh R-CNN,
the unit sphere is centred on the camera in Blender's frame; the stages learn to move it out
in front of the camera.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from meshrecon.config import configurable
from meshrecon.layers import ShapeSpec
from meshrecon.modeling.heads.build import MESH_HEAD_REGISTRY
from meshrecon.modeling.heads.voxmesh import ShapeNetRefinementHead
from meshrecon.ops import ico_sphere
from meshrecon.render.cameras import opengl_to_camera
from meshrecon.structures import Meshes, ViewBatch

__all__ = ["Pixel2MeshHead", "SphereInitHead"]


@MESH_HEAD_REGISTRY.register()
class SphereInitHead(ShapeNetRefinementHead):
    """Refine an ``ico_sphere(level)`` (Mesh R-CNN's Sphere-Init baseline)."""

    @configurable
    def __init__(self, *, ico_sphere_level: int = 4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if ico_sphere_level < 0:
            raise ValueError(f"ico_sphere_level must be >= 0, got {ico_sphere_level}")
        self.ico_sphere_level = int(ico_sphere_level)

    @classmethod
    def from_config(cls, cfg, input_shape: Mapping[str, ShapeSpec]) -> dict[str, Any]:
        level = cfg.MODEL.MESH_HEAD.ICO_SPHERE_LEVEL
        if level < 0:
            raise ValueError(
                f"MODEL.MESH_HEAD.ICO_SPHERE_LEVEL must be >= 0 for {cls.__name__}, got {level}"
            )
        return {
            **ShapeNetRefinementHead.from_config(cfg, input_shape),
            "ico_sphere_level": level,
        }

    def initial_meshes(self, views: ViewBatch, voxel_scores: torch.Tensor | None = None) -> Meshes:
        sphere = ico_sphere(self.ico_sphere_level, device=views.K.device)
        # Mesh R-CNN's sphere is defined in Blender's frame; bring it to ours (same surface,
        # mirrored vertex positions) so that refine() maps it back exactly.
        sphere = sphere.update_padded(opengl_to_camera(sphere.verts_padded()))
        return sphere.extend(len(views))


@MESH_HEAD_REGISTRY.register()
class Pixel2MeshHead(SphereInitHead):
    """Mesh R-CNN's Pixel2Mesh+ baseline: icosphere level 2, subdivided between stages."""

    @configurable
    def __init__(self, *, ico_sphere_level: int = 2, **kwargs: Any) -> None:
        kwargs["subdivide"] = True
        super().__init__(ico_sphere_level=ico_sphere_level, **kwargs)
