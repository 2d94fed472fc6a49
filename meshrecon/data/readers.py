"""Read the files that dataset records point to: images, masks, meshes, voxels, depth.

Every reader raises an error that names the file at fault, so that ``MapDataset`` can log the
corrupt sample it skips. Image and mask files of more than
:data:`meshrecon.utils.image_limits.MAX_IMAGE_PIXELS` pixels are refused from their header,
before any pixel is decoded (an ``ImageTooLargeError``, a ``ValueError``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import ImageOps

from meshrecon.structures.voxels import Voxels
from meshrecon.utils.image_limits import ImageTooLargeError, open_image

__all__ = [
    "VoxelData",
    "read_depth",
    "read_image",
    "read_mask",
    "read_mesh",
    "read_voxel",
]

_WHITE = (255, 255, 255)


class VoxelData(NamedTuple):
    """Occupied voxels of one model, in its model frame.

    Attributes:
        points: (M, 3) float32 centres of the occupied voxels, model frame.
        grid: (D, H, W) bool occupancy indexed ``[z, y, x]`` along the model axes (the
            :mod:`meshrecon.ops` convention), or None when the file stores only points.
        voxels: the grid with the box it tiles (a one-grid :class:`Voxels`) for the formats
            that store one (``.binvox``, ``.npz``); None for the others.
    """

    points: torch.Tensor
    grid: torch.Tensor | None
    voxels: Voxels | None = None


def _local(path: str) -> str:
    """A local path for ``path`` (URLs and iopath prefixes are fetched by iopath)."""
    if os.path.exists(path):
        return path
    if "://" not in path:
        raise FileNotFoundError(f"no such file: {path}")
    try:
        from iopath.common.file_io import g_pathmgr

        return g_pathmgr.get_local_path(path)
    except Exception:  # iopath missing or cannot handle it: report the path as missing
        raise FileNotFoundError(f"no such file: {path}") from None


def _to_format(rgb: np.ndarray, image_format: str) -> np.ndarray:
    if image_format == "RGB":
        return rgb
    if image_format == "BGR":
        return np.ascontiguousarray(rgb[:, :, ::-1])
    if image_format == "L":
        gray = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return np.round(gray)[:, :, None].astype(np.uint8)
    raise ValueError(f"image format must be 'BGR', 'RGB' or 'L', got {image_format!r}")


def composite_rgba(rgba: np.ndarray, background: Sequence[float] = _WHITE) -> np.ndarray:
    """Alpha-blend an (H, W, 4) uint8 RGBA image over a colour; returns (H, W, 3) uint8 RGB."""
    alpha = rgba[:, :, 3:4].astype(np.float32) / 255.0
    bg = np.asarray(background, dtype=np.float32).reshape(1, 1, 3)
    out = rgba[:, :, :3].astype(np.float32) * alpha + bg * (1.0 - alpha)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _read_image_file(
    path: str, background: Sequence[float], draft_side: int | None = None
) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file; transparency is composited over ``background``."""
    local = _local(path)
    try:
        with open_image(local, path) as img:
            if draft_side:
                # JPEG decodes at 1/2, 1/4 or 1/8 scale in draft mode; any format then shrinks
                # by a whole factor. Both keep each side at least draft_side.
                img.draft(img.mode, (draft_side, draft_side))
                factor = min(img.size) // draft_side
                if factor >= 2:
                    img = img.reduce(factor)
            img = ImageOps.exif_transpose(img)
            has_alpha = img.mode in ("RGBA", "LA", "PA") or (
                img.mode == "P" and "transparency" in img.info
            )
            if has_alpha:
                return composite_rgba(np.asarray(img.convert("RGBA")), background)
            if img.mode in ("I;16", "I", "F"):
                raise ValueError(f"mode {img.mode} is not a colour image (a depth map?)")
            return np.asarray(img.convert("RGB")).copy()
    except ImageTooLargeError:
        raise
    except (OSError, ValueError, SyntaxError) as err:
        raise ValueError(f"could not read image {path}: {err}") from err


def read_image(
    source: dict | str,
    format: str = "BGR",
    background: Sequence[float] = _WHITE,
    draft_side: int | None = None,
) -> np.ndarray:
    """Read a record's image (or an image file) as an (H, W, C) uint8 array.

    Args:
        source: a record with ``file_name`` (PNG/JPG/...; RGBA images are composited over
            ``background``), or with ``file_name`` None and an ``image`` container source
            (read by ``meshrecon.data.depth_io.read_container_image``); or a path.
        format: "BGR" (Detectron2's default), "RGB", or "L" (one channel).
        background: RGB colour, 0..255, under transparent pixels (R2N2 renders are RGBA).
        draft_side: for a caller that resizes the image next (a demo): an image file may be
            decoded at a reduced scale and shrunk by a whole factor, keeping both sides at least
            ``draft_side`` pixels, so a large photo never exists at full size as an array.

    Returns:
        (H, W, 3) uint8, or (H, W, 1) for "L".

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a readable image, or the record has no image source.
    """
    if isinstance(source, (str, os.PathLike)):
        rgb = _read_image_file(os.fspath(source), background, draft_side)
    elif isinstance(source, dict):
        if source.get("file_name"):
            rgb = _read_image_file(source["file_name"], background, draft_side)
        elif source.get("image"):
            from meshrecon.data.depth_io import read_container_image

            rgb = np.asarray(read_container_image(source["image"]))
            if rgb.ndim != 3 or rgb.shape[2] != 3:
                raise ValueError(
                    f"image container {source['image']} gave shape {rgb.shape}, expected (H,W,3)"
                )
            rgb = rgb.astype(np.uint8, copy=False)
        else:
            raise ValueError(
                f"record {source.get('image_id', '?')!r} has neither 'file_name' nor 'image'"
            )
    else:
        raise ValueError(f"read_image needs a record dict or a path, got {type(source).__name__}")
    return _to_format(rgb, format)


def read_mask(path: str, threshold: int = 128) -> np.ndarray:
    """Read a one-object mask PNG (0 / 255) as an (H, W) bool array.

    Args:
        path: mask image; a colour mask is converted to grey first.
        threshold: grey values ``>= threshold`` are foreground (128: mask / 255 >= 0.5; Mesh
            R-CNN's evaluator counts every non-zero pixel, i.e. ``threshold=1``).
    """
    local = _local(path)
    try:
        with open_image(local, path) as img:
            if img.mode not in ("1", "L", "I", "I;16"):
                img = img.convert("L")
            arr = np.asarray(img)
    except ImageTooLargeError:
        raise
    except (OSError, ValueError, SyntaxError) as err:
        raise ValueError(f"could not read mask {path}: {err}") from err
    if arr.dtype == bool:
        return arr.copy()
    return arr >= threshold


def _torch_load(path: str) -> Any:
    try:
        return torch.load(_local(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:
        raise ValueError(f"could not read {path}: {err}") from err


def read_mesh(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a mesh file: any :mod:`meshrecon.io` format, or a ``.pt`` ``{verts, faces}``.

    Returns:
        verts: (V, 3) float32; faces: (F, 3) int64.
    """
    if str(path).endswith(".pt"):
        data = _torch_load(path)
        if not isinstance(data, dict) or "verts" not in data or "faces" not in data:
            keys = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{path}: a mesh .pt must hold 'verts' and 'faces', found {keys}")
        verts = torch.as_tensor(data["verts"], dtype=torch.float32)
        faces = torch.as_tensor(data["faces"], dtype=torch.int64)
        if verts.dim() != 2 or verts.shape[1] != 3 or faces.dim() != 2 or faces.shape[1] != 3:
            raise ValueError(
                f"{path}: verts must be (V, 3) and faces (F, 3), got {tuple(verts.shape)} and "
                f"{tuple(faces.shape)}"
            )
        if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= verts.shape[0]):
            raise ValueError(f"{path}: face indices out of range [0, {verts.shape[0]})")
        return verts, faces
    from meshrecon.io import load_mesh

    return load_mesh(path)


def _voxel_data(voxels: Voxels) -> VoxelData:
    """The one grid of ``voxels`` as :class:`VoxelData` (occupied centres in its box)."""
    return VoxelData(voxels.to_points()[0], voxels.grids_list()[0], voxels)


def _read_mat_voxel(path: str) -> VoxelData:
    """Pix3D ``voxel.mat``: Mesh R-CNN's points (model frame, centred, unit diameter)."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(_local(path))
    except FileNotFoundError:
        raise
    except Exception as err:
        raise ValueError(f"could not read voxel .mat {path}: {err}") from err
    if "voxel" not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{path}: no key 'voxel' in the .mat file (keys: {keys})")
    vox = np.asarray(mat["voxel"])
    if vox.ndim != 3:
        raise ValueError(f"{path}: 'voxel' must be a 3D array, got shape {vox.shape}")
    # Pix3D's voxel frame (+x left, +y outward, +z up) to its model frame (+y up, +z inward).
    vox = np.rot90(vox, k=3, axes=(1, 2)) > 0
    idx = np.argwhere(vox).astype(np.float32)
    if len(idx) == 0:
        raise ValueError(f"{path}: the voxel grid is empty")
    centre = (idx.min(0) + idx.max(0)) / 2.0
    idx -= centre
    # Mesh R-CNN normalises the occupied voxels to a diameter of 1 (the Pix3D models' scale).
    idx /= 2.0 * np.sqrt((idx**2).sum(1).max())
    grid = torch.from_numpy(np.ascontiguousarray(vox.transpose(2, 1, 0)))
    return VoxelData(torch.from_numpy(idx), grid)


def read_voxel(path: str) -> VoxelData:
    """Read a model's voxels; see :class:`VoxelData` for the output.

    Formats:
        - ``.mat`` (Pix3D): key ``voxel``; turned into the model frame and normalised as Mesh
          R-CNN does (centred on the occupied voxels' bounding box, diameter 1).
        - ``.binvox`` (R2N2, ShapeNet): centres placed by the header's translate and scale.
        - ``.pt`` (Mesh R-CNN): ``{voxel_coords (M, 3)}`` model-frame points; grid is None.
        - ``.npz`` (synthetic): ``occupancy`` (or the first key starting so) (D, H, W) indexed
          ``[z, y, x]``, ``bounds`` (2, 3) the box the grid tiles, optional ``align`` (default
          "corner"; see :mod:`meshrecon.ops.voxels`).
    """
    # Imported here: meshrecon.io brings trimesh, which the other readers do not need.
    from meshrecon.io.voxels_io import load_voxels

    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".mat":
        return _read_mat_voxel(path)
    if ext == ".binvox":
        return _voxel_data(load_voxels(path))
    if ext == ".pt":
        data = _torch_load(path)
        if not isinstance(data, dict) or "voxel_coords" not in data:
            keys = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{path}: a voxel .pt must hold 'voxel_coords', found {keys}")
        pts = torch.as_tensor(data["voxel_coords"], dtype=torch.float32)
        if pts.dim() != 2 or pts.shape[1] != 3:
            raise ValueError(f"{path}: voxel_coords must be (M, 3), got {tuple(pts.shape)}")
        return VoxelData(pts, None)
    if ext == ".npz":
        return _voxel_data(load_voxels(_local(path)))
    raise ValueError(f"{path}: unsupported voxel format {ext!r} (.mat, .binvox, .pt, .npz)")


def read_depth(source: dict) -> np.ndarray:
    """Read a depth source dict (see docs/DATA_FORMATS.md) as (H, W) float32 metres, 0 invalid.

    Delegates to ``meshrecon.data.depth_io.read_depth``.
    """
    from meshrecon.data.depth_io import read_depth as _read_depth

    return np.asarray(_read_depth(source), dtype=np.float32)
