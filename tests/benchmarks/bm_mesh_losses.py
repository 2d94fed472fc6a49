"""Benchmark the mesh regularisers on a batch of 16 level-4 ico spheres (2562 verts each).

Each run builds a fresh ``Meshes`` from the padded tensors, so edge extraction is timed too, as
in a training step where the vertices change every iteration.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from meshrecon.ops.mesh_losses import (
    mesh_edge_loss,
    mesh_laplacian_smoothing,
    mesh_normal_consistency,
)
from meshrecon.structures import Meshes
from meshrecon.utils.benchmark import BenchCase

SUITE = "ops"


def _sphere(level: int) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from meshrecon.ops.ico_sphere import ico_sphere

        mesh = ico_sphere(level)
        return mesh.verts_packed(), mesh.faces_packed()
    except ImportError:
        import trimesh

        sphere = trimesh.creation.icosphere(subdivisions=level)
        return (
            torch.as_tensor(sphere.vertices, dtype=torch.float32),
            torch.as_tensor(sphere.faces, dtype=torch.int64),
        )


def _make(loss_fn: Callable[[Meshes], torch.Tensor], num_meshes: int = 16, level: int = 4):
    def make(device: torch.device):
        verts, faces = _sphere(level)
        torch.manual_seed(0)
        verts = verts.to(device) + 0.02 * torch.randn(num_meshes, *verts.shape, device=device)
        verts.requires_grad_(True)
        faces = faces.to(device).expand(num_meshes, -1, -1)

        def run(backward: bool):
            loss = loss_fn(Meshes(verts, faces))
            if backward:
                loss.backward()
            return loss

        return run

    return make


_SIZE = "16 x 2562 verts (ico_sphere(4))"
CASES = [
    BenchCase(op="mesh_edge_loss", size=_SIZE, make=_make(mesh_edge_loss)),
    BenchCase(op="mesh_normal_consistency", size=_SIZE, make=_make(mesh_normal_consistency)),
] + [
    BenchCase(
        op=f"mesh_laplacian_smoothing[{method}]",
        size=_SIZE,
        make=_make(lambda m, method=method: mesh_laplacian_smoothing(m, method)),
    )
    for method in ("uniform", "cot", "cotcurv")
]
