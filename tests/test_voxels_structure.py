"""meshrecon.structures.Voxels and its files (meshrecon.io.load_voxels / save_voxels)."""

import numpy as np
import pytest
import torch

from meshrecon.io import load_voxels, save_voxels, write_binvox
from meshrecon.ops import cubify
from meshrecon.structures import Voxels


def _grid(shape, seed, p=0.3):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) < p


def _points_loop(grid, box, align):
    # Reference: each occupied voxel [k, j, i] by hand, with the table of meshrecon.ops.voxels.
    c, m = {"center": (0.0, 1.0), "corner": (0.5, 0.0), "topleft": (0.5, 1.0)}[align]
    D, H, W = grid.shape
    out = []
    for k in range(D):
        for j in range(H):
            for i in range(W):
                if grid[k, j, i]:
                    p = []
                    for idx, size, axis in ((i, W, 0), (j, H, 1), (k, D, 2)):
                        u = (idx + c) * 2.0 / (size - m) - 1.0
                        lo, hi = float(box[0][axis]), float(box[1][axis])
                        p.append(lo + (u + 1.0) / 2.0 * (hi - lo))
                    out.append(p)
    return torch.tensor(out, dtype=torch.float64).reshape(-1, 3)


@pytest.mark.parametrize("align", ["corner", "center", "topleft"])
def test_to_points_matches_a_loop(align):
    grids = [_grid((3, 4, 5), 0), _grid((2, 3, 2), 1, 0.6)]
    boxes = torch.tensor([[[-1.0, 0.0, 2.0], [1.0, 0.5, 3.0]], [[0.0, 0.0, 0.0], [2.0, 3.0, 4.0]]])
    points = Voxels(grids, boxes, align).to_points()
    for grid, box, pts in zip(grids, boxes, points):
        torch.testing.assert_close(pts.double(), _points_loop(grid, box, align), atol=1e-6, rtol=0)


def test_probabilities_are_thresholded():
    probs = torch.tensor([[[0.1, 0.5], [0.7, 0.49]]])  # (1, 2, 2)
    pts = Voxels(probs[None], align="corner").to_points(thresh=0.5)[0]
    assert pts.shape == (2, 3)


@pytest.mark.parametrize("align", ["corner", "center", "topleft"])
def test_cubify_is_the_op_placed_in_the_box(align):
    probs = torch.rand(2, 4, 3, 5, generator=torch.Generator().manual_seed(3))
    box = torch.tensor([[0.0, -2.0, 1.0], [4.0, 2.0, 3.0]])
    meshes = Voxels(probs, box, align).cubify(thresh=0.5)
    ref = cubify(probs, 0.5, align=align)
    for v, f, rv, rf in zip(
        meshes.verts_list(), meshes.faces_list(), ref.verts_list(), ref.faces_list()
    ):
        assert torch.equal(f, rf)
        torch.testing.assert_close(v, box[0] + (rv + 1.0) / 2.0 * (box[1] - box[0]))


def test_cubify_of_a_bool_grid_ignores_thresh_and_empty_grid_gives_empty_mesh():
    g = torch.zeros(1, 3, 3, 3, dtype=torch.bool)
    g[0, 1, 1, 1] = True
    assert Voxels(g).cubify(thresh=0.9).verts_list()[0].shape == (8, 3)
    assert Voxels(torch.zeros(1, 2, 2, 2)).cubify().verts_list()[0].shape == (0, 3)


def test_indexing_and_device():
    grids = [_grid((2, 2, 2), i) for i in range(4)]
    boxes = torch.arange(4.0)[:, None, None] + torch.tensor([[0.0] * 3, [1.0] * 3])
    v = Voxels(grids, boxes)
    assert len(v[1:3]) == 2 and torch.equal(v[1:3].boxes(), boxes[1:3])
    assert torch.equal(v[2].grids_list()[0], grids[2])
    assert torch.equal(v[-1].boxes()[0], boxes[3])
    assert all(torch.equal(a, b) for a, b in zip(v[[3, 0]].grids_list(), [grids[3], grids[0]]))
    assert len(v[torch.tensor([True, False, True, False])]) == 2
    assert v.grids().shape == (4, 2, 2, 2)
    assert v.to("cpu") is v and v.device.type == "cpu"
    with pytest.raises(IndexError):
        v[4]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="grids"):
        Voxels(torch.zeros(2, 3, 3))
    with pytest.raises(ValueError, match="align"):
        Voxels(torch.zeros(1, 2, 2, 2), align="middle")
    with pytest.raises(ValueError, match="boxes"):
        Voxels(torch.zeros(2, 2, 2, 2), torch.zeros(3, 2, 3))
    with pytest.raises(ValueError, match="max > min"):
        Voxels(torch.zeros(1, 2, 2, 2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="different sizes"):
        Voxels([torch.zeros(2, 2, 2), torch.zeros(3, 2, 2)]).grids()


def test_npz_round_trip(tmp_path):
    grid = _grid((3, 4, 5), 7)
    box = torch.tensor([[-0.5, -0.25, 0.0], [0.5, 0.25, 1.0]])
    for align in ("corner", "center"):
        path = tmp_path / f"v_{align}.npz"
        save_voxels(path, Voxels([grid], box, align))
        back = load_voxels(path)
        assert back.align == align
        assert torch.equal(back.grids_list()[0], grid)
        assert torch.equal(back.boxes()[0], box)


def test_binvox_round_trip_and_header_box(tmp_path):
    grid = _grid((6, 6, 6), 8)
    box = torch.tensor([[0.25, -1.0, 2.0], [1.75, 0.5, 3.5]])  # cubic: side 1.5
    path = tmp_path / "v.binvox"
    save_voxels(path, Voxels([grid], box))
    back = load_voxels(path)
    assert torch.equal(back.grids_list()[0], grid)
    torch.testing.assert_close(back.boxes()[0], box)
    # A file written by the plain writer ([x, y, z] grid, header translate / scale).
    occ_xyz = grid.permute(2, 1, 0)
    write_binvox(tmp_path / "w.binvox", occ_xyz, [1.0, 2.0, 3.0], 2.0)
    w = load_voxels(tmp_path / "w.binvox")
    assert torch.equal(w.grids_list()[0], grid)
    assert torch.equal(w.boxes()[0], torch.tensor([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]]))


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="binvox"):
        save_voxels(tmp_path / "a.binvox", Voxels(torch.zeros(1, 2, 3, 3)))
    with pytest.raises(ValueError, match="cubic box"):
        save_voxels(tmp_path / "a.binvox", Voxels(torch.zeros(1, 2, 2, 2), [[0, 0, 0], [1, 2, 1]]))
    with pytest.raises(ValueError, match="unsupported voxel format"):
        load_voxels(tmp_path / "a.txt")
    np.savez(tmp_path / "bad.npz", occupancy=np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="bad.npz.*bounds"):
        load_voxels(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError):
        load_voxels(tmp_path / "missing.npz")
