"""Mappers: one dataset record (docs/DATA_FORMATS.md) in, one model input dict out.

Each mapper reads the record's files, applies the transforms of :mod:`.transforms` to the
image and to every target alike, and returns tensors. A file that cannot be read raises an
error naming it; ``MapDataset`` then skips the sample and counts it.

``height`` / ``width`` in the output are the record's (original) image size, as in Detectron2,
so that predictions can be rescaled to it; the ``image`` tensor has the transformed size.

Here: :class:`MeshRCNNMapper` (detection records) and :class:`DepthMapper` (depth records);
:class:`ShapeNetMapper` and :class:`MultiViewMapper` (whole-object records) live in
:mod:`.shape_mappers` and are re-exported.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from meshrecon.config import configurable
from meshrecon.structures import Boxes, Instances
from meshrecon.structures.masks import BitMasks
from meshrecon.structures.shape_instances import MeshInstances, VoxelInstances

from .augmentation import (
    Augmentation,
    _rng,
    apply_augmentations,
    build_augmentation,
    color_jitter,
    depth_scale_augment,
)
from .mapper_utils import ShapeCache, as_K4, check_image_size, image_name, image_tensor, matrix
from .readers import _to_format, read_depth, read_image, read_mask
from .record_checks import (
    check_depth,
    check_depth_range,
    check_intrinsics,
    check_mesh,
    check_points,
    check_rotation,
    check_translation,
)
from .shape_mappers import MultiViewMapper, ShapeNetMapper
from .shape_targets import meshrcnn_dz, model_to_camera
from .transforms import (
    CropTransform,
    HFlipTransform,
    NoOpTransform,
    ResizeTransform,
    RotationTransform,
    TransformList,
)

__all__ = ["DepthMapper", "MeshRCNNMapper", "MultiViewMapper", "ShapeNetMapper"]

logger = logging.getLogger(__name__)


class MeshRCNNMapper:
    """Detection records (Pix3D-style) to Mesh R-CNN inputs.

    Output: ``image`` (3, H, W) float32 0..255 in ``image_format`` order, ``height``,
    ``width``, ``image_id``, ``file_name`` and, in training (or with ``load_annotations``),
    ``instances`` with

    - ``gt_boxes`` Boxes (N, 4) XYXY, clipped; ``gt_classes`` (N,) int64;
    - ``gt_masks`` BitMasks (N, H, W) (``mask_on``);
    - ``gt_K``: (N, 3) ``[f, w/2, h/2]`` (convention "meshrcnn") or (N, 4) ``[fx, fy, cx, cy]``
      (convention "scale_K"), for the transformed image;
    - ``gt_meshes`` MeshInstances of camera-frame (verts, faces) (``mesh_on``);
    - ``gt_voxels`` VoxelInstances of (M, 3) camera-frame occupied-voxel centres, Mesh R-CNN's
      form (``voxel_on``);
    - ``gt_dz`` (N,) ``(zmax - zmin) / zcenter * f * new_h / h`` (``zpred_on``).

    Under "meshrcnn", camera X, Y of meshes and voxels are scaled by the resize factors and K
    keeps f (their released models expect this; it assumes the principal point is the image
    centre, as in Pix3D). Under "scale_K" the geometry is untouched and K follows the pixels.
    """

    @configurable
    def __init__(
        self,
        *,
        is_train: bool,
        augmentations: Sequence[Augmentation],
        image_format: str = "BGR",
        mask_on: bool = True,
        mesh_on: bool = False,
        voxel_on: bool = False,
        zpred_on: bool = False,
        k_convention: str = "meshrcnn",
        load_annotations: bool | None = None,
        background: Sequence[float] = (255, 255, 255),
        cache_shapes: bool = True,
    ):
        if k_convention not in ("meshrcnn", "scale_K"):
            raise ValueError(f"k_convention must be 'meshrcnn' or 'scale_K', got {k_convention!r}")
        self.is_train = is_train
        self.augmentations = list(augmentations)
        self.image_format = image_format
        self.mask_on, self.mesh_on, self.voxel_on, self.zpred_on = (
            mask_on,
            mesh_on,
            voxel_on,
            zpred_on,
        )
        self.k_convention = k_convention
        self.load_annotations = is_train if load_annotations is None else load_annotations
        self.background = tuple(background)
        self._cache = ShapeCache(cache_shapes)
        self._warned_off_centre = False

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> dict[str, Any]:
        return {
            "is_train": is_train,
            "augmentations": build_augmentation(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "mask_on": cfg.MODEL.MASK_ON,
            "mesh_on": cfg.MODEL.MESH_ON,
            "voxel_on": cfg.MODEL.VOXEL_ON,
            "zpred_on": cfg.MODEL.ZPRED_ON,
            "k_convention": cfg.INPUT.K_CONVENTION,
            "load_annotations": True if is_train else cfg.INPUT.LOAD_TEST_ANNOTATIONS,
            "background": cfg.INPUT.BACKGROUND_COLOR,
        }

    def __call__(self, record: dict) -> dict:
        img = read_image(record, self.image_format, self.background)
        check_image_size(record, img)
        h0, w0 = img.shape[:2]
        img, tfms = apply_augmentations(self.augmentations, img)
        out = {
            "file_name": record.get("file_name"),
            "image_id": record.get("image_id"),
            "height": record.get("height", h0),
            "width": record.get("width", w0),
            "image": image_tensor(img),
        }
        if not self.load_annotations or "annotations" not in record:
            return out
        annos = [copy.deepcopy(a) for a in record["annotations"] if a.get("iscrowd", 0) == 0]
        name = f"image {image_name(record)}"
        out["instances"] = self._instances(annos, tfms, (h0, w0), img.shape[:2], name)
        return out

    def _instances(
        self,
        annos: list[dict],
        tfms: TransformList,
        size0: tuple[int, int],
        size: tuple[int, int],
        image: str = "image",
    ) -> Instances:
        h0, w0 = size0
        h, w = size
        inst = Instances((h, w))
        boxes = [tfms.apply_box(np.asarray([a["bbox"]], dtype=np.float64))[0] for a in annos]
        inst.gt_boxes = Boxes(
            torch.as_tensor(np.asarray(boxes).reshape(-1, 4), dtype=torch.float32)
        )
        inst.gt_boxes.clip((h, w))
        inst.gt_classes = torch.as_tensor([int(a["category_id"]) for a in annos], dtype=torch.int64)
        if self.mask_on:
            masks = []
            for a in annos:
                m = read_mask(a["segmentation"])
                if m.shape != (h0, w0):
                    raise ValueError(
                        f"mask {a['segmentation']} has size {m.shape}, its image {(h0, w0)}"
                    )
                masks.append(torch.from_numpy(tfms.apply_segmentation(m)))
            inst.gt_masks = BitMasks(
                torch.stack(masks) if masks else torch.zeros(0, h, w, dtype=torch.bool)
            )
        Ks, dzs, meshes, voxels = [], [], [], []
        for a in annos:
            where = f"{image}, annotation of mesh {a.get('mesh')}"
            K = as_K4(a["K"], where)
            check_intrinsics(K, (h0, w0), where)
            if self.k_convention == "meshrcnn":
                off_centre = abs(K[2] - w0 / 2.0) > 1.0 or abs(K[3] - h0 / 2.0) > 1.0
                if off_centre and not self._warned_off_centre:
                    self._warned_off_centre = True
                    logger.warning(
                        "%s: principal point %s is not the image centre; Mesh R-CNN's K "
                        "convention assumes it is (use INPUT.K_CONVENTION scale_K)",
                        where,
                        K[2:],
                    )
                Ks.append([K[0], w / 2.0, h / 2.0])
                focal = K[0] * h / h0
            else:
                k4 = tfms.apply_intrinsics(K)
                Ks.append(k4.tolist())
                focal = float(k4[1])
            if not (self.mesh_on or self.voxel_on or self.zpred_on):
                continue
            R = matrix(a["R"], (3, 3), f"{where}: R")
            t = matrix(a["t"], (3,), f"{where}: t")
            check_rotation(R, where)
            check_translation(t, where)
            if self.mesh_on or self.zpred_on:
                verts, faces = self._cache.mesh(a["mesh"])
                check_mesh(verts, faces, where)
                verts_cam = model_to_camera(verts, R, t, tfms, self.k_convention)
                # The box frustum of Mesh R-CNN's heads maps [zmin, zmax] through 1 / Z.
                check_depth_range(verts_cam, where, "mesh")
                meshes.append((verts_cam, tfms.apply_faces(faces.clone())))
                if self.zpred_on:
                    # dz is a ratio of depths times f: X, Y scaling does not reach it.
                    dzs.append(meshrcnn_dz(verts_cam, focal))
            if self.voxel_on:
                if not a.get("voxel"):
                    raise ValueError(f"{where}: VOXEL_ON but the annotation has no 'voxel'")
                pts = self._cache.voxel(a["voxel"]).points
                check_points(pts, where, "voxels")
                pts = model_to_camera(pts, R, t, tfms, self.k_convention)
                check_depth_range(pts, where, "voxels")
                voxels.append(pts)
        k_width = 3 if self.k_convention == "meshrcnn" else 4
        inst.gt_K = torch.as_tensor(Ks, dtype=torch.float32).reshape(len(annos), k_width)
        if self.mesh_on:
            inst.gt_meshes = MeshInstances(meshes)
        if self.voxel_on:
            inst.gt_voxels = VoxelInstances(voxels)
        if self.zpred_on:
            inst.gt_dz = torch.as_tensor(dzs, dtype=torch.float32)
        return inst[inst.gt_boxes.nonempty()]


class DepthMapper:
    """Depth records (NYU / KITTI-style) to depth-estimation inputs.

    Training applies Eigen et al.'s augmentations in their order: scale s (image resized by s,
    depth divided by s), in-plane rotation about the principal point, random crop, per-channel
    colour gain, horizontal flip; K follows every step. Inference only resizes the image to
    ``base_size`` and keeps the ground-truth ``depth`` at the record's resolution, so that the
    evaluation ``protocol`` (crop in original pixels) applies to it unchanged.

    Output: ``image`` (3, H, W), ``depth`` (H, W) float32 metres (0: invalid), ``K`` (4,),
    ``protocol``, ``height``, ``width`` (the record's), ``image_id``, ``file_name``.
    """

    @configurable
    def __init__(
        self,
        *,
        is_train: bool,
        image_format: str = "RGB",
        base_size: Sequence[int] | None = None,
        scale_range: Sequence[float] = (1.0, 1.5),
        rotation: float = 5.0,
        crop_size: Sequence[int] | None = None,
        color_range: Sequence[float] = (0.8, 1.2),
        flip: bool = True,
        load_annotations: bool = True,
    ):
        self.is_train, self.image_format = is_train, image_format
        self.base_size = tuple(base_size) if base_size else None
        self.scale_range, self.rotation = tuple(scale_range), float(rotation)
        self.crop_size = tuple(crop_size) if crop_size else None
        self.color_range, self.flip = tuple(color_range), flip
        self.load_annotations = load_annotations

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> dict[str, Any]:
        d = cfg.INPUT.DEPTH
        return {
            "is_train": is_train,
            "image_format": cfg.INPUT.FORMAT,
            "base_size": list(d.BASE_SIZE) or None,
            "scale_range": d.SCALE_RANGE,
            "rotation": d.ROTATION,
            "crop_size": list(d.CROP_SIZE) or None,
            "color_range": d.COLOR_RANGE,
            "flip": d.FLIP,
        }

    def __call__(self, record: dict) -> dict:
        img = read_image(record, "RGB")
        check_image_size(record, img)
        h0, w0 = img.shape[:2]
        where = f"depth record {record.get('image_id')}"
        K = np.asarray(as_K4(record["K"], where), dtype=np.float64)
        check_intrinsics(K, (h0, w0), where)
        depth = None
        if self.is_train or self.load_annotations:
            depth = read_depth(record["depth"])
            if depth.shape != (h0, w0):
                name = image_name(record)
                raise ValueError(f"{where}: depth of size {depth.shape}, image {name} {(h0, w0)}")
            check_depth(depth, where)
        gt_depth = depth
        base = NoOpTransform()
        if self.base_size and tuple(self.base_size) != (h0, w0):
            base = ResizeTransform(h0, w0, int(self.base_size[0]), int(self.base_size[1]))
        img, K = base.apply_image(img), base.apply_intrinsics(K)
        if self.is_train:
            depth = base.apply_depth(depth)
            img, depth, K = self._augment(img, depth, K, _rng(None))
            gt_depth = depth
        if self.image_format != "RGB":
            img = _to_format(img, self.image_format)
        out = {
            "file_name": record.get("file_name"),
            "image_id": record.get("image_id"),
            "height": record.get("height", h0),
            "width": record.get("width", w0),
            "image": image_tensor(img),
            "K": torch.as_tensor(K, dtype=torch.float32),
            "protocol": copy.deepcopy(record.get("protocol")),
        }
        if gt_depth is not None:
            out["depth"] = torch.from_numpy(np.ascontiguousarray(gt_depth, dtype=np.float32))
        return out

    def _augment(self, img, depth, K, rng):
        s = float(rng.uniform(*self.scale_range))
        if s != 1.0:
            img, depth, K = depth_scale_augment(img, depth, K, s)
        if self.rotation > 0:
            h, w = img.shape[:2]
            rot = RotationTransform(
                h, w, float(rng.uniform(-self.rotation, self.rotation)), center=(K[2], K[3])
            )
            img, depth = rot.apply_image(img), rot.apply_depth(depth)
        if self.crop_size:
            h, w = img.shape[:2]
            ch, cw = self.crop_size
            if ch > h or cw > w:
                raise ValueError(f"depth crop {self.crop_size} larger than the image {(h, w)}")
            y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            crop = CropTransform(x0, y0, cw, ch)
            img, depth, K = crop.apply_image(img), crop.apply_depth(depth), crop.apply_intrinsics(K)
        img = color_jitter(img, rng.uniform(*self.color_range, size=img.shape[2]))
        if self.flip and rng.random() < 0.5:
            f = HFlipTransform(img.shape[1])
            img, depth, K = f.apply_image(img), f.apply_depth(depth), f.apply_intrinsics(K)
        return img, depth, K
