"""Benchmarks of chamfer_distance: PyTorch3D's usual training sizes and a large pair."""

import torch

from meshrecon.ops import chamfer_distance
from meshrecon.utils.benchmark import BenchCase

SUITE = "ops"


def _make(batch: int, points: int, normals: bool = False):
    def make(device: torch.device):
        g = torch.Generator().manual_seed(0)
        x = torch.rand(batch, points, 3, generator=g).to(device).requires_grad_()
        y = torch.rand(batch, points, 3, generator=g).to(device).requires_grad_()
        nx = torch.randn(batch, points, 3, generator=g).to(device) if normals else None
        ny = torch.randn(batch, points, 3, generator=g).to(device) if normals else None

        def run(backward: bool):
            loss, loss_normals = chamfer_distance(x, y, x_normals=nx, y_normals=ny)
            if loss_normals is not None:
                loss = loss + loss_normals
            if backward:
                loss.backward()
            return loss

        return run

    return make


CASES = [
    BenchCase(
        op="chamfer_distance",
        size="B=16, 5k x 5k",
        make=_make(16, 5000),
        reference_ms={"fwd+bwd": 2400.0},
    ),
    BenchCase(op="chamfer_distance", size="B=16, 5k x 5k, normals", make=_make(16, 5000, True)),
    BenchCase(op="chamfer_distance", size="B=1, 100k x 100k", make=_make(1, 100_000), repeats=3),
]
