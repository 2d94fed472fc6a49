"""Pictures of depth predictions: colour-mapped panels and back-projected point clouds.

- :func:`depth_panel`: input image | ground truth | prediction (| log-error map), side by side,
  the depths on one shared colour scale so that the panels compare.
- :func:`depth_to_colored_points`: a depth map lifted with K into camera-frame points (the
  convention of :func:`meshrecon.render.unproject_depth`), coloured by the image.
- :func:`save_depth_visualization`: both, written as ``<name>_panel.png`` and
  ``<name>_pred.ply`` / ``<name>_gt.ply`` (open the PLYs in MeshLab or CloudCompare).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from meshrecon.io import save_pointcloud_ply
from meshrecon.render import colorize_depth, save_image, unproject_depth

__all__ = [
    "depth_panel",
    "depth_to_colored_points",
    "image_to_rgb_uint8",
    "save_depth_visualization",
    "scale_intrinsics",
]


def scale_intrinsics(
    K: torch.Tensor | Sequence[float], from_hw: Sequence[int], to_hw: Sequence[int]
) -> torch.Tensor:
    """Return ``[fx, fy, cx, cy]`` of an image of size ``from_hw`` resized to ``to_hw``.

    Pixel edges map to pixel edges, so ``fx`` and ``cx`` both scale by ``W_to / W_from`` (and
    ``fy``, ``cy`` by the height ratio).
    """
    K = torch.as_tensor(K, dtype=torch.float64).flatten()
    if K.numel() != 4:
        raise ValueError(f"K must be [fx, fy, cx, cy], got {K.numel()} values")
    sy = float(to_hw[0]) / float(from_hw[0])
    sx = float(to_hw[1]) / float(from_hw[1])
    return K * torch.tensor([sx, sy, sx, sy], dtype=torch.float64)


def image_to_rgb_uint8(
    image: torch.Tensor | np.ndarray, image_format: str = "RGB", size: Sequence[int] | None = None
) -> np.ndarray:
    """Return an (H, W, 3) uint8 RGB picture of a model input image.

    Args:
        image: (3, H, W) tensor in 0..255 (a mapper's ``image``) or (H, W, 3) uint8 array.
        image_format: channel order of ``image``: ``"RGB"`` or ``"BGR"``.
        size: optional (H, W) to resize to (bilinear).
    """
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image array must be (H, W, 3), got {image.shape}")
        t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    else:
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"image tensor must be (3, H, W), got {tuple(image.shape)}")
        t = image.detach().float().cpu()
    if image_format.upper() == "BGR":
        t = t.flip(0)
    elif image_format.upper() != "RGB":
        raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
    if size is not None and tuple(t.shape[-2:]) != tuple(size):
        t = F.interpolate(t[None], size=tuple(size), mode="bilinear", align_corners=False)[0]
    return t.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _to_numpy_depth(depth: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    arr = depth.detach().cpu().numpy() if isinstance(depth, torch.Tensor) else np.asarray(depth)
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (H, W), got {arr.shape}")
    return arr.astype(np.float64)


def depth_panel(
    image_rgb: np.ndarray,
    pred: torch.Tensor | np.ndarray,
    gt: torch.Tensor | np.ndarray | None = None,
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "magma_r",
    error_map: bool = True,
) -> np.ndarray:
    """Return an (H, k * W, 3) uint8 picture: image, GT, prediction and |log error|.

    All panels have the prediction's size (H, W); the image is resized to it. Depth colours
    share one range: ``[vmin, vmax]``, by default the valid GT's range (else the prediction's).
    Pixels without GT are black in the GT and error panels. The error panel maps
    ``|log pred - log gt|`` from 0 to ``log 1.25`` (the delta-1 threshold: anything brighter
    fails delta < 1.25).

    Args:
        image_rgb: (h, w, 3) uint8.
        pred: (H, W) predicted depth, metres.
        gt: optional (H, W) ground truth, metres, 0 = invalid.
    """
    p = _to_numpy_depth(pred, "pred")
    H, W = p.shape
    img = image_to_rgb_uint8(image_rgb, "RGB", size=(H, W))
    g = None if gt is None else _to_numpy_depth(gt, "gt")
    if g is not None and g.shape != p.shape:
        raise ValueError(f"gt {g.shape} and pred {p.shape} must have the same shape")
    ref = g if g is not None and np.any(g > 0) else p
    ref_valid = np.isfinite(ref) & (ref > 0)
    lo = vmin if vmin is not None else float(ref[ref_valid].min()) if ref_valid.any() else 0.0
    hi = vmax if vmax is not None else float(ref[ref_valid].max()) if ref_valid.any() else 1.0
    panels = [img]
    if g is not None:
        panels.append(colorize_depth(g, vmin=lo, vmax=hi, cmap=cmap))
    panels.append(colorize_depth(np.clip(p, lo, hi), vmin=lo, vmax=hi, cmap=cmap))
    if g is not None and error_map:
        valid = np.isfinite(g) & (g > 0) & (p > 0)
        err = np.zeros_like(p)
        err[valid] = np.abs(np.log(p[valid]) - np.log(g[valid]))
        # colorize_depth treats 0 as "no value": lift valid errors off zero by a hair.
        err = np.where(valid, np.maximum(err, 1e-9), 0.0)
        panels.append(colorize_depth(err, vmin=0.0, vmax=float(np.log(1.25)), cmap="inferno"))
    return np.concatenate(panels, axis=1)


def depth_to_colored_points(
    depth: torch.Tensor | np.ndarray,
    K: torch.Tensor | Sequence[float],
    image_rgb: np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Back-project the valid pixels of ``depth`` with ``K`` into coloured camera-frame points.

    Args:
        depth: (H, W) camera Z, metres; ``<= 0`` or non-finite pixels are skipped.
        K: ``[fx, fy, cx, cy]`` for an image of size (H, W).
        image_rgb: optional (h, w, 3) uint8, resized to (H, W) for the colours; grey without.

    Returns:
        ``(points (P, 3) float32, colors (P, 3) uint8)``, P the number of valid pixels, in the
        camera frame of ``meshrecon.render`` (+X left, +Y up, +Z forward).
    """
    d = torch.as_tensor(_to_numpy_depth(depth, "depth"))
    points, valid = unproject_depth(d, torch.as_tensor(K, dtype=torch.float64).flatten())
    if image_rgb is None:
        colors = torch.full((*d.shape, 3), 160, dtype=torch.uint8)
    else:
        colors = torch.from_numpy(image_to_rgb_uint8(image_rgb, "RGB", size=tuple(d.shape)))
    return points[valid].float(), colors[valid]


def save_depth_visualization(
    out_dir: str,
    name: str,
    image_rgb: np.ndarray,
    pred: torch.Tensor | np.ndarray,
    K: torch.Tensor | Sequence[float],
    gt: torch.Tensor | np.ndarray | None = None,
    *,
    vmax: float | None = None,
) -> dict[str, str]:
    """Write ``<name>_panel.png``, ``<name>_pred.ply`` and (with ``gt``) ``<name>_gt.ply``.

    Args:
        out_dir: folder to write into (created).
        name: file-name stem (no folders).
        image_rgb: (h, w, 3) uint8 input image.
        pred: (H, W) predicted depth, metres.
        K: ``[fx, fy, cx, cy]`` at the prediction's size (H, W).
        gt: optional (H, W) ground truth, metres, 0 = invalid.
        vmax: optional top of the colour range (e.g. the protocol's max depth).

    Returns:
        ``{"panel": path, "pred_ply": path, "gt_ply": path}`` (``gt_ply`` only with ``gt``).
    """
    if os.path.basename(name) != name or not name:
        raise ValueError(f"name must be a plain file-name stem, got {name!r}")
    os.makedirs(out_dir, exist_ok=True)
    paths = {"panel": os.path.join(out_dir, f"{name}_panel.png")}
    save_image(paths["panel"], depth_panel(image_rgb, pred, gt, vmax=vmax))
    points, colors = depth_to_colored_points(pred, K, image_rgb)
    paths["pred_ply"] = os.path.join(out_dir, f"{name}_pred.ply")
    save_pointcloud_ply(paths["pred_ply"], points, colors=colors)
    if gt is not None:
        points, colors = depth_to_colored_points(gt, K, image_rgb)
        paths["gt_ply"] = os.path.join(out_dir, f"{name}_gt.ply")
        save_pointcloud_ply(paths["gt_ply"], points, colors=colors)
    return paths
