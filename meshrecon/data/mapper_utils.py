"""Helpers shared by the mappers: image tensors, record checks, shape files and caches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .readers import read_mesh, read_voxel
from .shape_targets import align_points_to_box

__all__: list[str] = []


def image_tensor(img: np.ndarray) -> torch.Tensor:
    """(H, W, C) uint8 -> (C, H, W) float32 in 0..255."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)).astype(np.float32))


def image_name(record: dict) -> str:
    return str(record.get("file_name") or record.get("image") or record.get("image_id"))


def check_image_size(record: dict, img: np.ndarray) -> None:
    """The image must have the record's size: a mismatch means boxes and masks are wrong."""
    h, w = img.shape[:2]
    expected = (record.get("height"), record.get("width"))
    if None not in expected and tuple(expected) != (h, w):
        raise ValueError(
            f"image {image_name(record)} has size (h={h}, w={w}) but its record says "
            f"(h={expected[0]}, w={expected[1]})"
        )


def as_K4(K: Sequence[float], where: str) -> list[float]:
    """[fx, fy, cx, cy] from a record's K (Mesh R-CNN's [f, cx, cy] is accepted too)."""
    k = [float(x) for x in K]
    if len(k) == 3:
        return [k[0], k[0], k[1], k[2]]
    if len(k) != 4:
        raise ValueError(f"{where}: K must be [fx, fy, cx, cy], got {K!r}")
    return k


def matrix(value: Any, shape: tuple[int, ...], where: str) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float32)
    if tuple(t.shape) != shape:
        raise ValueError(f"{where} must have shape {shape}, got {tuple(t.shape)}")
    return t


class ShapeCache:
    """Meshes and voxels by path, read once per process (Pix3D has few models, reused often)."""

    def __init__(self, enabled: bool, max_items: int = 1024):
        self.enabled, self.max_items = enabled, max_items
        self._items: dict[tuple[str, str], Any] = {}

    def get(self, kind: str, path: str, reader) -> Any:
        key = (kind, path)
        if self.enabled and key in self._items:
            return self._items[key]
        value = reader(path)
        if self.enabled and len(self._items) < self.max_items:
            self._items[key] = value
        return value

    def mesh(self, path: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self.get("mesh", path, read_mesh)

    def voxel(self, path: str):
        return self.get("voxel", path, read_voxel)


def samples(path: str, num: int, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``num`` random surface samples (points, normals) from a ``samples`` .pt file."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        pts = torch.as_tensor(data["points_sampled"], dtype=torch.float32)
        nrm = torch.as_tensor(data["normals_sampled"], dtype=torch.float32)
    except FileNotFoundError:
        raise
    except Exception as err:
        raise ValueError(f"{where}: could not read samples {path}: {err}") from err
    if pts.shape != nrm.shape or pts.dim() != 2 or pts.shape[1] != 3:
        raise ValueError(f"{path}: points_sampled / normals_sampled must both be (P, 3)")
    idx = torch.randperm(pts.shape[0])[:num]
    return pts[idx], nrm[idx]


def sample_surface(verts: torch.Tensor, faces: torch.Tensor, num: int):
    from meshrecon.ops import sample_points_from_meshes
    from meshrecon.structures import Meshes

    pts, nrm = sample_points_from_meshes(Meshes([verts], [faces]), num, return_normals=True)
    return pts[0], nrm[0]


def num_surface_samples(cfg) -> int:
    """``INPUT.SHAPENET.NUM_SAMPLES``, checked: the surface points of each item (>= 1)."""
    value = cfg.INPUT.SHAPENET.NUM_SAMPLES
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"INPUT.SHAPENET.NUM_SAMPLES must be a positive integer (surface points per item), "
            f"got {value!r}"
        )
    return value


def shape_config(cfg) -> dict[str, Any]:
    s = cfg.INPUT.SHAPENET
    return {
        "image_format": cfg.INPUT.FORMAT,
        "background": cfg.INPUT.BACKGROUND_COLOR,
        "voxel_size": s.VOXEL_SIZE,
        "voxel_frame": s.VOXEL_FRAME,
        "voxel_zrange": s.VOXEL_ZRANGE,
        "near_far": s.NEAR_FAR,
        "voxel_align": s.VOXEL_ALIGN,
        "num_samples": num_surface_samples(cfg),
        "sample_online": s.SAMPLE_ONLINE,
    }


class ShapeTargets:
    """Shared reading of a model's mesh, surface samples and voxels (model frame)."""

    def __init__(
        self,
        voxel_size,
        voxel_frame,
        voxel_zrange,
        near_far,
        voxel_align,
        num_samples,
        sample_online,
    ):
        if voxel_frame not in ("camera", "canonical"):
            raise ValueError(f"voxel_frame must be 'camera' or 'canonical', got {voxel_frame!r}")
        if voxel_align not in ("header", "mesh_bbox"):
            raise ValueError(f"voxel_align must be 'header' or 'mesh_bbox', got {voxel_align!r}")
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        self.voxel_size, self.voxel_frame = int(voxel_size), voxel_frame
        self.voxel_zrange, self.near_far = tuple(voxel_zrange), tuple(near_far)
        self.voxel_align = voxel_align
        self.num_samples, self.sample_online = int(num_samples), sample_online

    def surface(self, record: dict, mesh: tuple[torch.Tensor, torch.Tensor] | None):
        """(points, normals) (P, 3) in the model frame."""
        if record.get("samples") and not self.sample_online:
            return samples(record["samples"], self.num_samples, str(record.get("image_id")))
        if mesh is None:
            mesh = read_mesh(record["mesh"])
        return sample_surface(mesh[0], mesh[1], self.num_samples)

    def voxel_points(self, record: dict, mesh) -> torch.Tensor:
        """(M, 3) occupied voxel centres in the model frame."""
        path = record["voxel"]
        pts = read_voxel(path).points
        if self.voxel_align == "mesh_bbox" and str(path).endswith(".binvox"):
            verts = (mesh if mesh is not None else read_mesh(record["mesh"]))[0]
            box = torch.stack([verts.min(0).values, verts.max(0).values])
            pts = align_points_to_box(pts, box)
        return pts

    def canonical_grid(self, path: str) -> torch.Tensor:
        grid = read_voxel(path).grid
        if grid is None:
            raise ValueError(f"{path}: canonical voxels need a grid file, not voxel_coords")
        if self.voxel_size and tuple(grid.shape) != (self.voxel_size,) * 3:
            raise ValueError(
                f"{path}: grid of shape {tuple(grid.shape)}, expected VOXEL_SIZE "
                f"{self.voxel_size}^3"
            )
        return grid
