"""meshrecon.ops.descriptor_lattice / distance_field_descriptors against a loop reference."""

import math

import pytest
import torch

from meshrecon.ops import descriptor_lattice, distance_field_descriptors


def _loop_descriptors(clouds, lattice):
    """For every cloud and lattice point, the smallest distance to a point of the cloud."""
    out = torch.zeros(len(clouds), lattice.shape[0], dtype=torch.float64)
    for n, cloud in enumerate(clouds):
        for i, q in enumerate(lattice.double()):
            out[n, i] = min(math.dist(q.tolist(), p.tolist()) for p in cloud.double())
    return out


def test_lattice_centres_in_x_fastest_order():
    box = torch.tensor([[0.0, -1.0, 2.0], [1.0, 1.0, 6.0]])
    lattice = descriptor_lattice(box, 2)
    want = [[x, y, z] for z in (3.0, 5.0) for y in (-0.5, 0.5) for x in (0.25, 0.75)]
    assert torch.equal(lattice, torch.tensor(want))
    assert descriptor_lattice(box, 1).tolist() == [[0.5, 0.0, 4.0]]
    with pytest.raises(ValueError, match="min < max"):
        descriptor_lattice(box.flip(0), 2)
    with pytest.raises(ValueError, match="resolution"):
        descriptor_lattice(box, 0)


def test_descriptors_match_the_loop_across_chunks_and_sizes():
    g = torch.Generator().manual_seed(0)
    lattice = descriptor_lattice(torch.tensor([[-1.0] * 3, [1.0] * 3]), 3)
    # Clouds of different sizes, more of them than one chunk holds.
    clouds = [torch.rand(p, 3, generator=g) * 2 - 1 for p in (5, 1, 9, 3, 7)]
    got = distance_field_descriptors(clouds, lattice, chunk=2)
    assert got.shape == (5, 27) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), _loop_descriptors(clouds, lattice), atol=1e-5, rtol=0)
    # A padded batch gives the same as its list.
    batch = torch.stack([c[:1] for c in clouds])
    torch.testing.assert_close(
        distance_field_descriptors(batch, lattice), distance_field_descriptors(list(batch), lattice)
    )


def test_descriptors_of_no_cloud_and_bad_clouds():
    lattice = descriptor_lattice(torch.tensor([[0.0] * 3, [1.0] * 3]), 2)
    assert distance_field_descriptors([], lattice).shape == (0, 8)
    with pytest.raises(ValueError, match=r"points\[1\] must be a non-empty"):
        distance_field_descriptors([torch.zeros(2, 3), torch.zeros(0, 3)], lattice)
    with pytest.raises(ValueError, match="non-empty"):
        distance_field_descriptors([torch.zeros(4, 2)], lattice)
