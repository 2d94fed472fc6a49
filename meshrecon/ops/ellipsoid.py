"""Pixel2Mesh's initial shape: a closed ellipsoid mesh with 156 vertices and 308 faces.

Pixel2Mesh deforms a fixed ellipsoid with 156 vertices / 308 faces, unpooled (each edge split at
its midpoint) to 618 / 1232 and then 2466 / 4928. Its code ships that mesh as a file; here it is
built in code as a latitude-longitude sphere with ``2 + rings * segments`` vertices, which for
the default 11 rings of 14 segments gives the same counts, and, being a closed triangulated
sphere, the same counts at every subdivision level (V' = V + E, F' = 4F).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from meshrecon.structures import Meshes

from .subdivide_meshes import SubdivideMeshes

__all__ = ["ellipsoid", "PIXEL2MESH_AXES", "PIXEL2MESH_CENTER"]

# Semi-axes and centre of the bounding box of Pixel2Mesh's released init1.obj (semi-axes about
# 0.276 / 0.194 / 0.199, centred 0.80 in front of the camera), moved into meshrecon's camera
# frame (+X left, +Y up, +Z forward). The paper's "0.2 / 0.2 / 0.4" does not match that file.
PIXEL2MESH_AXES = (0.276, 0.194, 0.199)
PIXEL2MESH_CENTER = (0.0, 0.0, 0.8)


def _lat_long_sphere(rings: int, segments: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-sphere mesh (float64 verts, int64 faces) with poles on the y axis.

    Rings are equally spaced in latitude; every other ring is turned by half a segment so the
    bands are made of near-isosceles triangles instead of long diagonals.
    """
    ring = torch.arange(1, rings + 1, dtype=torch.float64)
    polar = math.pi * ring / (rings + 1)  # angle from +y, (rings,)
    twist = 0.5 * (ring % 2)
    azimuth = (
        2 * math.pi * (torch.arange(segments, dtype=torch.float64) + twist[:, None]) / segments
    )  # (rings, segments)
    sin_p = torch.sin(polar)[:, None]
    ring_verts = torch.stack(
        (
            sin_p * torch.cos(azimuth),
            torch.cos(polar)[:, None].expand(-1, segments),
            sin_p * torch.sin(azimuth),
        ),
        dim=-1,
    ).reshape(-1, 3)
    verts = torch.cat(
        (
            torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64),
            ring_verts,
            torch.tensor([[0.0, -1.0, 0.0]], dtype=torch.float64),
        )
    )

    j = torch.arange(segments)
    nxt = (j + 1) % segments
    south = 1 + rings * segments
    faces = [
        torch.stack((torch.zeros_like(j), 1 + nxt, 1 + j), 1),  # north cap
        torch.stack(
            (south + 0 * j, 1 + (rings - 1) * segments + j, 1 + (rings - 1) * segments + nxt), 1
        ),
    ]
    for i in range(rings - 1):
        a = 1 + i * segments  # upper ring
        b = a + segments  # lower ring
        if (i + 1) % 2 == 0:
            # Upper ring untwisted, lower ring twisted: b_j sits between a_j and a_{j+1}.
            faces.append(torch.stack((a + j, a + nxt, b + j), 1))
            faces.append(torch.stack((a + nxt, b + nxt, b + j), 1))
        else:
            # Upper ring twisted, lower untwisted: a_j sits between b_j and b_{j+1}.
            faces.append(torch.stack((a + j, b + nxt, b + j), 1))
            faces.append(torch.stack((a + j, a + nxt, b + nxt), 1))
    return verts, torch.cat(faces)


def _as_triple(value: Sequence[float] | torch.Tensor, name: str) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float64)
    if t.shape != (3,) or not torch.isfinite(t).all():
        raise ValueError(f"{name} must be 3 finite numbers (x, y, z), got {value!r}")
    return t


def ellipsoid(
    level: int = 0,
    axes: Sequence[float] | torch.Tensor = PIXEL2MESH_AXES,
    center: Sequence[float] | torch.Tensor = PIXEL2MESH_CENTER,
    *,
    rings: int = 11,
    segments: int = 14,
    device: torch.device | str | None = None,
) -> Meshes:
    """A closed, outward-oriented ellipsoid mesh, by default Pixel2Mesh's initial shape.

    The base mesh (level 0) is a latitude-longitude sphere with its poles on the y axis:
    ``2 + rings * segments`` vertices (north pole, the rings from north to south, south pole)
    and ``2 * rings * segments`` faces. Each further level splits every triangle into four with
    :class:`SubdivideMeshes` (same vertex and face order) and moves the new vertices onto the
    ellipsoid, as :func:`ico_sphere` does for the sphere. With the defaults, levels 0, 1, 2
    have 156 / 618 / 2466 vertices and 308 / 1232 / 4928 faces, Pixel2Mesh's three stages.

    Placement follows meshrecon's camera frame (+X left, +Y up, +Z forward, camera at the
    origin): the surface is ``((x - cx) / ax)^2 + ((y - cy) / ay)^2 + ((z - cz) / az)^2 = 1``.
    The defaults reproduce the bounding box of Pixel2Mesh's released ``init1.obj``: semi-axes
    (0.276, 0.194, 0.199) centred 0.8 in front of the camera. (Pixel2Mesh's paper quotes axes
    0.2 / 0.2 / 0.4 at 0.8 m, which its released mesh does not match.) Pass ``axes=(1, 1, 1)``,
    ``center=(0, 0, 0)`` for a unit sphere.

    Args:
        level: number of subdivisions, >= 0.
        axes: the three semi-axis lengths (x, y, z), all > 0.
        center: the centre (x, y, z).
        rings: number of vertex rings between the poles, >= 1.
        segments: number of vertices per ring, >= 3.
        device: device of the output (default: CPU).

    Returns:
        :class:`Meshes` with one mesh: verts (V, 3) float32, faces (F, 3) int64, faces wound
        counter-clockwise seen from outside.
    """
    if isinstance(level, bool) or not isinstance(level, int) or level < 0:
        raise ValueError(f"level must be an integer >= 0, got {level!r}")
    if isinstance(rings, bool) or not isinstance(rings, int) or rings < 1:
        raise ValueError(f"rings must be an integer >= 1, got {rings!r}")
    if isinstance(segments, bool) or not isinstance(segments, int) or segments < 3:
        raise ValueError(f"segments must be an integer >= 3, got {segments!r}")
    axes_t = _as_triple(axes, "axes")
    if not (axes_t > 0).all():
        raise ValueError(f"axes must all be > 0, got {axes!r}")
    center_t = _as_triple(center, "center")
    device = torch.device("cpu") if device is None else torch.device(device)

    verts, faces = _lat_long_sphere(rings, segments)
    subdivide = SubdivideMeshes()
    for _ in range(level):
        mesh = subdivide(Meshes(verts=[verts], faces=[faces]))
        verts = mesh.verts_list()[0]
        verts = verts / verts.norm(dim=1, keepdim=True)
        faces = mesh.faces_list()[0]
    verts = (verts * axes_t + center_t).to(device=device, dtype=torch.float32)
    return Meshes(verts=[verts], faces=[faces.to(device)])
