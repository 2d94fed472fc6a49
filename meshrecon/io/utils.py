"""Helpers shared by the mesh, OBJ/MTL, point cloud and voxel readers and writers."""

from __future__ import annotations

import os

import numpy as np
import torch
from iopath.common.file_io import PathManager, g_pathmgr

__all__ = ["MeshIOError", "NonFiniteVerticesError"]

PathLike = str | os.PathLike
Device = str | torch.device | None


class MeshIOError(ValueError):
    """A mesh, point cloud or voxel file is missing data, truncated or otherwise unreadable."""


class NonFiniteVerticesError(MeshIOError):
    """A mesh file parses, but some vertex coordinates are NaN or infinite."""


def _path_str(path: PathLike) -> str:
    if not isinstance(path, str | os.PathLike):
        raise ValueError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    return os.fspath(path)


def _path_manager(path_manager: PathManager | None) -> PathManager:
    """The caller's PathManager, or iopath's global one (which knows meshrecon's prefixes)."""
    if path_manager is None:
        return g_pathmgr
    if not all(hasattr(path_manager, a) for a in ("open", "exists")):
        raise ValueError(
            f"path_manager must be an iopath PathManager, got {type(path_manager).__name__}"
        )
    return path_manager


def _require_file(path: str, what: str = "mesh", path_manager: PathManager | None = None) -> None:
    try:
        exists = _path_manager(path_manager).exists(path)
    except NotImplementedError:
        return  # e.g. http:// handlers cannot test existence; opening the file reports it
    if not exists:
        raise FileNotFoundError(f"{what} file not found: {path}")


def _fan_triangulate(polys: np.ndarray) -> np.ndarray:
    """(F, k) polygons -> (F * (k - 2), 3) triangles (0, i, i + 1), grouped by polygon."""
    k = polys.shape[1]
    if k == 3:
        return polys
    tris = [np.stack([polys[:, 0], polys[:, i], polys[:, i + 1]], axis=1) for i in range(1, k - 1)]
    # Interleave so the triangles of one polygon stay adjacent, as in the file.
    return np.stack(tris, axis=1).reshape(-1, 3)


def _check_index_range(idx: np.ndarray, count: int, what: str, name: str) -> None:
    if idx.size and (idx.min() < 0 or idx.max() >= count):
        raise MeshIOError(
            f"{name}: {what} indices out of range [0, {count}): "
            f"min {int(idx.min())}, max {int(idx.max())}"
        )


def _validate_verts_faces(verts: torch.Tensor, faces: torch.Tensor) -> None:
    if not isinstance(verts, torch.Tensor) or verts.ndim != 2 or verts.shape[1] != 3:
        got = tuple(verts.shape) if isinstance(verts, torch.Tensor) else type(verts).__name__
        raise ValueError(f"verts must be a tensor of shape (V, 3), got {got}")
    if not verts.is_floating_point():
        raise ValueError(f"verts must be a floating point tensor, got {verts.dtype}")
    _validate_index_rows(faces, "faces", verts.shape[0], "verts")


def _validate_index_rows(idx: torch.Tensor, name: str, count: int, target: str) -> None:
    """``idx`` must be an integer (F, 3) tensor of indices into ``count`` rows of ``target``."""
    if not isinstance(idx, torch.Tensor) or idx.ndim != 2 or idx.shape[1] != 3:
        got = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
        raise ValueError(f"{name} must be a tensor of shape (F, 3), got {got}")
    if idx.is_floating_point() or idx.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got {idx.dtype}")
    if idx.numel() and (idx.min() < 0 or idx.max() >= count):
        raise ValueError(
            f"{name} index out of range [0, {count}) of {target}: "
            f"min {int(idx.min())}, max {int(idx.max())}"
        )


def _colors_to_unit(colors: torch.Tensor, count: int, name: str = "verts_colors") -> np.ndarray:
    """(count, 3) colours, uint8 0..255 or float 0..1, as float64 in [0, 1]; ValueError else."""
    if not isinstance(colors, torch.Tensor) or tuple(colors.shape) != (count, 3):
        got = tuple(colors.shape) if isinstance(colors, torch.Tensor) else type(colors).__name__
        raise ValueError(f"{name} must be a tensor of shape ({count}, 3), got {got}")
    c = colors.detach().cpu()
    if c.dtype == torch.uint8:
        return c.double().numpy() / 255.0
    if not c.is_floating_point():
        raise ValueError(f"{name} must be uint8 (0..255) or float (0..1), got {c.dtype}")
    out = c.double().numpy()
    if not np.isfinite(out).all() or out.min(initial=0.0) < 0.0 or out.max(initial=0.0) > 1.0:
        raise ValueError(f"{name}: float colours must be finite and lie in [0, 1]")
    return out


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """Decode sRGB values in [0, 1] to linear light, by the transfer function of IEC 61966-2-1.

    Images and PLY / OBJ colours are sRGB-encoded; glTF's ``COLOR_0`` is linear.

    Args:
        c: sRGB-encoded values in [0, 1], any shape.

    Returns:
        float64 array of ``c``'s shape, linear light in [0, 1].
    """
    c = np.asarray(c, dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    """The inverse of :func:`srgb_to_linear`."""
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1.0 / 2.4) - 0.055)
