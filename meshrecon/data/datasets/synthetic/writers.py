"""Byte-reproducible writers for the files of the synthetic datasets.

Every writer produces the same bytes for the same input, so that two generations with one seed
are identical file for file (PNG and OBJ are deterministic already; the MATLAB header's
timestamp is replaced by a fixed text). Each writer creates the parent folder it needs.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import io as sio

from meshrecon.io import save_mesh

__all__ = [
    "DEPTH_PNG_SCALE",
    "model_voxels_to_pix3d",
    "pix3d_voxels_to_model",
    "save_depth_png16",
    "save_json",
    "save_mask_png",
    "save_mesh_obj",
    "save_pix3d_voxel_mat",
    "save_rgb_png",
    "save_rgba_png",
    "save_samples_pt",
    "save_voxels_npz",
    "to_numpy",
]

# Depth PNGs store millimetres (NYU's convention): metres = value / DEPTH_PNG_SCALE.
DEPTH_PNG_SCALE = 1000.0

# scipy writes "Created on: <time>" into the 116-byte MAT header; a fixed text keeps the bytes
# reproducible.
_MAT_HEADER = b"MATLAB 5.0 MAT-file, written by meshrecon's synthetic dataset generator"


def to_numpy(x: Any) -> np.ndarray:
    """Return ``x`` (tensor, array or nested sequence) as a numpy array on the CPU."""
    if torch.is_tensor(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _makedirs_for(path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] to uint8 (rounded); uint8 images unchanged."""
    image = to_numpy(image)
    if image.dtype == np.uint8:
        return image
    return (np.clip(image.astype(np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_rgb_png(path: str, rgb: Any) -> None:
    """Save an (H, W, 3) RGB image (float in [0, 1] or uint8) as an 8-bit PNG."""
    rgb8 = _to_uint8(rgb)
    if rgb8.ndim != 3 or rgb8.shape[2] != 3:
        raise ValueError(f"{path}: rgb must have shape (H, W, 3), got {rgb8.shape}")
    _makedirs_for(path)
    Image.fromarray(np.ascontiguousarray(rgb8), mode="RGB").save(path, format="PNG")


def save_rgba_png(path: str, rgb: Any, alpha: Any) -> None:
    """Save an RGBA PNG: colour ``rgb`` (H, W, 3) and opacity ``alpha`` (H, W) bool or [0, 1].

    Like R2N2's renders the background is transparent; the colour stored under transparent
    pixels is whatever ``rgb`` holds there (the generator renders on white).
    """
    rgb8 = _to_uint8(rgb)
    alpha = to_numpy(alpha)
    alpha8 = (alpha.astype(np.uint8) * 255) if alpha.dtype == bool else _to_uint8(alpha)
    if rgb8.shape[:2] != alpha8.shape or rgb8.ndim != 3:
        raise ValueError(
            f"{path}: rgb (H, W, 3) and alpha (H, W) disagree: {rgb8.shape} vs {alpha8.shape}"
        )
    _makedirs_for(path)
    rgba = np.concatenate([rgb8, alpha8[..., None]], axis=2)
    Image.fromarray(np.ascontiguousarray(rgba), mode="RGBA").save(path, format="PNG")


def save_mask_png(path: str, mask: Any) -> None:
    """Save an (H, W) boolean mask as a one-channel PNG of 0 / 255 (Pix3D's mask format)."""
    mask = to_numpy(mask).astype(bool)
    if mask.ndim != 2:
        raise ValueError(f"{path}: mask must have shape (H, W), got {mask.shape}")
    _makedirs_for(path)
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(path, format="PNG")


def save_depth_png16(path: str, depth: Any, scale: float = DEPTH_PNG_SCALE) -> None:
    """Save an (H, W) depth map in metres as a 16-bit PNG of ``round(depth * scale)``.

    Non-finite or non-positive depths become 0 (missing); values beyond 65535 / scale are
    clipped, so callers keep scenes within that range (65.5 m at millimetres).
    """
    depth = to_numpy(depth).astype(np.float64)
    if depth.ndim != 2:
        raise ValueError(f"{path}: depth must have shape (H, W), got {depth.shape}")
    valid = np.isfinite(depth) & (depth > 0)
    value = np.where(valid, np.rint(depth * scale), 0.0)
    _makedirs_for(path)
    Image.fromarray(np.clip(value, 0, 65535).astype(np.uint16)).save(path, format="PNG")


def save_mesh_obj(path: str, verts: Any, faces: Any) -> None:
    """Save a triangle mesh (verts (V, 3), faces (F, 3)) with :func:`meshrecon.io.save_mesh`."""
    _makedirs_for(path)
    save_mesh(
        path,
        torch.as_tensor(to_numpy(verts), dtype=torch.float32),
        torch.as_tensor(to_numpy(faces), dtype=torch.int64),
    )


def save_samples_pt(path: str, points: Any, normals: Any) -> None:
    """Save surface samples as ``.pt`` ``{points_sampled (P, 3), normals_sampled (P, 3)}``."""
    points_t = torch.as_tensor(to_numpy(points), dtype=torch.float32).contiguous()
    normals_t = torch.as_tensor(to_numpy(normals), dtype=torch.float32).contiguous()
    if points_t.shape != normals_t.shape or points_t.dim() != 2 or points_t.shape[1] != 3:
        raise ValueError(
            f"{path}: points and normals must both be (P, 3), got {tuple(points_t.shape)} and "
            f"{tuple(normals_t.shape)}"
        )
    _makedirs_for(path)
    torch.save({"points_sampled": points_t, "normals_sampled": normals_t}, path)


def save_voxels_npz(
    path: str, grids: dict[int, Any], bounds: Sequence[Sequence[float]], default_size: int
) -> None:
    """Save occupancy grids of one model as ``.npz``.

    Keys: ``occupancy_<S>`` for each size S of ``grids`` (bool (S, S, S), indexed ``[z, y, x]``
    like :func:`meshrecon.ops.voxelize_meshes` and ``cubify``), ``occupancy`` (the grid of size
    ``default_size``, the key DATA_FORMATS.md names), ``bounds`` ((2, 3) float32
    ``[min_xyz, max_xyz]`` of the model-frame box the voxels tile exactly) and ``align``
    (``"corner"``: voxel ``[k, j, i]`` covers ``bounds_min + ([i, j, k] + [0, 1]) * size / S``).
    """
    if default_size not in grids:
        raise ValueError(f"{path}: default_size {default_size} is not among {sorted(grids)}")
    arrays: dict[str, np.ndarray] = {}
    for size, grid in sorted(grids.items()):
        grid = to_numpy(grid).astype(bool)
        if grid.shape != (size, size, size):
            raise ValueError(f"{path}: grid of size {size} has shape {grid.shape}")
        arrays[f"occupancy_{size}"] = grid
    arrays["occupancy"] = arrays[f"occupancy_{default_size}"]
    arrays["bounds"] = np.asarray(bounds, dtype=np.float32).reshape(2, 3)
    arrays["align"] = np.asarray("corner")
    _makedirs_for(path)
    # np.savez stores a fixed timestamp in its zip entries, so the bytes are reproducible.
    np.savez_compressed(path, **arrays)


def model_voxels_to_pix3d(occupancy_zyx: Any) -> np.ndarray:
    """Convert a model-frame grid indexed ``[z, y, x]`` to Pix3D's voxel frame.

    Pix3D's voxel frame is +x left, +y outward, +z up, and Mesh R-CNN turns it back into the
    model frame with ``np.rot90(voxel, k=3, axes=(1, 2))`` followed by ``argwhere`` read as
    model ``(x, y, z)``. So voxel index ``[i, j, k]`` holds model cell ``x = i``, ``y = k``,
    ``z = S - 1 - j``: voxel +y ("outward") is model -z and voxel +z ("up") is model +y. The
    synthetic model frame is +X left, +Y up like Pix3D's; its +Z plays Pix3D's "inward".
    """
    occ = to_numpy(occupancy_zyx)
    if occ.ndim != 3:
        raise ValueError(f"occupancy must be (D, H, W), got shape {occ.shape}")
    occ_xyz = np.transpose(occ, (2, 1, 0))
    return np.ascontiguousarray(np.rot90(occ_xyz, k=1, axes=(1, 2)))


def pix3d_voxels_to_model(voxel: Any) -> np.ndarray:
    """Inverse of :func:`model_voxels_to_pix3d`: Pix3D voxel frame to model ``[z, y, x]``."""
    occ_xyz = np.rot90(to_numpy(voxel), k=3, axes=(1, 2))
    return np.ascontiguousarray(np.transpose(occ_xyz, (2, 1, 0)))


def save_pix3d_voxel_mat(path: str, occupancy_zyx: Any, bounds: Sequence[Sequence[float]]) -> None:
    """Save a model-frame occupancy grid as Pix3D's ``voxel.mat``.

    Key ``voxel``: uint8 (S, S, S) in Pix3D's voxel frame (see :func:`model_voxels_to_pix3d`).
    Key ``bounds``: (2, 3) model-frame box ``[min_xyz, max_xyz]`` that the grid tiles (an
    addition: Pix3D has none, and readers that only know ``voxel`` ignore it).
    """
    voxel = model_voxels_to_pix3d(occupancy_zyx).astype(np.uint8)
    buffer = io.BytesIO()
    sio.savemat(
        buffer,
        {"voxel": voxel, "bounds": np.asarray(bounds, dtype=np.float64).reshape(2, 3)},
        do_compression=True,
    )
    data = bytearray(buffer.getvalue())
    data[:116] = _MAT_HEADER.ljust(116, b" ")
    _makedirs_for(path)
    with open(path, "wb") as f:
        f.write(bytes(data))


def save_json(path: str, obj: Any) -> None:
    """Write ``obj`` as indented JSON with sorted keys (reproducible bytes)."""
    _makedirs_for(path)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
