"""MeshInstances / VoxelInstances: indexing like tensors, moving, concatenating."""

import pytest
import torch

from meshrecon.structures import Instances
from meshrecon.structures.shape_instances import MeshInstances, VoxelInstances


def meshes(n):
    return [
        (torch.full((i + 3, 3), float(i)), torch.zeros(i + 1, 3, dtype=torch.int64))
        for i in range(n)
    ]


def test_mesh_instances_indexing():
    mi = MeshInstances(meshes(4))
    assert len(mi) == 4 and len(mi[1]) == 1 and mi[1].data[0][0].shape == (4, 3)
    assert [v.shape[0] for v, _ in mi[1:3]] == [4, 5]
    assert [v[0, 0].item() for v, _ in mi[torch.tensor([True, False, False, True])]] == [0, 3]
    assert [v[0, 0].item() for v, _ in mi[torch.tensor([2, 0])]] == [2, 0]
    with pytest.raises(IndexError):
        mi[torch.tensor([True])]
    moved = mi.to(torch.float64)
    assert moved.data[0][0].dtype == torch.float64 and moved.data[0][1].dtype == torch.int64
    with pytest.raises(ValueError, match="item 0"):
        MeshInstances([(torch.zeros(3, 2), torch.zeros(1, 3))])


def test_voxel_instances_and_instances_fields():
    vi = VoxelInstances([torch.rand(5, 3), torch.rand(2, 3), torch.rand(7, 3)])
    inst = Instances((8, 8), gt_voxels=vi, gt_meshes=MeshInstances(meshes(3)))
    keep = inst[torch.tensor([False, True, True])]
    assert [v.shape[0] for v in keep.gt_voxels] == [2, 7]
    both = Instances.cat([inst, keep])
    assert len(both.gt_voxels) == 5 and isinstance(both.gt_meshes, MeshInstances)
    assert len(inst.to("cpu").gt_voxels) == 3
    with pytest.raises(ValueError, match="tensor"):
        VoxelInstances([[1, 2, 3]])
