"""Tests for meshrecon.ops.packed_to_padded against loops and the Meshes views."""

import pytest
import torch

from meshrecon.ops import packed_to_padded, padded_to_packed
from meshrecon.structures import Meshes


def loop_packed_to_padded(inputs, first, max_size):
    N = len(first)
    out = torch.zeros((N, max_size, *inputs.shape[1:]), dtype=inputs.dtype)
    ends = list(first[1:].tolist()) + [inputs.shape[0]]
    for i, (s, e) in enumerate(zip(first.tolist(), ends)):
        for j in range(min(e - s, max_size)):
            out[i, j] = inputs[s + j]
    return out


@pytest.mark.parametrize("trailing", [(), (3,), (2, 4)])
def test_round_trip_matches_loop_with_gradients(trailing):
    g = torch.Generator().manual_seed(0)
    sizes = [3, 0, 5, 1]
    first = torch.tensor([0, 3, 3, 8])
    inputs = torch.randn(9, *trailing, generator=g, dtype=torch.float64, requires_grad=True)
    padded = packed_to_padded(inputs, first, 5)
    assert torch.equal(padded, loop_packed_to_padded(inputs.detach(), first, 5))
    back = padded_to_packed(padded, first, 9)
    assert torch.equal(back, inputs)
    torch.autograd.gradcheck(lambda x: packed_to_padded(x, first, 5), (inputs,))
    torch.autograd.gradcheck(
        lambda x: padded_to_packed(x, first, 9), (padded.detach().requires_grad_(),)
    )
    del sizes


def test_matches_meshes_face_views_and_max_size_dim():
    g = torch.Generator().manual_seed(1)
    verts = [torch.rand(6, 3, generator=g), torch.rand(5, 3, generator=g)]
    faces = [torch.randint(0, 5, (4, 3), generator=g), torch.randint(0, 5, (7, 3), generator=g)]
    meshes = Meshes(verts, faces)
    first = meshes.mesh_to_faces_packed_first_idx()
    padded = packed_to_padded(meshes.faces_normals_packed(), first, 7)
    assert torch.equal(padded, meshes.faces_normals_padded())
    moved = padded.transpose(1, 2)  # (N, 3, max_size)
    assert torch.equal(
        padded_to_packed(moved, first, 11, max_size_dim=2), meshes.faces_normals_packed()
    )


def test_truncation_empty_batch_and_errors():
    inputs = torch.arange(6.0)
    first = torch.tensor([0, 4])
    assert packed_to_padded(inputs, first, 2).tolist() == [[0.0, 1.0], [4.0, 5.0]]
    assert packed_to_padded(torch.zeros(0, 3), torch.zeros(0).long(), 4).shape == (0, 4, 3)
    assert padded_to_packed(torch.zeros(0, 4, 3), torch.zeros(0).long(), 0).shape == (0, 3)
    cases = [
        (lambda: packed_to_padded(inputs, torch.tensor([1, 4]), 3), "start at 0"),
        (lambda: packed_to_padded(inputs, torch.tensor([0, 7]), 3), "exceed"),
        (lambda: packed_to_padded(inputs, torch.tensor([0.0, 4.0]), 3), "integer"),
        (lambda: packed_to_padded(inputs, [0, 4], 3), "1-D tensor"),
        (lambda: packed_to_padded(inputs, first, -1), "max_size"),
        (lambda: padded_to_packed(torch.zeros(2, 3), first, 6), "more than the padded size"),
        (lambda: padded_to_packed(torch.zeros(3, 4), first, 6), "one entry per element"),
        (lambda: padded_to_packed(torch.zeros(0, 4), torch.zeros(0).long(), 2), "num_inputs"),
    ]
    for call, msg in cases:
        with pytest.raises(ValueError, match=msg):
            call()
