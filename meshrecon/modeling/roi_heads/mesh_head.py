"""Mesh R-CNN's ROI mesh refinement heads, their losses and inference.

The heads refine an initial mesh per ROI (cubified voxels, or an ico-sphere for Sphere-Init
and Pixel2Mesh+) in the box frustum frame (see :mod:`.box_frustum`), sampling the pooled ROI
features at the vertices' (x, y) directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from meshrecon.config import configurable
from meshrecon.layers import ShapeSpec
from meshrecon.modeling.heads.shared import MeshRefinementHead
from meshrecon.modeling.roi_heads.box_frustum import crop_meshes_within_boxes
from meshrecon.modeling.roi_heads.build import ROI_MESH_HEAD_REGISTRY
from meshrecon.ops import chamfer_distance, mesh_edge_loss, sample_points_from_meshes
from meshrecon.structures import Instances, Meshes
from meshrecon.structures.shape_instances import MeshInstances
from meshrecon.utils.stage_timer import stage

__all__ = [
    "MeshRCNNGraphConvHead",
    "MeshRCNNGraphConvSubdHead",
    "mesh_rcnn_loss",
    "mesh_rcnn_inference",
]


@ROI_MESH_HEAD_REGISTRY.register()
class MeshRCNNGraphConvHead(MeshRefinementHead):
    """``NUM_STAGES`` refinement stages on (R, C, M, M) pooled ROI features.

    ``forward(x, meshes)`` returns the list of per-stage Meshes (R meshes each); an empty
    input gives ``[Meshes([], [])]``.
    """

    _subdivide = False

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        num_stages: int,
        num_graph_convs: int,
        graph_conv_dim: int,
        graph_conv_init: str = "normal",
    ) -> None:
        super().__init__(
            input_shape.channels,
            graph_conv_dim,
            num_graph_convs,
            num_stages,
            gconv_init=graph_conv_init,
            offset_name="verts_offset",
            feat_order="prev_first",
            padding_mode="border",
            subdivide=self._subdivide,
        )

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec) -> dict[str, Any]:
        head = cfg.MODEL.ROI_MESH_HEAD
        return {
            "input_shape": input_shape,
            "num_stages": head.NUM_STAGES,
            "num_graph_convs": head.NUM_GRAPH_CONVS,
            "graph_conv_dim": head.GRAPH_CONV_DIM,
            "graph_conv_init": head.GRAPH_CONV_INIT,
        }

    def forward(self, x: torch.Tensor, meshes: Meshes) -> list[Meshes]:  # type: ignore[override]
        """(R, C, M, M) features and R initial meshes (frustum frame) -> per-stage Meshes.

        With no ROI, or only empty initial meshes (no voxel above the cubify threshold), there
        is nothing to refine: the initial meshes are returned as the only stage.
        """
        if x.numel() == 0 or meshes.isempty():
            return [meshes]
        return super().forward(x, meshes)


@ROI_MESH_HEAD_REGISTRY.register()
class MeshRCNNGraphConvSubdHead(MeshRCNNGraphConvHead):
    """:class:`MeshRCNNGraphConvHead` subdividing the mesh between stages (Pixel2Mesh+)."""

    _subdivide = True


@stage("losses")
def mesh_rcnn_loss(
    pred_meshes: Sequence[Meshes],
    instances: Sequence[Instances],
    loss_weights: dict[str, float],
    gt_num_samples: int = 5000,
    pred_num_samples: int = 5000,
    gt_coord_thresh: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Meshes] | None:
    """Chamfer, normal and edge losses of every stage against ``gt_meshes`` placed in each
    proposal's frustum, summed over the stages.

    Args:
        pred_meshes: per stage, the R meshes of the foreground ROIs of all images.
        instances: per image, those ROIs with ``proposal_boxes``, ``gt_meshes``, ``gt_K``.
        loss_weights: ``{"chamfer", "normals", "edge"}`` weights.
        gt_num_samples / pred_num_samples: points sampled per mesh.
        gt_coord_thresh: zero all losses when a target point's |coordinate| exceeds this
            (bad ROIs give huge targets and exploding gradients); None or 0: never.

    Returns:
        (chamfer, normals, edge, target Meshes), or None when there are no ROIs.
    """
    if not isinstance(pred_meshes, (list, tuple)) or not pred_meshes:
        raise ValueError("pred_meshes must be a non-empty list of Meshes (one per stage)")
    verts, faces = [], []
    for inst in instances:
        if len(inst) == 0:
            continue
        gt = crop_meshes_within_boxes(inst.gt_meshes, inst.proposal_boxes.tensor, inst.gt_K)
        verts.extend(gt.verts_list())
        faces.extend(gt.faces_list())
    if not verts:
        return None
    dtype = pred_meshes[0].verts_packed().dtype
    gt_meshes = Meshes(verts=[v.to(dtype) for v in verts], faces=faces)
    gt_points, gt_normals = sample_points_from_meshes(
        gt_meshes, num_samples=gt_num_samples, return_normals=True
    )
    chamfer, normals, edge = [], [], []
    for mesh in pred_meshes:
        points, point_normals = sample_points_from_meshes(
            mesh, num_samples=pred_num_samples, return_normals=True
        )
        weights = (mesh.valid & gt_meshes.valid).to(points.dtype)
        loss_c, loss_n = chamfer_distance(
            points, gt_points, x_normals=point_normals, y_normals=gt_normals, weights=weights
        )
        chamfer.append(loss_c * loss_weights["chamfer"])
        normals.append(loss_n * loss_weights["normals"])
        edge.append(mesh_edge_loss(mesh) * loss_weights["edge"])
    loss_c, loss_n, loss_e = sum(chamfer), sum(normals), sum(edge)
    if gt_coord_thresh and gt_points.abs().max() > gt_coord_thresh:
        loss_c, loss_n, loss_e = loss_c * 0.0, loss_n * 0.0, loss_e * 0.0
    return loss_c, loss_n, loss_e, gt_meshes


def mesh_rcnn_inference(pred_meshes: Meshes, pred_instances: Sequence[Instances]) -> None:
    """Set ``pred_meshes`` (a :class:`MeshInstances` of frustum-frame (verts, faces)) on each
    image's detections, splitting the meshes of all detections by image."""
    counts = [len(x) for x in pred_instances]
    verts, faces = pred_meshes.verts_list(), pred_meshes.faces_list()
    if len(verts) != sum(counts):
        raise ValueError(f"{len(verts)} meshes for {sum(counts)} detections")
    start = 0
    for inst, n in zip(pred_instances, counts):
        if n:
            pairs = list(zip(verts[start : start + n], faces[start : start + n]))
            inst.pred_meshes = MeshInstances(pairs)
        start += n
