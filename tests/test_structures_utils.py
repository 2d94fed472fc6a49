"""Tests for meshrecon.structures.utils: list / padded / packed conversions."""

import pytest
import torch

from meshrecon.structures.utils import (
    list_to_packed,
    list_to_padded,
    packed_to_list,
    padded_to_list,
    padded_to_packed,
)


@pytest.fixture
def ragged():
    g = torch.Generator().manual_seed(0)
    sizes = [4, 0, 7, 1]
    return [torch.randn(s, 3, generator=g) for s in sizes]


def naive_padded(items, pad_dims, pad_value):
    out = torch.full((len(items), *pad_dims), pad_value, dtype=items[0].dtype)
    for i, y in enumerate(items):
        for idx in torch.cartesian_prod(*[torch.arange(s) for s in y.shape]).view(-1, y.ndim):
            out[(i, *idx.tolist())] = y[tuple(idx.tolist())]
    return out


def test_list_to_padded_matches_loop(ragged):
    padded = list_to_padded(ragged, pad_value=-2.5)
    assert padded.shape == (4, 7, 3)
    assert torch.equal(padded, naive_padded(ragged, (7, 3), -2.5))


def test_list_to_padded_takes_1d_empty_items_like_pytorch3d(ragged):
    loose = [y if len(y) else torch.tensor([]) for y in ragged]
    assert loose[1].shape == (0,)
    assert torch.equal(
        list_to_padded(loose, pad_value=-1.0), list_to_padded(ragged, pad_value=-1.0)
    )
    assert torch.equal(list_to_packed(loose)[0], list_to_packed(ragged)[0])


def test_list_to_padded_explicit_size_and_trailing_dims():
    g = torch.Generator().manual_seed(1)
    items = [torch.randn(2, 3, generator=g), torch.randn(3, 1, generator=g)]
    padded = list_to_padded(items, pad_size=(4, 5), pad_value=9.0)
    assert torch.equal(padded, naive_padded(items, (4, 5), 9.0))
    assert list_to_padded(items).shape == (2, 3, 3)


def test_list_to_padded_equisized_stacks():
    g = torch.Generator().manual_seed(2)
    items = [torch.randn(5, 2, generator=g) for _ in range(3)]
    assert torch.equal(list_to_padded(items, equisized=True), torch.stack(items))


def test_list_to_padded_gradient(ragged):
    items = [y.clone().requires_grad_(True) for y in ragged]
    weights = torch.randn(4, 7, 3, generator=torch.Generator().manual_seed(3))
    (list_to_padded(items) * weights).sum().backward()
    for i, y in enumerate(items):
        if y.shape[0] == 0:
            assert y.grad is None or y.grad.numel() == 0
        else:
            assert torch.equal(y.grad, weights[i, : y.shape[0]])


def test_list_to_padded_errors(ragged):
    with pytest.raises(ValueError, match="pad_size"):
        list_to_padded(ragged, pad_size=(2, 3))
    with pytest.raises(ValueError, match="pad_size"):
        list_to_padded(ragged, pad_size=(7,))
    with pytest.raises(ValueError, match="non-empty"):
        list_to_padded([])
    with pytest.raises(ValueError, match="pad_size must be given"):
        list_to_padded([torch.zeros(0, 3)])
    with pytest.raises(ValueError, match="list of tensors"):
        list_to_padded(torch.zeros(2, 3))


def test_padded_to_list(ragged):
    padded = list_to_padded(ragged)
    back = padded_to_list(padded, [y.shape[0] for y in ragged])
    assert all(torch.equal(a, b) for a, b in zip(back, ragged))
    whole = padded_to_list(padded)
    assert len(whole) == 4 and all(t.shape == (7, 3) for t in whole)
    per_dim = padded_to_list(padded, [(2, 1), (0, 3), (7, 2), (1, 3)])
    assert [tuple(t.shape) for t in per_dim] == [(2, 1), (0, 3), (7, 2), (1, 3)]
    assert torch.equal(per_dim[2], ragged[2][:, :2])
    with pytest.raises(ValueError, match="split_size"):
        padded_to_list(padded, [1, 2])
    with pytest.raises(ValueError, match="2 dimensions"):
        padded_to_list(torch.zeros(3))


def test_list_to_packed_matches_loop(ragged):
    packed, num, first, owner = list_to_packed(ragged)
    assert torch.equal(packed, torch.cat(ragged))
    assert num.tolist() == [4, 0, 7, 1]
    assert first.tolist() == [0, 4, 4, 11]
    expected_owner = [i for i, y in enumerate(ragged) for _ in range(y.shape[0])]
    assert owner.tolist() == expected_owner
    with pytest.raises(ValueError, match="non-empty"):
        list_to_packed([])


def test_packed_to_list(ragged):
    packed = torch.cat(ragged)
    back = packed_to_list(packed, [4, 0, 7, 1])
    assert all(torch.equal(a, b) for a, b in zip(back, ragged))
    with pytest.raises(ValueError, match="sum"):
        packed_to_list(packed, [4, 0, 7])


def test_padded_to_packed(ragged):
    sizes = [y.shape[0] for y in ragged]
    padded = list_to_padded(ragged)
    assert torch.equal(padded_to_packed(padded, sizes), torch.cat(ragged))
    assert torch.equal(padded_to_packed(padded), padded.reshape(-1, 3))
    filled = list_to_padded(ragged, pad_value=-1.0)
    assert torch.equal(padded_to_packed(filled, pad_value=-1.0), torch.cat(ragged))
    with pytest.raises(ValueError, match="only one"):
        padded_to_packed(padded, sizes, pad_value=0.0)
    with pytest.raises(ValueError, match="3-dimensional"):
        padded_to_packed(padded[0])
    with pytest.raises(ValueError, match="one entry per item"):
        padded_to_packed(padded, sizes[:2])
    with pytest.raises(ValueError, match="in \\[0, 7\\]"):
        padded_to_packed(padded, [8, 0, 0, 0])


def test_padded_to_packed_gradient(ragged):
    padded = list_to_padded(ragged).requires_grad_(True)
    padded_to_packed(padded, [4, 0, 7, 1]).sum().backward()
    mask = torch.zeros(4, 7, 1)
    for i, s in enumerate([4, 0, 7, 1]):
        mask[i, :s] = 1
    assert torch.equal(padded.grad, mask.expand(4, 7, 3))
