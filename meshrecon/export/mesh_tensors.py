"""The tensor form of mesh outputs in exported programs, and the meshes used while tracing.

An exported program returns plain tensors, so a batch of N predicted meshes leaves it in the
**padded form** (PyTorch3D's padded views plus the per-mesh counts):

=====================  ================  ===================================================
key                    shape / dtype     meaning
=====================  ================  ===================================================
``mesh_verts``         (N, V_max, 3) f32 vertex positions, camera frame; rows past
                                         ``mesh_num_verts[n]`` are 0
``mesh_faces``         (N, F_max, 3) i64 vertex indices local to mesh n; rows past
                                         ``mesh_num_faces[n]`` are -1
``mesh_num_verts``     (N,) i64          V_n
``mesh_num_faces``     (N,) i64          F_n
=====================  ================  ===================================================

Mesh n is ``mesh_verts[n, :V_n]``, ``mesh_faces[n, :F_n]``; :func:`meshes_from_tensors` turns
the four tensors back into a :class:`~meshrecon.structures.Meshes`, and a user without
meshrecon slices them as just said. Models whose meshes share one topology (Sphere-Init,
Pixel2Mesh) have ``V_max = V_n`` and ``F_max = F_n`` for every n.

:class:`UniformMeshes` and :class:`PackedMeshes` stand in for ``Meshes`` inside the exported
programs: they offer the few methods the mesh heads call (``verts_packed``, ``verts_padded``,
``verts_padded_to_packed_idx``, ``edges_packed``, ``offset_verts``, ``update_padded``) as pure
tensor code, without the Python lists, ``.tolist()`` splits and validity checks on tensor values
that make ``Meshes`` untraceable with a symbolic batch size. They compute the same values as
``Meshes`` (same vertex, face and edge order), so the heads' own code runs on them unchanged.
"""

from __future__ import annotations

import torch

from meshrecon.ops import SubdivideMeshes
from meshrecon.structures import Meshes
from meshrecon.structures.utils import packed_to_item_idx

__all__ = [
    "MESH_KEYS",
    "MeshTopology",
    "PackedMeshes",
    "UniformMeshes",
    "meshes_from_tensors",
    "meshes_to_tensors",
]

MESH_KEYS = ("mesh_verts", "mesh_faces", "mesh_num_verts", "mesh_num_faces")


def meshes_to_tensors(meshes: Meshes) -> dict[str, torch.Tensor]:
    """Return the padded form (see the module docstring) of a :class:`Meshes` batch."""
    if not isinstance(meshes, Meshes):
        raise ValueError(f"meshes must be a Meshes, got {type(meshes).__name__}")
    return {
        "mesh_verts": meshes.verts_padded(),
        "mesh_faces": meshes.faces_padded(),
        "mesh_num_verts": meshes.num_verts_per_mesh(),
        "mesh_num_faces": meshes.num_faces_per_mesh(),
    }


def meshes_from_tensors(
    mesh_verts: torch.Tensor,
    mesh_faces: torch.Tensor,
    mesh_num_verts: torch.Tensor,
    mesh_num_faces: torch.Tensor,
) -> Meshes:
    """Return the :class:`Meshes` of an exported program's padded mesh outputs.

    Args:
        mesh_verts: (N, V_max, 3) vertices, mesh n's first ``mesh_num_verts[n]`` rows valid.
        mesh_faces: (N, F_max, 3) local vertex indices, the first ``mesh_num_faces[n]`` valid.
        mesh_num_verts, mesh_num_faces: (N,) counts.

    Raises:
        ValueError: on shapes that do not fit together or counts beyond the padded size.
    """
    if mesh_verts.dim() != 3 or mesh_verts.shape[-1] != 3:
        raise ValueError(f"mesh_verts must be (N, V_max, 3), got {tuple(mesh_verts.shape)}")
    if mesh_faces.dim() != 3 or mesh_faces.shape[-1] != 3:
        raise ValueError(f"mesh_faces must be (N, F_max, 3), got {tuple(mesh_faces.shape)}")
    N = mesh_verts.shape[0]
    for name, t, limit in (
        ("mesh_num_verts", mesh_num_verts, mesh_verts.shape[1]),
        ("mesh_num_faces", mesh_num_faces, mesh_faces.shape[1]),
    ):
        if tuple(t.shape) != (N,) or mesh_faces.shape[0] != N:
            raise ValueError(f"{name} must have shape ({N},), got {tuple(t.shape)}")
        if N and (int(t.min()) < 0 or int(t.max()) > limit):
            raise ValueError(f"{name} must lie in [0, {limit}], got {t.tolist()}")
    nv, nf = mesh_num_verts.tolist(), mesh_num_faces.tolist()
    return Meshes(
        verts=[mesh_verts[n, : nv[n]] for n in range(N)],
        faces=[mesh_faces[n, : nf[n]].long() for n in range(N)],
    )


def _edges_of_faces(faces: torch.Tensor, num_verts: int | torch.SymInt) -> torch.Tensor:
    """Unique undirected edges (E, 2) of (F, 3) faces, rows (v0 < v1), sorted: as ``Meshes``."""
    v0, v1, v2 = faces.unbind(1)
    edges = torch.stack([torch.cat([v1, v2, v0]), torch.cat([v2, v0, v1])], 1).sort(dim=1).values
    keys = torch.unique(edges[:, 0] * num_verts + edges[:, 1])
    first = keys // num_verts
    # Not keys % num_verts: the ONNX exporter has no remainder by a symbolic size.
    return torch.stack([first, keys - first * num_verts], 1)


class MeshTopology(torch.nn.Module):
    """The faces and edges of a template mesh and of its successive 1-to-4 subdivisions.

    Built once, eagerly, from a one-mesh :class:`Meshes`; the tensors are buffers, so they
    become constants of the exported program. Level ``l + 1`` is what
    :class:`~meshrecon.ops.SubdivideMeshes` makes of level ``l``: the old vertices, then one per
    edge of level ``l`` (in ``edges_packed()`` order).

    Args:
        template: one mesh.
        num_subdivisions: how many subdivided levels to prepare.
    """

    def __init__(self, template: Meshes, num_subdivisions: int = 0) -> None:
        super().__init__()
        if len(template) != 1:
            raise ValueError(f"template must hold one mesh, got {len(template)}")
        self.num_levels = int(num_subdivisions) + 1
        self.num_verts: list[int] = []
        mesh = template
        for level in range(self.num_levels):
            if level > 0:
                mesh = SubdivideMeshes()(mesh)
            self.register_buffer(f"faces_{level}", mesh.faces_packed().clone(), persistent=False)
            self.register_buffer(f"edges_{level}", mesh.edges_packed().clone(), persistent=False)
            self.num_verts.append(int(mesh.num_verts_per_mesh()[0]))

    def faces(self, level: int) -> torch.Tensor:
        """(F_l, 3) faces of level ``level``."""
        return getattr(self, f"faces_{level}")

    def edges(self, level: int) -> torch.Tensor:
        """(E_l, 2) edges of level ``level``, sorted as ``Meshes.edges_packed()``."""
        return getattr(self, f"edges_{level}")


class UniformMeshes:
    """N meshes that share one topology (a level of a :class:`MeshTopology`), for tracing.

    The padded and packed views coincide: ``verts_packed()`` is ``verts.reshape(-1, 3)``.

    Args:
        verts: (N, V, 3) vertices.
        topology: the shared faces / edges.
        level: which level of ``topology`` these meshes have.
    """

    def __init__(self, verts: torch.Tensor, topology: MeshTopology, level: int = 0) -> None:
        if verts.dim() != 3 or verts.shape[1] != topology.num_verts[level]:
            raise ValueError(
                f"verts must be (N, {topology.num_verts[level]}, 3), got {tuple(verts.shape)}"
            )
        self.verts = verts
        self.topology = topology
        self.level = level

    def verts_padded(self) -> torch.Tensor:
        return self.verts

    def verts_packed(self) -> torch.Tensor:
        return self.verts.reshape(-1, 3)

    def verts_padded_to_packed_idx(self) -> torch.Tensor:
        return torch.arange(self.verts.shape[0] * self.verts.shape[1], device=self.verts.device)

    def edges_packed(self) -> torch.Tensor:
        N, V = self.verts.shape[:2]
        offsets = torch.arange(N, device=self.verts.device).view(N, 1, 1) * V
        return (self.topology.edges(self.level)[None] + offsets).reshape(-1, 2)

    def offset_verts(self, vert_offsets_packed: torch.Tensor) -> UniformMeshes:
        return self.update_padded(self.verts + vert_offsets_packed.view(self.verts.shape))

    def update_padded(self, new_verts_padded: torch.Tensor) -> UniformMeshes:
        return UniformMeshes(new_verts_padded, self.topology, self.level)

    def subdivide(self, feats: torch.Tensor | None = None):
        """``SubdivideMeshes()(meshes, feats)`` on the shared topology: midpoints appended."""
        if self.level + 1 >= self.topology.num_levels:
            raise ValueError(f"the topology has no level {self.level + 1}")
        edges = self.topology.edges(self.level)
        new = torch.cat([self.verts, _midpoints(self.verts, edges)], 1)
        meshes = UniformMeshes(new, self.topology, self.level + 1)
        if feats is None:
            return meshes
        N, V = self.verts.shape[:2]
        padded = feats.view(N, V, feats.shape[-1])
        new_feats = torch.cat([padded, _midpoints(padded, edges)], 1)
        return meshes, new_feats.reshape(-1, feats.shape[-1])

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """The padded form (module docstring) of these meshes."""
        N, V = self.verts.shape[:2]
        faces = self.topology.faces(self.level)
        device = self.verts.device
        return {
            "mesh_verts": self.verts,
            "mesh_faces": faces[None].expand(N, -1, -1).clone(),
            "mesh_num_verts": torch.full((N,), V, dtype=torch.int64, device=device),
            "mesh_num_faces": torch.full((N,), faces.shape[0], dtype=torch.int64, device=device),
        }


def _midpoints(values: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    return (values[:, edges[:, 0]] + values[:, edges[:, 1]]) * 0.5


class PackedMeshes:
    """N meshes of data-dependent sizes (cubified voxels), packed, for tracing.

    Every size here may be an unbacked symbol of ``torch.export``: ``V_max`` comes from
    ``num_verts.max().item()``. The caller states what it knows (``min_verts`` etc.) so that the
    tracer can decide the emptiness checks of the ops downstream.

    Args:
        verts: (sum V_n, 3) packed vertices.
        faces: (sum F_n, 3) faces indexing each mesh's own vertices (as ``cubify_packed``).
        num_verts, num_faces: (N,) counts.
        min_verts, min_faces, min_edges: lower bounds of every mesh's counts (a cube: 8, 12, 18).
    """

    def __init__(
        self,
        verts: torch.Tensor,
        faces: torch.Tensor,
        num_verts: torch.Tensor,
        num_faces: torch.Tensor,
        *,
        min_verts: int = 1,
        min_faces: int = 1,
        min_edges: int = 1,
    ) -> None:
        self._verts = verts
        self.num_verts = num_verts
        self.num_faces = num_faces
        self.faces_local = faces
        torch._check(verts.shape[0] >= min_verts)
        torch._check(faces.shape[0] >= min_faces)
        device = verts.device
        self.v_max = num_verts.max().item()
        self.f_max = num_faces.max().item()
        torch._check(self.v_max >= min_verts)
        torch._check(self.f_max >= min_faces)
        v_first = torch.cumsum(num_verts, 0) - num_verts
        f_owner = packed_to_item_idx(num_faces, faces.shape[0])
        self.faces_global = faces + v_first[f_owner][:, None]
        self.face_owner = f_owner
        self.face_local_idx = (
            torch.arange(faces.shape[0], device=device)
            - (torch.cumsum(num_faces, 0) - num_faces)[f_owner]
        )
        owner = packed_to_item_idx(num_verts, verts.shape[0])
        local = torch.arange(verts.shape[0], device=device) - v_first[owner]
        self.vert_owner = owner
        self._padded_idx = owner * self.v_max + local
        # The refinement stages all need the edges; one unique() for the whole program.
        self._edges = _edges_of_faces(self.faces_global, verts.shape[0])
        torch._check(self._edges.shape[0] >= min_edges)

    def _with_verts(self, verts: torch.Tensor) -> PackedMeshes:
        new = PackedMeshes.__new__(PackedMeshes)
        new.__dict__.update(self.__dict__)
        new._verts = verts
        return new

    def verts_packed(self) -> torch.Tensor:
        return self._verts

    def verts_padded_to_packed_idx(self) -> torch.Tensor:
        return self._padded_idx

    def verts_padded(self) -> torch.Tensor:
        N = self.num_verts.shape[0]
        flat = self._verts.new_zeros((N * self.v_max, 3))
        return flat.index_copy(0, self._padded_idx, self._verts).view(N, self.v_max, 3)

    def edges_packed(self) -> torch.Tensor:
        return self._edges

    def offset_verts(self, vert_offsets_packed: torch.Tensor) -> PackedMeshes:
        return self._with_verts(self._verts + vert_offsets_packed)

    def update_padded(self, new_verts_padded: torch.Tensor) -> PackedMeshes:
        return self._with_verts(new_verts_padded.reshape(-1, 3)[self._padded_idx])

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """The padded form (module docstring) of these meshes."""
        N = self.num_faces.shape[0]
        faces = self.faces_local.new_full((N * self.f_max, 3), -1)
        idx = self.face_owner * self.f_max + self.face_local_idx
        faces = faces.index_copy(0, idx, self.faces_local).view(N, self.f_max, 3)
        return {
            "mesh_verts": self.verts_padded(),
            "mesh_faces": faces,
            "mesh_num_verts": self.num_verts,
            "mesh_num_faces": self.num_faces,
        }
