"""Meshes: a batch of triangle meshes with list, padded and packed views (PyTorch3D subset).

The class mirrors ``pytorch3d.structures.Meshes`` (names, arguments, semantics) without textures.
Every derived view is computed lazily with vectorized tensor ops, cached, and dropped when the
vertex positions change. Gradients flow from the vertices given at construction (list or padded)
to every derived view.
"""

from collections.abc import Sequence

import torch

from ._inputs import as_index_rows, as_rows, drop_face_padding, select_submeshes
from .utils import _BatchStructure, list_to_padded, padded_to_list

__all__ = ["Meshes", "join_meshes_as_batch", "join_meshes_as_scene"]

# Views that depend on vertex positions (dropped when the verts change).
_GEOMETRY_CACHE = ("_faces_areas_packed", "_faces_normals_packed", "_verts_normals_packed")
# Views that depend only on topology and sizes.
_TOPOLOGY_CACHE = (
    "_faces_packed",
    "_verts_packed_to_mesh_idx",
    "_faces_packed_to_mesh_idx",
    "_mesh_to_verts_packed_first_idx",
    "_mesh_to_faces_packed_first_idx",
    "_verts_padded_to_packed_idx",
    "_edges_packed",
    "_edges_packed_to_mesh_idx",
    "_mesh_to_edges_packed_first_idx",
    "_faces_packed_to_edges_packed",
    "_num_edges_per_mesh",
    "_laplacian_packed",
)


class Meshes(_BatchStructure):
    """A batch of N triangle meshes, possibly of different sizes and possibly empty.

    Three views of the same data, as in PyTorch3D:

    * list: ``verts_list()[i]`` is (V_i, 3), ``faces_list()[i]`` is (F_i, 3) with indices local to
      mesh i;
    * padded: ``verts_padded()`` is (N, max(V_i), 3) padded with 0, ``faces_padded()`` is
      (N, max(F_i), 3) with local indices, padded with -1;
    * packed: ``verts_packed()`` is (sum(V_i), 3), ``faces_packed()`` is (sum(F_i), 3) with indices
      into ``verts_packed()``.

    Args:
        verts: list of N float tensors (V_i, 3), or a float tensor (N, V, 3). With the padded
            form every mesh has V vertices. An empty mesh may be given as ``torch.tensor([])``.
        faces: list of N tensors (F_i, 3) of vertex indices local to each mesh, or a tensor
            (N, F, 3). Rows holding a negative index (-1) are padding and must come after the
            real faces. Integer tensors are cast to int64, and so are float tensors holding
            whole numbers (as PyTorch3D does); an empty mesh may be given as
            ``torch.tensor([])``.
        textures: accepted for signature compatibility; must be None (textures are not
            supported).
        verts_normals: optional precomputed vertex normals, list of (V_i, 3) or (N, V, 3); used
            by the ``verts_normals_*`` views until the vertices change.

    Unlike PyTorch3D, the packed and list views always hold the real vertices, also when every
    mesh lacks faces (``isempty()``); vertices without faces get zero normals, and meshes without
    vertices get a zero bounding box.

    Attributes:
        device: the device of all tensors.
        equisized: True when every mesh has the same number of verts and of faces.
        valid: bool tensor (N,), True for meshes with at least one vertex and one face.
    """

    def __init__(
        self,
        verts: Sequence[torch.Tensor] | torch.Tensor,
        faces: Sequence[torch.Tensor] | torch.Tensor,
        textures: None = None,
        *,
        verts_normals: Sequence[torch.Tensor] | torch.Tensor | None = None,
    ) -> None:
        if textures is not None:
            raise ValueError("textures must be None: meshrecon's Meshes does not store textures")
        self.textures = None
        self.equisized = False
        self._verts_list: list[torch.Tensor] | None = None
        self._faces_list: list[torch.Tensor] | None = None
        self._verts_padded: torch.Tensor | None = None
        self._faces_padded: torch.Tensor | None = None
        self._verts_packed: torch.Tensor | None = None
        for name in _GEOMETRY_CACHE + _TOPOLOGY_CACHE:
            setattr(self, name, None)
        # GraphConv's adjacency matrices per (directed, dtype): see adjacency_packed().
        self._adjacency_packed: dict[tuple[bool, torch.dtype], tuple[torch.Tensor, ...]] = {}

        if isinstance(verts, (list, tuple)) and isinstance(faces, (list, tuple)):
            self._init_from_lists(list(verts), list(faces))
        elif torch.is_tensor(verts) and torch.is_tensor(faces):
            self._init_from_padded(verts, faces)
        else:
            raise ValueError(
                "verts and faces must both be lists of tensors (V_i, 3) / (F_i, 3) or both "
                "padded tensors (N, V, 3) / (N, F, 3)"
            )
        self._check_face_indices()
        if verts_normals is not None:
            self._set_verts_normals(verts_normals)

    # ------------------------------------------------------------------ construction
    def _init_from_lists(self, verts: list, faces: list) -> None:
        if len(verts) != len(faces):
            raise ValueError(
                f"verts and faces must have the same length, got {len(verts)} and {len(faces)}"
            )
        self._N = len(verts)
        # The batch's float type, for empty entries given as torch.tensor([]) (float32).
        dtype = next(
            (v.dtype for v in verts if torch.is_tensor(v) and v.numel() and v.is_floating_point()),
            None,
        )
        verts = [as_rows(v, 3, f"verts[{i}]", dtype) for i, v in enumerate(verts)]
        faces = [as_rows(f, 3, f"faces[{i}]") for i, f in enumerate(faces)]
        self.device = verts[0].device if self._N > 0 else torch.device("cpu")
        for i, (v, f) in enumerate(zip(verts, faces)):
            if not v.is_floating_point():
                raise ValueError(f"verts[{i}] must be a floating point tensor, got {v.dtype}")
            if v.device != self.device or f.device != self.device:
                raise ValueError("all verts and faces tensors must be on the same device")
            faces[i] = drop_face_padding(as_index_rows(f, f"faces[{i}]"), f"faces[{i}]")
        self._verts_list = verts
        self._faces_list = faces
        self._num_verts_list = [int(v.shape[0]) for v in verts]
        self._num_faces_list = [int(f.shape[0]) for f in faces]
        self._finish_sizes()

    def _init_from_padded(self, verts: torch.Tensor, faces: torch.Tensor) -> None:
        if verts.ndim != 3 or verts.shape[2] != 3 or not verts.is_floating_point():
            raise ValueError("verts must be a float tensor of shape (N, V, 3)")
        if faces.ndim != 3 or faces.shape[2] != 3:
            raise ValueError("faces must be a tensor of shape (N, F, 3)")
        if verts.shape[0] != faces.shape[0]:
            raise ValueError(
                f"verts and faces must have the same batch size, got {verts.shape[0]} "
                f"and {faces.shape[0]}"
            )
        if verts.device != faces.device:
            raise ValueError("verts and faces must be on the same device")
        self._N = int(verts.shape[0])
        self.device = verts.device
        faces = as_index_rows(faces, "faces")
        real = faces.gt(-1).all(2)  # (N, F)
        if (real[:, 1:] & ~real[:, :-1]).any():
            raise ValueError("faces padding (rows with -1) must come after the real faces")
        self._verts_padded = verts
        self._faces_padded = faces
        self._num_verts_list = [int(verts.shape[1])] * self._N
        self._num_faces_list = real.sum(1).tolist()
        self._finish_sizes()

    def _finish_sizes(self) -> None:
        nv, nf = self._num_verts_list, self._num_faces_list
        self._num_verts_per_mesh = torch.tensor(nv, dtype=torch.int64, device=self.device)
        self._num_faces_per_mesh = torch.tensor(nf, dtype=torch.int64, device=self.device)
        self._V = max(nv, default=0)
        self._F = max(nf, default=0)
        if self._verts_padded is not None:
            self._V = int(self._verts_padded.shape[1])
        self.valid = (self._num_verts_per_mesh > 0) & (self._num_faces_per_mesh > 0)
        self.equisized = len(set(nv)) <= 1 and len(set(nf)) <= 1

    def _check_face_indices(self) -> None:
        # Validated on the form the faces came in: packing every face only to check it would
        # cost as much as the whole construction for large batches such as cubify's output.
        if self._faces_list is not None:
            for i, (f, nv) in enumerate(zip(self._faces_list, self._num_verts_list)):
                if f.numel() == 0:
                    continue
                lo, hi = torch.aminmax(f)
                if int(lo) < 0 or int(hi) >= nv:
                    self._raise_bad_faces(i)
            return
        faces = self._faces_padded
        # Rows holding a -1 are padding; real rows are non-negative by construction.
        bad = faces.ge(self._V).any(2) & faces.gt(-1).all(2)
        if bool(bad.any()):
            self._raise_bad_faces(int(bad.any(1).nonzero()[0, 0]))

    def _raise_bad_faces(self, i: int) -> None:
        raise ValueError(f"faces of mesh {i} must index vertices in [0, {self._num_verts_list[i]})")

    def _set_verts_normals(self, normals: Sequence[torch.Tensor] | torch.Tensor) -> None:
        if torch.is_tensor(normals):
            if normals.shape != (self._N, self._V, 3):
                raise ValueError(
                    f"verts_normals must have shape {(self._N, self._V, 3)}, "
                    f"got {tuple(normals.shape)}"
                )
            packed = normals.reshape(-1, 3)[self.verts_padded_to_packed_idx()]
        else:
            if len(normals) != self._N:
                raise ValueError(f"verts_normals must have {self._N} entries, got {len(normals)}")
            normals = [as_rows(n, 3, f"verts_normals[{i}]") for i, n in enumerate(normals)]
            shapes = [tuple(n.shape) for n in normals]
            if shapes != [(v, 3) for v in self._num_verts_list]:
                raise ValueError("verts_normals must be a list of (V_i, 3) tensors matching verts")
            packed = torch.cat(list(normals), 0) if self._N > 0 else None
        self._verts_normals_packed = packed

    # ------------------------------------------------------------------ basics
    def _select(self, indices: list[int]) -> "Meshes":
        verts, faces = self.verts_list(), self.faces_list()
        return self.__class__(verts=[verts[i] for i in indices], faces=[faces[i] for i in indices])

    def isempty(self) -> bool:
        """True when the batch has no meshes or no mesh has both verts and faces."""
        return self._N == 0 or not bool(self.valid.any())

    def get_mesh_verts_faces(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (verts (V_i, 3), faces (F_i, 3)) of mesh ``index``."""
        if not isinstance(index, int):
            raise ValueError(f"index must be an int, got {type(index).__name__}")
        if not -self._N <= index < self._N:
            raise ValueError(f"index must be in [-{self._N}, {self._N}), got {index}")
        return self.verts_list()[index], self.faces_list()[index]

    # ------------------------------------------------------------------ list views
    def verts_list(self) -> list[torch.Tensor]:
        """List of N tensors (V_i, 3) of vertex positions."""
        if self._verts_list is None:
            self._verts_list = padded_to_list(self._verts_padded, self._num_verts_list)
        return self._verts_list

    def faces_list(self) -> list[torch.Tensor]:
        """List of N int64 tensors (F_i, 3) of vertex indices local to each mesh."""
        if self._faces_list is None:
            self._faces_list = padded_to_list(self._faces_padded, self._num_faces_list)
        return self._faces_list

    # ------------------------------------------------------------------ padded views
    def verts_padded(self) -> torch.Tensor:
        """Tensor (N, max(V_i), 3) of vertex positions, zero-padded."""
        if self._verts_padded is None:
            self._verts_padded = self._to_padded(self.verts_packed(), self._V, 0.0)
        return self._verts_padded

    def faces_padded(self) -> torch.Tensor:
        """Int64 tensor (N, max(F_i), 3) of local vertex indices, padded with -1."""
        if self._faces_padded is None:
            if self._N == 0:
                self._faces_padded = torch.zeros((0, 0, 3), dtype=torch.int64, device=self.device)
            else:
                self._faces_padded = list_to_padded(self.faces_list(), (self._F, 3), pad_value=-1)
        return self._faces_padded

    def _to_padded(self, packed: torch.Tensor, size: int, pad_value: float) -> torch.Tensor:
        """Scatter a per-vertex packed tensor (sum(V_i), C) into (N, size, C)."""
        flat = packed.new_full((self._N * size, packed.shape[1]), pad_value)
        flat = flat.index_copy(0, self.verts_padded_to_packed_idx(), packed)
        return flat.view(self._N, size, packed.shape[1])

    def _faces_view_to_padded(self, packed: torch.Tensor) -> torch.Tensor:
        """Scatter a per-face packed tensor (sum(F_i), C) into zero-padded (N, max(F_i), C)."""
        first = self.mesh_to_faces_packed_first_idx()
        owner = self.faces_packed_to_mesh_idx()
        rows = owner * self._F + torch.arange(packed.shape[0], device=self.device) - first[owner]
        flat = packed.new_zeros((self._N * self._F, *packed.shape[1:]))
        return flat.index_copy(0, rows, packed).view(self._N, self._F, *packed.shape[1:])

    # ------------------------------------------------------------------ packed views
    def _compute_packed(self, refresh: bool = False) -> None:
        """Compute verts/faces packed and their index maps (cached unless ``refresh``)."""
        if self._faces_packed is None or refresh:
            self._compute_faces_packed()
        if self._verts_packed is None or refresh:
            if self._verts_list is not None:
                self._verts_packed = (
                    torch.cat(self._verts_list, 0)
                    if self._N > 0
                    else torch.zeros((0, 3), device=self.device)
                )
            else:
                flat = self._verts_padded.reshape(-1, 3)
                self._verts_packed = flat[self.verts_padded_to_packed_idx()]

    def _compute_faces_packed(self) -> None:
        """Topology-only packed data: faces_packed and the packed index maps."""
        ids = torch.arange(self._N, device=self.device)
        nv, nf = self._num_verts_per_mesh, self._num_faces_per_mesh
        v_first = torch.cumsum(nv, 0) - nv
        f_owner = torch.repeat_interleave(ids, nf)
        if self._faces_list is not None:
            faces = (
                torch.cat(self._faces_list, 0)
                if self._N > 0
                else torch.zeros((0, 3), dtype=torch.int64, device=self.device)
            )
        else:
            # Padding rows come last in each mesh, so the real rows are already in packed order.
            faces = self._faces_padded[self._faces_padded.gt(-1).all(2)]
        self._faces_packed = faces + v_first[f_owner].unsqueeze(1)
        self._verts_packed_to_mesh_idx = torch.repeat_interleave(ids, nv)
        self._faces_packed_to_mesh_idx = f_owner
        self._mesh_to_verts_packed_first_idx = v_first
        self._mesh_to_faces_packed_first_idx = torch.cumsum(nf, 0) - nf

    def _compute_faces_packed_maps(self) -> None:
        # The index maps come with faces_packed: topology only, no vertex positions needed.
        if self._faces_packed is None:
            self._compute_faces_packed()

    def verts_packed(self) -> torch.Tensor:
        """Tensor (sum(V_i), 3) of all vertices, mesh after mesh."""
        self._compute_packed()
        return self._verts_packed

    def faces_packed(self) -> torch.Tensor:
        """Int64 tensor (sum(F_i), 3) of faces indexing into ``verts_packed()``."""
        self._compute_packed()
        return self._faces_packed

    def num_verts_per_mesh(self) -> torch.Tensor:
        """Int64 tensor (N,) with V_i."""
        return self._num_verts_per_mesh

    def num_faces_per_mesh(self) -> torch.Tensor:
        """Int64 tensor (N,) with F_i."""
        return self._num_faces_per_mesh

    def verts_packed_to_mesh_idx(self) -> torch.Tensor:
        """Int64 tensor (sum(V_i),): the mesh of each packed vertex."""
        self._compute_faces_packed_maps()
        return self._verts_packed_to_mesh_idx

    def faces_packed_to_mesh_idx(self) -> torch.Tensor:
        """Int64 tensor (sum(F_i),): the mesh of each packed face."""
        self._compute_faces_packed_maps()
        return self._faces_packed_to_mesh_idx

    def mesh_to_verts_packed_first_idx(self) -> torch.Tensor:
        """Int64 tensor (N,): index in ``verts_packed()`` of the first vertex of each mesh."""
        self._compute_faces_packed_maps()
        return self._mesh_to_verts_packed_first_idx

    def mesh_to_faces_packed_first_idx(self) -> torch.Tensor:
        """Int64 tensor (N,): index in ``faces_packed()`` of the first face of each mesh."""
        self._compute_faces_packed_maps()
        return self._mesh_to_faces_packed_first_idx

    def verts_padded_to_packed_idx(self) -> torch.Tensor:
        """Int64 tensor (sum(V_i),): each packed vertex's row in ``verts_padded().view(-1, 3)``."""
        if self._verts_padded_to_packed_idx is None:
            counts = self._num_verts_per_mesh
            owner = torch.repeat_interleave(torch.arange(self._N, device=self.device), counts)
            first = torch.cumsum(counts, 0) - counts
            local = torch.arange(int(counts.sum()), device=self.device) - first[owner]
            self._verts_padded_to_packed_idx = owner * self._V + local
        return self._verts_padded_to_packed_idx

    # ------------------------------------------------------------------ edges
    def _compute_edges_packed(self, refresh: bool = False) -> None:
        """Unique undirected edges of the packed faces, sorted by (v0, v1) with v0 < v1."""
        if self._edges_packed is not None and not refresh:
            return
        faces = self.faces_packed()
        F, V = faces.shape[0], self.verts_packed().shape[0]
        v0, v1, v2 = faces.unbind(1)
        # Block k of the 3F candidate edges is the edge opposite corner k of each face.
        edges = torch.stack([torch.cat([v1, v2, v0]), torch.cat([v2, v0, v1])], 1)
        edges = edges.sort(dim=1).values
        keys, inverse = torch.unique(edges[:, 0] * V + edges[:, 1], return_inverse=True)
        self._edges_packed = torch.stack([keys // V, keys % V], 1)
        self._faces_packed_to_edges_packed = inverse.view(3, F).t().contiguous()
        owner = self.verts_packed_to_mesh_idx()[self._edges_packed[:, 0]]
        self._edges_packed_to_mesh_idx = owner
        counts = torch.bincount(owner, minlength=self._N)
        self._num_edges_per_mesh = counts
        self._mesh_to_edges_packed_first_idx = torch.cumsum(counts, 0) - counts

    def edges_packed(self) -> torch.Tensor:
        """Int64 tensor (E, 2) of the unique undirected edges, indices into ``verts_packed()``.

        Each row is sorted (v0 < v1) and the rows lexicographically (hence grouped by mesh).
        """
        self._compute_edges_packed()
        return self._edges_packed

    def edges_packed_to_mesh_idx(self) -> torch.Tensor:
        """Int64 tensor (E,): the mesh of each packed edge."""
        self._compute_edges_packed()
        return self._edges_packed_to_mesh_idx

    def mesh_to_edges_packed_first_idx(self) -> torch.Tensor:
        """Int64 tensor (N,): index in ``edges_packed()`` of the first edge of each mesh."""
        self._compute_edges_packed()
        return self._mesh_to_edges_packed_first_idx

    def num_edges_per_mesh(self) -> torch.Tensor:
        """Int64 tensor (N,): number of unique edges of each mesh."""
        self._compute_edges_packed()
        return self._num_edges_per_mesh

    def faces_packed_to_edges_packed(self) -> torch.Tensor:
        """Int64 tensor (sum(F_i), 3) of each face's edges, indices into ``edges_packed()``.

        Column k is the edge opposite vertex k of the face: (v1, v2), (v2, v0), (v0, v1).
        """
        self._compute_edges_packed()
        return self._faces_packed_to_edges_packed

    # ------------------------------------------------------------------ normals and areas
    def _compute_face_areas_normals(self, refresh: bool = False) -> None:
        if self._faces_areas_packed is not None and not refresh:
            return
        tri = self.verts_packed()[self.faces_packed()]  # (F, 3, 3)
        cross = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=1)
        norm = torch.linalg.vector_norm(cross, dim=1)
        self._faces_areas_packed = norm / 2
        # Degenerate faces get a zero normal rather than NaN (PyTorch3D clamps the same way).
        self._faces_normals_packed = cross / norm.clamp(min=1e-6).unsqueeze(1)

    def faces_areas_packed(self) -> torch.Tensor:
        """Tensor (sum(F_i),) of triangle areas."""
        self._compute_face_areas_normals()
        return self._faces_areas_packed

    def faces_normals_packed(self) -> torch.Tensor:
        """Tensor (sum(F_i), 3) of unit face normals (v1 - v0) x (v2 - v0), zero if degenerate."""
        self._compute_face_areas_normals()
        return self._faces_normals_packed

    def faces_normals_list(self) -> list[torch.Tensor]:
        """List of N tensors (F_i, 3) of unit face normals."""
        return list(self.faces_normals_packed().split(self._num_faces_list, 0))

    def faces_normals_padded(self) -> torch.Tensor:
        """Tensor (N, max(F_i), 3) of unit face normals, zero-padded."""
        return self._faces_view_to_padded(self.faces_normals_packed())

    def _compute_vertex_normals(self, refresh: bool = False) -> None:
        if self._verts_normals_packed is not None and not refresh:
            return
        verts, faces = self.verts_packed(), self.faces_packed()
        tri = verts[faces]
        # The unnormalized cross product weights each face by (twice) its area.
        cross = torch.linalg.cross(tri[:, 2] - tri[:, 1], tri[:, 0] - tri[:, 1], dim=1)
        summed = torch.zeros_like(verts).index_add(0, faces.t().reshape(-1), cross.repeat(3, 1))
        self._verts_normals_packed = torch.nn.functional.normalize(summed, eps=1e-6, dim=1)

    def has_verts_normals(self) -> bool:
        """True when vertex normals are cached (given or already computed)."""
        return self._verts_normals_packed is not None

    def verts_normals_packed(self) -> torch.Tensor:
        """Tensor (sum(V_i), 3) of unit vertex normals.

        Each is the normalized area-weighted sum of the normals of the faces around the vertex
        (zero for isolated vertices).
        """
        self._compute_vertex_normals()
        return self._verts_normals_packed

    def verts_normals_list(self) -> list[torch.Tensor]:
        """List of N tensors (V_i, 3) of unit vertex normals."""
        return list(self.verts_normals_packed().split(self._num_verts_list, 0))

    def verts_normals_padded(self) -> torch.Tensor:
        """Tensor (N, max(V_i), 3) of unit vertex normals, zero-padded."""
        return self._to_padded(self.verts_normals_packed(), self._V, 0.0)

    # ------------------------------------------------------------------ other derived data
    def adjacency_packed(
        self, directed: bool = False, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """GraphConv's message matrices ``(A, A^T)`` of ``edges_packed()``.

        Sparse CSR (sum(V_i), sum(V_i)) of ``dtype``, ``A[i, j]`` the number of edges carrying
        vertex j's features to vertex i (both directions unless ``directed``); see
        :func:`meshrecon.ops.graph_conv.adjacency_pair`. Cached on the mesh like ``edges_packed()``:
        topology only, so the meshes that ``offset_verts`` / ``scale_verts`` / ``update_padded``
        return keep it; a new Meshes (other faces) builds its own.
        """
        key = (bool(directed), dtype)
        if key not in self._adjacency_packed:
            # Imported here: the op builds the matrices; the structure only keeps them
            # (PyTorch3D's Meshes reaches its Laplacian op the same way).
            from meshrecon.ops.graph_conv import adjacency_pair

            num_verts = self.verts_packed().shape[0]
            pair = adjacency_pair(self.edges_packed(), num_verts, directed, dtype)
            self._adjacency_packed[key] = pair
        return self._adjacency_packed[key]

    def laplacian_packed(self) -> torch.Tensor:
        """Uniform Laplacian as a sparse COO tensor (sum(V_i), sum(V_i)).

        ``L[i, j] = 1 / deg(i)`` for each edge (i, j), ``L[i, i] = -1``; the rows of isolated
        vertices hold only the -1.
        """
        if self._laplacian_packed is None:
            verts, edges = self.verts_packed(), self.edges_packed()
            V = verts.shape[0]
            e0, e1 = edges.unbind(1)
            deg = torch.bincount(torch.cat([e0, e1]), minlength=V).to(verts.dtype)
            inv = torch.where(deg > 0, 1.0 / deg.clamp(min=1), torch.zeros_like(deg))
            diag = torch.arange(V, device=self.device)
            idx = torch.stack([torch.cat([e0, e1, diag]), torch.cat([e1, e0, diag])])
            vals = torch.cat([inv[e0], inv[e1], -torch.ones_like(deg)])
            self._laplacian_packed = torch.sparse_coo_tensor(
                idx, vals, (V, V), check_invariants=False
            ).coalesce()
        return self._laplacian_packed

    def get_bounding_boxes(self) -> torch.Tensor:
        """Tensor (N, 3, 2) of per-mesh axis-aligned boxes.

        ``[:, :, 0]`` holds the min and ``[:, :, 1]`` the max coordinates; meshes without
        vertices get zeros.
        """
        verts = self.verts_packed()
        idx = self.verts_packed_to_mesh_idx().unsqueeze(1).expand(-1, 3)
        base = verts.new_zeros((self._N, 3))
        lo = base.scatter_reduce(0, idx, verts, "amin", include_self=False)
        hi = base.scatter_reduce(0, idx, verts, "amax", include_self=False)
        return torch.stack([lo, hi], 2)

    # ------------------------------------------------------------------ vertex updates
    def _replace_verts_packed(self, new_packed: torch.Tensor) -> None:
        """Swap in new vertex positions (same topology) and drop every geometric cache."""
        self._verts_packed = new_packed
        self._verts_list = list(new_packed.split(self._num_verts_list, 0))
        self._verts_padded = None
        for name in _GEOMETRY_CACHE:
            setattr(self, name, None)

    def offset_verts_(self, vert_offsets_packed: torch.Tensor) -> "Meshes":
        """Add offsets to the vertices in place.

        Args:
            vert_offsets_packed: tensor (sum(V_i), 3) of per-vertex offsets, or (3,) added to
                every vertex.

        Returns:
            self.
        """
        verts = self.verts_packed()
        if not torch.is_tensor(vert_offsets_packed):
            raise ValueError("vert_offsets_packed must be a tensor of shape (sum(V_i), 3) or (3,)")
        translation = vert_offsets_packed.shape == (3,)
        if not translation and vert_offsets_packed.shape != verts.shape:
            raise ValueError(
                f"vert_offsets_packed must have shape {tuple(verts.shape)} or (3,), "
                f"got {tuple(vert_offsets_packed.shape)}"
            )
        keep = {n: getattr(self, n) for n in _GEOMETRY_CACHE} if translation else {}
        self._replace_verts_packed(verts + vert_offsets_packed)
        for name, value in keep.items():  # a translation changes no normal or area
            setattr(self, name, value)
        return self

    def offset_verts(self, vert_offsets_packed: torch.Tensor) -> "Meshes":
        """Out-of-place ``offset_verts_``: returns a new Meshes with offset vertices."""
        return self._same_topology(self.clone()).offset_verts_(vert_offsets_packed)

    def _same_topology(self, other: "Meshes") -> "Meshes":
        # A copy of self on the same device keeps the adjacency matrices (constants of the
        # topology, built without autograd), instead of building them again.
        other._adjacency_packed = dict(self._adjacency_packed)
        return other

    def _apply(self, fn):
        # Copies (clone, detach, to) start without adjacency matrices: they are rebuilt on
        # demand on the copy's device, and a dict would otherwise be shared between the two.
        new = super()._apply(fn)
        new._adjacency_packed = {}
        return new

    def scale_verts_(self, scale: float | torch.Tensor) -> "Meshes":
        """Multiply the vertices in place by a scalar or a per-mesh factor.

        Args:
            scale: a Python number, a 0-d tensor, or a tensor (N,) with one factor per mesh.

        Returns:
            self.
        """
        verts = self.verts_packed()
        if not torch.is_tensor(scale):
            factor = float(scale)
        elif scale.ndim == 0:
            factor = scale
        elif scale.shape == (self._N,):
            factor = scale.to(verts.device)[self.verts_packed_to_mesh_idx()].unsqueeze(1)
        else:
            raise ValueError(
                f"scale must be a number or a tensor of shape ({self._N},), "
                f"got {tuple(scale.shape)}"
            )
        self._replace_verts_packed(verts * factor)
        return self

    def scale_verts(self, scale: float | torch.Tensor) -> "Meshes":
        """Out-of-place ``scale_verts_``: returns a new Meshes with scaled vertices."""
        return self._same_topology(self.clone()).scale_verts_(scale)

    def update_padded(self, new_verts_padded: torch.Tensor) -> "Meshes":
        """Return a new Meshes with the same faces and vertices ``new_verts_padded``.

        Topology caches (faces packed, index maps, edges, laplacian) are shared with ``self``;
        geometry caches are recomputed from the new vertices on demand.

        Args:
            new_verts_padded: tensor (N, max(V_i), 3); values in padded rows are ignored.

        Returns:
            the new Meshes; gradients flow to ``new_verts_padded``.
        """
        expected = (self._N, self._V, 3)
        if not torch.is_tensor(new_verts_padded) or tuple(new_verts_padded.shape) != expected:
            shape = tuple(getattr(new_verts_padded, "shape", ()))
            raise ValueError(f"new_verts_padded must have shape {expected}, got {shape}")
        new = self.__class__.__new__(self.__class__)
        new.__dict__.update(self.__dict__)
        new._verts_list = None
        new._verts_packed = None
        new._verts_padded = new_verts_padded
        new._faces_padded = self.faces_padded()
        for name in _GEOMETRY_CACHE:
            setattr(new, name, None)
        new._adjacency_packed = dict(self._adjacency_packed)
        return new

    # ------------------------------------------------------------------ batch operations
    def extend(self, N: int) -> "Meshes":
        """Return a batch of len(self) * N meshes: each mesh repeated N times in a row (cloned)."""
        if not isinstance(N, int) or N <= 0:
            raise ValueError(f"N must be a positive int, got {N!r}")
        verts = [v.clone() for v in self.verts_list() for _ in range(N)]
        faces = [f.clone() for f in self.faces_list() for _ in range(N)]
        return self.__class__(verts=verts, faces=faces)

    def submeshes(
        self,
        face_indices: Sequence[Sequence[torch.Tensor] | torch.Tensor] | torch.Tensor,
    ) -> "Meshes":
        """Return the batch of submeshes made of the selected faces of each mesh.

        Submesh k of mesh n keeps the faces ``face_indices[n][k]`` of mesh n and only the
        vertices those faces use, in increasing order of their index in mesh n; faces are
        re-indexed accordingly. Gradients flow from the submeshes' vertices back to ``self``.

        Args:
            face_indices: one entry per mesh of the batch, in one of PyTorch3D's forms:

                - a list of N lists; entry n lists the submeshes of mesh n (possibly none), each
                  a 1-D int64 tensor of face indices into ``faces_list()[n]``;
                - a list of N int64 tensors; entry n is (S_n, K_n), one row per submesh (an
                  empty tensor for none);
                - an int64 tensor (N, S, K): S submeshes of K faces for every mesh.

        Returns:
            Meshes of ``sum_n len(face_indices[n])`` submeshes, those of mesh 0 first.

        Raises:
            ValueError: if there is not one entry per mesh, or an entry is not a list of 1-D
                integer tensors / a 2-D integer tensor, or a face index is out of range.
        """
        sub_verts, sub_faces = select_submeshes(self.verts_list(), self.faces_list(), face_indices)
        return self.__class__(verts=sub_verts, faces=sub_faces)


def join_meshes_as_batch(meshes: Sequence[Meshes], include_textures: bool = True) -> Meshes:
    """Concatenate a list of Meshes batches into one batch (sum of their lengths).

    Args:
        meshes: list of Meshes, all on the same device.
        include_textures: accepted for compatibility; ignored (no textures).

    Returns:
        Meshes whose verts/faces lists are those of the inputs, in order.
    """
    if isinstance(meshes, Meshes) or not isinstance(meshes, (list, tuple)):
        raise ValueError("meshes must be a list of Meshes (not a single Meshes)")
    if not all(isinstance(m, Meshes) for m in meshes):
        raise ValueError("meshes must be a list of Meshes")
    if len({m.device for m in meshes}) > 1:
        raise ValueError("all meshes must be on the same device")
    verts = [v for m in meshes for v in m.verts_list()]
    faces = [f for m in meshes for f in m.faces_list()]
    return Meshes(verts=verts, faces=faces)


def join_meshes_as_scene(
    meshes: Meshes | Sequence[Meshes], include_textures: bool = True
) -> Meshes:
    """Merge all meshes (of one batch, or of a list of batches) into a single mesh.

    Args:
        meshes: a Meshes, or a list of Meshes (joined as a batch first).
        include_textures: accepted for compatibility; ignored (no textures).

    Returns:
        Meshes of length 1 whose verts are ``verts_packed()`` and faces ``faces_packed()``.
    """
    if not isinstance(include_textures, (bool, int)):
        # join_meshes_as_scene(mesh1, mesh2) would otherwise drop mesh2 without a word.
        raise ValueError(
            f"include_textures must be a bool, got {type(include_textures).__name__}; "
            "pass several Meshes as one list: join_meshes_as_scene([mesh1, mesh2])"
        )
    if isinstance(meshes, (list, tuple)):
        meshes = join_meshes_as_batch(meshes)
    if not isinstance(meshes, Meshes):
        raise ValueError("meshes must be a Meshes or a list of Meshes")
    if len(meshes) == 1:
        return meshes
    return Meshes(verts=[meshes.verts_packed()], faces=[meshes.faces_packed()])
