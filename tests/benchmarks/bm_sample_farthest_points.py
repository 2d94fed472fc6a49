"""Benchmarks of sample_farthest_points and set_distance at OptimizeMVS's sizes (the union of
the views' clouds thinned to the output size; hypotheses scored against the ground truth)."""

import torch

from meshrecon.ops import sample_farthest_points, set_distance
from meshrecon.utils.benchmark import BenchCase

SUITE = "ops"


def _fps(batch: int, points: int, k: int):
    def make(device: torch.device):
        x = torch.rand(batch, points, 3, generator=torch.Generator().manual_seed(0)).to(device)

        def run(backward: bool):
            return sample_farthest_points(x, K=k)[0]

        return run

    return make


def _set_distance(batch: int, points: int, distance: str):
    def make(device: torch.device):
        g = torch.Generator().manual_seed(0)
        x = torch.rand(batch, points, 3, generator=g).to(device).requires_grad_()
        y = torch.rand(batch, points, 3, generator=g).to(device)

        def run(backward: bool):
            loss = set_distance(x, y, distance).mean()
            if backward:
                loss.backward()
            return loss

        return run

    return make


CASES = [
    BenchCase(
        op="sample_farthest_points",
        size="N=1, 5x1024 -> 1024",
        make=_fps(1, 5120, 1024),
        backward=False,
        repeats=2,
    ),
    BenchCase(
        op="sample_farthest_points",
        size="N=8, 2048 -> 256",
        make=_fps(8, 2048, 256),
        backward=False,
    ),
    BenchCase(
        op="set_distance", size="chamfer, N=16, 1024", make=_set_distance(16, 1024, "chamfer")
    ),
    BenchCase(op="set_distance", size="emd, N=4, 256", make=_set_distance(4, 256, "emd")),
]
