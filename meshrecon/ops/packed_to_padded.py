"""Packed <-> padded conversion of per-element values with first-index bookkeeping.

PyTorch3D's ``ops.packed_to_padded`` and ``ops.padded_to_packed``. These take the ``first_idxs``
that ``Meshes``/``Pointclouds`` provide (``mesh_to_faces_packed_first_idx()``,
``cloud_to_packed_first_idx()``, ...); the list-based helpers of the same purpose are in
:mod:`meshrecon.structures.utils`.
"""

from __future__ import annotations

import torch

__all__ = ["packed_to_padded", "padded_to_packed"]


def _check_first_idxs(
    first_idxs: torch.Tensor, total: int, name: str, device: torch.device
) -> torch.Tensor:
    if not torch.is_tensor(first_idxs) or first_idxs.ndim != 1:
        raise ValueError("first_idxs must be a 1-D tensor (N,)")
    if first_idxs.is_floating_point() or first_idxs.dtype == torch.bool:
        raise ValueError(f"first_idxs must be an integer tensor, got {first_idxs.dtype}")
    first = first_idxs.to(device, torch.int64)
    if first.numel():
        if int(first[0]) != 0 or bool((first[1:] < first[:-1]).any()):
            raise ValueError("first_idxs must start at 0 and be non-decreasing")
        if int(first[-1]) > total:
            raise ValueError(f"first_idxs must not exceed {name} ({total}), got {int(first[-1])}")
    return first


def _rows(first: torch.Tensor, total: int, max_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(packed row, padded flat row) of every packed element kept (at most max_size each)."""
    sizes = torch.diff(first, append=first.new_tensor([total]))
    owner = torch.repeat_interleave(torch.arange(len(first), device=first.device), sizes)
    local = torch.arange(total, device=first.device) - first[owner]
    keep = local < max_size
    return keep.nonzero()[:, 0], owner[keep] * max_size + local[keep]


def packed_to_padded(inputs: torch.Tensor, first_idxs: torch.Tensor, max_size: int) -> torch.Tensor:
    """Scatter packed per-element values into a zero-padded batch.

    Element i owns the packed rows ``first_idxs[i] .. first_idxs[i + 1] - 1`` (the last owns
    the rest); its first ``max_size`` rows are written to ``out[i]``.

    Args:
        inputs: (F,) or (F, ...) packed values, e.g. the face areas of a batch of meshes.
        first_idxs: (N,) int64, the packed index of each element's first row.
        max_size: the padded length, usually the largest element size.

    Returns:
        (N, max_size) or (N, max_size, ...) tensor, zero where an element has fewer rows;
        differentiable with respect to ``inputs``.

    Raises:
        ValueError: on a non-tensor input, ``first_idxs`` that is not a sorted 1-D integer
            tensor starting at 0, or a negative ``max_size``.
    """
    if not torch.is_tensor(inputs) or inputs.ndim < 1:
        raise ValueError("inputs must be a tensor of shape (F,) or (F, ...)")
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 0:
        raise ValueError(f"max_size must be a non-negative int, got {max_size!r}")
    total = inputs.shape[0]
    first = _check_first_idxs(first_idxs, total, "the number of inputs", inputs.device)
    N = first.shape[0]
    flat = inputs.new_zeros((N * max_size, *inputs.shape[1:]))
    if N:
        src, dst = _rows(first, total, max_size)
        flat = flat.index_copy(0, dst, inputs.index_select(0, src))
    return flat.view(N, max_size, *inputs.shape[1:])


def padded_to_packed(
    inputs: torch.Tensor,
    first_idxs: torch.Tensor,
    num_inputs: int,
    max_size_dim: int = 1,
) -> torch.Tensor:
    """Gather the real rows of a padded batch into packed form (inverse of packed_to_padded).

    Args:
        inputs: (N, max_size) or (N, max_size, ...) padded values; with ``max_size_dim`` the
            padded dimension may sit elsewhere, as (N, ..., max_size, ...).
        first_idxs: (N,) int64, the packed index of each element's first row.
        num_inputs: the number F of packed rows.
        max_size_dim: the dimension of ``inputs`` that holds the padded rows.

    Returns:
        (F,) or (F, ...) tensor with ``out[first_idxs[i] + j] = inputs[i, j]``; differentiable
        with respect to ``inputs``.

    Raises:
        ValueError: on bad shapes, ``first_idxs`` that is not a sorted 1-D integer tensor
            starting at 0 with N entries, or an element with more rows than ``max_size``.
    """
    if not torch.is_tensor(inputs) or inputs.ndim < 2:
        raise ValueError("inputs must be a tensor of shape (N, max_size) or (N, max_size, ...)")
    if isinstance(num_inputs, bool) or not isinstance(num_inputs, int) or num_inputs < 0:
        raise ValueError(f"num_inputs must be a non-negative int, got {num_inputs!r}")
    inputs = inputs.movedim(max_size_dim, 1)
    N, max_size = inputs.shape[:2]
    first = _check_first_idxs(first_idxs, num_inputs, "num_inputs", inputs.device)
    if first.shape[0] != N:
        raise ValueError(f"first_idxs must have one entry per element ({N}), got {len(first)}")
    if N == 0:
        if num_inputs:
            raise ValueError(f"num_inputs must be 0 for a batch of no elements, got {num_inputs}")
        return inputs.new_zeros((0, *inputs.shape[2:]))
    sizes = torch.diff(first, append=first.new_tensor([num_inputs]))
    if N and int(sizes.max()) > max_size:
        raise ValueError(
            f"an element has {int(sizes.max())} rows, more than the padded size {max_size}"
        )
    flat = inputs.reshape(N * max_size, *inputs.shape[2:])
    _, rows = _rows(first, num_inputs, max_size)
    return flat.index_select(0, rows)
