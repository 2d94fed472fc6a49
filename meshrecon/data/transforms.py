"""Geometric and photometric transforms applied consistently to an image and all its targets.

A :class:`Transform` holds fixed parameters and maps every kind of target the same way:
images, masks, depth maps, pixel coordinates and boxes, intrinsics ``K = [fx, fy, cx, cy]``,
and geometry in the camera frame (+X left, +Y up, +Z forward; see docs/DATA_FORMATS.md).
An :class:`Augmentation` draws the parameters of a transform at random.

Conventions (pixel coordinates are continuous, origin at the top-left image corner):

- **Resize** by (sx, sy): ``u' = sx u``, ``v' = sy v``; hence ``K' = [sx fx, sy fy, sx cx,
  sy cy]`` and the 3D scene is unchanged (metric depth does not change). Mesh R-CNN's Pix3D
  models expect another convention instead: ``K`` stays ``[f, w'/2, h'/2]`` and camera-space
  X, Y are multiplied by (sx, sy); :meth:`Transform.meshrcnn_xy_scale` gives those factors.
- **Horizontal flip**: ``u' = W - u``, ``cx' = W - cx``; camera points get X negated, which is
  a reflection, so triangle winding is reversed to keep normals pointing outwards, and the
  model-to-camera transform becomes ``(F R, F t)`` with ``F = diag(-1, 1, 1)`` (det -1).
- **Crop** at (x0, y0): ``cx -= x0``, ``cy -= y0``; the scene is unchanged.
- **Rotation** by ``angle`` degrees counter-clockwise (as displayed) about the principal
  point: a camera roll about its optical axis; K is unchanged and camera points rotate about
  Z. Exact for ``fx == fy``.

Images are numpy arrays (H, W) or (H, W, C); masks and depth maps are resampled with nearest
neighbour so labels and metric depths are never blended.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

__all__ = [
    "CropTransform",
    "HFlipTransform",
    "NoOpTransform",
    "ResizeTransform",
    "RotationTransform",
    "Transform",
    "TransformList",
    "VFlipTransform",
]


def _resample(arr: np.ndarray, size_wh: tuple[int, int], resample: int) -> np.ndarray:
    """Resize an (H, W) or (H, W, C) array with PIL, keeping its dtype."""
    w, h = size_wh
    if arr.dtype == np.uint8 and (arr.ndim == 2 or arr.shape[2] in (1, 3, 4)):
        squeeze = arr.ndim == 3 and arr.shape[2] == 1
        pil = Image.fromarray(arr[:, :, 0] if squeeze else arr)
        out = np.asarray(pil.resize((w, h), resample))
        return out[:, :, None] if squeeze else out
    if arr.dtype == bool:
        return _resample(arr.astype(np.uint8), size_wh, Image.NEAREST).astype(bool)
    # Anything else (float depth, multi-channel) goes channel by channel through mode "F".
    chans = arr[:, :, None] if arr.ndim == 2 else arr
    out = np.stack(
        [
            np.asarray(Image.fromarray(chans[:, :, c].astype(np.float32)).resize((w, h), resample))
            for c in range(chans.shape[2])
        ],
        axis=2,
    ).astype(arr.dtype)
    return out[:, :, 0] if arr.ndim == 2 else out


def _as_K(K: Sequence[float] | np.ndarray | torch.Tensor) -> np.ndarray:
    k = np.asarray(K.tolist() if torch.is_tensor(K) else K, dtype=np.float64).reshape(-1)
    if k.shape != (4,):
        raise ValueError(f"K must be [fx, fy, cx, cy], got {K!r}")
    return k


class Transform:
    """A deterministic transform of an image and its targets; identity by default."""

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        """(H, W[, C]) image, interpolated."""
        return img

    def apply_segmentation(self, mask: np.ndarray) -> np.ndarray:
        """(H, W) mask or label map, nearest neighbour."""
        return self.apply_image(mask)

    def apply_depth(self, depth: np.ndarray) -> np.ndarray:
        """(H, W) depth map, nearest neighbour; values (camera Z) unchanged."""
        return self.apply_segmentation(depth)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        """(N, 2) pixel coordinates (x, y)."""
        return coords

    def apply_box(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) XYXY boxes: the box enclosing the four transformed corners."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        corners = boxes[:, [0, 1, 2, 1, 0, 3, 2, 3]].reshape(-1, 2)
        c = self.apply_coords(corners).reshape(-1, 4, 2)
        return np.concatenate([c.min(axis=1), c.max(axis=1)], axis=1)

    def apply_intrinsics(self, K: Sequence[float]) -> np.ndarray:
        """(4,) ``[fx, fy, cx, cy]`` of the transformed image (scene-preserving convention)."""
        return _as_K(K)

    def camera_matrix(self) -> np.ndarray:
        """3x3 M with camera points ``X' = M X`` in the scene-preserving convention."""
        return np.eye(3)

    def meshrcnn_xy_scale(self) -> tuple[float, float]:
        """Factors on camera X, Y under Mesh R-CNN's convention (K stays [f, w/2, h/2])."""
        return 1.0, 1.0

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        """(H, W) of the transformed image."""
        return h, w

    # Derived target types; defined once from camera_matrix.
    def apply_points_cam(self, points: torch.Tensor) -> torch.Tensor:
        """(N, 3) camera-frame points."""
        M = self.camera_matrix()
        if np.allclose(M, np.eye(3)):
            return points
        return points @ torch.as_tensor(M, dtype=points.dtype, device=points.device).T

    def apply_normals_cam(self, normals: torch.Tensor) -> torch.Tensor:
        """(N, 3) camera-frame normals (M is orthogonal, so normals map like points)."""
        return self.apply_points_cam(normals)

    def apply_faces(self, faces: torch.Tensor) -> torch.Tensor:
        """(F, 3) faces: winding reversed when the transform is a reflection."""
        if np.linalg.det(self.camera_matrix()) < 0:
            return faces[:, [0, 2, 1]]
        return faces

    def apply_extrinsics(
        self, R: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Model-to-camera ``(R (3, 3), t (3,))`` after the transform: ``(M R, M t)``."""
        M = torch.as_tensor(self.camera_matrix(), dtype=R.dtype, device=R.device)
        return M @ R, M @ t

    def apply_frustum_voxels(self, grid: torch.Tensor) -> torch.Tensor:
        """(..., D, H, W) grid over the view frustum, indexed [z, y(row), x(column)]."""
        return grid

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


class NoOpTransform(Transform):
    """The identity."""


class ResizeTransform(Transform):
    """Resize from (h, w) to (new_h, new_w); images bilinear, masks / depth nearest."""

    def __init__(self, h: int, w: int, new_h: int, new_w: int, interp: int = Image.BILINEAR):
        self.h, self.w, self.new_h, self.new_w, self.interp = h, w, new_h, new_w, interp

    def _check(self, arr: np.ndarray) -> None:
        if arr.shape[:2] != (self.h, self.w):
            raise ValueError(
                f"ResizeTransform expects an array of size {(self.h, self.w)}, got {arr.shape}"
            )

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        self._check(img)
        return _resample(img, (self.new_w, self.new_h), self.interp)

    def apply_segmentation(self, mask: np.ndarray) -> np.ndarray:
        self._check(mask)
        return _resample(mask, (self.new_w, self.new_h), Image.NEAREST)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        c = np.asarray(coords, dtype=np.float64).copy()
        c[:, 0] *= self.new_w / self.w
        c[:, 1] *= self.new_h / self.h
        return c

    def apply_intrinsics(self, K: Sequence[float]) -> np.ndarray:
        sx, sy = self.new_w / self.w, self.new_h / self.h
        return _as_K(K) * np.array([sx, sy, sx, sy])

    def meshrcnn_xy_scale(self) -> tuple[float, float]:
        return self.new_w / self.w, self.new_h / self.h

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        return self.new_h, self.new_w


class HFlipTransform(Transform):
    """Mirror left-right an image of width ``width``."""

    def __init__(self, width: int):
        self.width = width

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(img[:, ::-1])

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        c = np.asarray(coords, dtype=np.float64).copy()
        c[:, 0] = self.width - c[:, 0]
        return c

    def apply_intrinsics(self, K: Sequence[float]) -> np.ndarray:
        k = _as_K(K).copy()
        k[2] = self.width - k[2]
        return k

    def camera_matrix(self) -> np.ndarray:
        return np.diag([-1.0, 1.0, 1.0])

    def apply_frustum_voxels(self, grid: torch.Tensor) -> torch.Tensor:
        return grid.flip(-1)


class VFlipTransform(Transform):
    """Mirror top-bottom an image of height ``height``."""

    def __init__(self, height: int):
        self.height = height

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(img[::-1])

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        c = np.asarray(coords, dtype=np.float64).copy()
        c[:, 1] = self.height - c[:, 1]
        return c

    def apply_intrinsics(self, K: Sequence[float]) -> np.ndarray:
        k = _as_K(K).copy()
        k[3] = self.height - k[3]
        return k

    def camera_matrix(self) -> np.ndarray:
        return np.diag([1.0, -1.0, 1.0])

    def apply_frustum_voxels(self, grid: torch.Tensor) -> torch.Tensor:
        return grid.flip(-2)


class CropTransform(Transform):
    """Keep the ``h`` x ``w`` window whose top-left pixel is (x0, y0)."""

    def __init__(self, x0: int, y0: int, w: int, h: int):
        self.x0, self.y0, self.w, self.h = x0, y0, w, h

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        H, W = img.shape[:2]
        if self.x0 < 0 or self.y0 < 0 or self.x0 + self.w > W or self.y0 + self.h > H:
            raise ValueError(f"crop {self!r} does not fit in an image of size {(H, W)}")
        return np.ascontiguousarray(img[self.y0 : self.y0 + self.h, self.x0 : self.x0 + self.w])

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return np.asarray(coords, dtype=np.float64) - np.array([self.x0, self.y0])

    def apply_box(self, boxes: np.ndarray) -> np.ndarray:
        # Boxes are clipped to the window: the part of an object outside it is not visible.
        out = super().apply_box(boxes)
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, self.w)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, self.h)
        return out

    def apply_intrinsics(self, K: Sequence[float]) -> np.ndarray:
        return _as_K(K) - np.array([0.0, 0.0, self.x0, self.y0])

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        return self.h, self.w


class RotationTransform(Transform):
    """Rotate by ``angle`` degrees counter-clockwise (as displayed) about ``center`` (x, y).

    Pixels rotated in from outside the image are 0 (black image, invalid depth, background).
    """

    def __init__(self, h: int, w: int, angle: float, center: tuple[float, float] | None = None):
        self.h, self.w, self.angle = h, w, float(angle)
        self.center = (w / 2.0, h / 2.0) if center is None else (float(center[0]), float(center[1]))

    def _rotate(self, arr: np.ndarray, resample: int) -> np.ndarray:
        if arr.shape[:2] != (self.h, self.w):
            raise ValueError(f"RotationTransform expects size {(self.h, self.w)}, got {arr.shape}")
        was_bool = arr.dtype == bool
        a = arr.astype(np.uint8) if was_bool else arr
        chans = [a] if a.ndim == 2 else [a[:, :, c] for c in range(a.shape[2])]
        out = []
        for ch in chans:
            mode_arr = ch if ch.dtype == np.uint8 else ch.astype(np.float32)
            pil = Image.fromarray(mode_arr)
            rot = pil.rotate(self.angle, resample=resample, center=self.center, fillcolor=0)
            out.append(np.asarray(rot).astype(a.dtype))
        res = out[0] if a.ndim == 2 else np.stack(out, axis=2)
        return res.astype(bool) if was_bool else res

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return self._rotate(img, Image.BILINEAR)

    def apply_segmentation(self, mask: np.ndarray) -> np.ndarray:
        return self._rotate(mask, Image.NEAREST)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        c = np.asarray(coords, dtype=np.float64)
        a = math.radians(self.angle)
        ca, sa = math.cos(a), math.sin(a)
        d = c - np.array(self.center)
        # Counter-clockwise on screen with y pointing down.
        out = np.stack([d[:, 0] * ca + d[:, 1] * sa, -d[:, 0] * sa + d[:, 1] * ca], axis=1)
        return out + np.array(self.center)

    def camera_matrix(self) -> np.ndarray:
        a = math.radians(self.angle)
        ca, sa = math.cos(a), math.sin(a)
        # (u - cx, v - cy) = -f (X, Y) / Z, so the pixel rotation acts on (X, Y) unchanged.
        return np.array([[ca, sa, 0.0], [-sa, ca, 0.0], [0.0, 0.0, 1.0]])


class TransformList(Transform):
    """Transforms applied in order."""

    def __init__(self, transforms: Sequence[Transform]):
        flat: list[Transform] = []
        for t in transforms:
            flat.extend(t.transforms if isinstance(t, TransformList) else [t])
        self.transforms = [t for t in flat if not isinstance(t, NoOpTransform)]

    def _chain(self, name: str, x):
        for t in self.transforms:
            x = getattr(t, name)(x)
        return x

    def apply_image(self, img):
        return self._chain("apply_image", img)

    def apply_segmentation(self, mask):
        return self._chain("apply_segmentation", mask)

    def apply_depth(self, depth):
        return self._chain("apply_depth", depth)

    def apply_coords(self, coords):
        return self._chain("apply_coords", coords)

    def apply_box(self, boxes):
        return self._chain("apply_box", boxes)

    def apply_intrinsics(self, K):
        return self._chain("apply_intrinsics", _as_K(K))

    def apply_frustum_voxels(self, grid):
        return self._chain("apply_frustum_voxels", grid)

    def camera_matrix(self) -> np.ndarray:
        M = np.eye(3)
        for t in self.transforms:
            M = t.camera_matrix() @ M
        return M

    def meshrcnn_xy_scale(self) -> tuple[float, float]:
        sx, sy = 1.0, 1.0
        for t in self.transforms:
            if not isinstance(t, (ResizeTransform, HFlipTransform, VFlipTransform)):
                raise ValueError(
                    f"Mesh R-CNN's K convention ([f, w/2, h/2]) supports only resize and flip "
                    f"transforms, got {t!r}; use INPUT.K_CONVENTION 'scale_K'"
                )
            fx, fy = t.meshrcnn_xy_scale()
            sx, sy = sx * fx, sy * fy
        return sx, sy

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        for t in self.transforms:
            h, w = t.output_size(h, w)
        return h, w

    def __repr__(self) -> str:
        return f"TransformList({self.transforms!r})"


# Served from .augmentation (see __getattr__ below).
_AUGMENTATION_NAMES = frozenset(
    (
        "Augmentation",
        "RandomCrop",
        "RandomFlip",
        "ResizeShortestEdge",
        "apply_augmentations",
        "build_augmentation",
        "color_jitter",
        "depth_scale_augment",
        "random_crop",
    )
)


def __getattr__(name: str):
    # The random augmentations and the depth helpers live in .augmentation, which builds on the
    # classes above; they are served from here lazily (PEP 562) to avoid a circular import.
    if name in _AUGMENTATION_NAMES:
        from . import augmentation

        return getattr(augmentation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
