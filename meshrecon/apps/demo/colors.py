"""Vertex colours of a reconstructed mesh, sampled from the photo it was reconstructed from."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["NEUTRAL_GREY", "sample_vertex_colors", "vertex_normals"]

NEUTRAL_GREY = (0.5, 0.5, 0.5)
"""sRGB colour of vertices the photo does not show (facing away, hidden or off the image)."""

# The visibility test rasterizes the mesh at most this many pixels on the longer side.
_VISIBILITY_SIDE = 384


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted vertex normals (V, 3) of a mesh (``faces`` wound counter-clockwise seen
    from outside; zero for a vertex of no face)."""
    v0, v1, v2 = (verts[faces[:, k]] for k in range(3))
    face_n = torch.cross(v1 - v0, v2 - v0, dim=1)  # length: twice the area
    normals = torch.zeros_like(verts)
    for k in range(3):
        normals.index_add_(0, faces[:, k], face_n)
    return torch.nn.functional.normalize(normals, dim=1)


def _bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """(P, 3) colours of an (H, W, 3) image at (P, 2) pixel positions (centres at integers)."""
    H, W = image.shape[:2]
    u = np.clip(uv[:, 0], 0, W - 1)
    v = np.clip(uv[:, 1], 0, H - 1)
    u0, v0 = np.floor(u).astype(int), np.floor(v).astype(int)
    u1, v1 = np.minimum(u0 + 1, W - 1), np.minimum(v0 + 1, H - 1)
    a, b = (u - u0)[:, None], (v - v0)[:, None]
    img = image.astype(np.float64)
    top = img[v0, u0] * (1 - a) + img[v0, u1] * a
    bottom = img[v1, u0] * (1 - a) + img[v1, u1] * a
    return top * (1 - b) + bottom * b


def sample_vertex_colors(
    verts: torch.Tensor,
    faces: torch.Tensor,
    image: np.ndarray,
    K: Sequence[float],
    grey: Sequence[float] = NEUTRAL_GREY,
    occlusion: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Colour each vertex with the photo's pixel it projects to, where the photo sees it.

    A vertex takes the image's colour (bilinear) when it lies in front of the camera, projects
    inside the image, faces the camera (its normal points towards the camera centre) and, with
    ``occlusion``, is not hidden behind another part of the mesh (its depth matches the mesh's
    rasterized depth around its pixel, within 5 % of the mesh's extent); the others are ``grey``.

    Args:
        verts: (V, 3) camera-frame vertices (+X left, +Y up, +Z forward).
        faces: (F, 3) int64, counter-clockwise seen from outside.
        image: (H, W, 3) uint8 RGB, the picture ``K`` belongs to.
        K: ``[fx, fy, cx, cy]`` in ``image``'s pixels.
        grey: sRGB colour (0..1) of the vertices not seen.
        occlusion: test for self-occlusion with the rasterizer.

    Returns:
        colors (V, 3) float32 in [0, 1] (sRGB), seen (V,) bool.
    """
    from meshrecon.render import project_points

    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got {image.shape}")
    verts = verts.detach().cpu().double()
    faces = faces.detach().cpu().long()
    H, W = image.shape[:2]
    Kt = torch.tensor([float(k) for k in K], dtype=torch.float64)
    z = verts[:, 2]
    uv = project_points(verts, Kt)
    seen = (z > 1e-6) & torch.isfinite(uv).all(1)
    seen &= (uv[:, 0] >= -0.5) & (uv[:, 0] <= W - 0.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] <= H - 0.5)
    if faces.shape[0]:
        normals = vertex_normals(verts, faces)
        seen &= (normals * -verts).sum(1) > 0
        if occlusion and bool(seen.any()):
            seen &= _unoccluded(verts, faces, Kt, (H, W), uv)
    colors = torch.tensor([float(g) for g in grey], dtype=torch.float32).expand(len(verts), 3)
    colors = colors.clone()
    if bool(seen.any()):
        picked = _bilinear(image, uv[seen].numpy()) / 255.0
        colors[seen] = torch.from_numpy(picked).float().clamp(0, 1)
    return colors, seen


def _unoccluded(verts, faces, K, size, uv) -> torch.Tensor:
    """(V,) bool: each vertex's depth is the mesh's nearest surface at its pixel (rasterized at
    a reduced size)."""
    from meshrecon.render import render_meshes
    from meshrecon.structures import Meshes

    H, W = size
    s = min(1.0, _VISIBILITY_SIDE / max(H, W))
    h, w = max(1, round(H * s)), max(1, round(W * s))
    sx, sy = w / W, h / H
    k = torch.stack([K[0] * sx, K[1] * sy, (K[2] + 0.5) * sx - 0.5, (K[3] + 0.5) * sy - 0.5])
    mesh = Meshes(verts=[verts.float()], faces=[faces])
    depth = render_meshes(mesh, k.float(), (h, w))["depth"][0].double()
    # The farthest surface around the vertex's pixel: a vertex sits on the edge of its faces,
    # on a slope the pixel's own depth may lie nearer than it; an occluded vertex lies behind
    # every surface around its pixel. No surface around (0): nothing hides it.
    far = torch.nn.functional.max_pool2d(depth[None, None], 3, stride=1, padding=1)[0, 0]
    px = ((uv[:, 0] + 0.5) * sx - 0.5).round().long().clamp(0, w - 1)
    py = ((uv[:, 1] + 0.5) * sy - 0.5).round().long().clamp(0, h - 1)
    extent = float((verts.max(0).values - verts.min(0).values).norm())
    around = far[py, px]
    return (around <= 0) | (verts[:, 2] <= around + 0.05 * max(extent, 1e-9))
