"""Per-instance 3D targets of varying size, as ``Instances`` fields (Mesh R-CNN's containers).

Each instance of an image has its own mesh (verts, faces) or its own set of occupied voxel
centres, so they cannot be stacked into one tensor. These containers hold them as lists and
index, move and concatenate like the other ``Instances`` fields. They keep Mesh R-CNN's names
and its ``.data`` attribute, so code written for its ROI heads reads them unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

__all__ = ["MeshInstances", "VoxelInstances"]


def _select(data: list, item: Any) -> list:
    """Index a list the way a tensor's first dimension is indexed (int, slice, bool, ints)."""
    if isinstance(item, int):
        return [data[item]]
    if isinstance(item, slice):
        return data[item]
    if torch.is_tensor(item):
        if item.dtype == torch.bool:
            if item.numel() != len(data):
                raise IndexError(f"bool index of length {item.numel()} for {len(data)} items")
            item = torch.nonzero(item).flatten()
        return [data[i] for i in item.flatten().tolist()]
    return [data[i] for i in item]


class MeshInstances:
    """One triangle mesh per instance.

    Args:
        meshes: list of ``(verts (V_i, 3) float, faces (F_i, 3) int64)`` pairs.
    """

    def __init__(self, meshes: Sequence[tuple[torch.Tensor, torch.Tensor]]):
        meshes = [tuple(m) for m in meshes]
        for i, m in enumerate(meshes):
            if len(m) != 2 or not (torch.is_tensor(m[0]) and torch.is_tensor(m[1])):
                raise ValueError(f"MeshInstances item {i} must be a (verts, faces) tensor pair")
            if m[0].dim() != 2 or m[0].shape[1] != 3 or m[1].dim() != 2 or m[1].shape[1] != 3:
                raise ValueError(
                    f"MeshInstances item {i}: verts must be (V, 3) and faces (F, 3), got "
                    f"{tuple(m[0].shape)} and {tuple(m[1].shape)}"
                )
        self.data: list[tuple[torch.Tensor, torch.Tensor]] = meshes

    def to(self, *args: Any, **kwargs: Any) -> MeshInstances:
        """Move every mesh; a dtype argument applies to the vertices only."""
        device_args = tuple(a for a in args if not isinstance(a, torch.dtype))
        device_kwargs = {k: v for k, v in kwargs.items() if k != "dtype"}
        return MeshInstances(
            [(v.to(*args, **kwargs), f.to(*device_args, **device_kwargs)) for v, f in self.data]
        )

    def __getitem__(self, item: Any) -> MeshInstances:
        return MeshInstances(_select(self.data, item))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"MeshInstances(num_instances={len(self)})"

    @staticmethod
    def cat(items: Sequence[MeshInstances]) -> MeshInstances:
        """Concatenate the meshes of several containers."""
        return MeshInstances([m for x in items for m in x.data])


class VoxelInstances:
    """One voxel target per instance: (M_i, 3) occupied voxel centres, or any tensor.

    In Mesh R-CNN's Pix3D pipeline each item is the (M_i, 3) camera-frame points of the
    occupied voxels of the object; the voxel head turns them into a grid inside the box.

    Args:
        voxels: list of tensors.
    """

    def __init__(self, voxels: Sequence[torch.Tensor]):
        voxels = list(voxels)
        for i, v in enumerate(voxels):
            if not torch.is_tensor(v):
                raise ValueError(f"VoxelInstances item {i} must be a tensor, got {type(v)}")
        self.data: list[torch.Tensor] = voxels

    def to(self, *args: Any, **kwargs: Any) -> VoxelInstances:
        """Return the grids moved or cast by ``Tensor.to(*args, **kwargs)``."""
        return VoxelInstances([v.to(*args, **kwargs) for v in self.data])

    def __getitem__(self, item: Any) -> VoxelInstances:
        return VoxelInstances(_select(self.data, item))

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"VoxelInstances(num_instances={len(self)})"

    @staticmethod
    def cat(items: Sequence[VoxelInstances]) -> VoxelInstances:
        """Concatenate the voxel targets of several containers."""
        return VoxelInstances([v for x in items for v in x.data])
