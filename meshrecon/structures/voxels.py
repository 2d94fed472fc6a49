"""Voxels: a batch of occupancy grids, each with the box of space it tiles.

A grid alone does not say where it is: ``read_voxel`` used to return one without its box, so
evaluators and pictures went back to the file for it. ``Voxels`` carries both, with the
``align`` rule of :mod:`meshrecon.ops.voxels` (how the voxels sit in the box), so that
``to_points`` and ``cubify`` place the occupied voxels where the data put them.

Conventions (those of :mod:`meshrecon.ops.voxels` and :func:`meshrecon.ops.cubify`): a grid is
``(D, H, W)`` indexed ``[z, y, x]``; a box is ``[[xmin, ymin, zmin], [xmax, ymax, zmax]]``.
Files: :func:`meshrecon.io.load_voxels` / :func:`meshrecon.io.save_voxels`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch

from .meshes import Meshes

__all__ = ["Voxels", "VOXEL_ALIGNS"]

VOXEL_ALIGNS = ("center", "corner", "topleft")
_UNIT_BOX = ((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))


class Voxels:
    """N occupancy grids (occupancy probabilities or booleans) with a box each.

    Args:
        grids: (N, D, H, W) tensor, or a list of N (D_n, H_n, W_n) tensors (sizes may differ);
            bool or floating point (a voxel is occupied when ``>= thresh``, see the methods).
        boxes: (2, 3) box shared by all grids, or (N, 2, 3) one per grid; default [-1, 1]^3
            (cubify's normalized frame).
        align: where the voxels sit in the box: ``"corner"`` (default; they tile it, as binvox
            and the synthetic ``.npz`` files store them), ``"center"`` or ``"topleft"`` (see
            :mod:`meshrecon.ops.voxels`).
    """

    def __init__(
        self,
        grids: torch.Tensor | Sequence[torch.Tensor],
        boxes: torch.Tensor | Sequence | None = None,
        align: str = "corner",
    ) -> None:
        if torch.is_tensor(grids):
            if grids.dim() != 4:
                raise ValueError(f"grids must be (N, D, H, W), got {tuple(grids.shape)}")
            grid_list = list(grids.unbind(0))
        else:
            grid_list = list(grids)
            for i, g in enumerate(grid_list):
                if not torch.is_tensor(g) or g.dim() != 3:
                    shape = tuple(g.shape) if torch.is_tensor(g) else type(g).__name__
                    raise ValueError(f"grids[{i}] must be a (D, H, W) tensor, got {shape}")
        if align not in VOXEL_ALIGNS:
            raise ValueError(f"align must be one of {VOXEL_ALIGNS}, got {align!r}")
        device = grid_list[0].device if grid_list else torch.device("cpu")
        if any(g.device != device for g in grid_list):
            raise ValueError("grids must all be on one device")
        n = len(grid_list)
        b = torch.as_tensor(_UNIT_BOX if boxes is None else boxes, device=device)
        b = b.float() if not b.is_floating_point() else b
        if b.shape == (2, 3):
            b = b.expand(n, 2, 3)
        if b.shape != (n, 2, 3):
            raise ValueError(f"boxes must be (2, 3) or ({n}, 2, 3), got {tuple(b.shape)}")
        if n and not bool((b[:, 1] > b[:, 0]).all()):
            raise ValueError("boxes must satisfy max > min on every axis")
        self._grids = grid_list
        self._boxes = b.contiguous()
        self.align = align

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self._grids)

    def __getitem__(self, index: int | slice | Sequence[int] | torch.Tensor) -> Voxels:
        """The grids at ``index`` (int, slice, list of ints, or a bool / int64 tensor)."""
        if isinstance(index, int):
            if not -len(self) <= index < len(self):
                raise IndexError(f"index {index} out of range for {len(self)} grids")
            idx = [index % len(self)]
        elif isinstance(index, slice):
            idx = list(range(len(self)))[index]
        elif torch.is_tensor(index):
            if index.dtype == torch.bool:
                if index.shape != (len(self),):
                    raise IndexError(f"bool index must be ({len(self)},), got {index.shape}")
                idx = index.nonzero().flatten().tolist()
            else:
                idx = index.flatten().tolist()
        else:
            idx = [int(i) for i in index]
        return Voxels([self._grids[i] for i in idx], self._boxes[idx], self.align)

    def grids_list(self) -> list[torch.Tensor]:
        """The N grids, each (D_n, H_n, W_n)."""
        return list(self._grids)

    def grids(self) -> torch.Tensor:
        """(N, D, H, W) stacked grids; ValueError when their sizes differ."""
        shapes = {tuple(g.shape) for g in self._grids}
        if len(shapes) > 1:
            raise ValueError(f"grids of different sizes {sorted(shapes)} do not stack")
        if not self._grids:
            raise ValueError("no grids to stack")
        return torch.stack(self._grids)

    def boxes(self) -> torch.Tensor:
        """(N, 2, 3) ``[min_xyz, max_xyz]`` of each grid."""
        return self._boxes

    @property
    def device(self) -> torch.device:
        """The device of the grids and boxes."""
        return self._boxes.device

    def to(self, device: torch.device | str) -> Voxels:
        """The same grids and boxes on ``device`` (self when already there)."""
        device = torch.device(device)
        if device == self.device:
            return self
        return Voxels([g.to(device) for g in self._grids], self._boxes.to(device), self.align)

    def cpu(self) -> Voxels:
        """The same grids and boxes on the CPU (self when already there)."""
        return self.to("cpu")

    def __repr__(self) -> str:
        sizes = sorted({tuple(g.shape) for g in self._grids})
        return f"Voxels(num_grids={len(self)}, sizes={sizes}, align={self.align!r})"

    # ------------------------------------------------------------------ geometry
    def _occupied(self, grid: torch.Tensor, thresh: float) -> torch.Tensor:
        return grid if grid.dtype == torch.bool else grid >= thresh

    def to_points(self, thresh: float = 0.5) -> list[torch.Tensor]:
        """Centres of the occupied voxels of each grid, in its box.

        Args:
            thresh: a voxel of a floating-point grid is occupied when ``>= thresh``.

        Returns:
            N tensors (M_n, 3), float32, the voxels in ``[z, y, x]`` raster order.
        """
        # Imported here: the ops build on the structures (PyTorch3D's Pointclouds reaches its
        # normal-estimation op the same way).
        from meshrecon.ops.voxels import voxel_coords_to_points

        points = []
        for grid, box in zip(self._grids, self._boxes):
            coords = torch.nonzero(self._occupied(grid, thresh))[:, [2, 1, 0]]
            pts = voxel_coords_to_points(coords, tuple(grid.shape), box, self.align)
            points.append(pts.float())
        return points

    def cubify(self, thresh: float = 0.5):
        """Meshes of the occupied voxels' cubes, placed in each grid's box.

        Args:
            thresh: a voxel of a floating-point grid is occupied when ``>= thresh`` (a bool
                grid's True voxels are, whatever ``thresh``).

        Returns:
            :class:`Meshes` of N meshes, cubified by :func:`meshrecon.ops.cubify` with this
            ``align`` (a grid with no occupied voxel gives an empty mesh).
        """
        from meshrecon.ops.cubify import cubify

        verts, faces = [], []
        for grid, box in zip(self._grids, self._boxes):
            # A bool grid's occupied voxels are its True ones, whatever thresh says.
            t = 0.5 if grid.dtype == torch.bool else thresh
            # Without feats, cubify returns a Meshes (not a tuple).
            mesh = cast(Meshes, cubify(grid[None].float(), t, align=self.align))
            v = mesh.verts_list()[0]
            b = box.to(device=v.device, dtype=v.dtype)
            verts.append(b[0] + (v + 1.0) * 0.5 * (b[1] - b[0]))
            faces.append(mesh.faces_list()[0])
        return Meshes(verts=verts, faces=faces)
