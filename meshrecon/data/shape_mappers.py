"""Mappers for whole-object records: single views (ShapeNet-style) and grouped multi-view models.

See :mod:`meshrecon.data.mappers` for what every mapper does; :mod:`.shape_targets` defines
the frustum voxel grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from meshrecon.config import configurable
from meshrecon.render.frustum import BLENDER_NEAR_FAR, SHAPENET_ZRANGE, voxelize_in_frustum

from .augmentation import Augmentation, _rng, apply_augmentations
from .mapper_utils import (
    ShapeTargets,
    as_K4,
    check_image_size,
    image_tensor,
    matrix,
    num_surface_samples,
    shape_config,
)
from .readers import read_depth, read_image
from .record_checks import (
    check_depth,
    check_depth_range,
    check_intrinsics,
    check_mesh,
    check_points,
    check_rotation,
    check_translation,
    check_voxel_grid,
)
from .shape_targets import model_to_camera
from .transforms import CropTransform, HFlipTransform, TransformList

__all__ = ["MultiViewMapper", "ShapeNetMapper"]


class ShapeNetMapper:
    """Single-object view records (ShapeNet-style) to whole-image model inputs.

    Output: ``image`` (3, H, W), ``height``, ``width``, ``image_id``, ``category_id``, ``K``
    (4,) / ``R`` (3, 3) / ``t`` (3,) of the transformed view (model frame -> camera frame;
    after a horizontal flip R has det -1), and with annotations: ``mesh`` (verts (V, 3) camera
    frame, faces (F, 3)), ``points`` / ``normals`` (P, 3) camera frame, ``voxels`` (V, V, V)
    bool ([z, y, x] over the view frustum, see :mod:`.shape_targets`, or the canonical model
    grid), ``depth`` (H, W) metres when the record has one.
    """

    @configurable
    def __init__(
        self,
        *,
        is_train: bool,
        augmentations: Sequence[Augmentation] = (),
        image_format: str = "RGB",
        background: Sequence[float] = (255, 255, 255),
        voxel_size: int = 32,
        voxel_frame: str = "camera",
        voxel_zrange: Sequence[float] = SHAPENET_ZRANGE,
        near_far: Sequence[float] = BLENDER_NEAR_FAR,
        voxel_align: str = "mesh_bbox",
        num_samples: int = 5000,
        sample_online: bool = False,
        load_annotations: bool | None = None,
        cache_shapes: bool = True,
    ):
        self.is_train = is_train
        self.augmentations = list(augmentations)
        self.image_format, self.background = image_format, tuple(background)
        self.targets = ShapeTargets(
            voxel_size,
            voxel_frame,
            voxel_zrange,
            near_far,
            voxel_align,
            num_samples,
            sample_online,
            cache_shapes,
        )
        self.load_annotations = True if load_annotations is None else load_annotations

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> dict[str, Any]:
        return {
            "is_train": is_train,
            "load_annotations": True if is_train else cfg.INPUT.LOAD_TEST_ANNOTATIONS,
            **shape_config(cfg),
        }

    def __call__(self, record: dict) -> dict:
        img = read_image(record, self.image_format, self.background)
        check_image_size(record, img)
        h0, w0 = img.shape[:2]
        img, tfms = apply_augmentations(self.augmentations, img)
        where = f"view {record.get('image_id')}"
        R0 = matrix(record["R"], (3, 3), f"{where}: R")
        t0 = matrix(record["t"], (3,), f"{where}: t")
        check_rotation(R0, where)
        check_translation(t0, where)
        K4 = as_K4(record["K"], where)
        check_intrinsics(K4, (h0, w0), where)
        K = torch.as_tensor(tfms.apply_intrinsics(K4), dtype=torch.float32)
        R, t = tfms.apply_extrinsics(R0, t0)
        out = {
            "file_name": record.get("file_name"),
            "image_id": record.get("image_id"),
            "category_id": record.get("category_id"),
            "height": record.get("height", h0),
            "width": record.get("width", w0),
            "image": image_tensor(img),
            "K": K,
            "R": R,
            "t": t,
        }
        if not self.load_annotations:
            return out
        tg = self.targets
        # A model's files are read once per process and shared by its views (ShapeTargets).
        mesh = tg.mesh(record["mesh"]) if record.get("mesh") else None
        if mesh is not None:
            check_mesh(mesh[0], mesh[1], where)
            verts = model_to_camera(mesh[0], R0, t0, tfms)
            # Projected with K (Pixel2Mesh, the frustum voxels): it must be in front.
            check_depth_range(verts, where, "mesh")
            out["mesh"] = (verts, tfms.apply_faces(mesh[1].clone()))
        if record.get("samples") or mesh is not None:
            pts, nrm = tg.surface(record, mesh)
            check_points(pts, where, "surface points")
            check_points(nrm, where, "surface normals")
            out["points"] = model_to_camera(pts, R0, t0, tfms)
            out["normals"] = tfms.apply_normals_cam(nrm @ R0.T)
        if tg.voxel_size > 0 and record.get("voxel"):
            if tg.voxel_frame == "canonical":
                out["voxels"] = tg.canonical_grid(record["voxel"])
            else:
                pts = model_to_camera(tg.voxel_points(record, mesh), R0, t0, tfms)
                out["voxels"] = voxelize_in_frustum(
                    pts, K, img.shape[:2], tg.voxel_size, tg.voxel_zrange, tg.near_far
                )
            check_voxel_grid(out["voxels"], where)
        if record.get("depth"):
            depth = read_depth(record["depth"])
            if depth.shape != (h0, w0):
                raise ValueError(f"{where}: depth of size {depth.shape}, image {(h0, w0)}")
            check_depth(depth, where)
            out["depth"] = torch.from_numpy(np.ascontiguousarray(tfms.apply_depth(depth)))
        return out


def _model_name(record: dict) -> str:
    """A grouped model record's name: its ``image_id``, else ``"<synset_id>/<model_id>"``."""
    return record.get("image_id") or f"{record.get('synset_id')}/{record.get('model_id')}"


# ------------------------------------------------------------------------------------------
class MultiViewMapper:
    """Grouped model records (``views``) to multi-view inputs (R2N2, OptimizeMVS).

    In training a random number of views (1..``num_views``) is drawn in random order, each
    view is cropped at random to ``crop_size`` (R2N2: 127 of 137), composited over a random
    background colour and flipped with probability 1/2; otherwise the first ``num_views`` views
    in order, centre-cropped over ``background`` (from the record's ``first_view`` on, 0 if
    absent: see :meth:`expand_test_records`).

    Output: ``images`` (V, 3, h, w), ``K`` (V, 4), ``R`` (V, 3, 3), ``t`` (V, 3) per view after
    its transforms, ``view_indices`` (V,), ``voxels`` the canonical (model-frame) grid (flips
    change R, not the grid) with ``voxel_box`` (2, 3) and ``voxel_align``, where it sits in the
    model frame (for the voxel formats that store a box), ``points`` / ``normals`` (P, 3) model
    frame, ``depth`` (V, h, w) when every view has one, ``image_id``, ``category_id``,
    ``height``, ``width`` (= h, w).
    """

    @configurable
    def __init__(
        self,
        *,
        is_train: bool,
        image_format: str = "RGB",
        num_views: int = 5,
        random_num_views: bool = True,
        crop_size: int = 127,
        random_background: bool = True,
        background: Sequence[float] = (255, 255, 255),
        flip: bool = True,
        num_samples: int = 5000,
        sample_online: bool = False,
        voxel_size: int = 32,
        load_annotations: bool | None = None,
        cache_shapes: bool = True,
        test_view_sets: int = 1,
    ):
        if num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {num_views}")
        if test_view_sets < 1:
            raise ValueError(f"test_view_sets must be >= 1, got {test_view_sets}")
        self.test_view_sets = int(test_view_sets)
        self.is_train, self.image_format = is_train, image_format
        self.num_views, self.random_num_views = num_views, random_num_views
        self.crop_size, self.random_background = crop_size, random_background
        self.background, self.flip = tuple(background), flip
        self.targets = ShapeTargets(
            voxel_size,
            "canonical",
            SHAPENET_ZRANGE,
            BLENDER_NEAR_FAR,
            "header",
            num_samples,
            sample_online,
            cache_shapes,
        )
        self.load_annotations = True if load_annotations is None else load_annotations

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> dict[str, Any]:
        m = cfg.INPUT.MULTIVIEW
        return {
            "is_train": is_train,
            "image_format": cfg.INPUT.FORMAT,
            "num_views": m.NUM_VIEWS,
            "random_num_views": m.RANDOM_NUM_VIEWS,
            "crop_size": m.CROP_SIZE,
            "random_background": m.RANDOM_BACKGROUND,
            "background": cfg.INPUT.BACKGROUND_COLOR,
            "flip": m.FLIP,
            "num_samples": num_surface_samples(cfg),
            "sample_online": cfg.INPUT.SHAPENET.SAMPLE_ONLINE,
            "voxel_size": cfg.INPUT.SHAPENET.VOXEL_SIZE,
            "load_annotations": True if is_train else cfg.INPUT.LOAD_TEST_ANNOTATIONS,
            "test_view_sets": m.TEST_VIEW_SETS,
        }

    def expand_test_records(self, records: list[dict]) -> list[dict]:
        """The records a test or validation pass maps: each model ``test_view_sets`` times.

        Copy ``s`` of a model starts at view ``s * num_views`` (``first_view``), so the copies
        see disjoint sets of views and a metric averaged over them is the same expectation
        over view choices as one set, with less of the spread of a small split. With one set
        (the default) the records are returned as they are.

        Raises:
            ValueError: naming a model with fewer than ``test_view_sets * num_views`` views.
        """
        if self.is_train or self.test_view_sets == 1:
            return records
        need = self.test_view_sets * self.num_views
        out: list[dict] = []
        for record in records:
            n = len(record.get("views") or ())
            if n < need:
                name = _model_name(record)
                raise ValueError(
                    f"INPUT.MULTIVIEW.TEST_VIEW_SETS {self.test_view_sets} x NUM_VIEWS "
                    f"{self.num_views} needs {need} views per model; {name} has {n}"
                )
            out.extend(
                {**record, "first_view": s * self.num_views} for s in range(self.test_view_sets)
            )
        return out

    def _choose_views(self, n: int, rng: np.random.Generator, first: int = 0) -> list[int]:
        if not self.is_train:
            if not 0 <= first < n:
                raise ValueError(f"first_view {first} outside the {n} views")
            return list(range(first, min(first + self.num_views, n)))
        k = min(self.num_views, n)
        if self.random_num_views:
            k = int(rng.integers(1, k + 1))
        return [int(i) for i in rng.permutation(n)[:k]]

    def __call__(self, record: dict) -> dict:
        views = record.get("views")
        name = _model_name(record)
        if not views:
            raise ValueError(f"model record {name} has no 'views'")
        rng = _rng(None)
        images, Ks, Rs, ts, depths, indices = [], [], [], [], [], []
        first = int(record.get("first_view", 0))
        for i in self._choose_views(len(views), rng, first):
            view = views[i]
            where = f"view {view.get('image_id', i)} of {name}"
            train = self.is_train
            bg = rng.integers(0, 256, 3).tolist() if train and self.random_background else None
            img = read_image(view, self.image_format, bg or self.background)
            check_image_size(view, img)
            h0, w0 = img.shape[:2]
            tl = []
            if self.crop_size:
                c = self.crop_size
                if c > h0 or c > w0:
                    raise ValueError(f"{where}: crop {c} larger than the image {(h0, w0)}")
                y0, x0 = (
                    (int(rng.integers(0, h0 - c + 1)), int(rng.integers(0, w0 - c + 1)))
                    if train
                    else ((h0 - c) // 2, (w0 - c) // 2)
                )
                tl.append(CropTransform(x0, y0, c, c))
            if train and self.flip and rng.random() < 0.5:
                tl.append(HFlipTransform(c if self.crop_size else w0))
            tfms = TransformList(tl)
            images.append(image_tensor(tfms.apply_image(img)))
            K4 = as_K4(view["K"], where)
            check_intrinsics(K4, (h0, w0), where)
            Ks.append(torch.as_tensor(tfms.apply_intrinsics(K4)))
            R0 = matrix(view["R"], (3, 3), f"{where}: R")
            t0 = matrix(view["t"], (3,), f"{where}: t")
            check_rotation(R0, where)
            check_translation(t0, where)
            R, t = tfms.apply_extrinsics(R0, t0)
            Rs.append(R)
            ts.append(t)
            indices.append(int(view.get("view_index", i)))
            if view.get("depth"):
                d = read_depth(view["depth"])
                if d.shape != (h0, w0):
                    raise ValueError(f"{where}: depth of size {d.shape}, image {(h0, w0)}")
                check_depth(d, where)
                depths.append(torch.from_numpy(np.ascontiguousarray(tfms.apply_depth(d))))
        if len({tuple(im.shape) for im in images}) != 1:
            raise ValueError(f"{name}: views differ in size; set a crop size")
        out = {
            "image_id": name,
            "category_id": record.get("category_id", views[0].get("category_id")),
            "images": torch.stack(images),
            "height": images[0].shape[1],
            "width": images[0].shape[2],
            "K": torch.stack(Ks).float(),
            "R": torch.stack(Rs),
            "t": torch.stack(ts),
            "view_indices": torch.as_tensor(indices, dtype=torch.int64),
        }
        if first:
            out["first_view"] = first
        if len(depths) == len(images):
            out["depth"] = torch.stack(depths)
        if not self.load_annotations:
            return out
        model = {**views[0], **record}
        if model.get("voxel") and self.targets.voxel_size > 0:
            out["voxels"] = self.targets.canonical_grid(model["voxel"])
            check_voxel_grid(out["voxels"], f"model {name}")
            # Where the grid sits in the model frame: evaluators place cubified predictions
            # with it (R2N2Evaluator).
            box = self.targets.canonical_box(model["voxel"])
            if box is not None:
                out["voxel_box"], out["voxel_align"] = box
        if model.get("samples") or model.get("mesh"):
            mesh = None
            if model.get("mesh") and (self.targets.sample_online or not model.get("samples")):
                mesh = self.targets.mesh(model["mesh"])
                check_mesh(mesh[0], mesh[1], f"model {name}")
            out["points"], out["normals"] = self.targets.surface(model, mesh)
            check_points(out["points"], f"model {name}", "surface points")
            check_points(out["normals"], f"model {name}", "surface normals")
        return out
