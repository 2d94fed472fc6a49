"""Benchmarks of earth_movers_distance (auction solver) at PSGN's sizes."""

import torch

from meshrecon.ops import earth_movers_distance
from meshrecon.utils.benchmark import BenchCase

SUITE = "ops"


def _make(batch: int, points: int):
    def make(device: torch.device):
        g = torch.Generator().manual_seed(0)
        x = torch.rand(batch, points, 3, generator=g).to(device).requires_grad_()
        y = torch.rand(batch, points, 3, generator=g).to(device)

        def run(backward: bool):
            loss = earth_movers_distance(x, y)
            if backward:
                loss.backward()
            return loss

        return run

    return make


CASES = [
    BenchCase(op="earth_movers_distance", size="B=8, 256 x 256", make=_make(8, 256), repeats=3),
    BenchCase(op="earth_movers_distance", size="B=8, 1024 x 1024", make=_make(8, 1024), repeats=1),
]
