"""Voxel grids with their boxes (:class:`~meshrecon.structures.Voxels`) to and from files.

Formats:

- ``.binvox`` (R2N2, ShapeNet): one cubic grid; the header's ``translate`` and ``scale`` give
  the box ``[translate, translate + scale]``, which the voxels tile (align ``"corner"``).
- ``.npz`` (the synthetic datasets): ``occupancy`` (or the first key starting so) (D, H, W)
  indexed ``[z, y, x]``, ``bounds`` (2, 3) the box, optional ``align`` (default ``"corner"``).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from iopath.common.file_io import g_pathmgr

from meshrecon.structures.voxels import Voxels

from .binvox import read_binvox, write_binvox

__all__ = ["load_voxels", "save_voxels", "VOXEL_EXTENSIONS"]

VOXEL_EXTENSIONS = (".binvox", ".npz")


def _ext(path: str | os.PathLike) -> str:
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in VOXEL_EXTENSIONS:
        raise ValueError(f"{os.fspath(path)}: unsupported voxel format {ext!r} {VOXEL_EXTENSIONS}")
    return ext


def load_voxels(path: str | os.PathLike) -> Voxels:
    """Read one grid and its box: a one-grid :class:`Voxels`, bool, on the CPU.

    Raises:
        FileNotFoundError: no such file.
        ValueError: an unsupported extension, or a ``.npz`` without ``occupancy`` and
            ``bounds`` or with arrays of the wrong shape (the message names the file).
    """
    path = os.fspath(path)
    if _ext(path) == ".binvox":
        occ_xyz, translate, scale = read_binvox(path)
        grid = occ_xyz.permute(2, 1, 0).contiguous()
        return Voxels([grid], torch.stack([translate, translate + scale]), "corner")
    try:
        with g_pathmgr.open(path, "rb") as f, np.load(f) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise
    except Exception as err:
        raise ValueError(f"could not read voxel .npz {path}: {err}") from err
    occ_keys = sorted(k for k in arrays if k.startswith("occupancy"))
    if not occ_keys or "bounds" not in arrays:
        raise ValueError(f"{path}: needs 'occupancy' and 'bounds' arrays, has {sorted(arrays)}")
    key = "occupancy" if "occupancy" in arrays else occ_keys[0]
    grid = torch.from_numpy(np.asarray(arrays[key]) > 0)
    if grid.dim() != 3:
        raise ValueError(f"{path}: {key!r} must be (D, H, W), got {tuple(grid.shape)}")
    box = torch.as_tensor(np.asarray(arrays["bounds"], dtype=np.float32))
    if box.shape != (2, 3):
        raise ValueError(f"{path}: 'bounds' must be [[xmin,ymin,zmin],[xmax,ymax,zmax]]")
    align = str(arrays["align"]) if "align" in arrays else "corner"
    try:
        return Voxels([grid], box, align)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def save_voxels(path: str | os.PathLike, voxels: Voxels, thresh: float = 0.5) -> None:
    """Write a one-grid :class:`Voxels` (occupied: True, or ``>= thresh``).

    ``.binvox`` needs a cubic grid tiling a cubic box (align ``"corner"``), as the format
    stores one translate and one scale; ``.npz`` stores any grid, box and align.
    """
    path = os.fspath(path)
    ext = _ext(path)
    if len(voxels) != 1:
        raise ValueError(f"save_voxels writes one grid, got {len(voxels)}")
    grid = voxels.grids_list()[0].detach().cpu()
    occ = grid if grid.dtype == torch.bool else grid >= thresh
    box = voxels.boxes()[0].detach().cpu().double()
    if ext == ".binvox":
        size = box[1] - box[0]
        if voxels.align != "corner" or len(set(grid.shape)) != 1:
            raise ValueError(
                f"{path}: binvox stores a cubic grid tiling its box (align 'corner'), got a "
                f"{tuple(grid.shape)} grid with align {voxels.align!r}"
            )
        if not torch.allclose(size, size[0].expand(3), rtol=1e-6, atol=0.0):
            raise ValueError(f"{path}: binvox needs a cubic box, got sides {size.tolist()}")
        write_binvox(path, occ.permute(2, 1, 0), box[0].tolist(), float(size[0]))
        return
    with g_pathmgr.open(path, "wb") as f:
        np.savez(
            f,
            occupancy=occ.numpy(),
            bounds=box.float().numpy(),
            align=np.array(voxels.align),
        )
