"""Tensor-in, tensor-out forms of ``SingleViewReconstructor`` for ``torch.export`` and ONNX.

:class:`SingleViewProgram` wraps a model in eval mode: ``forward(images, K)`` with ``images``
(N, 3, H, W) float 0..255 in ``INPUT.FORMAT`` channel order and ``K`` (N, 4) ``[fx, fy, cx,
cy]`` pixels of those images, and returns a dict of tensors:

* voxel head: ``voxels`` (N, V, V, V) occupancy probabilities (the eager ``"voxels"``);
* mesh head: the padded mesh form of :mod:`meshrecon.export.mesh_tensors` (the eager
  ``"mesh"``);
* point head: ``points`` (N, P, 3) (the eager ``"points"``).

It calls the model's own modules (backbone, heads, refinement stages, cubify); only the
``Meshes`` the heads pass between stages are replaced by the tensor-only stand-ins of
:mod:`meshrecon.export.mesh_tensors`, and the two loops that subdivide meshes between stages
(Pixel2Mesh+, the original Pixel2Mesh) are written out here because ``SubdivideMeshes`` takes a
``Meshes``.
"""

from __future__ import annotations

import torch
from torch import nn

from meshrecon.modeling.heads.pixel2mesh import Pixel2MeshGResNetHead, perceptual_pool
from meshrecon.modeling.heads.psgn import PSGNHead
from meshrecon.modeling.heads.shapenet_geometry import shapenet_align_fn
from meshrecon.modeling.heads.sphere_init import SphereInitHead
from meshrecon.modeling.heads.voxmesh import ShapeNetRefinementHead, VoxMeshHead
from meshrecon.modeling.meta_arch.single_view import SingleViewReconstructor
from meshrecon.render.cameras import camera_to_opengl_points, opengl_to_camera
from meshrecon.structures import Meshes, ViewBatch

from .mesh_tensors import MeshTopology, PackedMeshes, UniformMeshes

__all__ = ["SingleViewProgram"]

# Every mesh that cubify makes has at least one cube: 8 vertices, 12 faces, 18 edges.
_CUBE_COUNTS = {"min_verts": 8, "min_faces": 12, "min_edges": 18}


class SingleViewProgram(nn.Module):
    """``SingleViewReconstructor`` inference as ``(images, K) -> dict of tensors``.

    Supported heads: ``VoxelHead``; ``VoxMeshHead``, ``SphereInitHead``, ``Pixel2MeshHead``
    (Pixel2Mesh+), ``Pixel2MeshGResNetHead`` (the original Pixel2Mesh); ``PSGNHead``.

    Args:
        model: the model (put in eval mode; its parameters are shared, not copied).

    Raises:
        ValueError: for a model that is not a ``SingleViewReconstructor`` or has a head this
            module cannot export (the message names it).
    """

    def __init__(self, model: SingleViewReconstructor) -> None:
        super().__init__()
        if not isinstance(model, SingleViewReconstructor):
            raise ValueError(f"expected a SingleViewReconstructor, got {type(model).__name__}")
        self.model = model.eval()
        mesh_head, point_head = model.mesh_head, model.point_head
        if mesh_head is not None and not isinstance(
            mesh_head, (ShapeNetRefinementHead, Pixel2MeshGResNetHead)
        ):
            raise ValueError(f"mesh head {type(mesh_head).__name__} cannot be exported")
        if point_head is not None and not isinstance(point_head, PSGNHead):
            raise ValueError(f"point head {type(point_head).__name__} cannot be exported")
        if isinstance(mesh_head, ShapeNetRefinementHead) and not isinstance(
            mesh_head, (VoxMeshHead, SphereInitHead)
        ):
            raise ValueError(f"mesh head {type(mesh_head).__name__} cannot be exported")
        # VoxMesh's cubified meshes have sizes known only at run time.
        self.data_dependent_sizes = isinstance(mesh_head, VoxMeshHead)
        self.topology: MeshTopology | None = None
        # (V, 3) initial vertices of the sphere / ellipsoid heads.
        self.register_buffer("template", None, persistent=False)
        if isinstance(mesh_head, SphereInitHead):
            dummy = ViewBatch(image_size=(1, 1), K=model.K.new_ones(1, 4))
            template = mesh_head.initial_meshes(dummy)
            subdivisions = mesh_head.num_stages - 1 if mesh_head.subdivide else 0
            self._set_template(template, subdivisions)
        elif isinstance(mesh_head, Pixel2MeshGResNetHead):
            self._set_template(mesh_head.initial_meshes(1), len(mesh_head.blocks) - 1)
        # The wrapper too: an exporter that re-applies its mode must not train the model.
        self.eval()

    def _set_template(self, template: Meshes, subdivisions: int) -> None:
        self.topology = MeshTopology(template, subdivisions)
        self.template = template.verts_packed().clone()

    @property
    def output_names(self) -> list[str]:
        """The keys of :meth:`forward`'s dict, in order."""
        names = ["voxels"] if self.model.voxel_head is not None else []
        if self.model.mesh_head is not None:
            names += ["mesh_verts", "mesh_faces", "mesh_num_verts", "mesh_num_faces"]
        if self.model.point_head is not None:
            names.append("points")
        return names

    def forward(self, images: torch.Tensor, K: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, 3, H, W) images and (N, 4) intrinsics -> the predictions (module docstring)."""
        model = self.model
        x = model.normalize_pixels(images)
        views = ViewBatch(image_size=(images.shape[-2], images.shape[-1]), K=K)
        features = model.extract_features(x)
        out: dict[str, torch.Tensor] = {}
        voxel_scores = None
        if model.voxel_head is not None:
            voxel_scores = model.voxel_head(features[-1])
            out["voxels"] = voxel_scores.sigmoid()[:, 0]
        head = model.mesh_head
        if isinstance(head, VoxMeshHead):
            verts, faces, num_verts, num_faces = head.cubify_packed(voxel_scores, views)
            meshes = PackedMeshes(verts, faces, num_verts, num_faces, **_CUBE_COUNTS)
            out.update(head.refine(features, views, meshes)[-1].to_tensors())
        elif isinstance(head, SphereInitHead):
            N = images.shape[0]
            meshes = UniformMeshes(self.template.expand(N, -1, -1), self.topology)
            if head.subdivide:
                out.update(self._refine_subdividing(head, features, views, meshes).to_tensors())
            else:
                out.update(head.refine(features, views, meshes)[-1].to_tensors())
        elif isinstance(head, Pixel2MeshGResNetHead):
            out.update(self._deform_pixel2mesh(head, features, views).to_tensors())
        if model.point_head is not None:
            noise = x.new_zeros(x.shape[0], model.point_head.noise_dim)
            out["points"] = model.point_head.decode(features, noise)
        return out

    @staticmethod
    def _refine_subdividing(
        head: ShapeNetRefinementHead, features, views: ViewBatch, meshes: UniformMeshes
    ) -> UniformMeshes:
        """``head.refine`` for a subdividing head (Pixel2Mesh+): the final stage's meshes.

        The same steps as ``ShapeNetRefinementHead.refine`` and ``MeshRefinementHead.forward``,
        with ``meshes.subdivide`` in place of ``SubdivideMeshes`` (which takes a ``Meshes``).
        """
        align = shapenet_align_fn(head.projection_matrices(views))
        meshes = meshes.update_padded(camera_to_opengl_points(meshes.verts_padded()))
        vert_feats = None
        for i, stage in enumerate(head.stages):
            coords, pos = align(meshes)
            meshes, vert_feats = stage(features, meshes, vert_feats, coords, pos)
            if i < head.num_stages - 1:
                meshes, vert_feats = meshes.subdivide(vert_feats)
        return meshes.update_padded(opengl_to_camera(meshes.verts_padded()))

    def _deform_pixel2mesh(
        self, head: Pixel2MeshGResNetHead, features, views: ViewBatch
    ) -> UniformMeshes:
        """``Pixel2MeshGResNetHead.deform``'s last output, with ``subdivide`` for ``unpool``."""
        N = views.K.shape[0]
        meshes = UniformMeshes(self.template.expand(N, -1, -1), self.topology)
        hidden = None
        for b, block in enumerate(head.blocks):
            if b > 0:
                meshes, hidden = meshes.subdivide(hidden)
            pooled = perceptual_pool(features, meshes.verts_padded(), views.K, views.image_size)
            x = pooled.flatten(0, 1)
            if hidden is not None:
                x = torch.cat([x, hidden], dim=1)
            offsets, hidden = block(x, meshes.edges_packed())
            meshes = meshes.offset_verts(offsets)
        return meshes
