"""Shaded renders of camera-frame meshes: RGB, mask, depth, normals, instance ids.

Lambertian shading with one directional light plus ambient light; colours come from a
procedural texture evaluated on the 3D surface point, per-vertex or per-face colours, or a
uniform grey. Also small helpers for pictures: :func:`save_image` and :func:`colorize_depth`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from meshrecon.structures import Meshes

from .rasterizer import rasterize

__all__ = [
    "TextureFn",
    "checker_texture",
    "colorize_depth",
    "render_meshes",
    "sample_atlas",
    "save_image",
    "stripes_texture",
    "value_noise_texture",
]

# texture_fn(points (P, 3), face_idx (P,)) -> colours (P, 3) in [0, 1].
TextureFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_DEFAULT_COLOR = 0.8


def _interp(values: torch.Tensor, faces: torch.Tensor, face: torch.Tensor, bary: torch.Tensor):
    """Barycentric interpolation of per-vertex ``values`` (V, C) at P hits -> (P, C)."""
    corner = faces.index_select(0, face)  # (P, 3)
    vals = values.index_select(0, corner.reshape(-1)).view(-1, 3, values.shape[-1])
    return (vals * bary[..., None]).sum(1)


def _color_tensor(x, name: str, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(x, dtype=like.dtype, device=like.device)
    if t.shape != (3,):
        raise ValueError(f"{name} must be an RGB triple, got shape {tuple(t.shape)}")
    return t


def render_meshes(
    meshes_cam: Meshes,
    K: torch.Tensor | Sequence[float],
    image_size: int | Sequence[int],
    *,
    face_colors: torch.Tensor | None = None,
    vertex_colors: torch.Tensor | None = None,
    atlas: torch.Tensor | None = None,
    face_instance_ids: torch.Tensor | None = None,
    texture_fn: TextureFn | None = None,
    texture_verts: torch.Tensor | None = None,
    light_dir: Sequence[float] | torch.Tensor = (0.0, 0.0, -1.0),
    ambient: float = 0.35,
    background: Sequence[float] | torch.Tensor = (1.0, 1.0, 1.0),
    smooth_normals: bool = False,
    cull_backfaces: bool = False,
    znear: float = 1e-3,
) -> dict[str, torch.Tensor]:
    """Render N camera-frame meshes with Lambertian shading.

    Args:
        meshes_cam: N meshes in the camera frame (+X left, +Y up, +Z forward).
        K: (4,) or (N, 4) intrinsics ``[fx, fy, cx, cy]``.
        image_size: (H, W) or an int.
        face_colors: (sum F, 3) base colours in [0, 1] per packed face.
        vertex_colors: (sum V, 3) base colours per packed vertex, interpolated.
        atlas: (sum F, R, R, 3) base colours as one R x R patch per packed face, read at the
            pixel's barycentric coordinates as PyTorch3D's ``TexturesAtlas`` does (the layout
            of :func:`meshrecon.io.load_obj`'s ``aux.texture_atlas``); see :func:`sample_atlas`.
        face_instance_ids: (sum F,) int instance id per packed face; fills ``"instance"``.
        texture_fn: callable(points (P, 3), face_idx (P,)) -> (P, 3) colours in [0, 1],
            evaluated at the visible surface points (e.g. :func:`checker_texture`); takes
            precedence over the colour and atlas arguments. ``face_idx`` indexes the packed faces.
        texture_verts: (sum V, 3) coordinates to interpolate and hand to ``texture_fn`` instead
            of the camera-frame points, e.g. the model-frame vertices so that a texture sticks
            to the object when the camera moves.
        light_dir: (3,) direction from the surface towards the light, in the camera frame
            ((0, 0, -1): light from the camera). Normalized here.
        ambient: ambient share; a pixel's shade is ``ambient + (1 - ambient) max(0, n . l)``.
        background: RGB (3,) in [0, 1], or an image (H, W, 3) / (N, H, W, 3).
        smooth_normals: shade and report interpolated vertex normals instead of face normals.
        cull_backfaces: drop faces seen from behind; passed to
            :func:`~meshrecon.render.rasterizer.rasterize`.
        znear: nearest camera Z drawn; passed to :func:`~meshrecon.render.rasterizer.rasterize`.

    Returns:
        dict with ``rgb`` (N, H, W, 3) in [0, 1]; ``mask`` (N, H, W) bool; ``depth`` (N, H, W)
        camera Z with 0 for background; ``normals`` (N, H, W, 3) unit camera-frame normals
        on the camera's side of their face (0 for background); ``pix_to_face`` (N, H, W) int64
        (-1 for background); ``bary`` (N, H, W, 3); and ``instance`` (N, H, W) int64 (-1 for
        background) when ``face_instance_ids`` is given.
    """
    if not isinstance(meshes_cam, Meshes):
        raise ValueError("meshes_cam must be a Meshes in the camera frame")
    if not 0.0 <= float(ambient) <= 1.0:
        raise ValueError(f"ambient must lie in [0, 1], got {ambient}")
    verts, faces = meshes_cam.verts_packed(), meshes_cam.faces_packed()
    n_faces, n_verts = faces.shape[0], verts.shape[0]
    for name, arr, rows in (
        ("face_colors", face_colors, n_faces),
        ("vertex_colors", vertex_colors, n_verts),
        ("texture_verts", texture_verts, n_verts),
    ):
        if arr is not None and (not torch.is_tensor(arr) or tuple(arr.shape) != (rows, 3)):
            raise ValueError(f"{name} must be a tensor of shape ({rows}, 3)")
    if atlas is not None and (
        not torch.is_tensor(atlas)
        or atlas.dim() != 4
        or atlas.shape[0] != n_faces
        or atlas.shape[1] != atlas.shape[2]
        or atlas.shape[3] != 3
    ):
        raise ValueError(f"atlas must be a tensor of shape ({n_faces}, R, R, 3)")
    if face_instance_ids is not None and (
        not torch.is_tensor(face_instance_ids) or tuple(face_instance_ids.shape) != (n_faces,)
    ):
        raise ValueError(f"face_instance_ids must be a tensor of shape ({n_faces},)")

    frags = rasterize(meshes_cam, None, K, image_size, cull_backfaces=cull_backfaces, znear=znear)
    N, H, W = frags.pix_to_face.shape
    dtype = frags.zbuf.dtype
    p2f = frags.pix_to_face.reshape(-1)
    hit = (p2f >= 0).nonzero().squeeze(1)
    face = p2f.index_select(0, hit)
    bary = frags.bary.reshape(-1, 3).index_select(0, hit)
    points = _interp(verts.to(dtype), faces, face, bary)  # (P, 3) camera frame

    face_normals = meshes_cam.faces_normals_packed().to(dtype).index_select(0, face)
    # Turn normals to the camera's side of their face: the view ray to the point is +points.
    # The face (not the interpolated normal) decides, so smooth normals near silhouettes keep
    # their direction instead of flipping.
    facing = torch.where((face_normals * points).sum(1, keepdim=True) > 0, -1.0, 1.0).to(dtype)
    if smooth_normals:
        normals = _interp(meshes_cam.verts_normals_packed().to(dtype), faces, face, bary)
    else:
        normals = face_normals
    normals = torch.nn.functional.normalize(normals, dim=1, eps=1e-12) * facing

    if texture_fn is not None:
        tex_points = (
            points if texture_verts is None else _interp(texture_verts.to(dtype), faces, face, bary)
        )
        base = torch.as_tensor(texture_fn(tex_points, face), dtype=dtype)
        if base.shape != (hit.numel(), 3):
            raise ValueError(
                f"texture_fn must return colours of shape ({hit.numel()}, 3), "
                f"got {tuple(base.shape)}"
            )
    elif atlas is not None:
        base = sample_atlas(atlas, face, bary).to(dtype)
    elif vertex_colors is not None:
        base = _interp(vertex_colors.to(dtype), faces, face, bary)
    elif face_colors is not None:
        base = face_colors.to(dtype).index_select(0, face)
    else:
        base = torch.full((hit.numel(), 3), _DEFAULT_COLOR, dtype=dtype, device=verts.device)

    light = torch.nn.functional.normalize(
        torch.as_tensor(light_dir, dtype=dtype, device=verts.device).reshape(3), dim=0
    )
    shade = ambient + (1.0 - ambient) * (normals @ light).clamp(min=0.0)
    colors = (base * shade[:, None]).clamp(0.0, 1.0)

    bg = torch.as_tensor(background, dtype=dtype, device=verts.device)
    if bg.shape == (3,):
        rgb = bg.expand(N * H * W, 3).clone()
    elif bg.shape in ((H, W, 3), (N, H, W, 3)):
        rgb = bg.expand(N, H, W, 3).reshape(-1, 3).clone()
    else:
        raise ValueError(
            f"background must be (3,), (H, W, 3) or (N, H, W, 3), got {tuple(bg.shape)}"
        )
    rgb = rgb.index_put((hit,), colors)
    normal_img = torch.zeros(N * H * W, 3, dtype=dtype, device=verts.device)
    normal_img = normal_img.index_put((hit,), normals)
    out = {
        "rgb": rgb.view(N, H, W, 3),
        "mask": frags.pix_to_face >= 0,
        "depth": frags.zbuf,
        "normals": normal_img.view(N, H, W, 3),
        "pix_to_face": frags.pix_to_face,
        "bary": frags.bary,
    }
    if face_instance_ids is not None:
        ids = face_instance_ids.to(device=verts.device, dtype=torch.int64)
        instance = torch.full((N * H * W,), -1, dtype=torch.int64, device=verts.device)
        instance[hit] = ids.index_select(0, face)
        out["instance"] = instance.view(N, H, W)
    return out


# ---------------------------------------------------------------------------- textures
def sample_atlas(atlas: torch.Tensor, face: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
    """Read per-face texture patches at barycentric coordinates (PyTorch3D's TexturesAtlas).

    The face's triangle is cut into R^2 small triangles (Soft Rasterizer's layout, as
    :func:`meshrecon.io.mtl_io.make_mesh_texture_atlas` fills it): the point with weights
    ``(w0, w1, w2)`` lies in the square ``(floor(R w0), floor(R w1))`` and reads texel
    ``[row floor(R w1), col floor(R w0)]`` in the square's lower triangle, the mirrored texel
    ``[R - 1 - row, R - 1 - col]`` in its upper one. No interpolation between texels.

    Args:
        atlas: (F, R, R, C) patches.
        face: (P,) int64 face index of each point.
        bary: (P, 3) barycentric coordinates of each point in its face.

    Returns:
        (P, C) texel values.
    """
    R = atlas.shape[1]
    w01 = bary[:, :2].clamp(0.0, 1.0)
    cell = (w01 * R).floor()
    lower = (w01.sum(1) * R - cell.sum(1)) <= 1.0
    cell = torch.where(lower[:, None], cell, R - 1 - cell).long().clamp(0, R - 1)
    return atlas[face, cell[:, 1], cell[:, 0]]


def _two_colors(color_a, color_b, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return _color_tensor(color_a, "color_a", points), _color_tensor(color_b, "color_b", points)


def checker_texture(
    size: float = 0.1,
    color_a: Sequence[float] = (0.9, 0.9, 0.9),
    color_b: Sequence[float] = (0.25, 0.25, 0.25),
    offset: Sequence[float] = (0.0, 0.0, 0.0),
) -> TextureFn:
    """Return a 3D checkerboard: cubes of edge ``size`` alternate between the two colours."""
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")

    def texture(points: torch.Tensor, face_idx: torch.Tensor) -> torch.Tensor:
        cells = torch.floor((points - points.new_tensor(offset)) / size).to(torch.int64)
        odd = (cells.sum(-1) % 2).bool()[:, None]
        a, b = _two_colors(color_a, color_b, points)
        return torch.where(odd, b, a)

    return texture


def stripes_texture(
    period: float = 0.1,
    direction: Sequence[float] = (0.0, 1.0, 0.0),
    color_a: Sequence[float] = (0.85, 0.3, 0.25),
    color_b: Sequence[float] = (0.95, 0.9, 0.8),
    duty: float = 0.5,
) -> TextureFn:
    """Return a texture of parallel stripes across ``direction``.

    Args:
        period: length of one stripe pair along ``direction``, > 0.
        direction: (3,) the axis the stripes alternate along (normalized here).
        color_a: RGB in [0, 1] of the first ``duty`` share of each period.
        color_b: RGB in [0, 1] of the rest.
        duty: share of each period in ``color_a``, in (0, 1).

    Returns:
        A texture function ``(points (P, 3), face_idx (P,)) -> (P, 3)`` colours.

    Raises:
        ValueError: ``period`` is not positive or ``duty`` not in (0, 1).
    """
    if period <= 0:
        raise ValueError(f"period must be positive, got {period}")
    if not 0.0 < duty < 1.0:
        raise ValueError(f"duty must lie in (0, 1), got {duty}")

    def texture(points: torch.Tensor, face_idx: torch.Tensor) -> torch.Tensor:
        axis = torch.nn.functional.normalize(points.new_tensor(direction), dim=0)
        phase = torch.frac(torch.frac((points @ axis) / period) + 1.0)  # in [0, 1) for negatives
        a, b = _two_colors(color_a, color_b, points)
        return torch.where((phase < duty)[:, None], a, b)

    return texture


def value_noise_texture(
    scale: float = 0.2,
    color_a: Sequence[float] = (0.2, 0.35, 0.6),
    color_b: Sequence[float] = (0.95, 0.85, 0.55),
    octaves: int = 3,
    seed: int = 0,
) -> TextureFn:
    """Return fractal 3D value noise blending ``color_a`` (0) to ``color_b`` (1).

    Random values on an integer lattice of spacing ``scale`` (hashed through a seeded
    permutation, so the pattern is fixed in space and reproducible), smoothstep-interpolated
    between lattice points; ``octaves`` layers of halving spacing and amplitude are summed.
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    if octaves < 1:
        raise ValueError(f"octaves must be >= 1, got {octaves}")
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(256, generator=g)
    lattice_values = torch.rand(256, generator=g, dtype=torch.float64)

    def lattice(ix: torch.Tensor, iy: torch.Tensor, iz: torch.Tensor) -> torch.Tensor:
        p = perm.to(ix.device)
        h = p[(p[(p[ix & 255] + iy) & 255] + iz) & 255]
        return lattice_values.to(ix.device)[h]

    def noise(x: torch.Tensor) -> torch.Tensor:
        cell = torch.floor(x)
        f = x - cell
        w = f * f * (3.0 - 2.0 * f)  # smoothstep weights: C1-continuous across cells
        i = cell.to(torch.int64)
        out = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        for dx in (0, 1):
            for dy in (0, 1):
                for dz in (0, 1):
                    wx = w[:, 0] if dx else 1 - w[:, 0]
                    wy = w[:, 1] if dy else 1 - w[:, 1]
                    wz = w[:, 2] if dz else 1 - w[:, 2]
                    val = lattice(i[:, 0] + dx, i[:, 1] + dy, i[:, 2] + dz)
                    out = out + wx * wy * wz * val
        return out

    def texture(points: torch.Tensor, face_idx: torch.Tensor) -> torch.Tensor:
        x = points.to(torch.float64) / scale
        total = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        amp, norm = 1.0, 0.0
        for octave in range(octaves):
            # Shift each octave so lattice points of different octaves do not coincide.
            total = total + amp * noise(x * (2.0**octave) + 17.13 * octave)
            norm += amp
            amp *= 0.5
        t = (total / norm).to(points.dtype)[:, None]
        a, b = _two_colors(color_a, color_b, points)
        return a + (b - a) * t

    return texture


# ---------------------------------------------------------------------------- pictures
def _to_numpy(x) -> np.ndarray:
    if torch.is_tensor(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def save_image(path: str | Path, rgb) -> None:
    """Write an image file, its format chosen by the suffix of ``path``.

    Args:
        path: the file to write.
        rgb: (H, W), (H, W, 3) or (H, W, 4) array or tensor: floats in [0, 1] (clipped) or
            uint8.

    Raises:
        ValueError: ``rgb`` has another shape.
    """
    from PIL import Image

    arr = _to_numpy(rgb)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise ValueError(f"rgb must have shape (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.dtype != np.uint8:
        if arr.dtype == bool:
            arr = arr.astype(np.float32)
        arr = (np.clip(arr.astype(np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def colorize_depth(
    depth,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "viridis",
    background: Sequence[int] = (0, 0, 0),
) -> np.ndarray:
    """Map a depth map (H, W) to a uint8 (H, W, 3) picture through a matplotlib colormap.

    ``vmin`` / ``vmax`` default to the range of the valid depths (``> 0`` and finite); pixels
    without depth get ``background``.
    """
    import matplotlib

    d = _to_numpy(depth).astype(np.float64)
    if d.ndim != 2:
        raise ValueError(f"depth must have shape (H, W), got {d.shape}")
    valid = np.isfinite(d) & (d > 0)
    lo = float(d[valid].min()) if vmin is None and valid.any() else (vmin or 0.0)
    hi = float(d[valid].max()) if vmax is None and valid.any() else (vmax or 1.0)
    if not math.isfinite(lo) or not math.isfinite(hi):
        raise ValueError(f"vmin and vmax must be finite, got {lo}, {hi}")
    t = np.clip((np.where(valid, d, lo) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    try:
        colormap = matplotlib.colormaps[cmap]
    except KeyError as err:
        raise ValueError(f"cmap {cmap!r} is not a matplotlib colormap") from err
    img = (colormap(t)[..., :3] * 255.0 + 0.5).astype(np.uint8)
    img[~valid] = np.asarray(background, dtype=np.uint8)
    return img
