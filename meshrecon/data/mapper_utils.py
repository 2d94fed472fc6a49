"""Helpers shared by the mappers: image tensors, record checks, shape files and caches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from meshrecon.ops import sample_points_from_meshes
from meshrecon.structures import Meshes

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


def _nbytes(value: Any) -> int:
    """Bytes of the tensors in ``value`` (tensors, tuples of them, NamedTuples)."""
    if torch.is_tensor(value):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    return 0


class ShapeCache:
    """Meshes, voxels and surface samples by path, read once per process.

    A dataset reuses each model's files for many records (Pix3D: few models in many images;
    ShapeNet: 24 views of each model), so reading and parsing them again for every record
    repeats the same work each step. Entries are kept until ``max_items`` or ``max_bytes``
    (their tensors' size) is reached; later files are read every time. Values are shared:
    callers must not modify them in place.
    """

    def __init__(self, enabled: bool, max_items: int = 1024, max_bytes: int = 512 * 2**20):
        self.enabled, self.max_items, self.max_bytes = enabled, max_items, max_bytes
        self._items: dict[tuple[str, str], Any] = {}
        self._bytes = 0

    def get(self, kind: str, path: str, reader) -> Any:
        key = (kind, path)
        if self.enabled and key in self._items:
            return self._items[key]
        value = reader(path)
        if self.enabled and len(self._items) < self.max_items:
            size = _nbytes(value)
            if self._bytes + size <= self.max_bytes:
                self._items[key] = value
                self._bytes += size
        return value

    def mesh(self, path: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self.get("mesh", path, read_mesh)

    def voxel(self, path: str):
        return self.get("voxel", path, read_voxel)

    def samples(self, path: str, where: str) -> tuple[torch.Tensor, torch.Tensor]:
        """All (points, normals) (P, 3) of a ``samples`` file."""
        return self.get("samples", path, lambda p: read_samples(p, where))


def read_samples(path: str, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Every surface sample (points, normals) (P, 3) of a ``samples`` .pt file."""
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
    return pts, nrm


def samples(
    path: str, num: int, where: str, cache: ShapeCache | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``num`` random surface samples (points, normals) from a ``samples`` .pt file."""
    pts, nrm = cache.samples(path, where) if cache is not None else read_samples(path, where)
    idx = torch.randperm(pts.shape[0])[:num]
    return pts[idx], nrm[idx]


def sample_surface(verts: torch.Tensor, faces: torch.Tensor, num: int):
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
    """Shared reading of a model's mesh, surface samples and voxels (model frame).

    The files are read through a :class:`ShapeCache` (``cache_shapes``): the views of a model
    share them. What it returns is the cache's: callers copy before changing anything in place.
    """

    def __init__(
        self,
        voxel_size,
        voxel_frame,
        voxel_zrange,
        near_far,
        voxel_align,
        num_samples,
        sample_online,
        cache_shapes: bool = True,
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
        self.cache = ShapeCache(cache_shapes)

    def mesh(self, path: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(verts (V, 3), faces (F, 3)) of a mesh file, model frame (shared: do not modify)."""
        return self.cache.mesh(path)

    def surface(self, record: dict, mesh: tuple[torch.Tensor, torch.Tensor] | None):
        """(points, normals) (P, 3) in the model frame."""
        if record.get("samples") and not self.sample_online:
            where = str(record.get("image_id"))
            return samples(record["samples"], self.num_samples, where, self.cache)
        if mesh is None:
            mesh = self.mesh(record["mesh"])
        return sample_surface(mesh[0], mesh[1], self.num_samples)

    def voxel_points(self, record: dict, mesh) -> torch.Tensor:
        """(M, 3) occupied voxel centres in the model frame (shared: do not modify)."""
        path = record["voxel"]
        pts = self.cache.voxel(path).points
        if self.voxel_align == "mesh_bbox" and str(path).endswith(".binvox"):
            verts = (mesh if mesh is not None else self.mesh(record["mesh"]))[0]
            box = torch.stack([verts.min(0).values, verts.max(0).values])
            pts = align_points_to_box(pts, box)
        return pts

    def canonical_box(self, path: str) -> tuple[torch.Tensor, str] | None:
        """(box (2, 3), align) that the model's grid file tiles (a copy), or None when the
        format stores no box."""
        voxels = self.cache.voxel(path).voxels
        if voxels is None:
            return None
        return voxels.boxes()[0].clone(), voxels.align

    def canonical_grid(self, path: str) -> torch.Tensor:
        """(D, H, W) bool occupancy of the model's grid file (a copy the caller may keep)."""
        grid = self.cache.voxel(path).grid
        if grid is None:
            raise ValueError(f"{path}: canonical voxels need a grid file, not voxel_coords")
        if self.voxel_size and tuple(grid.shape) != (self.voxel_size,) * 3:
            raise ValueError(
                f"{path}: grid of shape {tuple(grid.shape)}, expected VOXEL_SIZE "
                f"{self.voxel_size}^3"
            )
        return grid.clone()
