"""Mesh R-CNN's ShapeNet heads: the frustum voxel head and VoxMesh (cubify, then refine).

Mesh R-CNN's released ShapeNet models work in Blender's (OpenGL) camera frame: the vertex
positions that the graph convolutions see and the offsets they predict are OpenGL coordinates.
These heads therefore run their refinement stages in that frame and hand meshes back in
meshrecon's camera frame (+X left, +Y up, +Z forward); the two differ by ``diag(-1, 1, -1)``,
a rotation, so the Chamfer, normal and edge losses do not depend on the frame they are taken in.

Each view's projection matrix ``P`` is built from its intrinsics ``K`` (for R2N2 renders it is
Blender's matrix, Mesh R-CNN's fixed ``K`` buffer), so the released weights see what they were
trained on and other cameras work too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from meshrecon.config import configurable
from meshrecon.layers import ShapeSpec
from meshrecon.modeling.heads.build import MESH_HEAD_REGISTRY, VOXEL_HEAD_REGISTRY
from meshrecon.modeling.heads.shapenet_geometry import shapenet_align_fn
from meshrecon.modeling.heads.shared import MeshRefinementHead, VoxelConvHead
from meshrecon.ops import (
    chamfer_distance,
    cubify_packed,
    mesh_edge_loss,
    sample_points_from_meshes,
)
from meshrecon.render.cameras import camera_to_opengl, camera_to_opengl_points, opengl_to_camera
from meshrecon.render.frustum import (
    BLENDER_NEAR_FAR,
    SHAPENET_ZRANGE,
    frustum_voxel_coords_to_camera,
)
from meshrecon.structures import Meshes, ViewBatch
from meshrecon.structures.utils import packed_to_item_idx
from meshrecon.utils.stage_timer import stage

__all__ = [
    "ShapeNetRefinementHead",
    "VoxMeshHead",
    "VoxelHead",
    "refinement_mesh_losses",
]


@stage("losses")
def refinement_mesh_losses(
    meshes_per_stage: Sequence[Meshes],
    gt_points: torch.Tensor,
    gt_normals: torch.Tensor | None,
    *,
    chamfer_weight: float,
    normal_weight: float,
    edge_weight: float,
    num_samples: int,
) -> dict[str, torch.Tensor]:
    """Mesh R-CNN's ShapeNet mesh losses, weighted and averaged over the stages.

    For each stage, ``num_samples`` points (with normals) are sampled on the predicted
    surfaces; Chamfer (mean squared nearest-neighbour distance both ways) and normal
    (``1 - |cos|`` to the neighbour's normal) against the ground-truth samples, and the mean
    squared edge length of the mesh.

    Args:
        meshes_per_stage: S batches of N predicted meshes.
        gt_points, gt_normals: (N, P, 3) ground-truth samples in the meshes' frame.

    Returns:
        ``loss_chamfer_{s}``, ``loss_normals_{s}`` (when its weight is > 0), ``loss_edge_{s}``,
        each already times its weight / S.
    """
    losses: dict[str, torch.Tensor] = {}
    S = len(meshes_per_stage)
    for s, meshes in enumerate(meshes_per_stage):
        pts, nrm = sample_points_from_meshes(meshes, num_samples, return_normals=True)
        use_normals = normal_weight > 0 and gt_normals is not None
        cham, normal = chamfer_distance(
            pts,
            gt_points,
            x_normals=nrm if use_normals else None,
            y_normals=gt_normals if use_normals else None,
        )
        losses[f"loss_chamfer_{s}"] = cham * (chamfer_weight / S)
        if use_normals:
            losses[f"loss_normals_{s}"] = normal * (normal_weight / S)
        losses[f"loss_edge_{s}"] = mesh_edge_loss(meshes) * (edge_weight / S)
    return losses


def _flip_meshes(meshes: Meshes, to_opengl: bool) -> Meshes:
    fn = camera_to_opengl_points if to_opengl else opengl_to_camera
    return meshes.update_padded(fn(meshes.verts_padded()))


def _gt_samples(views: ViewBatch, num_samples: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    if views.points is not None:
        return views.points, views.normals
    if views.meshes is None:
        raise ValueError(
            "training a mesh head needs 'points' (and 'normals') or 'mesh' in every input"
        )
    gt = Meshes(verts=[v for v, _ in views.meshes], faces=[f for _, f in views.meshes])
    return sample_points_from_meshes(gt, num_samples, return_normals=True)


# ------------------------------------------------------------------------------------ voxels
@VOXEL_HEAD_REGISTRY.register()
class VoxelHead(VoxelConvHead):
    """Mesh R-CNN's ShapeNet voxel head: logits of a V^3 grid over the view frustum.

    The last backbone map is resized to V/2 x V/2, then ``NUM_CONV`` 3x3 convs, a 2x deconv
    and a 1x1 predictor with V channels give (N, 1, V, V, V) logits indexed [z, y, x] like
    ``ShapeNetMapper``'s camera-frame ``voxels``. Trained with binary cross-entropy.
    """

    @configurable
    def __init__(
        self,
        *,
        input_channels: int,
        conv_dim: int = 256,
        num_conv: int = 4,
        voxel_size: int = 48,
        norm: str = "",
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__(
            input_channels, conv_dim, num_conv, voxel_size, norm, num_classes=1, resize_input=True
        )
        self.loss_weight = float(loss_weight)

    @classmethod
    def from_config(cls, cfg, input_shape: Mapping[str, ShapeSpec]) -> dict[str, Any]:
        v = cfg.MODEL.VOXEL_HEAD
        if cfg.INPUT.SHAPENET.VOXEL_SIZE not in (0, v.VOXEL_SIZE):
            raise ValueError(
                f"MODEL.VOXEL_HEAD.VOXEL_SIZE={v.VOXEL_SIZE} differs from the targets' "
                f"INPUT.SHAPENET.VOXEL_SIZE={cfg.INPUT.SHAPENET.VOXEL_SIZE}"
            )
        if cfg.INPUT.SHAPENET.VOXEL_FRAME != "camera":
            raise ValueError(
                "VoxelHead predicts frustum voxels: set INPUT.SHAPENET.VOXEL_FRAME camera"
            )
        last = list(input_shape.values())[-1]
        return {
            "input_channels": last.channels,
            "conv_dim": v.CONV_DIM,
            "num_conv": v.NUM_CONV,
            "voxel_size": v.VOXEL_SIZE,
            "norm": v.NORM,
            "loss_weight": v.LOSS_WEIGHT,
        }

    @stage("losses")
    def losses(self, voxel_scores: torch.Tensor, views: ViewBatch) -> dict[str, torch.Tensor]:
        """``{"loss_voxel": weight * BCE(logits, views.voxels)}``."""
        gt = views.require("voxels", for_="training the voxel head")
        if gt.shape != voxel_scores.shape[:1] + voxel_scores.shape[2:]:
            raise ValueError(
                f"voxel targets of shape {tuple(gt.shape)} do not match the predicted grid "
                f"{tuple(voxel_scores.shape[2:])}"
            )
        loss = F.binary_cross_entropy_with_logits(voxel_scores[:, 0], gt.to(voxel_scores.dtype))
        return {"loss_voxel": loss * self.loss_weight}


# ------------------------------------------------------------------------------------ meshes
class ShapeNetRefinementHead(MeshRefinementHead):
    """Mesh R-CNN's ShapeNet refinement stages around an initial mesh given by a subclass.

    Parameter names and shapes are those of Mesh R-CNN's ShapeNet ``mesh_head`` (``stages.K.
    bottleneck``, ``gconvs.J.w0/w1``, ``vert_offset``). ``forward(features, views, ...)``
    returns the weighted losses in training and ``[{"mesh": (verts, faces)}]`` in inference.
    """

    @configurable
    def __init__(
        self,
        *,
        input_channels: int,
        num_stages: int = 3,
        num_graph_convs: int = 3,
        graph_conv_dim: int = 128,
        graph_conv_init: str = "normal",
        chamfer_weight: float = 1.0,
        normal_weight: float = 0.0,
        edge_weight: float = 0.2,
        gt_num_samples: int = 5000,
        pred_num_samples: int = 5000,
        subdivide: bool = False,
        near_far: Sequence[float] = BLENDER_NEAR_FAR,
    ) -> None:
        super().__init__(
            input_channels,
            graph_conv_dim,
            num_graph_convs,
            num_stages,
            gconv_init=graph_conv_init,
            offset_name="vert_offset",
            feat_order="prev_last",
            padding_mode="zeros",
            subdivide=subdivide,
        )
        self.chamfer_weight = float(chamfer_weight)
        self.normal_weight = float(normal_weight)
        self.edge_weight = float(edge_weight)
        self.gt_num_samples = int(gt_num_samples)
        self.pred_num_samples = int(pred_num_samples)
        self.near_far = tuple(float(z) for z in near_far)

    @classmethod
    def from_config(cls, cfg, input_shape: Mapping[str, ShapeSpec]) -> dict[str, Any]:
        m = cfg.MODEL.MESH_HEAD
        return {
            "input_channels": sum(s.channels for s in input_shape.values()),
            "num_stages": m.NUM_STAGES,
            "num_graph_convs": m.NUM_GRAPH_CONVS,
            "graph_conv_dim": m.GRAPH_CONV_DIM,
            "graph_conv_init": m.GRAPH_CONV_INIT,
            "chamfer_weight": m.CHAMFER_LOSS_WEIGHT,
            "normal_weight": m.NORMALS_LOSS_WEIGHT,
            "edge_weight": m.EDGE_LOSS_WEIGHT,
            "gt_num_samples": m.GT_NUM_SAMPLES,
            "pred_num_samples": m.PRED_NUM_SAMPLES,
            "near_far": cfg.INPUT.SHAPENET.NEAR_FAR,
        }

    def initial_meshes(self, views: ViewBatch, voxel_scores: torch.Tensor | None) -> Meshes:
        """N initial meshes in meshrecon's camera frame."""
        raise NotImplementedError

    def projection_matrices(self, views: ViewBatch) -> torch.Tensor:
        """(N, 4, 4) OpenGL projections of the views (Mesh R-CNN's ``P``), from their ``K``."""
        N = views.K.shape[0]  # not len(views): under torch.export that would fix the batch
        eye = torch.eye(3, dtype=views.K.dtype, device=views.K.device).expand(N, 3, 3)
        zero = views.K.new_zeros(N, 3)
        P, _ = camera_to_opengl(
            views.K, eye, zero, views.image_size, znear=self.near_far[0], zfar=self.near_far[1]
        )
        return P

    def refine(
        self, features: Sequence[torch.Tensor], views: ViewBatch, meshes: Meshes
    ) -> list[Meshes]:
        """Run the stages on camera-frame ``meshes``; each stage's output, camera frame.

        The stages see Mesh R-CNN's inputs: OpenGL-frame meshes, features sampled at the
        projection (y flipped), projected (NDC) positions concatenated to the features.
        """
        align = shapenet_align_fn(self.projection_matrices(views))
        outs = super().forward(features, _flip_meshes(meshes, True), align)
        return [_flip_meshes(m, False) for m in outs]

    def forward(
        self,
        features: Sequence[torch.Tensor],
        views: ViewBatch,
        voxel_scores: torch.Tensor | None = None,
        voxel_only: bool = False,
    ) -> dict[str, torch.Tensor] | list[dict]:
        if self.training and voxel_only:
            # Keep every parameter in the graph (DDP) while only the voxel loss counts.
            outs = self.refine(features, views, _dummy_meshes(len(views), features[0].device))
            return {"loss_mesh_dummy": sum(m.verts_packed().sum() for m in outs) * 0.0}
        outs = self.refine(features, views, self.initial_meshes(views, voxel_scores))
        if self.training:
            gt_points, gt_normals = _gt_samples(views, self.gt_num_samples)
            return refinement_mesh_losses(
                outs,
                gt_points,
                gt_normals,
                chamfer_weight=self.chamfer_weight,
                normal_weight=self.normal_weight,
                edge_weight=self.edge_weight,
                num_samples=self.pred_num_samples,
            )
        final = outs[-1]
        return [{"mesh": (v, f)} for v, f in zip(final.verts_list(), final.faces_list())]


def _dummy_meshes(n: int, device: torch.device) -> Meshes:
    verts = torch.tensor([[0.1, 0.0, 1.0], [-0.1, 0.0, 1.0], [0.0, 0.1, 1.1], [0.0, -0.1, 1.1]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [0, 3, 1], [1, 3, 2]])
    return Meshes(verts=[verts.to(device)] * n, faces=[faces.to(device)] * n)


@MESH_HEAD_REGISTRY.register()
class VoxMeshHead(ShapeNetRefinementHead):
    """Mesh R-CNN (ShapeNet): cubify the predicted voxels, then refine the cubified mesh.

    Voxels with probability ``>= cubify_thresh`` become cubes (a grid with none gets its
    central V/2 cube filled, as Mesh R-CNN does); the cube vertices go from the frustum grid
    to the camera frame through each view's ``K`` (inverse of the targets' voxelization).
    """

    @configurable
    def __init__(
        self,
        *,
        cubify_thresh: float = 0.2,
        cubify_align: str = "topleft",
        voxel_zrange: Sequence[float] = SHAPENET_ZRANGE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cubify_thresh = float(cubify_thresh)
        self.cubify_align = cubify_align
        self.voxel_zrange = tuple(float(z) for z in voxel_zrange)

    @classmethod
    def from_config(cls, cfg, input_shape: Mapping[str, ShapeSpec]) -> dict[str, Any]:
        if not cfg.MODEL.VOXEL_ON:
            raise ValueError("MODEL.MESH_HEAD.NAME=VoxMeshHead needs MODEL.VOXEL_ON True")
        return {
            **ShapeNetRefinementHead.from_config(cfg, input_shape),
            "cubify_thresh": cfg.MODEL.VOXEL_HEAD.CUBIFY_THRESH,
            "cubify_align": cfg.MODEL.VOXEL_HEAD.CUBIFY_ALIGN,
            "voxel_zrange": cfg.INPUT.SHAPENET.VOXEL_ZRANGE,
        }

    def cubify_packed(
        self, voxel_scores: torch.Tensor, views: ViewBatch
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(N, 1, V, V, V) logits -> the camera-frame cube meshes, packed.

        Returns:
            ``(verts (sum V_n, 3), faces (sum F_n, 3) local to each mesh, num_verts (N,),
            num_faces (N,))``, as :func:`meshrecon.ops.cubify_packed`. Pure tensor code (no
            branch on values), so that ``torch.export`` traces it.
        """
        with torch.no_grad():
            probs = voxel_scores[:, 0].sigmoid()
            V = probs.shape[-1]
            # A grid with no voxel over the threshold gets its central V/2 cube filled.
            empty = ~(probs >= self.cubify_thresh).flatten(1).any(dim=1)
            a, b = V // 4, V // 4 + V // 2
            centre = torch.zeros(probs.shape[1:], dtype=torch.bool, device=probs.device)
            centre[a:b, a:b, a:b] = True
            probs = torch.where(empty[:, None, None, None] & centre, 1.0, probs)
            verts, faces, num_verts, num_faces = cubify_packed(
                probs, self.cubify_thresh, align=self.cubify_align
            )
            owner = packed_to_item_idx(num_verts, verts.shape[0])
            # cubify's grid vertices are float32; they are placed in the scores' dtype (as
            # Mesh R-CNN, which casts them before ``voxel_to_world``).
            verts = verts.to(voxel_scores.dtype)
            index = (verts + 1.0) * (0.5 * (V - 1))
            # K[owner].T is (4, sum V_n): each vertex is mapped with its own view's intrinsics.
            verts = frustum_voxel_coords_to_camera(
                index, views.K[owner].T, views.image_size, V, self.voxel_zrange, self.near_far
            ).to(verts.dtype)
        return verts, faces, num_verts, num_faces

    def cubify(self, voxel_scores: torch.Tensor, views: ViewBatch) -> Meshes:
        """(N, 1, V, V, V) logits -> N camera-frame meshes of the occupied voxels."""
        verts, faces, num_verts, num_faces = self.cubify_packed(voxel_scores, views)
        return Meshes(
            verts=list(verts.split(num_verts.tolist())),
            faces=list(faces.split(num_faces.tolist())),
        )

    def initial_meshes(self, views: ViewBatch, voxel_scores: torch.Tensor | None) -> Meshes:
        if voxel_scores is None:
            raise ValueError("VoxMeshHead needs the voxel head's scores")
        return self.cubify(voxel_scores, views)
