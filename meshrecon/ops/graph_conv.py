"""Graph convolution over mesh vertices (PyTorch3D's ``GraphConv`` and ``gather_scatter``).

The neighbour aggregation is a sparse adjacency matrix product: the adjacency is built as a
CSR matrix from the edge list, which on CPU is several times faster than ``index_add_`` over
gathered rows and needs no ``(2E, D)`` intermediate. Its backward is the same product with the
transposed adjacency, so no compiled extension is needed. The matrices are derived data of a
mesh, cached on it (:meth:`Meshes.adjacency_packed`, like ``edges_packed``) and handed to the
graph convolutions of a refinement stage, which then build them once (PyTorch3D's structures
cache their derived data the same way).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn

__all__ = [
    "GraphConv",
    "adjacency_pair",
    "gather_scatter",
    "gather_scatter_python",
    "graph_adjacency",
]

# Sparse CSR x dense products are implemented for these dtypes on every backend; anything else
# (half precision on CPU, integer features) takes the index_add_ path.
_CSR_DTYPES = (torch.float32, torch.float64)


class GraphConv(nn.Module):
    """A single graph convolution layer: ``out[i] = w0(x[i]) + sum_{j in N(i)} w1(x[j])``.

    The parameter names ``w0`` and ``w1`` are part of the checkpoint format of PyTorch3D and
    Mesh R-CNN (``w0.weight``, ``w0.bias``, ``w1.weight``, ``w1.bias``) and must not change.

    Args:
        input_dim: number of input features per vertex.
        output_dim: number of output features per vertex.
        init: weight initialisation, ``"normal"`` (weights ~ N(0, 0.01^2), zero biases) or
            ``"zero"`` (zero weights, biases keep ``nn.Linear``'s default initialisation, as in
            PyTorch3D).
        directed: if True, edge ``(i, j)`` only carries features from ``j`` to ``i``; otherwise
            features flow both ways.

    Raises:
        ValueError: if ``input_dim`` or ``output_dim`` is not a positive integer, or ``init`` is
            not one of ``"normal"``, ``"zero"``.
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        init: str = "normal",
        directed: bool = False,
    ) -> None:
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

    def forward(
        self,
        verts: torch.Tensor,
        edges: torch.Tensor,
        adjacency: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Convolve per-vertex features over the graph given by ``edges``.

        Args:
            verts: (V, input_dim) float tensor of per-vertex features; an empty graph may be
                given as ``torch.tensor([])``.
            edges: (E, 2) integer tensor; each row holds the indices of the two vertices joined
                by an edge. No edges may also be given as ``torch.tensor([])``.
            adjacency: optional cached adjacency of ``edges`` (see :func:`gather_scatter`;
                ``graph_adjacency(meshes, verts, self.directed)`` for a mesh's edges).

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
        return verts_w0 + gather_scatter(verts_w1, edges, self.directed, adjacency)

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


def adjacency_pair(
    edges: torch.Tensor, num_vertices: int, directed: bool = False, dtype=torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """The adjacency matrix A of the message graph of ``edges``, and its transpose.

    ``A[i, j]`` is the number of edges carrying ``j``'s features to ``i``; A^T is A itself for
    undirected graphs. :meth:`Meshes.adjacency_packed` caches them per mesh. Autograd-free: the
    matrices are constants of the graph.

    Args:
        edges: (E, 2) integer vertex indices in ``[0, num_vertices)``.
        num_vertices: V.
        directed: whether the edges are directed (see :func:`gather_scatter`).
        dtype: the features' dtype (float32 or float64).

    Returns:
        ``(A, A^T)``, sparse CSR (V, V) tensors of ``dtype``.

    Raises:
        ValueError: ``edges`` is not (E, 2), or an index is outside ``[0, num_vertices)``.
    """
    if edges.dim() != 2 or edges.shape[1] != 2:
        raise ValueError(f"edges must have shape (E, 2), got {tuple(edges.shape)}")
    _check_gather_scatter_args_edges(edges, num_vertices)
    dst, src = _message_indices(edges, directed)
    adjacency = _adjacency_csr(dst, src, num_vertices, dtype)
    # The undirected message graph is symmetric (every edge is sent both ways).
    transposed = _adjacency_csr(src, dst, num_vertices, dtype) if directed else adjacency
    return adjacency, transposed


def graph_adjacency(meshes, input: torch.Tensor, directed: bool = False):
    """The adjacency pair that ``gather_scatter(input, meshes.edges_packed(), directed)`` uses.

    Args:
        meshes: a :class:`~meshrecon.structures.Meshes`.
        input: (sum(V_i), D) per-vertex features.
        directed: as for :func:`gather_scatter`.

    Returns:
        ``(A, A^T)`` from the mesh's cache (:func:`adjacency_pair`), or None where
        ``gather_scatter`` uses none (torch.export tracing, dtypes without sparse products, no
        vertices), so that nothing is built there.
    """
    if torch.compiler.is_exporting() or input.dtype not in _CSR_DTYPES or input.shape[0] == 0:
        return None
    return meshes.adjacency_packed(directed, input.dtype)


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
    input: torch.Tensor,
    edges: torch.Tensor,
    directed: bool = False,
    adjacency: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Sum the features of each vertex's neighbours.

    For an undirected graph ``output[i] = sum of input[j] over every edge (i, j) or (j, i)``;
    for a directed one only edges ``(i, j)`` stored as ``[i, j]`` contribute ``input[j]`` to
    ``output[i]`` (PyTorch3D's convention). Repeated edges are counted as often as they occur.

    Args:
        input: (V, D) tensor of per-vertex features.
        edges: (E, 2) integer tensor of vertex indices.
        directed: whether the edges are directed.
        adjacency: optional ``(A, A^T)`` of these edges (:func:`adjacency_pair`, cached on a
            mesh by :meth:`Meshes.adjacency_packed`; see :func:`graph_adjacency`), so that the
            several convolutions over one mesh build it once; built here when None or of
            another dtype than ``input``.

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
        V = input.shape[0]
        if adjacency is not None and adjacency[0].shape != (V, V):
            raise ValueError(
                f"adjacency must be ({V}, {V}) for {V} vertices, got {tuple(adjacency[0].shape)}"
            )
        if adjacency is None or adjacency[0].dtype != input.dtype:
            adjacency = adjacency_pair(edges, V, directed, input.dtype)
        return _GatherScatterCSR.apply(input, adjacency[0], adjacency[1])
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
