"""The padded tensor form of exported meshes and the tensor-only meshes used while tracing."""

from __future__ import annotations

import pytest
import torch

from meshrecon.export import (
    MeshTopology,
    PackedMeshes,
    UniformMeshes,
    meshes_from_tensors,
    meshes_to_tensors,
)
from meshrecon.modeling.heads.voxmesh import VoxMeshHead
from meshrecon.modeling.meta_arch.single_view import ViewBatch
from meshrecon.ops import SubdivideMeshes, cubify, cubify_packed, ico_sphere
from meshrecon.structures import Meshes
from meshrecon.structures.utils import packed_to_item_idx


def _hetero_batch() -> Meshes:
    g = torch.Generator().manual_seed(0)
    voxels = (torch.rand(3, 5, 5, 5, generator=g) > 0.6).float()
    return cubify(voxels, 0.5)


def test_tensor_form_round_trip():
    meshes = _hetero_batch()
    tensors = meshes_to_tensors(meshes)
    assert tensors["mesh_num_verts"].tolist() == [len(v) for v in meshes.verts_list()]
    assert tensors["mesh_verts"].shape[1] == max(len(v) for v in meshes.verts_list())
    # Face padding is -1 past each mesh's count.
    n0 = int(tensors["mesh_num_faces"][0])
    assert (tensors["mesh_faces"][0, n0:] == -1).all()
    back = meshes_from_tensors(**tensors)
    for a, b in zip(back.verts_list(), meshes.verts_list()):
        assert torch.equal(a, b)
    for a, b in zip(back.faces_list(), meshes.faces_list()):
        assert torch.equal(a, b)


def test_meshes_from_tensors_refuses_bad_counts():
    t = meshes_to_tensors(_hetero_batch())
    with pytest.raises(ValueError, match="mesh_num_verts"):
        meshes_from_tensors(t["mesh_verts"], t["mesh_faces"], t["mesh_num_verts"] + 1000,
                            t["mesh_num_faces"])  # fmt: skip
    with pytest.raises(ValueError, match="mesh_num_faces must have shape"):
        meshes_from_tensors(t["mesh_verts"], t["mesh_faces"], t["mesh_num_verts"],
                            t["mesh_num_faces"][:2])  # fmt: skip
    with pytest.raises(ValueError, match=r"mesh_verts must be \(N, V_max, 3\)"):
        meshes_from_tensors(t["mesh_verts"][..., :2], t["mesh_faces"], t["mesh_num_verts"],
                            t["mesh_num_faces"])  # fmt: skip


def test_packed_meshes_match_meshes():
    meshes = _hetero_batch()
    verts, faces, nv, nf = cubify_packed(
        (torch.rand(3, 5, 5, 5, generator=torch.Generator().manual_seed(0)) > 0.6).float(), 0.5
    )
    packed = PackedMeshes(verts, faces, nv, nf)
    assert torch.equal(packed.verts_padded(), meshes.verts_padded())
    assert torch.equal(packed.verts_packed(), meshes.verts_packed())
    assert torch.equal(packed.edges_packed(), meshes.edges_packed())
    assert torch.equal(packed.verts_padded_to_packed_idx(), meshes.verts_padded_to_packed_idx())
    offsets = torch.randn_like(verts)
    assert torch.equal(
        packed.offset_verts(offsets).verts_padded(), meshes.offset_verts(offsets).verts_padded()
    )
    new_padded = torch.randn_like(meshes.verts_padded())
    assert torch.equal(
        packed.update_padded(new_padded).verts_packed(),
        meshes.update_padded(new_padded).verts_packed(),
    )
    tensors = packed.to_tensors()
    for key, value in meshes_to_tensors(meshes).items():
        assert torch.equal(tensors[key], value), key


def test_uniform_meshes_and_subdivision_match_meshes():
    template = ico_sphere(1)
    topology = MeshTopology(template, num_subdivisions=2)
    verts = template.verts_padded().expand(2, -1, -1) * torch.tensor([[[1.0]], [[2.0]]])
    uniform = UniformMeshes(verts, topology)
    meshes = Meshes(verts=list(verts), faces=[template.faces_packed()] * 2)
    assert torch.equal(uniform.edges_packed(), meshes.edges_packed())
    feats = torch.randn(2 * verts.shape[1], 5)
    for _ in range(2):
        uniform, new_feats = uniform.subdivide(feats)
        meshes, want_feats = SubdivideMeshes()(meshes, feats)
        assert torch.equal(uniform.verts_packed(), meshes.verts_packed())
        assert torch.equal(uniform.edges_packed(), meshes.edges_packed())
        assert torch.equal(new_feats, want_feats)
        feats = new_feats
    for key, value in meshes_to_tensors(meshes).items():
        assert torch.equal(uniform.to_tensors()[key], value), key
    with pytest.raises(ValueError, match="no level 3"):
        uniform.subdivide()


def test_voxmesh_cubify_fills_empty_grids_with_the_central_cube():
    # The branch-free form of VoxMesh's "empty grid: fill its central V/2 cube" rule.
    head = VoxMeshHead(input_channels=4, num_stages=1, num_graph_convs=1, graph_conv_dim=8)
    V = 12
    scores = torch.full((2, 1, V, V, V), -20.0)
    scores[1, 0, 0, 0, 0] = 20.0  # one occupied corner voxel: no filling
    K = torch.tensor([[50.0, 50.0, 32.0, 32.0]] * 2)
    views = ViewBatch(image_size=(64, 64), K=K)
    verts, faces, nv, nf = head.cubify_packed(scores, views)
    # A solid 6^3 block: 7^3 - 5^3 surface lattice points, 6 sides x 36 squares x 2 triangles.
    assert nv.tolist() == [7**3 - 5**3, 8]
    assert nf.tolist() == [6 * 36 * 2, 12]
    meshes = head.cubify(scores, views)
    assert torch.equal(meshes.verts_packed(), verts)


def test_packed_to_item_idx_is_repeat_interleave():
    counts = torch.tensor([3, 1, 4, 2])
    want = torch.repeat_interleave(torch.arange(4), counts)
    assert torch.equal(packed_to_item_idx(counts, int(counts.sum())), want)
    assert torch.equal(packed_to_item_idx(torch.tensor([5]), 5), torch.zeros(5, dtype=torch.long))
    # Empty items, first, inside and last.
    counts = torch.tensor([0, 2, 0, 1, 0])
    want = torch.repeat_interleave(torch.arange(5), counts)
    assert torch.equal(packed_to_item_idx(counts, 3), want)
