import pytest
import torch
from conftest import load_golden

from meshrecon.ops import cubify, cubify_packed
from meshrecon.structures import Meshes

ALIGNS = ("topleft", "corner", "center")

# Unit-cube corners of each face as (x, y, z) offsets, counter-clockwise seen from outside,
# keyed by the neighbour direction (dx, dy, dz). Written independently of the module's table.
FACE_CORNERS = {
    (-1, 0, 0): ((0, 0, 0), (0, 0, 1), (0, 1, 1), (0, 1, 0)),
    (1, 0, 0): ((1, 0, 0), (1, 1, 0), (1, 1, 1), (1, 0, 1)),
    (0, -1, 0): ((0, 0, 0), (1, 0, 0), (1, 0, 1), (0, 0, 1)),
    (0, 1, 0): ((0, 1, 0), (0, 1, 1), (1, 1, 1), (1, 1, 0)),
    (0, 0, -1): ((0, 0, 0), (0, 1, 0), (1, 1, 0), (1, 0, 0)),
    (0, 0, 1): ((0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1)),
}


def lattice_coord(j: int, size: int, align: str) -> float:
    """Normalized coordinate of lattice plane j along an axis of `size` voxels."""
    if align == "corner":
        return 2.0 * j / size - 1.0
    if align == "topleft":
        return 2.0 * j / (size - 1) - 1.0
    return 2.0 * (j - 0.5) / (size - 1) - 1.0


def naive_cubify(grid: torch.Tensor, thresh: float, align: str):
    """Loop reference for one (D, H, W) grid: quads of exposed faces, split into triangles.

    Returns verts (V, 3), quads (Q, 4) (counter-clockwise) and the (z, y, x) voxel of each quad.
    """
    D, H, W = grid.shape
    occ = (grid >= thresh).tolist()

    def occupied(z, y, x):
        return 0 <= z < D and 0 <= y < H and 0 <= x < W and occ[z][y][x]

    index, verts, quads, owners = {}, [], [], []
    for z in range(D):
        for y in range(H):
            for x in range(W):
                if not occ[z][y][x]:
                    continue
                for (dx, dy, dz), corners in FACE_CORNERS.items():
                    if occupied(z + dz, y + dy, x + dx):
                        continue
                    quad = []
                    for cx, cy, cz in corners:
                        key = (x + cx, y + cy, z + cz)
                        if key not in index:
                            index[key] = len(verts)
                            verts.append(
                                [
                                    lattice_coord(key[0], W, align),
                                    lattice_coord(key[1], H, align),
                                    lattice_coord(key[2], D, align),
                                ]
                            )
                        quad.append(index[key])
                    quads.append(quad)
                    owners.append((z, y, x))
    return (
        torch.tensor(verts, dtype=torch.float32).view(-1, 3),
        torch.tensor(quads, dtype=torch.int64).view(-1, 4),
        owners,
    )


def canonical(verts: torch.Tensor, faces: torch.Tensor):
    """Order-free form: vertices sorted lexicographically, faces renumbered, each face rotated to
    start at its smallest index (keeping its winding), rows sorted."""
    if verts.shape[0] == 0:
        return verts.view(0, 3), faces.view(0, 3)
    rounded = verts.double().mul(1e5).round()
    order = sorted(range(verts.shape[0]), key=lambda i: tuple(rounded[i].tolist()))
    rank = torch.empty(len(order), dtype=torch.int64)
    rank[torch.tensor(order)] = torch.arange(len(order))
    f = rank[faces]
    start = f.argmin(1, keepdim=True)
    f = torch.gather(f, 1, (start + torch.arange(3)) % 3)
    rows = sorted(map(tuple, f.tolist()))
    return verts[torch.tensor(order)], torch.tensor(rows, dtype=torch.int64).view(-1, 3)


def quads_to_triangle_sets(verts, quads):
    """Canonical form of a quad mesh, for any diagonal: the set of (canonical) quads."""
    rounded = verts.double().mul(1e5).round()
    keys = [tuple(r) for r in rounded.tolist()]
    out = []
    for q in quads.tolist():
        k = [keys[i] for i in q]
        s = k.index(min(k))
        out.append(tuple(k[s:] + k[:s]))
    return sorted(out)


def triangles_to_quads(verts, faces):
    """Pair cubify's triangles (2k, 2k+1) back into quads (corners ccw), as coordinate tuples."""
    rounded = verts.double().mul(1e5).round()
    keys = [tuple(r) for r in rounded.tolist()]
    out = []
    f = faces.tolist()
    for t0, t1 in zip(f[0::2], f[1::2]):
        # The two triangles share a diagonal; walk the boundary of their union.
        shared = set(t0) & set(t1)
        assert len(shared) == 2
        a = next(i for i in t0 if i not in shared)
        b = next(i for i in t1 if i not in shared)
        i = t0.index(a)
        quad = [a, t0[(i + 1) % 3], b, t0[(i + 2) % 3]]
        k = [keys[j] for j in quad]
        s = k.index(min(k))
        out.append(tuple(k[s:] + k[:s]))
    return sorted(out)


@pytest.fixture
def rand_grids():
    g = torch.Generator().manual_seed(0)
    return torch.rand((3, 4, 5, 6), generator=g)


@pytest.mark.parametrize("align", ALIGNS)
def test_golden_sets(align):
    gold = load_golden("cubify")
    meshes = cubify(gold["voxels"], gold["thresh"], align=align)
    assert len(meshes) == gold["voxels"].shape[0]
    for n in range(len(meshes)):
        v, f = canonical(meshes.verts_list()[n], meshes.faces_list()[n])
        gv, gf = canonical(gold[f"{align}_verts"][n], gold[f"{align}_faces"][n])
        assert v.shape == gv.shape and f.shape == gf.shape
        torch.testing.assert_close(v, gv, rtol=1e-5, atol=1e-6)
        assert torch.equal(f, gf)


@pytest.mark.parametrize("align", ALIGNS)
def test_golden_exact_order(align):
    # Not required by the semantics, but PyTorch3D's vertex and face order is kept so that
    # per-face data lines up between the two libraries.
    gold = load_golden("cubify")
    meshes = cubify(gold["voxels"], gold["thresh"], align=align)
    for n in range(len(meshes)):
        torch.testing.assert_close(
            meshes.verts_list()[n], gold[f"{align}_verts"][n], rtol=1e-5, atol=1e-6
        )
        assert torch.equal(meshes.faces_list()[n], gold[f"{align}_faces"][n])


@pytest.mark.parametrize("align", ALIGNS)
@pytest.mark.parametrize("density", [0.0, 0.3, 0.7, 1.0])
def test_matches_naive_loop(align, density):
    g = torch.Generator().manual_seed(int(density * 10) + len(align))
    grids = torch.rand((3, 4, 5, 3), generator=g) + (0.5 - density)
    # One empty grid in the batch, whatever the density.
    grids[1] = 0.0
    meshes = cubify(grids, 0.5, align=align)
    assert len(meshes) == 3
    for n in range(3):
        rv, rq, _ = naive_cubify(grids[n], 0.5, align)
        v, f = meshes.verts_list()[n], meshes.faces_list()[n]
        assert v.shape == rv.shape and f.shape[0] == 2 * rq.shape[0]
        cv, _ = canonical(v, f)
        crv, _ = canonical(rv, rq[:, :3])
        torch.testing.assert_close(cv, crv)
        assert triangles_to_quads(v, f) == quads_to_triangle_sets(rv, rq)
    assert meshes.verts_list()[1].shape == (0, 3) and meshes.faces_list()[1].shape == (0, 3)


def signed_volume(verts: torch.Tensor, faces: torch.Tensor) -> float:
    tri = verts.double()[faces]
    return float(torch.linalg.det(tri).sum() / 6.0)


@pytest.mark.parametrize("align", ALIGNS)
def test_closed_outward_and_volume(rand_grids, align):
    meshes = cubify(rand_grids, 0.5, align=align)
    D, H, W = rand_grids.shape[1:]
    pitch = {"corner": (2 / W, 2 / H, 2 / D), "topleft": (2 / (W - 1), 2 / (H - 1), 2 / (D - 1))}
    pitch["center"] = pitch["topleft"]
    cell = pitch[align][0] * pitch[align][1] * pitch[align][2]
    for n in range(len(meshes)):
        v, f = meshes.verts_list()[n], meshes.faces_list()[n]
        # Closed with consistent winding: every directed edge is matched by its reverse.
        directed = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
        fwd = sorted(map(tuple, directed.tolist()))
        rev = sorted(map(tuple, directed.flip(1).tolist()))
        assert fwd == rev
        # Outward normals <=> positive volume equal to the occupied voxels' volume.
        occupied = int((rand_grids[n] >= 0.5).sum())
        assert signed_volume(v, f) == pytest.approx(occupied * cell, rel=1e-5)
        # Every vertex is used.
        assert torch.equal(torch.unique(f), torch.arange(v.shape[0]))


def test_threshold_is_inclusive():
    grid = torch.zeros(1, 2, 2, 2)
    grid[0, 0, 0, 0] = 0.5
    meshes = cubify(grid, 0.5)
    assert meshes.verts_list()[0].shape[0] == 8 and meshes.faces_list()[0].shape[0] == 12


def test_single_voxel_position_per_align():
    grid = torch.zeros(1, 3, 4, 5)
    grid[0, 1, 2, 3] = 1.0  # z = 1, y = 2, x = 3
    expected_lo = {
        "topleft": (2 * 3 / 4 - 1, 2 * 2 / 3 - 1, 2 * 1 / 2 - 1),
        "corner": (2 * 3 / 5 - 1, 2 * 2 / 4 - 1, 2 * 1 / 3 - 1),
        "center": (2 * 2.5 / 4 - 1, 2 * 1.5 / 3 - 1, 2 * 0.5 / 2 - 1),
    }
    for align, lo in expected_lo.items():
        v = cubify(grid, 0.5, align=align).verts_list()[0]
        torch.testing.assert_close(v.min(0).values, torch.tensor(lo))


def test_empty_inputs():
    meshes = cubify(torch.zeros(2, 3, 3, 3), 0.5)
    assert len(meshes) == 2
    assert meshes.verts_packed().shape == (0, 3) and meshes.faces_packed().shape == (0, 3)
    assert len(cubify(torch.zeros(0, 3, 3, 3), 0.5)) == 0
    v, f, nv, nf = cubify_packed(torch.zeros(2, 3, 3, 3), 0.5)
    assert v.shape == (0, 3) and f.shape == (0, 3) and nv.tolist() == [0, 0] == nf.tolist()


def test_packed_matches_meshes(rand_grids):
    v, f, nv, nf = cubify_packed(rand_grids, 0.5, align="center")
    meshes = cubify(rand_grids, 0.5, align="center")
    assert torch.equal(nv, meshes.num_verts_per_mesh())
    assert torch.equal(nf, meshes.num_faces_per_mesh())
    assert torch.equal(v, meshes.verts_packed())
    assert torch.equal(f, torch.cat(meshes.faces_list()))


@pytest.mark.parametrize("align", ALIGNS)
def test_feats_per_face(rand_grids, align):
    g = torch.Generator().manual_seed(3)
    N, D, H, W = rand_grids.shape
    feats = torch.rand((N, 2, D, H, W), generator=g)
    meshes, face_feats = cubify(rand_grids, 0.5, feats=feats, align=align)
    assert face_feats.shape == (meshes.faces_packed().shape[0], 2)
    owner = meshes.faces_packed_to_mesh_idx()
    for n in range(N):
        _, _, voxels = naive_cubify(rand_grids[n], 0.5, align)
        # cubify's faces come in voxel (y, x, z) order; the loop reference in (z, y, x) order.
        mine = face_feats[owner == n][0::2]
        ref = torch.stack([feats[n, :, z, y, x] for z, y, x in voxels])
        key = lambda t: sorted(map(tuple, t.mul(1e6).round().tolist()))  # noqa: E731
        assert key(mine) == key(ref)
    # Each face's features are those of the voxel just inside the face.
    tri = meshes.verts_packed()[meshes.faces_packed()]
    normal = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal = normal / normal.norm(dim=1, keepdim=True)
    sizes = torch.tensor([W, H, D], dtype=torch.float32)
    c, m = {"topleft": (0.5, 1), "corner": (0.5, 0), "center": (0.0, 1)}[align]
    inner = tri.mean(1) - 0.25 * normal * (2 / (sizes - m))
    idx = ((inner + 1) / (2 / (sizes - m)) - c).round().long()
    expected = feats[owner, :, idx[:, 2], idx[:, 1], idx[:, 0]]
    torch.testing.assert_close(face_feats, expected)


def test_device_argument(rand_grids):
    meshes = cubify(rand_grids, 0.5, device="cpu")
    assert meshes.verts_packed().device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(rand_grids):
    cpu = cubify(rand_grids, 0.5)
    gpu = cubify(rand_grids.cuda(), 0.5)
    assert torch.equal(cpu.verts_packed(), gpu.verts_packed().cpu())
    assert torch.equal(cpu.faces_packed(), gpu.faces_packed().cpu())


def test_invalid_inputs(rand_grids):
    with pytest.raises(ValueError, match="align"):
        cubify(rand_grids, 0.5, align="middle")
    with pytest.raises(ValueError, match="voxels"):
        cubify(rand_grids[0], 0.5)
    with pytest.raises(ValueError, match="feats"):
        cubify(rand_grids, 0.5, feats=torch.zeros(3, 2, 4, 5))
    with pytest.raises(ValueError, match="dimension"):
        cubify(torch.ones(1, 1, 3, 3), 0.5, align="topleft")
    # A dimension of 1 is fine when the cubes tile [-1, 1].
    assert cubify(torch.ones(1, 1, 3, 3), 0.5, align="corner").faces_packed().shape[0] == 2 * (
        2 * 9 + 2 * 3 + 2 * 3
    )


def test_returns_meshes(rand_grids):
    assert isinstance(cubify(rand_grids, 0.5), Meshes)
