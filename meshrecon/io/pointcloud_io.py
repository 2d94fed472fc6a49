"""Load and save point clouds (positions, optional normals and colours) as PLY, via trimesh.

Both ASCII and binary PLY are read; files are written as binary little-endian PLY with float32
``x y z``, optional float32 ``nx ny nz`` and optional uchar ``red green blue alpha``. Colours
come back as float32 in [0, 1], whatever the file stores.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import trimesh
from iopath.common.file_io import g_pathmgr

from meshrecon.io.mesh_io import MeshIOError, _expand_paths, _require_file
from meshrecon.structures import Pointclouds

__all__ = [
    "PointCloudData",
    "load_pointcloud_ply",
    "save_pointcloud_ply",
    "load_pointclouds",
    "save_pointclouds",
]

PathLike = str | os.PathLike
Device = str | torch.device | None


class PointCloudData(NamedTuple):
    """One point cloud read from a file.

    Attributes:
        points: (P, 3) float32.
        normals: (P, 3) float32, or None when the file has no ``nx ny nz``.
        colors: (P, 3) float32 in [0, 1], or None when the file has no ``red green blue``.
    """

    points: torch.Tensor
    normals: torch.Tensor | None
    colors: torch.Tensor | None


def _check_ply_path(path: PathLike) -> str:
    if not isinstance(path, str | os.PathLike):
        raise ValueError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    name = os.fspath(path)
    if os.path.splitext(name)[1].lower() != ".ply":
        raise ValueError(f"{name}: point clouds are read and written as .ply only")
    return name


def _colors_to_uint8(colors: torch.Tensor, num_points: int) -> np.ndarray:
    if colors.ndim != 2 or colors.shape != (num_points, 3):
        raise ValueError(f"colors must have shape ({num_points}, 3), got {tuple(colors.shape)}")
    if colors.dtype == torch.uint8:
        return colors.detach().cpu().numpy()
    if not colors.is_floating_point():
        raise ValueError(f"colors must be uint8 (0..255) or float (0..1), got {colors.dtype}")
    c = colors.detach().cpu().double()
    if c.numel() and (not torch.isfinite(c).all() or c.min() < 0 or c.max() > 1):
        raise ValueError("float colors must lie in [0, 1]")
    return np.round(c.numpy() * 255.0).astype(np.uint8)


def save_pointcloud_ply(
    path: PathLike,
    points: torch.Tensor,
    normals: torch.Tensor | None = None,
    colors: torch.Tensor | None = None,
) -> None:
    """Write a point cloud as a binary little-endian PLY file.

    Args:
        path: destination ``.ply`` path (local or iopath prefix).
        points: (P, 3) float tensor.
        normals: optional (P, 3) float tensor.
        colors: optional (P, 3) tensor, uint8 in 0..255 or float in [0, 1] (rounded to 8 bits).

    Raises:
        ValueError: the extension is not ``.ply``, or a tensor has the wrong shape, dtype or
            range.
    """
    name = _check_ply_path(path)
    if not isinstance(points, torch.Tensor) or points.ndim != 2 or points.shape[1] != 3:
        got = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
        raise ValueError(f"points must be a tensor of shape (P, 3), got {got}")
    if not points.is_floating_point():
        raise ValueError(f"points must be a floating point tensor, got {points.dtype}")
    num = points.shape[0]
    kwargs = {}
    if normals is not None:
        if not isinstance(normals, torch.Tensor) or tuple(normals.shape) != (num, 3):
            got = tuple(normals.shape) if isinstance(normals, torch.Tensor) else type(normals)
            raise ValueError(f"normals must have shape ({num}, 3), got {got}")
        kwargs["vertex_normals"] = normals.detach().cpu().double().numpy()
    if colors is not None:
        if not isinstance(colors, torch.Tensor):
            raise ValueError(f"colors must be a tensor, got {type(colors).__name__}")
        kwargs["vertex_colors"] = _colors_to_uint8(colors, num)
    # A face-less Trimesh (not a trimesh.PointCloud) because only Trimesh exports normals.
    cloud = trimesh.Trimesh(
        vertices=points.detach().cpu().double().numpy(), process=False, **kwargs
    )
    data = trimesh.exchange.ply.export_ply(
        cloud, encoding="binary", vertex_normal=normals is not None
    )
    with g_pathmgr.open(name, "wb") as fh:
        fh.write(data)


def load_pointcloud_ply(path: PathLike, device: Device = None) -> PointCloudData:
    """Read the vertices of a PLY file (ASCII or binary) as a point cloud.

    Faces, if the file has any, are ignored.

    Args:
        path: ``.ply`` path (local, URL or iopath prefix).
        device: device of the returned tensors.

    Returns:
        :class:`PointCloudData` ``(points, normals, colors)``; ``normals`` and ``colors`` are
        None when the file lacks them.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the extension is not ``.ply``.
        MeshIOError: the file is corrupt, truncated, or has no vertex positions.
    """
    name = _check_ply_path(path)
    _require_file(name, "point cloud")
    with g_pathmgr.open(name, "rb") as fh:
        raw = fh.read()
    try:
        loaded = trimesh.load(io.BytesIO(raw), file_type="ply", process=False)
    except Exception as e:
        # trimesh raises assorted exception types on malformed PLY; report them uniformly.
        raise MeshIOError(f"{name}: could not parse PLY file: {e}") from e
    # trimesh keeps every vertex property of the file here; its point-cloud object would
    # otherwise drop the normals.
    ply_raw = getattr(loaded, "metadata", {}).get("_ply_raw", {})
    vertex = ply_raw.get("vertex", {}).get("data")
    # Binary files give a structured array, ASCII files a dict of per-property arrays.
    if isinstance(vertex, dict):
        fields = set(vertex)
    else:
        fields = set(getattr(getattr(vertex, "dtype", None), "names", None) or ())
    if not {"x", "y", "z"} <= fields or len(vertex["x"]) == 0:
        raise MeshIOError(f"{name}: PLY file has no vertex positions (x, y, z)")

    def stack(keys: tuple[str, ...]) -> np.ndarray:
        return np.stack([np.asarray(vertex[k]).reshape(-1) for k in keys], axis=1)

    points = stack(("x", "y", "z")).astype(np.float32)
    if not np.isfinite(points).all():
        raise MeshIOError(f"{name}: vertex positions contain NaN or Inf")
    normals = None
    if {"nx", "ny", "nz"} <= fields:
        normals = torch.as_tensor(stack(("nx", "ny", "nz")).astype(np.float32), device=device)
    colors = None
    for keys in (
        ("red", "green", "blue"),
        ("r", "g", "b"),
        ("diffuse_red", "diffuse_green", "diffuse_blue"),
    ):
        if set(keys) <= fields:
            c = stack(keys)
            c = c.astype(np.float32) / 255.0 if np.issubdtype(c.dtype, np.integer) else c
            colors = torch.as_tensor(c.astype(np.float32), device=device)
            break
    return PointCloudData(torch.as_tensor(points, device=device), normals, colors)


def load_pointclouds(paths: PathLike | Sequence[PathLike], device: Device = None) -> Pointclouds:
    """Load PLY files into one ``Pointclouds`` batch.

    Normals are attached only if every file has them; colours become ``features`` (C = 3, in
    [0, 1]) only if every file has them, since ``Pointclouds`` needs all or none.

    Args:
        paths: one ``.ply`` path or a sequence of them.
        device: device of the returned point clouds.

    Returns:
        Pointclouds with one cloud per path, in order.

    Raises:
        ValueError: ``paths`` is empty; anything :func:`load_pointcloud_ply` raises.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    clouds = [load_pointcloud_ply(p, device=device) for p in paths]
    if not clouds:
        raise ValueError("paths must contain at least one file")
    normals = [c.normals for c in clouds]
    colors = [c.colors for c in clouds]
    return Pointclouds(
        points=[c.points for c in clouds],
        normals=normals if all(n is not None for n in normals) else None,
        features=colors if all(c is not None for c in colors) else None,
    )


def save_pointclouds(pointclouds: Pointclouds, paths: PathLike | Sequence[PathLike]) -> list[str]:
    """Save every cloud of a ``Pointclouds`` batch to its own binary PLY file.

    Normals are written when present; features are written as colours when they have 3
    channels (uint8, or float in [0, 1]) and ignored otherwise.

    Args:
        pointclouds: batch of N clouds.
        paths: N ``.ply`` paths, or a ``str.format`` pattern such as ``"out/cloud_{:03d}.ply"``.

    Returns:
        The N paths written.

    Raises:
        ValueError: the number of paths differs from N, or anything
            :func:`save_pointcloud_ply` raises.
    """
    targets = _expand_paths(paths, len(pointclouds))
    points = pointclouds.points_list()
    normals = pointclouds.normals_list() or [None] * len(points)
    features = pointclouds.features_list() or [None] * len(points)
    for target, p, n, f in zip(targets, points, normals, features):
        colors = f if f is not None and f.shape[-1] == 3 else None
        save_pointcloud_ply(target, p, normals=n, colors=colors)
    return targets
