"""Benchmarks of the z-buffer rasterizer and the shaded renderer (frames per second = 1000 / ms).

A torus of about 1k or 10k faces (self-occluding, so every pixel sees up to four layers),
seen from a look-at camera, filling about half the image.
"""

import math

import torch

from meshrecon.render import look_at_view_transform, rasterize, render_meshes, transform_points
from meshrecon.render.shading import checker_texture
from meshrecon.structures import Meshes
from meshrecon.utils.benchmark import BenchCase

SUITE = "render"


def torus(n_major: int, n_minor: int, R: float = 0.7, r: float = 0.3):
    """Closed torus with 2 * n_major * n_minor faces."""
    a = torch.arange(n_major) * (2 * math.pi / n_major)
    b = torch.arange(n_minor) * (2 * math.pi / n_minor)
    A, B = torch.meshgrid(a, b, indexing="ij")
    ring = R + r * B.cos()
    verts = torch.stack([ring * A.cos(), r * B.sin(), ring * A.sin()], -1).reshape(-1, 3)
    i, j = torch.meshgrid(torch.arange(n_major), torch.arange(n_minor), indexing="ij")
    i1, j1 = (i + 1) % n_major, (j + 1) % n_minor
    v00, v01 = i * n_minor + j, i * n_minor + j1
    v10, v11 = i1 * n_minor + j, i1 * n_minor + j1
    faces = torch.cat([torch.stack([v00, v01, v11], -1), torch.stack([v00, v11, v10], -1)])
    return verts, faces.reshape(-1, 3)


def _scene(faces_target: int, H: int, W: int, device: torch.device):
    n_minor = 16 if faces_target < 5000 else 64
    n_major = max(3, faces_target // (2 * n_minor))
    verts, faces = torus(n_major, n_minor)
    R, t = look_at_view_transform(3.0, 35.0, 20.0)
    verts_cam = transform_points(verts, R[0], t[0])
    K = torch.tensor([0.9 * W, 0.9 * W, W / 2, H / 2])
    mesh = Meshes([verts_cam.to(device)], [faces.to(device)])
    return mesh, K.to(device)


def _make_rasterize(faces_target: int, H: int, W: int):
    def make(device: torch.device):
        mesh, K = _scene(faces_target, H, W, device)

        def run(backward: bool):
            return rasterize(mesh, K=K, image_size=(H, W))

        return run

    return make


def _make_render(faces_target: int, H: int, W: int):
    def make(device: torch.device):
        mesh, K = _scene(faces_target, H, W, device)
        texture = checker_texture(0.2)

        def run(backward: bool):
            return render_meshes(mesh, K, (H, W), texture_fn=texture)

        return run

    return make


CASES = [
    BenchCase(
        op=op,
        size=f"{nf // 1000}k faces, {H}x{W}",
        make=maker(nf, H, W),
        backward=False,
        repeats=10,
    )
    for op, maker in (("rasterize", _make_rasterize), ("render_meshes", _make_render))
    for nf in (1024, 10240)
    for H, W in ((137, 137), (224, 224), (240, 320))
]
