"""``MeshRCNNROIHeads``: Mask R-CNN's ROI heads plus Mesh R-CNN's z, voxel and mesh heads.

Voxel R-CNN (``VOXEL_ON`` only) outputs the cubified voxels as meshes; Mesh R-CNN
(``VOXEL_ON`` + ``MESH_ON``) refines them; Sphere-Init / Pixel2Mesh+ (``MESH_ON`` only) refine
an ico-sphere of ``ICO_SPHERE_LEVEL``. Meshes live in each box's frustum frame
(:mod:`.box_frustum`); ``pred_dz`` (in box heights) places them in depth at evaluation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from meshrecon.config import configurable
from meshrecon.layers import ShapeSpec
from meshrecon.modeling.poolers import ROIPooler
from meshrecon.modeling.roi_heads.build import (
    ROI_HEADS_REGISTRY,
    build_mesh_head,
    build_voxel_head,
    build_z_head,
)
from meshrecon.modeling.roi_heads.mask_head import mask_rcnn_loss
from meshrecon.modeling.roi_heads.mesh_head import mesh_rcnn_inference, mesh_rcnn_loss
from meshrecon.modeling.roi_heads.roi_heads import (
    StandardROIHeads,
    pooler_from_config,
    select_foreground_proposals,
)
from meshrecon.modeling.roi_heads.voxel_head import voxel_rcnn_inference, voxel_rcnn_loss
from meshrecon.modeling.roi_heads.z_head import z_rcnn_inference, z_rcnn_loss
from meshrecon.ops import cubify, ico_sphere
from meshrecon.structures import Instances, Meshes

__all__ = ["MeshRCNNROIHeads"]


def _pooler_kwargs(cfg, input_shape, key: str) -> tuple[ROIPooler, ShapeSpec]:
    head = cfg.MODEL[key]
    return pooler_from_config(
        input_shape,
        list(cfg.MODEL.ROI_HEADS.IN_FEATURES),
        head.POOLER_RESOLUTION,
        head.POOLER_SAMPLING_RATIO,
        head.POOLER_TYPE,
    )


@ROI_HEADS_REGISTRY.register()
class MeshRCNNROIHeads(StandardROIHeads):
    """Box and mask heads (:class:`StandardROIHeads`) and Mesh R-CNN's shape heads.

    Args (besides ``StandardROIHeads``'s):
        z_pooler, z_head, z_loss_weight, z_smooth_l1_beta: the dz head (``ZPRED_ON``).
        voxel_pooler, voxel_head, voxel_loss_weight, cubify_thresh: the voxel head
            (``VOXEL_ON``).
        mesh_pooler, mesh_head, mesh_loss_weights, gt_num_samples, pred_num_samples,
            gt_coord_thresh, ico_sphere_level: the mesh head (``MESH_ON``).

    Training losses: ``loss_mask`` on Mesh R-CNN's mask targets (not Detectron2's, see
    ``_forward_mask``), ``loss_z_reg``, ``loss_voxel``, ``loss_chamfer``, ``loss_normals``,
    ``loss_edge`` (each only with its head). Inference fields: ``pred_dz`` (D, 1),
    ``pred_voxels`` (D, 1, V, V, V), ``pred_meshes`` (MeshInstances).
    """

    @configurable
    def __init__(
        self,
        *,
        z_pooler: ROIPooler | None = None,
        z_head: nn.Module | None = None,
        z_loss_weight: float = 1.0,
        z_smooth_l1_beta: float = 0.0,
        voxel_pooler: ROIPooler | None = None,
        voxel_head: nn.Module | None = None,
        voxel_loss_weight: float = 1.0,
        cubify_thresh: float = 0.2,
        mesh_pooler: ROIPooler | None = None,
        mesh_head: nn.Module | None = None,
        mesh_loss_weights: dict[str, float] | None = None,
        gt_num_samples: int = 5000,
        pred_num_samples: int = 5000,
        gt_coord_thresh: float = 0.0,
        ico_sphere_level: int = -1,
        mesh_train_max_per_image: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.zpred_on = z_head is not None
        self.voxel_on = voxel_head is not None
        self.mesh_on = mesh_head is not None
        if self.zpred_on:
            self.z_pooler, self.z_head = z_pooler, z_head
        self.z_loss_weight = z_loss_weight
        self.z_smooth_l1_beta = z_smooth_l1_beta
        if self.voxel_on:
            self.voxel_pooler, self.voxel_head = voxel_pooler, voxel_head
        self.voxel_loss_weight = voxel_loss_weight
        self.cubify_thresh = cubify_thresh
        if self.mesh_on:
            self.mesh_pooler, self.mesh_head = mesh_pooler, mesh_head
            if not self.voxel_on and ico_sphere_level < 0:
                raise ValueError(
                    "ico_sphere_level must be >= 0 when the mesh head has no voxel head, got "
                    f"{ico_sphere_level}"
                )
        self.mesh_loss_weights = dict(
            mesh_loss_weights or {"chamfer": 1.0, "normals": 0.0, "edge": 0.0}
        )
        self.gt_num_samples = gt_num_samples
        self.pred_num_samples = pred_num_samples
        self.gt_coord_thresh = gt_coord_thresh
        self.ico_sphere_level = ico_sphere_level
        if mesh_train_max_per_image < 0:
            raise ValueError(
                f"mesh_train_max_per_image must be >= 0 (0: no limit), got "
                f"{mesh_train_max_per_image}"
            )
        self.mesh_train_max_per_image = mesh_train_max_per_image

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]) -> dict[str, Any]:
        ret = super().from_config(cfg, input_shape)
        if cfg.MODEL.ZPRED_ON:
            pooler, shape = _pooler_kwargs(cfg, input_shape, "ROI_Z_HEAD")
            ret.update(
                z_pooler=pooler,
                z_head=build_z_head(cfg, shape),
                z_loss_weight=cfg.MODEL.ROI_Z_HEAD.Z_REG_WEIGHT,
                z_smooth_l1_beta=cfg.MODEL.ROI_Z_HEAD.SMOOTH_L1_BETA,
            )
        if cfg.MODEL.VOXEL_ON:
            pooler, shape = _pooler_kwargs(cfg, input_shape, "ROI_VOXEL_HEAD")
            ret.update(
                voxel_pooler=pooler,
                voxel_head=build_voxel_head(cfg, shape),
                voxel_loss_weight=cfg.MODEL.ROI_VOXEL_HEAD.LOSS_WEIGHT,
                cubify_thresh=cfg.MODEL.ROI_VOXEL_HEAD.CUBIFY_THRESH,
            )
        if cfg.MODEL.MESH_ON:
            head = cfg.MODEL.ROI_MESH_HEAD
            pooler, shape = _pooler_kwargs(cfg, input_shape, "ROI_MESH_HEAD")
            ret.update(
                mesh_pooler=pooler,
                mesh_head=build_mesh_head(cfg, shape),
                mesh_loss_weights={
                    "chamfer": head.CHAMFER_LOSS_WEIGHT,
                    "normals": head.NORMALS_LOSS_WEIGHT,
                    "edge": head.EDGE_LOSS_WEIGHT,
                },
                gt_num_samples=head.GT_NUM_SAMPLES,
                pred_num_samples=head.PRED_NUM_SAMPLES,
                gt_coord_thresh=head.GT_COORD_THRESH,
                ico_sphere_level=head.ICO_SPHERE_LEVEL,
                mesh_train_max_per_image=head.TRAIN_MAX_PROPOSALS_PER_IMAGE,
            )
        return ret

    # ------------------------------------------------------------------ training / inference
    def _forward_mask(
        self, features: dict[str, torch.Tensor], instances: list[Instances]
    ) -> dict[str, torch.Tensor] | list[Instances]:
        """As ``StandardROIHeads``, but trained on Mesh R-CNN's mask targets (the box corners
        truncated to pixels, a bilinear resize, any positive value foreground:
        :func:`~meshrecon.modeling.roi_heads.mask_head.crop_masks_meshrcnn`)."""
        if not (self.training and self.mask_on):
            return super()._forward_mask(features, instances)
        fg, _ = select_foreground_proposals(instances, self.num_classes)
        maps = [features[f] for f in self.mask_in_features]
        logits = self.mask_head.layers(self.mask_pooler(maps, [x.proposal_boxes for x in fg]))
        loss = mask_rcnn_loss(logits, fg, target_crop="meshrcnn")
        return {"loss_mask": loss * self.mask_head.loss_weight}

    def _forward_training_heads(
        self, features: dict[str, torch.Tensor], proposals: list[Instances]
    ) -> dict[str, torch.Tensor]:
        losses = super()._forward_training_heads(features, proposals)
        if not (self.zpred_on or self.voxel_on or self.mesh_on):
            return losses
        fg, _ = select_foreground_proposals(proposals, self.num_classes)
        boxes = [x.proposal_boxes for x in fg]
        maps = [features[f] for f in self.in_features]
        if self.zpred_on:
            z_pred = self.z_head(self.z_pooler(maps, boxes))
            src = torch.cat([b.tensor for b in boxes])
            losses["loss_z_reg"] = z_rcnn_loss(
                z_pred, fg, src, self.z_loss_weight, self.z_smooth_l1_beta
            )
        init_meshes = None
        mesh_fg, mesh_rows = self._mesh_training_subset(fg) if self.mesh_on else (fg, None)
        if self.voxel_on:
            logits = self.voxel_head(self.voxel_pooler(maps, boxes))
            losses["loss_voxel"], _ = voxel_rcnn_loss(logits, fg, self.voxel_loss_weight)
            if self.mesh_on:
                if mesh_rows is not None:
                    logits = logits[mesh_rows]
                classes = torch.cat([x.gt_classes for x in mesh_fg]).long()
                init_meshes = self._cubify(logits, classes, maps[0].dtype)
        if self.mesh_on:
            mesh_boxes = [x.proposal_boxes for x in mesh_fg]
            losses.update(self._mesh_losses(maps, mesh_boxes, mesh_fg, init_meshes))
        return losses

    def _mesh_training_subset(
        self, fg: list[Instances]
    ) -> tuple[list[Instances], torch.Tensor | None]:
        """The foreground proposals the mesh head trains on, and their rows among all of them.

        At most ``mesh_train_max_per_image`` per image, drawn without replacement from torch's
        global generator (so a seeded run draws the same ones); the rows index the
        concatenation of ``fg`` over images (None: every proposal is kept).
        """
        cap = self.mesh_train_max_per_image
        if cap == 0 or all(len(x) <= cap for x in fg):
            return fg, None
        subset, rows, offset = [], [], 0
        for inst in fg:
            n = len(inst)
            if n > cap:
                keep = torch.randperm(n)[:cap].sort().values.to(inst.proposal_boxes.device)
            else:
                keep = torch.arange(n, device=inst.proposal_boxes.device)
            subset.append(inst[keep])
            rows.append(keep + offset)
            offset += n
        return subset, torch.cat(rows)

    def _mesh_losses(self, maps, boxes, fg, init_meshes) -> dict[str, torch.Tensor]:
        mesh_feats = self.mesh_pooler(maps, boxes)
        if init_meshes is None:
            init_meshes = self._ico_spheres(mesh_feats.shape[0], mesh_feats)
        pred = self.mesh_head(mesh_feats, init_meshes)
        out = None
        if not pred[0].isempty():
            out = mesh_rcnn_loss(
                pred,
                fg,
                self.mesh_loss_weights,
                self.gt_num_samples,
                self.pred_num_samples,
                self.gt_coord_thresh,
            )
        if out is None:
            zero = sum(p.sum() for p in self.mesh_head.parameters()) * 0.0
            return {"loss_chamfer": zero, "loss_normals": zero, "loss_edge": zero}
        return {"loss_chamfer": out[0], "loss_normals": out[1], "loss_edge": out[2]}

    def forward_with_given_boxes(
        self, features: dict[str, torch.Tensor], instances: list[Instances]
    ) -> list[Instances]:
        """Masks, then ``pred_dz``, ``pred_voxels`` and ``pred_meshes`` on the detections."""
        instances = super().forward_with_given_boxes(features, instances)
        if not (self.zpred_on or self.voxel_on or self.mesh_on):
            return instances
        boxes = [x.pred_boxes for x in instances]
        num = sum(len(x) for x in instances)
        maps = [features[f] for f in self.in_features]
        if self.zpred_on:
            z_rcnn_inference(self.z_head(self.z_pooler(maps, boxes)), instances)
        init_meshes = None
        if self.voxel_on:
            logits = self.voxel_head(self.voxel_pooler(maps, boxes))
            voxel_rcnn_inference(logits, instances)
            classes = torch.cat([x.pred_classes for x in instances]).long()
            init_meshes = self._cubify(logits, classes, maps[0].dtype)
        if self.mesh_on:
            mesh_feats = self.mesh_pooler(maps, boxes)
            if init_meshes is None:
                init_meshes = self._ico_spheres(num, mesh_feats)
            final = self.mesh_head(mesh_feats, init_meshes)[-1]
            if num:
                mesh_rcnn_inference(final, instances)
        elif num:
            mesh_rcnn_inference(init_meshes, instances)
        return instances

    # ------------------------------------------------------------------ initial meshes
    @torch.no_grad()
    def _cubify(self, logits: torch.Tensor, classes: torch.Tensor, dtype: torch.dtype) -> Meshes:
        """Cubify each ROI's voxel probabilities (of ``classes`` if class-specific).

        The cubified vertices are computed in float32 and then cast to the features' dtype,
        as in Mesh R-CNN (PyTorch3D's cubify builds float32 vertices).
        """
        if logits.shape[0] == 0:
            return Meshes(verts=[], faces=[])
        if logits.shape[1] == 1:
            probs = logits[:, 0].sigmoid()
        else:
            probs = logits[torch.arange(logits.shape[0], device=logits.device), classes].sigmoid()
        meshes = cubify(probs, self.cubify_thresh)
        return Meshes(verts=[v.to(dtype) for v in meshes.verts_list()], faces=meshes.faces_list())

    def _ico_spheres(self, n: int, like: torch.Tensor) -> Meshes:
        if n == 0:
            return Meshes(verts=[], faces=[])
        sphere = ico_sphere(self.ico_sphere_level, like.device)
        verts = sphere.verts_packed().to(like.dtype)
        faces = sphere.faces_packed()
        return Meshes(verts=[verts] * n, faces=[faces] * n)
