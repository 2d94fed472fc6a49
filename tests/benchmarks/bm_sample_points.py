"""Benchmark sample_points_from_meshes on a batch of level-4 ico spheres."""

from __future__ import annotations

import torch

from meshrecon.ops.sample_points_from_meshes import sample_points_from_meshes
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


def _make(num_meshes: int, level: int, num_samples: int):
    def make(device: torch.device):
        verts, faces = _sphere(level)
        torch.manual_seed(0)
        # Perturbed copies, so that face areas differ between and within meshes.
        verts = verts.to(device) * (1 + 0.1 * torch.rand(num_meshes, 1, 1, device=device))
        verts = verts + 0.01 * torch.randn_like(verts)
        faces = faces.to(device).expand(num_meshes, -1, -1)
        meshes = Meshes(verts, faces)
        leaf = verts.clone().requires_grad_(True)

        def run(backward: bool):
            if not backward:
                return sample_points_from_meshes(meshes, num_samples, return_normals=True)
            samples, normals = sample_points_from_meshes(
                Meshes(leaf, faces), num_samples, return_normals=True
            )
            (samples.sum() + normals.sum()).backward()
            return samples

        return run

    return make


CASES = [
    BenchCase(
        op="sample_points_from_meshes",
        size="16 x 10k samples, 5120 faces (ico_sphere(4)), with normals",
        make=_make(16, 4, 10000),
        reference_ms={"fwd": 22.0},
    ),
]
