import io

import numpy as np
import pytest
import torch
from trimesh.exchange.binvox import load_binvox

from meshrecon.io import (
    MeshIOError,
    binvox_voxel_centers,
    read_binvox,
    read_binvox_coords,
    write_binvox,
)


def _header(dim, translate=(0.0, 0.0, 0.0), scale=1.0, dims=None):
    dims = dims or (dim, dim, dim)
    t = " ".join(str(v) for v in translate)
    return f"#binvox 1\ndim {dims[0]} {dims[1]} {dims[2]}\ntranslate {t}\nscale {scale}\ndata\n"


def _binvox_bytes(dim, pairs, **kw):
    return _header(dim, **kw).encode() + bytes(b for pair in pairs for b in pair)


def _naive_decode(payload, dim):
    """Slow reference: expand (value, count) pairs and place flat index i at its [x, y, z]."""
    flat = []
    for k in range(0, len(payload), 2):
        flat.extend([payload[k]] * payload[k + 1])
    grid = np.zeros((dim, dim, dim), dtype=bool)
    for i, value in enumerate(flat):
        x, z, y = i // (dim * dim), (i // dim) % dim, i % dim
        grid[x, y, z] = value != 0
    return grid


def _rle_pairs(data):
    body = data[data.index(b"data\n") + 5 :]
    return np.frombuffer(body, dtype=np.uint8).reshape(-1, 2)


def test_known_answer_tiny_grid(tmp_path):
    # D = 2, storage runs 0x1, 1x1, 0x1, 1x2, 0x3 -> flat indices 1, 3 and 4 are filled.
    # i = x*4 + z*2 + y: i=1 -> (x0, y1, z0); i=3 -> (x0, y1, z1); i=4 -> (x1, y0, z0).
    path = tmp_path / "tiny.binvox"
    pairs = [(0, 1), (1, 1), (0, 1), (1, 2), (0, 3)]
    path.write_bytes(_binvox_bytes(2, pairs, translate=(0.5, -1.0, 2.0), scale=3))
    occ, translate, scale = read_binvox(path)
    expected = torch.zeros(2, 2, 2, dtype=torch.bool)
    expected[0, 1, 0] = True  # would be [0, 0, 1] if y and z were swapped
    expected[0, 1, 1] = True
    expected[1, 0, 0] = True
    assert occ.dtype == torch.bool and occ.shape == (2, 2, 2)
    assert torch.equal(occ, expected)
    assert torch.allclose(translate, torch.tensor([0.5, -1.0, 2.0]))
    assert scale == pytest.approx(3.0)
    coords = read_binvox_coords(path)
    assert coords.dtype == torch.int64
    assert coords.tolist() == [[0, 1, 0], [0, 1, 1], [1, 0, 0]]


def test_random_rle_matches_naive_decode():
    rng = np.random.default_rng(0)
    dim = 6
    counts = []
    remaining = dim**3
    while remaining:
        c = int(min(remaining, rng.integers(1, 30)))
        counts.append(c)
        remaining -= c
    values = [(k + int(rng.integers(0, 2))) % 2 for k in range(len(counts))]
    # version-2 style label values count as occupied too
    values[0] = 7
    pairs = list(zip(values, counts))
    data = _binvox_bytes(dim, pairs)
    payload = bytes(b for p in pairs for b in p)
    occ, _, _ = read_binvox(io.BytesIO(data))
    expected = _naive_decode(payload, dim)
    assert np.array_equal(occ.numpy(), expected)
    coords = read_binvox_coords(io.BytesIO(data))
    assert sorted(map(tuple, coords.tolist())) == sorted(map(tuple, np.argwhere(expected).tolist()))


def test_write_read_round_trip(tmp_path):
    g = torch.Generator().manual_seed(1)
    occ = torch.rand(7, 7, 7, generator=g) > 0.6
    translate = torch.tensor([0.125, -2.5, 3.75])
    path = tmp_path / "rt.binvox"
    write_binvox(path, occ, translate, 1.7)
    occ2, translate2, scale2 = read_binvox(path)
    assert torch.equal(occ2, occ)
    assert torch.equal(translate2, translate)
    assert scale2 == pytest.approx(1.7)
    # an independent reader (trimesh's VoxelGrid, xzy storage order) agrees on [x, y, z]
    with open(path, "rb") as fh:
        grid = load_binvox(fh)
    assert np.array_equal(np.asarray(grid.matrix), occ.numpy())
    coords = read_binvox_coords(path)
    assert sorted(map(tuple, coords.tolist())) == sorted(map(tuple, occ.nonzero().tolist()))


def test_written_header_is_strict_and_counts_valid(tmp_path):
    dim = 8
    occ = np.zeros((dim, dim, dim), dtype=bool)
    # storage index 510 = 2 * 255 -> x=7, z=7, y=6; the leading empty run is exactly 2 * 255
    occ[7, 6, 7] = True
    path = tmp_path / "runs.binvox"
    write_binvox(path, occ)
    data = path.read_bytes()
    lines = data.split(b"\n")[:5]
    assert lines[0] == b"#binvox 1" and lines[1] == b"dim 8 8 8"
    assert lines[2].startswith(b"translate ") and lines[3].startswith(b"scale ")
    assert lines[4] == b"data"
    pairs = _rle_pairs(data)
    assert pairs[:, 1].min() >= 1 and pairs[:, 1].max() <= 255
    assert int(pairs[:, 1].astype(np.int64).sum()) == dim**3
    assert pairs.tolist() == [[0, 255], [0, 255], [1, 1], [0, 1]]
    assert np.array_equal(read_binvox(path)[0].numpy(), occ)


def test_voxel_centers_known_values():
    coords = torch.tensor([[0, 0, 0], [3, 1, 2]])
    centres = binvox_voxel_centers(coords, 4, translate=(1.0, 0.0, -1.0), scale=2.0)
    # (i + 0.5) / 4 * 2 + t
    expected = torch.tensor([[1.25, 0.25, -0.75], [2.75, 0.75, 0.25]])
    assert centres.dtype == torch.float32
    assert torch.allclose(centres, expected)
    with pytest.raises(ValueError, match="coords"):
        binvox_voxel_centers(torch.zeros(5, 2), 4)
    with pytest.raises(ValueError, match="dim"):
        binvox_voxel_centers(coords, 0)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"#voxels 1\ndim 2 2 2\ndata\n\x00\x08", "not a binvox"),
        (_binvox_bytes(2, [(0, 8)], dims=(2, 2, 3)), "cubic"),
        (_binvox_bytes(2, [(0, 3), (1, 2)]), "sum to 5"),
        (_binvox_bytes(2, [(0, 8), (1, 1)]), "sum to 9"),
        (_binvox_bytes(2, [(0, 8)]) + b"\x00", "odd number"),
        (b"#binvox 1\ndim 2 2 2\ntranslate 0 0 0\nscale 1\n", "header"),
        # Non-finite or non-positive placement would put every voxel at NaN / inf / a point.
        (_binvox_bytes(2, [(0, 8)], scale="nan"), "'scale' must be a positive finite"),
        (_binvox_bytes(2, [(0, 8)], scale="inf"), "'scale' must be a positive finite"),
        (_binvox_bytes(2, [(0, 8)], scale=0), "'scale' must be a positive finite"),
        (_binvox_bytes(2, [(0, 8)], scale=-1), "'scale' must be a positive finite"),
        (_binvox_bytes(2, [(0, 8)], translate=(0, "nan", 0)), "'translate' must be finite"),
        (_binvox_bytes(2, [(0, 8)], translate=("-inf", 0, 0)), "'translate' must be finite"),
        # A header claiming a huge grid is refused before any dense allocation.
        (_binvox_bytes(4096, [(0, 255)]), "exceeds MAX_BINVOX_DIM"),
    ],
)
def test_corrupt_files_name_the_file(tmp_path, data, message):
    path = tmp_path / "bad.binvox"
    path.write_bytes(data)
    with pytest.raises(MeshIOError, match=message) as info:
        read_binvox(path)
    assert "bad.binvox" in str(info.value)
    with pytest.raises(MeshIOError):
        read_binvox_coords(path)


def test_missing_file_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.binvox"):
        read_binvox(tmp_path / "nope.binvox")
    with pytest.raises(ValueError, match="binary mode"):
        read_binvox(io.StringIO("#binvox 1\n"))
    with pytest.raises(ValueError, match="occupancy"):
        write_binvox(tmp_path / "x.binvox", torch.zeros(2, 2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="translate"):
        write_binvox(tmp_path / "x.binvox", torch.zeros(2, 2, 2), translate=(0, 0))
    with pytest.raises(ValueError, match="scale"):
        write_binvox(tmp_path / "x.binvox", torch.zeros(2, 2, 2), scale=0.0)
