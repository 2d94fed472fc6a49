"""Rendering for the synthetic datasets: objects placed in a camera frame, one z-buffer.

:func:`render_scene` composes several meshes (objects, floor, walls) into one call of
:func:`meshrecon.render.render_meshes`, each with per-face colours or a procedural texture that
is evaluated on its own model-frame points (so patterns stick to surfaces), and returns numpy
arrays: RGB, coverage mask, depth and the instance id of the visible object per pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from meshrecon.render import (
    TextureFn,
    checker_texture,
    render_meshes,
    stripes_texture,
    value_noise_texture,
)
from meshrecon.structures import Meshes

from .writers import to_numpy

__all__ = [
    "SceneObject",
    "floor_texture",
    "owned_texture_fn",
    "pick_color",
    "render_scene",
    "wall_texture",
]

_FLOOR_COLORS = ((0.55, 0.40, 0.26), (0.70, 0.62, 0.50), (0.35, 0.35, 0.36), (0.62, 0.55, 0.45))
_WALL_COLORS = ((0.90, 0.88, 0.82), (0.80, 0.84, 0.86), (0.86, 0.80, 0.70), (0.75, 0.78, 0.72))


def owned_texture_fn(
    face_colors: torch.Tensor, owner: torch.Tensor, textured: Sequence[tuple[int, TextureFn]]
) -> TextureFn:
    """A texture function of a scene joined from parts: each face takes its flat colour
    (``face_colors`` (F, 3)), except the faces of a textured part (``owner`` (F,): the part of
    each face; ``textured``: ``(part, texture function)`` pairs), which its texture colours."""

    def texture_fn(points: torch.Tensor, face_idx: torch.Tensor) -> torch.Tensor:
        out = face_colors.to(points.dtype).index_select(0, face_idx)
        for k, texture in textured:
            sel = owner.index_select(0, face_idx) == k
            if bool(sel.any()):
                out[sel] = torch.as_tensor(texture(points[sel], face_idx[sel]), dtype=out.dtype)
        return out

    return texture_fn


def pick_color(rng: np.random.Generator, surface: int) -> np.ndarray:
    palette = _FLOOR_COLORS if surface == 0 else _WALL_COLORS
    base = np.asarray(palette[int(rng.integers(len(palette)))])
    return np.clip(base * rng.uniform(0.85, 1.15), 0.0, 1.0)


def floor_texture(rng: np.random.Generator) -> TextureFn:
    """Tiles (a checkerboard) or a mottled carpet, fixed to the floor's model frame."""
    a = pick_color(rng, 0)
    b = np.clip(a * rng.uniform(0.6, 0.85), 0, 1)
    if rng.random() < 0.6:
        return checker_texture(rng.uniform(0.25, 0.6), a.tolist(), b.tolist())
    seed = int(rng.integers(1 << 30))
    return value_noise_texture(rng.uniform(0.1, 0.4), a.tolist(), b.tolist(), seed=seed)


def wall_texture(rng: np.random.Generator) -> TextureFn:
    """Vertical stripes (wallpaper) or a faint noise (plaster), fixed to the wall."""
    a = pick_color(rng, 2)
    b = np.clip(a * rng.uniform(0.8, 0.95), 0, 1)
    if rng.random() < 0.5:
        return stripes_texture(rng.uniform(0.15, 0.5), (1.0, 0.0, 0.0), a.tolist(), b.tolist())
    seed = int(rng.integers(1 << 30))
    return value_noise_texture(rng.uniform(0.3, 1.0), a.tolist(), b.tolist(), seed=seed)


class SceneObject:
    """A mesh placed in the camera frame, with per-face colours or a texture, and an id.

    Args:
        verts: (V, 3) model-frame vertices.
        faces: (F, 3) vertex indices.
        R, t: model -> camera transform (``X = R v + t``).
        colors: (F, 3) RGB in [0, 1] per face, or None when ``texture`` is given.
        texture: a :data:`meshrecon.render.TextureFn`, evaluated on model-frame points so that
            the pattern sticks to the object.
        id: instance id written into the instance map (0: not an annotated object).
    """

    def __init__(self, verts, faces, R, t, colors=None, texture=None, id: int = 0) -> None:
        if (colors is None) == (texture is None):
            raise ValueError("give exactly one of colors and texture")
        self.verts = np.asarray(verts, dtype=np.float64)
        self.faces = np.asarray(faces, dtype=np.int64)
        R, t = to_numpy(R).astype(np.float64), to_numpy(t).astype(np.float64)
        self.verts_cam = self.verts @ R.T + t
        self.colors = None if colors is None else np.asarray(colors, dtype=np.float64)
        self.texture = texture
        self.id = int(id)


# Most per-face values (faces, or faces times atlas texels) that render_views repeats per view
# in one call of the renderer.
_MAX_PACKED_VALUES = 4_000_000

# Direction towards the light in the camera frame: from the upper left, behind the viewer.
_LIGHT = (0.35, 0.6, -0.72)


def render_scene(
    objects: list[SceneObject], K: Any, image_size: tuple[int, int], background=(1.0, 1.0, 1.0)
) -> dict[str, np.ndarray]:
    """Render objects together with :func:`meshrecon.render.render_meshes` (one z-buffer).

    Returns:
        dict of numpy arrays: ``rgb`` (H, W, 3) in [0, 1], ``mask`` (H, W) bool (any surface),
        ``depth`` (H, W) camera Z (0 where empty) and ``instance`` (H, W) int (the visible
        object's id; -1 where empty).
    """
    offsets = np.cumsum([0] + [len(o.verts) for o in objects[:-1]])
    faces = np.concatenate([o.faces + off for o, off in zip(objects, offsets)])
    owner = np.repeat(np.arange(len(objects)), [len(o.faces) for o in objects])
    colors = np.concatenate(
        [o.colors if o.colors is not None else np.zeros((len(o.faces), 3)) for o in objects]
    )
    face_colors = torch.from_numpy(colors)
    owner_t = torch.from_numpy(owner)
    textured = [(k, o.texture) for k, o in enumerate(objects) if o.texture is not None]
    texture_fn = owned_texture_fn(face_colors, owner_t, textured)

    meshes = Meshes(
        verts=[torch.from_numpy(np.concatenate([o.verts_cam for o in objects]))],
        faces=[torch.from_numpy(faces)],
    )
    with torch.no_grad():
        out = render_meshes(
            meshes,
            torch.as_tensor(to_numpy(K), dtype=torch.float64),
            image_size,
            face_colors=face_colors,
            face_instance_ids=torch.as_tensor([o.id for o in objects])[owner_t],
            texture_fn=texture_fn if textured else None,
            texture_verts=torch.from_numpy(np.concatenate([o.verts for o in objects])),
            light_dir=_LIGHT,
            background=background,
        )
    return {key: to_numpy(out[key][0]) for key in ("rgb", "mask", "depth", "instance")}


def render_views(
    verts: np.ndarray,
    faces: np.ndarray,
    colors: np.ndarray | None,
    K: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    image_size: tuple[int, int],
    background=(1.0, 1.0, 1.0),
    *,
    vertex_colors: np.ndarray | None = None,
    atlas: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Render one model from N cameras in a single batched call (faster than N calls).

    Args:
        verts, faces: model-frame (V, 3) vertices and (F, 3) faces.
        colors: (F, 3) base colour per face in [0, 1], or None.
        K, R, t: (N, 4), (N, 3, 3), (N, 3) cameras.
        vertex_colors: (V, 3) base colour per vertex, interpolated (instead of ``colors``).
        atlas: (F, R, R, 3) per-face texture patches (PyTorch3D's ``TexturesAtlas`` layout,
            instead of ``colors``). With none of the three the model is a uniform grey.

    Returns:
        dict of numpy arrays ``rgb`` (N, H, W, 3), ``mask`` (N, H, W), ``depth`` (N, H, W).
    """
    given = [x is not None for x in (colors, vertex_colors, atlas)]
    if sum(given) > 1:
        raise ValueError("give at most one of colors, vertex_colors and atlas")
    R_np, t_np = to_numpy(R).astype(np.float64), to_numpy(t).astype(np.float64)
    verts_cam = np.einsum("nij,vj->nvi", R_np, np.asarray(verts, dtype=np.float64)) + t_np[:, None]
    n = len(verts_cam)
    faces_t = torch.from_numpy(np.asarray(faces, dtype=np.int64))
    K_t = torch.as_tensor(to_numpy(K), dtype=torch.float64)
    # Views per rasterizer call: the per-mesh arrays are repeated once per view, so a large
    # mesh (or atlas) is rendered a few views at a time. Views are independent: the images are
    # the same for any grouping.
    per_view = max(len(faces_t), 1) * (1 + (0 if atlas is None else int(np.prod(atlas.shape[1:]))))
    step = max(1, min(n, _MAX_PACKED_VALUES // per_view))

    def tiled(x: np.ndarray | None, dtype, k: int) -> torch.Tensor | None:
        if x is None:
            return None
        x = torch.from_numpy(np.asarray(x, dtype=dtype))
        return x.repeat(k, *([1] * (x.dim() - 1)))

    outs = []
    for s in range(0, n, step):
        k = min(step, n - s)
        meshes = Meshes(verts=list(torch.from_numpy(verts_cam[s : s + k])), faces=[faces_t] * k)
        with torch.no_grad():
            out = render_meshes(
                meshes,
                K_t if K_t.dim() == 1 else K_t[s : s + k],
                image_size,
                face_colors=tiled(colors, np.float64, k),
                vertex_colors=tiled(vertex_colors, np.float64, k),
                atlas=tiled(atlas, np.float32, k),
                light_dir=_LIGHT,
                background=background,
            )
        outs.append({key: to_numpy(out[key]) for key in ("rgb", "mask", "depth")})
    return {key: np.concatenate([o[key] for o in outs]) for key in ("rgb", "mask", "depth")}
