"""Unit icospheres, identical (vertices, faces and their order) to PyTorch3D's ``ico_sphere``."""

from __future__ import annotations

import torch

from meshrecon.structures import Meshes

from .subdivide_meshes import SubdivideMeshes

__all__ = ["ico_sphere"]

# The level-0 icosahedron, rounded to 4 decimals as in PyTorch3D (so every level matches its
# output bit for bit, including the not-quite-unit norms of these 12 vertices).
_A, _B = 0.5257, 0.8507
_ICO_VERTS0 = (
    (-_A, _B, 0.0),
    (_A, _B, 0.0),
    (-_A, -_B, 0.0),
    (_A, -_B, 0.0),
    (0.0, -_A, _B),
    (0.0, _A, _B),
    (0.0, -_A, -_B),
    (0.0, _A, -_B),
    (_B, 0.0, -_A),
    (_B, 0.0, _A),
    (-_B, 0.0, -_A),
    (-_B, 0.0, _A),
)
# Outward-facing (counter-clockwise seen from outside) triangles.
_ICO_FACES0 = (
    (0, 11, 5),
    (0, 5, 1),
    (0, 1, 7),
    (0, 7, 10),
    (0, 10, 11),
    (1, 5, 9),
    (5, 11, 4),
    (11, 10, 2),
    (10, 7, 6),
    (7, 1, 8),
    (3, 9, 4),
    (3, 4, 2),
    (3, 2, 6),
    (3, 6, 8),
    (3, 8, 9),
    (4, 9, 5),
    (2, 4, 11),
    (6, 2, 10),
    (8, 6, 7),
    (9, 8, 1),
)

# Levels already built, on the CPU: each level costs a full subdivision chain otherwise, and
# sphere-initialized models ask for the same sphere on every forward pass.
_CACHE: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}


def _ico_verts_faces(level: int) -> tuple[torch.Tensor, torch.Tensor]:
    if level not in _CACHE:
        if level == 0:
            verts = torch.tensor(_ICO_VERTS0, dtype=torch.float32)
            faces = torch.tensor(_ICO_FACES0, dtype=torch.int64)
        else:
            verts, faces = _ico_verts_faces(level - 1)
            mesh = SubdivideMeshes()(Meshes(verts=[verts], faces=[faces]))
            verts = mesh.verts_list()[0]
            verts = verts / verts.norm(p=2, dim=1, keepdim=True)
            faces = mesh.faces_list()[0]
        _CACHE[level] = (verts, faces)
    return _CACHE[level]


def ico_sphere(level: int = 0, device: torch.device | str | None = None) -> Meshes:
    """A unit icosphere: the icosahedron subdivided ``level`` times, projected onto the sphere.

    Each level splits every triangle into four with :class:`SubdivideMeshes` and moves the new
    vertices onto the unit sphere. Level L has ``10 * 4**L + 2`` vertices and ``20 * 4**L`` faces
    (12/20, 42/80, 162/320, 642/1280, 2562/5120, ...), all oriented outwards.

    Args:
        level: number of subdivisions, >= 0.
        device: device of the output (default: CPU).

    Returns:
        :class:`Meshes` with one mesh: verts (V, 3) float32, faces (F, 3) int64.
    """
    if isinstance(level, bool) or not isinstance(level, int) or level < 0:
        raise ValueError(f"level must be an integer >= 0, got {level!r}")
    device = torch.device("cpu") if device is None else torch.device(device)
    verts, faces = _ico_verts_faces(level)
    return Meshes(verts=[verts.to(device, copy=True)], faces=[faces.to(device, copy=True)])
