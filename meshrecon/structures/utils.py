"""Conversions between the list, padded and packed forms of a heterogeneous batch.

Same names, arguments and semantics as ``pytorch3d.structures.utils``:

* list: a Python list of N tensors, the i-th of shape (M_i, ...);
* padded: one tensor (N, max(M_i), ...) where each item is written at the start of its row and
  the rest holds a pad value;
* packed: the items concatenated along the first dimension, (sum(M_i), ...).
"""

from collections.abc import Sequence

import torch

__all__ = [
    "list_to_packed",
    "list_to_padded",
    "packed_to_list",
    "padded_to_list",
    "padded_to_packed",
    "packed_to_item_idx",
]


def list_to_padded(
    x: list[torch.Tensor] | tuple[torch.Tensor, ...],
    pad_size: Sequence[int] | None = None,
    pad_value: float = 0.0,
    equisized: bool = False,
) -> torch.Tensor:
    """Stack a list of tensors of different sizes into one padded tensor.

    Args:
        x: list of N tensors, all with the same number of dimensions; the i-th has shape
            (M_i, ...). Tensors with a zero first dimension are allowed, and so is a 1-D tensor
            without elements (``torch.tensor([])``) for an empty item.
        pad_size: the size (one entry per dimension of the items) every item is padded to. Each
            entry must be at least the size of every item in that dimension. If None, the
            maximum size over the non-empty items is used in each dimension.
        pad_value: value written in the padded positions.
        equisized: if True, the items are assumed to all have the same shape and are simply
            stacked (faster); ``pad_size`` and ``pad_value`` are then ignored.

    Returns:
        Tensor of shape (N, *pad_size), with the i-th item in ``[i, :M_i, ...]`` and
        ``pad_value`` elsewhere. Differentiable with respect to the items.
    """
    if not isinstance(x, (list, tuple)) or not all(torch.is_tensor(y) for y in x):
        raise ValueError("x must be a list of tensors")
    if len(x) == 0:
        raise ValueError("x must be a non-empty list of tensors")
    if equisized:
        return torch.stack(list(x), 0)
    # An empty item given as torch.tensor([]) stands for "no rows", whatever the item shape
    # (PyTorch3D accepts it too).
    ndim = max(y.ndim for y in x)
    x = [y.new_zeros([0] * ndim) if y.ndim == 1 and y.numel() == 0 else y for y in x]
    if any(y.ndim != ndim for y in x):
        raise ValueError("x must be a list of tensors with the same number of dimensions")
    if pad_size is None:
        nonempty = [y for y in x if len(y) > 0]
        if not nonempty:
            raise ValueError("pad_size must be given when every tensor of x is empty")
        pad_dims = [max(y.shape[d] for y in nonempty) for d in range(ndim)]
    else:
        pad_dims = [int(s) for s in pad_size]
        if len(pad_dims) != ndim:
            raise ValueError(
                f"pad_size must have one entry per dimension of the items ({ndim}), "
                f"got {len(pad_dims)}"
            )
        for y in x:
            if len(y) > 0 and any(y.shape[d] > pad_dims[d] for d in range(ndim)):
                raise ValueError(
                    f"pad_size {tuple(pad_dims)} is smaller than an item of shape {tuple(y.shape)}"
                )

    N = len(x)
    padded = x[0].new_full((N, *pad_dims), pad_value)
    if ndim >= 1 and all(len(y) == 0 or list(y.shape[1:]) == pad_dims[1:] for y in x):
        # Items differ only along their first dimension: one scatter instead of N copies.
        sizes = torch.tensor([y.shape[0] for y in x], dtype=torch.int64, device=padded.device)
        if int(sizes.sum()) == 0:
            return padded
        rows = _padded_rows(sizes, pad_dims[0])
        flat = padded.reshape(N * pad_dims[0], *pad_dims[1:])
        flat = flat.index_copy(0, rows, torch.cat([y for y in x if len(y) > 0], 0))
        return flat.view(N, *pad_dims)
    for i, y in enumerate(x):
        if len(y) > 0:
            padded[(i, *(slice(0, s) for s in y.shape))] = y
    return padded


def padded_to_list(
    x: torch.Tensor, split_size: Sequence[int] | Sequence[Sequence[int]] | None = None
) -> list[torch.Tensor]:
    """Split a padded tensor into a list of (un-padded) tensors.

    Args:
        x: tensor of shape (N, M, ...), at least 2-dimensional.
        split_size: None, or a list of N entries. An int entry keeps the first ``split_size[i]``
            rows of item i; a list/tuple entry keeps ``[:s0, :s1, ...]`` of item i. If None, the
            items are returned whole.

    Returns:
        list of N tensors (views of ``x``), the i-th of shape (split_size[i], ...) or (M, ...).
    """
    if not torch.is_tensor(x) or x.ndim < 2:
        raise ValueError("x must be a tensor with at least 2 dimensions")
    items = list(x.unbind(0))
    if split_size is None:
        return items
    if len(split_size) != x.shape[0]:
        raise ValueError(
            f"split_size must have one entry per item of x ({x.shape[0]}), got {len(split_size)}"
        )
    for i, size in enumerate(split_size):
        if isinstance(size, (list, tuple)):
            items[i] = items[i][tuple(slice(0, int(s)) for s in size)]
        else:
            items[i] = items[i][: int(size)]
    return items


def list_to_packed(
    x: list[torch.Tensor] | tuple[torch.Tensor, ...],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate a list of tensors along their first dimension, with index bookkeeping.

    Args:
        x: non-empty list of N tensors, the i-th of shape (M_i, ...) with identical trailing
            dimensions. Empty items (M_i = 0) are allowed.

    Returns:
        4-tuple:
        - **x_packed**: tensor (sum(M_i), ...), the items concatenated.
        - **num_items**: int64 tensor (N,) with M_i.
        - **item_packed_first_idx**: int64 tensor (N,), index in ``x_packed`` of the first row of
          item i (for an empty item, the index where it would start).
        - **item_packed_to_list_idx**: int64 tensor (sum(M_i),), the item each packed row
          belongs to.
    """
    if not isinstance(x, (list, tuple)) or not all(torch.is_tensor(y) for y in x):
        raise ValueError("x must be a list of tensors")
    if len(x) == 0:
        raise ValueError("x must be a non-empty list of tensors")
    device = x[0].device
    num_items = torch.tensor([y.shape[0] for y in x], dtype=torch.int64, device=device)
    first_idx = torch.cumsum(num_items, 0) - num_items
    packed_to_list = torch.repeat_interleave(
        torch.arange(len(x), dtype=torch.int64, device=device), num_items
    )
    return torch.cat(list(x), 0), num_items, first_idx, packed_to_list


def packed_to_list(x: torch.Tensor, split_size: int | Sequence[int]) -> list[torch.Tensor]:
    """Split a packed tensor into a list of tensors along its first dimension.

    Args:
        x: tensor of shape (sum(M_i), ...).
        split_size: list of the N sizes M_i (summing to ``x.shape[0]``), or a single int to cut
            ``x`` into equal chunks of that size (as ``torch.split``).

    Returns:
        list of tensors (views of ``x``), the i-th of shape (M_i, ...).
    """
    if not torch.is_tensor(x):
        raise ValueError("x must be a tensor")
    if not isinstance(split_size, int) and sum(int(s) for s in split_size) != x.shape[0]:
        raise ValueError(
            f"split_size must sum to the first dimension of x ({x.shape[0]}), "
            f"got sum {sum(int(s) for s in split_size)}"
        )
    if not isinstance(split_size, int):
        split_size = [int(s) for s in split_size]
    return list(x.split(split_size, dim=0))


def padded_to_packed(
    x: torch.Tensor,
    split_size: Sequence[int] | None = None,
    pad_value: float | None = None,
) -> torch.Tensor:
    """Convert a padded tensor (N, M, D) to its packed form.

    At most one of ``split_size`` and ``pad_value`` may be given.

    Args:
        x: tensor of shape (N, M, D).
        split_size: list of N ints; item i keeps its first ``split_size[i]`` rows.
        pad_value: rows whose every entry equals ``pad_value`` are dropped.

    Returns:
        tensor (sum(M_i), D). With neither argument, every row is kept: (N * M, D).
    """
    if not torch.is_tensor(x) or x.ndim != 3:
        raise ValueError("x must be a 3-dimensional tensor (N, M, D)")
    if split_size is not None and pad_value is not None:
        raise ValueError("only one of split_size or pad_value may be given")
    N, M, D = x.shape
    flat = x.reshape(N * M, D)
    if pad_value is not None:
        return flat[flat.ne(pad_value).any(-1)]
    if split_size is None:
        return flat
    if len(split_size) != N:
        raise ValueError(
            f"split_size must have one entry per item of x ({N}), got {len(split_size)}"
        )
    if not all(isinstance(s, int) for s in split_size):
        raise ValueError("split_size must be a list of ints (one size per item)")
    sizes = torch.tensor(split_size, dtype=torch.int64, device=x.device)
    if (sizes < 0).any() or (sizes > M).any():
        raise ValueError(f"split_size entries must lie in [0, {M}], got {list(split_size)}")
    return flat[_padded_rows(sizes, M)]


def _padded_rows(sizes: torch.Tensor, max_size: int) -> torch.Tensor:
    """Rows of the packed items in the flattened (N * max_size) padded rows, in packed order.

    Item i's rows are the first ``sizes[i]`` of its ``max_size``.
    """
    total = int(sizes.sum())
    item = torch.repeat_interleave(torch.arange(len(sizes), device=sizes.device), sizes)
    first = torch.cumsum(sizes, 0) - sizes
    local = torch.arange(total, device=sizes.device) - first[item]
    return item * max_size + local


class _BatchStructure:
    """Batch bookkeeping shared by Meshes and Pointclouds.

    Indexing helpers, splitting, and copying every held tensor (clone / detach / device moves).
    Subclasses set ``_N`` and ``device`` and implement ``_select(indices)``, which builds a new
    batch from a list of item indices.
    """

    _N: int
    device: torch.device

    def __len__(self) -> int:
        return self._N

    def __iter__(self):
        for i in range(self._N):
            yield self[i]

    def __getitem__(self, index: int | slice | list | torch.Tensor):
        """Select items by an int, a slice, a list of ints, or a 1-D bool / integer tensor.

        Returns:
            a new batch of the same class holding the selected items; their tensors are shared
            with ``self``, so gradients flow back.

        Raises:
            IndexError: for other index types, out-of-range indices, or a bool mask of the wrong
                length.
        """
        if isinstance(index, int):
            indices = [range(self._N)[index]]
        elif isinstance(index, slice):
            indices = list(range(self._N))[index]
        elif isinstance(index, list):
            indices = [range(self._N)[int(i)] for i in index]
        elif torch.is_tensor(index):
            if index.ndim != 1 or index.is_floating_point():
                raise IndexError(f"index tensor must be 1-D bool or integer, got {index.dtype}")
            if index.dtype == torch.bool:
                if index.shape[0] != self._N:
                    raise IndexError(f"bool index must have length {self._N}")
                index = index.nonzero()[:, 0]
            indices = [range(self._N)[i] for i in index.tolist()]
        else:
            raise IndexError(f"cannot index {type(self).__name__} with {type(index).__name__}")
        return self._select(indices)

    def _select(self, indices: list[int]):
        raise NotImplementedError

    def split(self, split_sizes: Sequence[int]) -> list:
        """Split the batch into consecutive batches of the given sizes.

        Args:
            split_sizes: list of non-negative ints summing to at most ``len(self)``.

        Returns:
            list of ``len(split_sizes)`` new batches.
        """
        if not isinstance(split_sizes, (list, tuple)) or not all(
            isinstance(s, int) and s >= 0 for s in split_sizes
        ):
            raise ValueError("split_sizes must be a list of non-negative ints")
        if sum(split_sizes) > self._N:
            raise ValueError(f"split_sizes sum to {sum(split_sizes)}, more than {self._N} items")
        out, start = [], 0
        for size in split_sizes:
            out.append(self._select(list(range(start, start + size))))
            start += size
        return out

    def _apply(self, fn):
        """Shallow copy of self with ``fn`` applied to every tensor it holds (also in lists)."""
        new = self.__class__.__new__(self.__class__)
        for key, value in self.__dict__.items():
            if torch.is_tensor(value):
                value = fn(value)
            elif isinstance(value, list) and value and torch.is_tensor(value[0]):
                value = [fn(v) for v in value]
            new.__dict__[key] = value
        return new

    def clone(self):
        """Deep copy: every tensor, cached views included, is cloned; gradients flow through."""
        return self._apply(torch.clone)

    def detach(self):
        """Copy whose tensors are detached from the autograd graph."""
        return self._apply(torch.Tensor.detach)

    def to(self, device: str | torch.device, copy: bool = False):
        """The batch on ``device``.

        Args:
            device: target device.
            copy: if False and the batch is already on ``device``, return ``self``.

        Returns:
            ``self`` or a copy whose tensors all live on ``device``.
        """
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            # A bare "cuda" would never compare equal to the indexed device tensors report.
            device = torch.device("cuda", torch.cuda.current_device())
        if device == self.device and not copy:
            return self
        other = self._apply(lambda t: t.to(device, copy=copy))
        other.device = device
        return other

    def cpu(self):
        """The batch on the CPU."""
        return self.to("cpu")

    def cuda(self):
        """The batch on the current CUDA device."""
        return self.to("cuda")


def packed_to_item_idx(counts: torch.Tensor, total: int | torch.SymInt) -> torch.Tensor:
    """Return the item of each packed row: (total,) int64, item n repeated ``counts[n]`` times.

    ``torch.repeat_interleave(arange(N), counts)`` without its ``output_size`` argument, which
    ONNX exporters do not take: a one where every item ends, summed cumulatively. Not a PyTorch3D
    function (``Meshes.verts_packed_to_mesh_idx`` is its analogue).

    Args:
        counts: (N,) int64 sizes of the items (>= 0; empty items own no row).
        total: ``counts.sum()``, the number of packed rows (may be a symbolic size).
    """
    # A one at the end of every item (one row past the last: no slice of N - 1 items, which
    # would make torch.export specialize a symbolic N).
    ends = torch.cumsum(counts, 0)
    marks = torch.zeros(total + 1, dtype=torch.int64, device=counts.device)
    marks = marks.index_add(0, ends, torch.ones_like(ends))
    return torch.cumsum(marks, 0)[:total]
