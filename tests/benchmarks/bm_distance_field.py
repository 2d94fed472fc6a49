"""Benchmarks of distance_field_descriptors at the recognition baselines' sizes (the shape
database's descriptors: 16^3 lattice, 1000 surface samples per entry; the toy preset's 8^3 and
300)."""

import torch

from meshrecon.ops import descriptor_lattice, distance_field_descriptors
from meshrecon.utils.benchmark import BenchCase

SUITE = "ops"


def _descriptors(entries: int, points: int, resolution: int):
    def make(device: torch.device):
        g = torch.Generator().manual_seed(0)
        clouds = (torch.rand(entries, points, 3, generator=g) - 0.5).to(device)
        box = torch.tensor([[-0.6] * 3, [0.6] * 3])
        lattice = descriptor_lattice(box, resolution).to(device)

        def run(backward: bool):
            return distance_field_descriptors(clouds, lattice)

        return run

    return make


CASES = [
    BenchCase(
        op="distance_field_descriptors",
        size="N=64, 1000 pts, 16^3",
        make=_descriptors(64, 1000, 16),
        backward=False,
    ),
    BenchCase(
        op="distance_field_descriptors",
        size="N=256, 300 pts, 8^3",
        make=_descriptors(256, 300, 8),
        backward=False,
    ),
]
