r"""Midpoint 1-to-4 triangle subdivision, with PyTorch3D's ``SubdivideMeshes``.

Every edge gets a new vertex at its midpoint and every triangle is split into four. The ordering of
the output is PyTorch3D's, so that indices computed by one library are valid in the other: in
each mesh the original vertices come first, then one new vertex per edge in ``edges_packed()``
order; the faces of each mesh are the four blocks f0, f1, f2, f3 below, each in the order of the
original faces::

               v0
               /\
              /f0\
          m1 /____\ m2         f0 = (v0, m2, m1)     where m_k is the midpoint of the
            /\ f3 /\           f1 = (v1, m0, m2)     edge opposite v_k
           /f2\  /f1\          f2 = (v2, m1, m0)
          /____\/____\         f3 = (m0, m1, m2)
        v2      m0     v1

The four children keep the winding of their parent, so consistently oriented meshes stay so.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from meshrecon.structures import Meshes

__all__ = ["SubdivideMeshes"]


def _split_faces(
    faces: torch.Tensor, face_edges: torch.Tensor, vert_map: torch.Tensor, edge_map: torch.Tensor
) -> torch.Tensor:
    """The four children (4, F, 3) of each face, in the output vertex numbering.

    ``faces`` (F, 3) and ``face_edges`` (F, 3) (edge opposite each corner) are renumbered with
    ``vert_map`` and ``edge_map``, the new index of each old vertex and of each edge's midpoint.
    """
    v = vert_map[faces]
    m = edge_map[face_edges]
    return torch.stack(
        (
            torch.stack((v[:, 0], m[:, 2], m[:, 1]), 1),
            torch.stack((v[:, 1], m[:, 0], m[:, 2]), 1),
            torch.stack((v[:, 2], m[:, 1], m[:, 0]), 1),
            m,
        ),
        0,
    )


def _midpoints(values: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (..., V, C) over the two ends of each edge (E, 2): (..., E, C)."""
    return (values[..., edges[:, 0], :] + values[..., edges[:, 1], :]) * 0.5


class SubdivideMeshes(nn.Module):
    """Subdivide each triangle into four, adding a vertex at the midpoint of every edge.

    Per-vertex features can be subdivided along with the vertices: the feature of a new vertex is
    the mean of the features at the two ends of its edge. The operation is differentiable with
    respect to the vertex positions and features.

    If ``meshes`` is given at construction, the subdivided topology of its first mesh is computed
    once and stored; ``forward`` then takes the fast homogeneous path and every mesh passed to it
    must have that topology (same faces). Otherwise each call handles a heterogeneous batch.

    Args:
        meshes: optional :class:`Meshes` whose first mesh is the topology template.
    """

    def __init__(self, meshes: Meshes | None = None) -> None:
        super().__init__()
        self.precomputed = False
        self._N = -1
        if meshes is not None:
            if not isinstance(meshes, Meshes) or len(meshes) == 0:
                raise ValueError("meshes must be a non-empty Meshes object or None")
            template = meshes[0]
            with torch.no_grad():
                self.register_buffer("_subdivided_faces", self.subdivide_faces(template))
                # Not persistent: state dicts stay identical to PyTorch3D's module.
                self.register_buffer(
                    "_template_edges", template.edges_packed().clone(), persistent=False
                )
            self._template_num_verts = int(template.num_verts_per_mesh()[0])
            self._template_num_faces = int(template.num_faces_per_mesh()[0])
            self.precomputed = True

    def subdivide_faces(self, meshes: Meshes) -> torch.Tensor:
        """Children of every packed face, in the numbering of the concatenated vertices.

        The numbering is the one of ``cat([verts_packed, midpoints of edges_packed])``: a new
        vertex for packed edge ``e`` has index ``sum(V_n) + e``.

        Args:
            meshes: a :class:`Meshes` batch.

        Returns:
            (4 * sum(F_n), 3) int64 faces: the f0 children of all packed faces, then all f1, all
            f2 and all f3 (see the module docstring).
        """
        with torch.no_grad():
            faces = meshes.faces_packed()
            num_verts = meshes.verts_packed().shape[0]
            vert_map = torch.arange(num_verts, device=faces.device)
            edge_map = torch.arange(meshes.edges_packed().shape[0], device=faces.device)
            children = _split_faces(
                faces, meshes.faces_packed_to_edges_packed(), vert_map, edge_map + num_verts
            )
        return children.reshape(-1, 3)

    def forward(
        self, meshes: Meshes, feats: torch.Tensor | None = None
    ) -> Meshes | tuple[Meshes, torch.Tensor]:
        """Subdivide a batch of meshes and, optionally, per-vertex features.

        Args:
            meshes: :class:`Meshes` batch of N meshes.
            feats: optional per-vertex features, packed (sum(V_n), C), parallel to
                ``meshes.verts_packed()``; on the homogeneous path also (N, V, C).

        Returns:
            The subdivided :class:`Meshes`; when ``feats`` is given, the tuple
            ``(new_meshes, new_feats)`` with ``new_feats`` parallel to the new vertices:
            packed (sum(V_n + E_n), C), or (N, V + E, C) if ``feats`` was (N, V, C).
        """
        if not isinstance(meshes, Meshes):
            raise ValueError(f"meshes must be a Meshes object, got {type(meshes).__name__}")
        if torch.is_tensor(feats) and feats.device != meshes.device:
            raise ValueError(f"feats is on {feats.device} but meshes on {meshes.device}")
        self._N = len(meshes)
        if self.precomputed:
            return self.subdivide_homogeneous(meshes, feats)
        return self.subdivide_heterogenerous(meshes, feats)

    def subdivide_homogeneous(
        self, meshes: Meshes, feats: torch.Tensor | None = None
    ) -> Meshes | tuple[Meshes, torch.Tensor]:
        """Subdivide meshes that all share the template topology given at construction.

        Args:
            meshes: :class:`Meshes` of N meshes, each with the template's faces.
            feats: optional features, (N * V, C) packed or (N, V, C).

        Returns:
            As :meth:`forward`. Unlike PyTorch3D, which always returns (N, V + E, C) features on
            this path, packed input gives packed output, so both paths agree.
        """
        if not self.precomputed:
            raise ValueError("subdivide_homogeneous needs a template mesh given at construction")
        N = len(meshes)
        V, F = self._template_num_verts, self._template_num_faces
        if not (
            bool((meshes.num_verts_per_mesh() == V).all())
            and bool((meshes.num_faces_per_mesh() == F).all())
        ):
            raise ValueError(
                f"meshes must all have the template's {V} vertices and {F} faces; use "
                "SubdivideMeshes() without a template for heterogeneous batches"
            )
        edges = self._template_edges
        verts = meshes.verts_padded()  # (N, V, 3)
        new_verts = torch.cat((verts, _midpoints(verts, edges)), 1)
        new_faces = self._subdivided_faces.unsqueeze(0).expand(N, -1, -1)
        new_meshes = Meshes(verts=new_verts, faces=new_faces)
        if feats is None:
            return new_meshes
        if feats.dim() == 2 and feats.shape[0] == N * V:
            padded = feats.view(N, V, feats.shape[1])
        elif feats.dim() == 3 and tuple(feats.shape[:2]) == (N, V):
            padded = feats
        else:
            raise ValueError(
                f"feats must have shape ({N * V}, C) or ({N}, {V}, C), got {tuple(feats.shape)}"
            )
        new_feats = torch.cat((padded, _midpoints(padded, edges)), 1)
        if feats.dim() == 2:
            new_feats = new_feats.reshape(-1, feats.shape[1])
        return new_meshes, new_feats

    def subdivide_heterogenerous(
        self, meshes: Meshes, feats: torch.Tensor | None = None
    ) -> Meshes | tuple[Meshes, torch.Tensor]:
        """Subdivide a batch of meshes with arbitrary, different topologies.

        (The name keeps PyTorch3D's spelling; :meth:`subdivide_heterogeneous` is an alias.)

        Args:
            meshes: :class:`Meshes` of N meshes.
            feats: optional packed features (sum(V_n), C).

        Returns:
            As :meth:`forward`.
        """
        verts = meshes.verts_packed()
        if feats is not None and (feats.dim() != 2 or feats.shape[0] != verts.shape[0]):
            raise ValueError(
                f"feats must have shape ({verts.shape[0]}, C) parallel to verts_packed, "
                f"got {tuple(feats.shape)}"
            )
        device = verts.device
        N = len(meshes)
        with torch.no_grad():
            edges = meshes.edges_packed()
            num_verts = meshes.num_verts_per_mesh()
            num_faces = meshes.num_faces_per_mesh()
            num_edges = torch.bincount(meshes.edges_packed_to_mesh_idx(), minlength=N)
            v_owner = meshes.verts_packed_to_mesh_idx()
            e_owner = meshes.edges_packed_to_mesh_idx()
            f_owner = meshes.faces_packed_to_mesh_idx()
            e_first = torch.cumsum(num_edges, 0) - num_edges
            v_first = torch.cumsum(num_verts, 0) - num_verts
            f_first = torch.cumsum(num_faces, 0) - num_faces
            new_num_verts = num_verts + num_edges
            new_first = v_first + e_first
            # Old vertices keep their slot shifted by the midpoints of earlier meshes; midpoints
            # follow the old vertices of their own mesh.
            vert_map = torch.arange(verts.shape[0], device=device) + e_first[v_owner]
            edge_map = torch.arange(edges.shape[0], device=device) + (v_first + num_verts)[e_owner]
            children = _split_faces(
                meshes.faces_packed(), meshes.faces_packed_to_edges_packed(), vert_map, edge_map
            )  # (4, F, 3)
            F = children.shape[1]
            local = torch.arange(F, device=device) - f_first[f_owner]
            block = torch.arange(4, device=device).view(4, 1)
            rows = 4 * f_first[f_owner] + block * num_faces[f_owner] + local  # (4, F)
            new_faces = torch.empty((4 * F, 3), dtype=torch.int64, device=device)
            new_faces[rows.reshape(-1)] = children.reshape(-1, 3) - new_first[f_owner].repeat(
                4
            ).unsqueeze(1)
            slots = torch.cat((vert_map, edge_map))

        def reorder(values: torch.Tensor) -> torch.Tensor:
            both = torch.cat((values, _midpoints(values, edges)), 0)
            return both.new_empty(both.shape).index_copy(0, slots, both)

        new_verts = reorder(verts)
        sizes = new_num_verts.tolist()
        new_meshes = Meshes(
            verts=list(new_verts.split(sizes, 0)),
            faces=list(new_faces.split((4 * num_faces).tolist(), 0)),
        )
        if feats is None:
            return new_meshes
        return new_meshes, reorder(feats)

    subdivide_heterogeneous = subdivide_heterogenerous
