"""Benchmarks of cubify (voxel grids to merged cube meshes) and voxelize_meshes."""

import torch

from meshrecon.ops import cubify, ico_sphere, voxelize_meshes
from meshrecon.utils.benchmark import BenchCase

SUITE = "ops"


def _make_cubify(batch: int, size: int, align: str = "topleft"):
    def make(device: torch.device):
        g = torch.Generator().manual_seed(0)
        voxels = torch.rand(batch, size, size, size, generator=g).to(device)

        def run(backward: bool):
            # cubify is not differentiable (PyTorch3D's runs under no_grad too).
            return cubify(voxels, 0.5, align=align)

        return run

    return make


def _make_voxelize(batch: int, level: int, size: int):
    def make(device: torch.device):
        sphere = ico_sphere(level, device)
        meshes = sphere.extend(batch)

        def run(backward: bool):
            return voxelize_meshes(meshes, size)

        return run

    return make


CASES = [
    BenchCase(
        op="cubify",
        size="B=32, 48^3, random, thresh 0.5",
        make=_make_cubify(32, 48),
        backward=False,
        reference_ms={"fwd": 5000.0},
    ),
    BenchCase(
        op="cubify",
        size="B=8, 24^3, random, align=center",
        make=_make_cubify(8, 24, "center"),
        backward=False,
    ),
    BenchCase(
        op="voxelize_meshes",
        size="B=16, ico4 (5120 faces), 48^3",
        make=_make_voxelize(16, 4, 48),
        backward=False,
    ),
]
