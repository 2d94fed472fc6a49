import math

import pytest
import torch

import meshrecon.ops.voxels as voxels_module
from meshrecon.ops import (
    cubify,
    ellipsoid,
    ico_sphere,
    points_to_voxel_coords,
    voxel_coords_to_points,
    voxel_iou,
    voxelize_meshes,
)
from meshrecon.structures import Meshes

ALIGNS = ("center", "corner", "topleft")


def voxel_centres(dims, box, align):
    """Loop reference: (D, H, W, 3) centres from the documented per-axis formulas."""
    D, H, W = dims
    lo, hi = box
    out = torch.zeros(D, H, W, 3, dtype=torch.float64)

    def centre(i, size, a, b):
        if align == "corner":  # the voxels tile [a, b]
            return a + (i + 0.5) * (b - a) / size
        if align == "center":  # the centres span [a, b]
            return a + i * (b - a) / (size - 1)
        return a + (i + 0.5) * (b - a) / (size - 1)  # corners 0..size-1 span [a, b]

    for z in range(D):
        for y in range(H):
            for x in range(W):
                out[z, y, x, 0] = centre(x, W, lo[0], hi[0])
                out[z, y, x, 1] = centre(y, H, lo[1], hi[1])
                out[z, y, x, 2] = centre(z, D, lo[2], hi[2])
    return out


def winding_number(points: torch.Tensor, verts: torch.Tensor, faces: torch.Tensor):
    """Generalized winding number of a closed mesh at each point (solid-angle sum)."""
    tri = verts.double()[faces]
    out = []
    for p in points.double():
        a, b, c = (tri - p).unbind(1)
        la, lb, lc = a.norm(dim=1), b.norm(dim=1), c.norm(dim=1)
        det = (a * torch.linalg.cross(b, c, dim=1)).sum(1)
        den = la * lb * lc + (a * b).sum(1) * lc + (a * c).sum(1) * lb + (b * c).sum(1) * la
        out.append(float(2 * torch.atan2(det, den).sum() / (4 * math.pi)))
    return torch.tensor(out)


def test_voxel_iou_matches_loop():
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(4, 3, 4, 5, generator=g)
    gt = torch.rand(4, 3, 4, 5, generator=g) > 0.6
    pred[2] = 0.0
    gt[2] = False  # both empty
    gt[3] = False  # only the prediction occupies voxels
    iou = voxel_iou(pred, gt, thresh=0.4)
    for n in range(4):
        p = {i for i, v in enumerate(pred[n].flatten().tolist()) if v > 0.4}
        q = {i for i, v in enumerate(gt[n].flatten().tolist()) if v}
        expected = 1.0 if not (p | q) else len(p & q) / len(p | q)
        assert float(iou[n]) == pytest.approx(expected)
    assert float(iou[2]) == 1.0 and float(iou[3]) == 0.0
    # Bool predictions are used as they are; float ground truth is cut at 0.5.
    assert torch.equal(voxel_iou(pred > 0.4, gt.float()), iou)


def test_voxel_iou_invalid():
    with pytest.raises(ValueError, match="pred"):
        voxel_iou(torch.zeros(3, 3, 3), torch.zeros(3, 3, 3))
    with pytest.raises(ValueError, match="gt"):
        voxel_iou(torch.zeros(1, 3, 3, 3), torch.zeros(1, 3, 3, 2))


@pytest.mark.parametrize("align", ALIGNS)
def test_coords_points_formulas_and_round_trip(align):
    dims, box = (3, 4, 5), ([-0.5, 0.0, 1.0], [1.5, 2.0, 4.0])
    ref = voxel_centres(dims, box, align)
    zyx = torch.stack(torch.meshgrid(*[torch.arange(s) for s in dims], indexing="ij"), -1)
    coords = zyx.flip(-1)  # (x, y, z)
    points = voxel_coords_to_points(coords.double(), dims, box, align)
    torch.testing.assert_close(points, ref)
    assert voxel_coords_to_points(coords, dims, box, align).dtype == torch.float32
    back = points_to_voxel_coords(points, dims, box, align)
    torch.testing.assert_close(back, coords.double())
    g = torch.Generator().manual_seed(1)
    frac = torch.rand(7, 3, generator=g, dtype=torch.float64) * 4 - 0.5
    torch.testing.assert_close(
        points_to_voxel_coords(voxel_coords_to_points(frac, dims, box, align), dims, box, align),
        frac,
    )


def test_batched_box():
    g = torch.Generator().manual_seed(2)
    boxes = torch.tensor([[[-1.0, -1, -1], [1, 1, 1]], [[0.0, 0, 0], [2, 4, 8]]])
    coords = torch.rand(2, 6, 3, generator=g) * 7
    points = voxel_coords_to_points(coords, 8, boxes)
    for n in range(2):
        torch.testing.assert_close(points[n], voxel_coords_to_points(coords[n], 8, boxes[n]))
    torch.testing.assert_close(points_to_voxel_coords(points, 8, boxes), coords)
    with pytest.raises(ValueError, match="batched box"):
        voxel_coords_to_points(coords[0], 8, boxes)


@pytest.mark.parametrize("align", ALIGNS)
def test_cubify_cube_centred_on_voxel(align):
    # A single voxel's cube is centred where voxel_coords_to_points puts the voxel.
    grid = torch.zeros(1, 4, 5, 6)
    grid[0, 3, 1, 2] = 1.0
    verts = cubify(grid, 0.5, align=align).verts_list()[0]
    expected = voxel_coords_to_points(torch.tensor([2.0, 1.0, 3.0]), (4, 5, 6), align=align)
    torch.testing.assert_close(verts.mean(0), expected)


def test_conversion_invalid():
    with pytest.raises(ValueError, match="align"):
        voxel_coords_to_points(torch.zeros(2, 3), 4, align="middle")
    with pytest.raises(ValueError, match="grid_size"):
        voxel_coords_to_points(torch.zeros(2, 3), (4, 4))
    with pytest.raises(ValueError, match="box"):
        voxel_coords_to_points(torch.zeros(2, 3), 4, box=[[0, 0, 0], [1, 0, 1]])
    with pytest.raises(ValueError, match="coords"):
        voxel_coords_to_points(torch.zeros(2, 2), 4)
    with pytest.raises(ValueError, match="points"):
        points_to_voxel_coords(torch.zeros(2, 3, dtype=torch.int64), 4)
    with pytest.raises(ValueError, match="dimension"):
        points_to_voxel_coords(torch.zeros(2, 3), (1, 4, 4), align="center")


@pytest.mark.parametrize("align", ALIGNS)
def test_voxelize_cubified_grids_round_trip(align):
    g = torch.Generator().manual_seed(3)
    grids = torch.rand(4, 5, 6, 7, generator=g) > 0.55
    grids[2] = False  # an empty grid gives an empty mesh, which voxelizes to nothing
    meshes = cubify(grids.float(), 0.5, align=align)
    assert torch.equal(voxelize_meshes(meshes, (5, 6, 7), align=align), grids)


def test_voxelize_sphere_matches_winding_number():
    g = torch.Generator().manual_seed(4)
    sphere = ico_sphere(2)
    # Off-centre and anisotropic, so no symmetry hides an axis mix-up.
    verts = sphere.verts_list()[0] * torch.tensor([0.9, 0.6, 0.75]) + torch.tensor([0.05, -0.1, 0])
    verts = verts + 0.01 * torch.randn(verts.shape, generator=g)
    mesh = Meshes(verts=[verts], faces=sphere.faces_list()[0:1])
    dims, box = (9, 10, 11), ([-1.1, -1.0, -0.9], [1.0, 1.1, 1.2])
    occ = voxelize_meshes(mesh, dims, box, align="corner")
    centres = voxel_centres(dims, box, "corner").view(-1, 3)
    ref = winding_number(centres, verts, sphere.faces_list()[0]) > 0.5
    assert occ.shape == (1, *dims)
    assert torch.equal(occ.view(-1), ref)
    assert 0 < int(ref.sum()) < ref.numel()


def test_voxelize_octahedron_degenerate_rays():
    # Rays through the apexes and along the edges (both project onto column centres) must still
    # count each crossing once.
    r = 0.87
    verts = torch.tensor(
        [[r, 0, 0], [-r, 0, 0], [0, r, 0], [0, -r, 0], [0, 0, r], [0, 0, -r]], dtype=torch.float32
    )
    faces = torch.tensor(
        [[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]]
    )
    mesh = Meshes(verts=[verts, verts], faces=[faces, faces.flip(1)])  # either winding
    occ = voxelize_meshes(mesh, 21)  # centres on multiples of 0.1, including 0
    centres = voxel_centres((21, 21, 21), ([-1.0] * 3, [1.0] * 3), "center")
    ref = centres.abs().sum(-1) < r
    assert torch.equal(occ[0], ref) and torch.equal(occ[1], ref)


def test_voxelize_batch_boxes_and_chunking(monkeypatch):
    base = ellipsoid(1, axes=(0.7, 0.5, 0.6), center=(0.0, 0.0, 0.0))
    v, f = base.verts_list()[0], base.faces_list()[0]
    shift, scale = torch.tensor([2.0, -1.0, 5.0]), 3.0
    meshes = Meshes(
        verts=[v, v * scale + shift, torch.zeros(0, 3)],
        faces=[f, f, torch.zeros(0, 3, dtype=torch.int64)],
    )
    unit = torch.tensor([[-1.0, -1, -1], [1, 1, 1]])
    boxes = torch.stack([unit, unit * scale + shift, unit])
    dims = (12, 10, 8)
    occ = voxelize_meshes(meshes, dims, boxes, align="topleft")
    assert occ.shape == (3, *dims)
    assert torch.equal(occ[0], occ[1]) and int(occ[0].sum()) > 0 and not occ[2].any()
    alone = voxelize_meshes(base, dims, unit, align="topleft")
    assert torch.equal(alone[0], occ[0])
    monkeypatch.setattr(voxels_module, "_MAX_PAIRS", 7)
    assert torch.equal(voxelize_meshes(meshes, dims, boxes, align="topleft"), occ)


def test_voxelize_partly_outside_grid():
    # A mesh sticking out of the box is clipped, not wrapped around.
    mesh = ellipsoid(1, axes=(1.0, 1.0, 1.0), center=(0.8, 0.0, 0.0))
    occ = voxelize_meshes(mesh, 16, align="corner")
    centres = voxel_centres((16, 16, 16), ([-1.0] * 3, [1.0] * 3), "corner")
    ref = (centres - torch.tensor([0.8, 0, 0], dtype=torch.float64)).norm(dim=-1) < 1
    # The polyhedron is inscribed in the sphere: equal away from the surface.
    far = ((centres - torch.tensor([0.8, 0, 0], dtype=torch.float64)).norm(dim=-1) - 1).abs() > 0.1
    assert torch.equal(occ[0][far], ref[far])


def test_voxelize_empty_batch_and_invalid():
    assert voxelize_meshes(Meshes(verts=[], faces=[]), 4).shape == (0, 4, 4, 4)
    with pytest.raises(ValueError, match="meshes"):
        voxelize_meshes(torch.zeros(3, 3), 4)
    with pytest.raises(ValueError, match="box"):
        voxelize_meshes(ico_sphere(0), 4, box=torch.zeros(2, 2, 3))
    with pytest.raises(ValueError, match="grid_size"):
        voxelize_meshes(ico_sphere(0), 0)
