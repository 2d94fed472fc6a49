"""Benchmarks of knn_points (K nearest neighbours with distances and gradients)."""

import torch

from meshrecon.ops import knn_points
from meshrecon.utils.benchmark import BenchCase

SUITE = "ops"


def _make(batch: int, p1: int, p2: int, K: int):
    def make(device: torch.device):
        g = torch.Generator().manual_seed(0)
        a = torch.rand(batch, p1, 3, generator=g).to(device).requires_grad_()
        b = torch.rand(batch, p2, 3, generator=g).to(device).requires_grad_()

        def run(backward: bool):
            dists = knn_points(a, b, K=K).dists
            if backward:
                dists.sum().backward()
            return dists

        return run

    return make


CASES = [
    BenchCase(op="knn_points", size="B=16, 5k x 5k, K=1", make=_make(16, 5000, 5000, 1)),
    BenchCase(op="knn_points", size="B=16, 5k x 5k, K=8", make=_make(16, 5000, 5000, 8)),
    BenchCase(op="knn_points", size="B=4, 256 x 1k, K=4", make=_make(4, 256, 1000, 4)),
]
