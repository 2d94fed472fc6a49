"""Graph convolution over mesh vertices (PyTorch3D's ``GraphConv`` and ``gather_scatter``).

The neighbour aggregation is a sparse adjacency matrix product: the adjacency is built as a
CSR matrix from the edge list, which on CPU is several times faster than ``index_add_`` over
gathered rows and needs no ``(2E, D)`` intermediate. Its backward is the same product with the
transposed adjacency, so no compiled extension is needed. The matrix of an ``edges`` tensor is
built once and reused by the next calls on the same tensor (the several graph convolutions of a
mesh refinement stage, forward and backward).
"""

from __future__ import annotations

import warnings
import weakref

import torch
import torch.nn as nn

__all__ = ["GraphConv", "gather_scatter", "gather_scatter_python"]

# Sparse CSR x dense products are implemented for these dtypes on every backend; anything else
# (half precision on CPU, integer features) takes the index_add_ path.
_CSR_DTYPES = (torch.float32, torch.float64)


class GraphConv(nn.Module):
    """A single graph convolution layer: ``out[i] = w0(x[i]) + sum_{j in N(i)} w1(x[j])``.

    The parameter names ``w0`` and ``w1`` are part of the checkpoint format of PyTorch3D and
    Mesh R-CNN (``w0.weight``, ``w0.bias``, ``w1.weight``, ``w1.bias``) and must not change.
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        init: str = "normal",
        directed: bool = False,
    ) -> None:
        """
        Args:
            input_dim: number of input features per vertex.
            output_dim: number of output features per vertex.
            init: weight initialisation, ``"normal"`` (weights ~ N(0, 0.01^2), zero biases) or
                ``"zero"`` (zero weights, biases keep ``nn.Linear``'s default initialisation,
                as in PyTorch3D).
            directed: if True, edge ``(i, j)`` only carries features from ``j`` to ``i``;
                otherwise features flow both ways.

        Raises:
            ValueError: if ``input_dim`` or ``output_dim`` is not a positive integer, or ``init``
                is not one of ``"normal"``, ``"zero"``.
        """
        super().__init__()
        for name, value in (("input_dim", input_dim), ("output_dim", output_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if init not in ("normal", "zero"):
            raise ValueError(f'init must be "normal" or "zero", got {init!r}')
        self.input_dim = input_dim
        self.output_dim = output_dim
        self.directed = directed
        self.w0 = nn.Linear(input_dim, output_dim)
        self.w1 = nn.Linear(input_dim, output_dim)
        with torch.no_grad():
            if init == "normal":
                nn.init.normal_(self.w0.weight, mean=0.0, std=0.01)
                nn.init.normal_(self.w1.weight, mean=0.0, std=0.01)
                self.w0.bias.zero_()
                self.w1.bias.zero_()
            else:
                self.w0.weight.zero_()
                self.w1.weight.zero_()

    def forward(self, verts: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        """Convolve per-vertex features over the graph given by ``edges``.

        Args:
            verts: (V, input_dim) float tensor of per-vertex features; an empty graph may be
                given as ``torch.tensor([])``.
            edges: (E, 2) integer tensor; each row holds the indices of the two vertices joined
                by an edge. No edges may also be given as ``torch.tensor([])``.

        Returns:
            (V, output_dim) tensor of output features; ``zeros((0, output_dim))`` connected to
            ``verts``' graph when there are no vertices, as in PyTorch3D.

        Raises:
            ValueError: if ``verts`` is not (V, input_dim), ``edges`` is not (E, 2) integer,
                the two are on different devices, or an edge index is outside ``[0, V)``.
        """
        if verts.device != edges.device:
            raise ValueError(
                f"verts and edges must be on the same device, got {verts.device} and {edges.device}"
            )
        if verts.dim() >= 1 and verts.numel() == 0 and verts.shape[0] == 0:
            # An empty graph, also given as torch.tensor([]) (PyTorch3D accepts it): the empty
            # output stays connected to verts so that backward still works.
            return verts.new_zeros((0, self.output_dim)) * verts.sum()
        if verts.dim() != 2 or verts.shape[1] != self.input_dim:
            raise ValueError(
                f"verts must have shape (V, {self.input_dim}), got {tuple(verts.shape)}"
            )
        if edges.numel() == 0:
            edges = edges.reshape(0, 2).long()  # no edges, also given as torch.tensor([])
        verts_w0 = self.w0(verts)
        verts_w1 = self.w1(verts)
        return verts_w0 + gather_scatter(verts_w1, edges, self.directed)

    def __repr__(self) -> str:
        return f"GraphConv({self.input_dim} -> {self.output_dim}, directed={self.directed!r})"


def _check_gather_scatter_args(input: torch.Tensor, edges: torch.Tensor) -> None:
    if input.dim() != 2:
        raise ValueError(f"input must have shape (V, D), got {tuple(input.shape)}")
    if edges.dim() != 2 or edges.shape[1] != 2:
        raise ValueError(f"edges must have shape (E, 2), got {tuple(edges.shape)}")
    if edges.dtype.is_floating_point or edges.dtype.is_complex or edges.dtype == torch.bool:
        raise ValueError(f"edges must be an integer tensor, got {edges.dtype}")
    if input.device != edges.device:
        raise ValueError(
            f"input and edges must be on the same device, got {input.device} and {edges.device}"
        )


def _check_gather_scatter_args_edges(edges: torch.Tensor, num_vertices: int) -> None:
    """Every edge index must lie in ``[0, num_vertices)`` (checked once per graph)."""
    if edges.numel() > 0:
        lo, hi = torch.aminmax(edges)
        if lo.item() < 0 or hi.item() >= num_vertices:
            # The CSR kernels do not bounds-check, so a bad index must never reach them.
            raise ValueError(
                f"edges must index vertices in [0, {num_vertices}), got values in "
                f"[{lo.item()}, {hi.item()}]"
            )


def _message_indices(edges: torch.Tensor, directed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (dst, src): vertex ``dst[k]`` receives the features of vertex ``src[k]``."""
    edges = edges.long()
    e0, e1 = edges[:, 0], edges[:, 1]
    if directed:
        # Morris et al. (AAAI 2019), as in PyTorch3D: on v0 -> v1 the update of v0 reads v1.
        return e0, e1
    return torch.cat([e0, e1]), torch.cat([e1, e0])


def _adjacency_csr(
    dst: torch.Tensor, src: torch.Tensor, num_vertices: int, dtype: torch.dtype
) -> torch.Tensor:
    """(V, V) sparse CSR matrix with a one at (dst[k], src[k]) for every k (repeats add up)."""
    order = torch.argsort(dst)
    crow = torch.zeros(num_vertices + 1, dtype=torch.long, device=dst.device)
    torch.cumsum(torch.bincount(dst, minlength=num_vertices), 0, out=crow[1:])
    values = torch.ones(src.shape[0], dtype=dtype, device=dst.device)
    with warnings.catch_warnings():
        # The "CSR support is in beta" notice says nothing actionable to a caller.
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            crow, src[order], values, (num_vertices, num_vertices), check_invariants=False
        )


class _AdjacencyCache:
    """The adjacency matrices of the last few edge tensors seen by :func:`gather_scatter`.

    A refinement stage runs several graph convolutions over one ``edges`` tensor, forward and
    backward; building the CSR matrix (a sort of all 2E messages) for each of them repeats the
    same work six times per stage of three convolutions. An entry is used only for the very same
    tensor object (held by a weak reference, so a freed tensor whose memory is reused never
    matches) that has not been modified in place since (``_version``), with the same vertex
    count, direction and dtype.
    """

    def __init__(self, size: int = 4) -> None:
        if size < 1:
            raise ValueError(f"the cache needs room for at least one entry, got {size}")
        self.size = size
        self._entries: list[tuple[weakref.ref, tuple, tuple[torch.Tensor, torch.Tensor]]] = []

    @staticmethod
    def _key(edges: torch.Tensor, num_vertices: int, directed: bool, dtype: torch.dtype):
        return (edges._version, num_vertices, directed, dtype)

    def get(self, edges, num_vertices, directed, dtype):
        key = self._key(edges, num_vertices, directed, dtype)
        for ref, entry_key, value in self._entries:
            if ref() is edges and entry_key == key:
                return value
        return None

    def put(self, edges, num_vertices, directed, dtype, value) -> None:
        key = self._key(edges, num_vertices, directed, dtype)
        # An entry goes as soon as its edges tensor is freed, so the cache never holds the
        # matrices of graphs that no longer exist.
        ref = weakref.ref(edges, self._drop)
        keep = self._entries[max(0, len(self._entries) - self.size + 1) :]
        self._entries = keep + [(ref, key, value)]

    def _drop(self, ref: weakref.ref) -> None:
        self._entries = [e for e in self._entries if e[0] is not ref]

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries = []


_ADJACENCY_CACHE = _AdjacencyCache()


def _adjacency_pair(
    edges: torch.Tensor, num_vertices: int, directed: bool, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, A^T) of the message graph of ``edges``; A^T is A itself for undirected graphs.

    Autograd-free: the matrices are constants of the graph, and caching them is safe because
    ``edges`` carries no gradient.
    """
    # Inference tensors keep no version counter, so a change in place could not be detected:
    # their matrices are built every time.
    cacheable = not edges.is_inference()
    cached = _ADJACENCY_CACHE.get(edges, num_vertices, directed, dtype) if cacheable else None
    if cached is not None:
        return cached
    _check_gather_scatter_args_edges(edges, num_vertices)
    dst, src = _message_indices(edges, directed)
    adjacency = _adjacency_csr(dst, src, num_vertices, dtype)
    # The undirected message graph is symmetric (every edge is sent both ways).
    transposed = _adjacency_csr(src, dst, num_vertices, dtype) if directed else adjacency
    pair = (adjacency, transposed)
    if cacheable:
        _ADJACENCY_CACHE.put(edges, num_vertices, directed, dtype, pair)
    return pair


class _GatherScatterCSR(torch.autograd.Function):
    """``A @ input`` for a constant sparse ``A``; the gradient is ``A^T @ g``."""

    @staticmethod
    def forward(
        ctx, input: torch.Tensor, adjacency: torch.Tensor, transposed: torch.Tensor
    ) -> torch.Tensor:
        ctx.adjacency, ctx.transposed = adjacency, transposed
        return adjacency @ input.contiguous()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        # Going through apply() again keeps double backward available.
        grad_input = _GatherScatterCSR.apply(grad_output, ctx.transposed, ctx.adjacency)
        return grad_input, None, None


def gather_scatter(
    input: torch.Tensor, edges: torch.Tensor, directed: bool = False
) -> torch.Tensor:
    """Sum the features of each vertex's neighbours.

    For an undirected graph ``output[i] = sum of input[j] over every edge (i, j) or (j, i)``;
    for a directed one only edges ``(i, j)`` stored as ``[i, j]`` contribute ``input[j]`` to
    ``output[i]`` (PyTorch3D's convention). Repeated edges are counted as often as they occur.

    The sparse adjacency matrix built from ``edges`` is kept for the next few calls with the
    same, unmodified ``edges`` tensor (the graph convolutions of one mesh refinement stage).

    Args:
        input: (V, D) tensor of per-vertex features.
        edges: (E, 2) integer tensor of vertex indices.
        directed: whether the edges are directed.

    Returns:
        (V, D) tensor of aggregated neighbour features, differentiable w.r.t. ``input``.

    Raises:
        ValueError: if the shapes, dtypes or devices are wrong or an index is out of range.
    """
    _check_gather_scatter_args(input, edges)
    if torch.compiler.is_exporting():
        # torch.export traces neither sparse CSR tensors nor the bounds check (it reads the
        # edge values); the exported graph takes the index_add_ path, whose result is the same.
        dst, src = _message_indices(edges, directed)
        return input.new_zeros(input.shape).index_add(0, dst, input.index_select(0, src))
    if input.dtype in _CSR_DTYPES and input.shape[0] > 0:
        adjacency, transposed = _adjacency_pair(edges, input.shape[0], directed, input.dtype)
        return _GatherScatterCSR.apply(input, adjacency, transposed)
    _check_gather_scatter_args_edges(edges, input.shape[0])
    dst, src = _message_indices(edges, directed)
    out = input.new_zeros(input.shape)
    return out.index_add(0, dst, input.index_select(0, src))


def gather_scatter_python(
    input: torch.Tensor, edges: torch.Tensor, directed: bool = False
) -> torch.Tensor:
    """Reference implementation of :func:`gather_scatter` with ``gather``/``scatter_add``.

    Args:
        input: (V, D) tensor of per-vertex features.
        edges: (E, 2) integer tensor of vertex indices.
        directed: whether the edges are directed.

    Returns:
        (V, D) tensor, equal to ``gather_scatter(input, edges, directed)``.
    """
    _check_gather_scatter_args(input, edges)
    _check_gather_scatter_args_edges(edges, input.shape[0])
    num_edges, dim = edges.shape[0], input.shape[1]
    idx0 = edges[:, 0].long().view(num_edges, 1).expand(num_edges, dim)
    idx1 = edges[:, 1].long().view(num_edges, 1).expand(num_edges, dim)
    output = torch.zeros_like(input).scatter_add(0, idx0, input.gather(0, idx1))
    if not directed:
        output = output.scatter_add(0, idx1, input.gather(0, idx0))
    return output
