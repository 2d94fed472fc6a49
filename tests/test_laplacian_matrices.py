import math

import pytest
import torch

from meshrecon.ops.laplacian_matrices import cot_laplacian, laplacian, norm_laplacian


def random_mesh(num_verts: int, num_faces: int, seed: int, dtype=torch.float64):
    """Random triangles with three distinct corners; some vertices stay isolated."""
    g = torch.Generator().manual_seed(seed)
    verts = torch.randn(num_verts, 3, generator=g, dtype=dtype)
    faces = torch.stack([torch.randperm(num_verts - 2, generator=g)[:3] for _ in range(num_faces)])
    return verts, faces


def edges_of(faces: torch.Tensor) -> torch.Tensor:
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).sort(dim=1).values
    return torch.unique(e, dim=0)


def laplacian_loop(num_verts, edges, dtype):
    deg = [0] * num_verts
    for a, b in edges.tolist():
        deg[a] += 1
        deg[b] += 1
    L = torch.zeros(num_verts, num_verts, dtype=dtype)
    for a, b in edges.tolist():
        L[a, b] += 1.0 / deg[a]
        L[b, a] += 1.0 / deg[b]
    for i in range(num_verts):
        L[i, i] = -1.0
    return L


def cot_laplacian_loop(verts, faces):
    """Cotangents from angles (acos of normalised dot products), one corner at a time."""
    V = verts.shape[0]
    rows = [[verts.new_zeros(()) for _ in range(V)] for _ in range(V)]
    area_sum = [verts.new_zeros(()) for _ in range(V)]
    for f in faces.tolist():
        for k in range(3):
            i, j, o = f[(k + 1) % 3], f[(k + 2) % 3], f[k]
            u, w = verts[i] - verts[o], verts[j] - verts[o]
            angle = torch.acos(torch.dot(u, w) / (u.norm() * w.norm()))
            cot = torch.cos(angle) / torch.sin(angle)
            rows[i][j] = rows[i][j] + cot
            rows[j][i] = rows[j][i] + cot
        area = 0.5 * torch.linalg.cross(verts[f[1]] - verts[f[0]], verts[f[2]] - verts[f[0]]).norm()
        for v in f:
            area_sum[v] = area_sum[v] + area
    L = torch.stack([torch.stack(r) for r in rows])
    inv = torch.stack([1.0 / a if a > 0 else a for a in area_sum]).view(-1, 1)
    return L, inv


def norm_laplacian_loop(verts, edges, eps):
    V = verts.shape[0]
    rows = [[verts.new_zeros(()) for _ in range(V)] for _ in range(V)]
    for a, b in edges.tolist():
        w = 1.0 / ((verts[a] - verts[b]).norm() + eps)
        rows[a][b] = rows[a][b] + w
        rows[b][a] = rows[b][a] + w
    return torch.stack([torch.stack(r) for r in rows])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_laplacian_matches_loop(dtype):
    verts, faces = random_mesh(12, 10, seed=0, dtype=dtype)
    # A repeated edge counts twice in the degree, as in PyTorch3D.
    edges = torch.cat([edges_of(faces), edges_of(faces)[:2]])
    L = laplacian(verts, edges)
    assert L.is_sparse and L.dtype == dtype and L.shape == (12, 12)
    torch.testing.assert_close(L.to_dense(), laplacian_loop(12, edges, dtype))
    # Isolated vertices: only the -1 on the diagonal.
    torch.testing.assert_close(L.to_dense()[10:], -torch.eye(12, dtype=dtype)[10:])


def test_laplacian_no_edges():
    L = laplacian(torch.randn(4, 3), torch.zeros(0, 2, dtype=torch.long))
    torch.testing.assert_close(L.to_dense(), -torch.eye(4))


def test_cot_laplacian_matches_loop_forward_backward():
    verts, faces = random_mesh(9, 8, seed=1)
    v1 = verts.clone().requires_grad_(True)
    v2 = verts.clone().requires_grad_(True)
    L, inv_areas = cot_laplacian(v1, faces)
    L_ref, inv_ref = cot_laplacian_loop(v2, faces)
    assert L.is_sparse and inv_areas.shape == (9, 1)
    torch.testing.assert_close(L.to_dense(), L_ref, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(inv_areas, inv_ref, rtol=1e-8, atol=1e-10)
    assert inv_areas[7:].abs().max() == 0  # vertices in no face
    g = torch.Generator().manual_seed(2)
    wl, wa = torch.randn(9, 9, generator=g, dtype=verts.dtype), torch.randn(9, 1, generator=g)
    (grad1,) = torch.autograd.grad((L.to_dense() * wl).sum() + (inv_areas * wa).sum(), v1)
    (grad2,) = torch.autograd.grad((L_ref * wl).sum() + (inv_ref * wa).sum(), v2)
    torch.testing.assert_close(grad1, grad2, rtol=1e-6, atol=1e-8)


def test_cot_laplacian_right_triangle():
    # Angles 90, 45, 45 degrees: cot = 0, 1, 1, so each leg's opposite corner gives 1.
    verts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    L, inv_areas = cot_laplacian(verts, torch.tensor([[0, 1, 2]]))
    dense = L.to_dense()
    torch.testing.assert_close(dense[1, 2], torch.tensor(0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(dense[0, 1], torch.tensor(1.0))
    torch.testing.assert_close(dense[2, 0], torch.tensor(1.0))
    torch.testing.assert_close(inv_areas, torch.full((3, 1), 2.0))


def test_cot_laplacian_degenerate_face_is_finite():
    verts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [2, 0, 0]], requires_grad=True)
    L, inv_areas = cot_laplacian(verts, torch.tensor([[0, 1, 2]]))
    assert torch.isfinite(L.to_dense()).all() and torch.isfinite(inv_areas).all()


def test_norm_laplacian_matches_loop_forward_backward():
    verts, faces = random_mesh(10, 7, seed=3)
    edges = edges_of(faces)
    v1 = verts.clone().requires_grad_(True)
    v2 = verts.clone().requires_grad_(True)
    L = norm_laplacian(v1, edges, eps=1e-3)
    L_ref = norm_laplacian_loop(v2, edges, eps=1e-3)
    torch.testing.assert_close(L.to_dense(), L_ref)
    w = torch.randn(10, 10, dtype=verts.dtype, generator=torch.Generator().manual_seed(0))
    (g1,) = torch.autograd.grad((L.to_dense() * w).sum(), v1)
    (g2,) = torch.autograd.grad((L_ref * w).sum(), v2)
    torch.testing.assert_close(g1, g2)


def test_gradcheck():
    verts, faces = random_mesh(6, 4, seed=4)
    verts.requires_grad_(True)
    edges = edges_of(faces)

    def cot_fn(v):
        L, inv = cot_laplacian(v, faces)
        return L.to_dense(), inv

    assert torch.autograd.gradcheck(cot_fn, (verts,))
    assert torch.autograd.gradcheck(lambda v: norm_laplacian(v, edges).to_dense(), (verts,))


def test_uniform_laplacian_points_to_neighbour_centroid():
    # A regular hexagon around a centre vertex: L V at the centre is the centroid offset.
    ring = [[math.cos(t * math.pi / 3), math.sin(t * math.pi / 3), 0.0] for t in range(6)]
    verts = torch.tensor([[0.1, -0.2, 0.3]] + ring)
    edges = torch.tensor([[0, k] for k in range(1, 7)])
    lv = torch.sparse.mm(laplacian(verts, edges), verts)
    torch.testing.assert_close(lv[0], -verts[0], rtol=1e-5, atol=1e-6)


def test_invalid_inputs():
    verts = torch.randn(5, 3)
    with pytest.raises(ValueError, match="verts"):
        laplacian(torch.randn(5, 2), torch.zeros(0, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="verts"):
        cot_laplacian(torch.zeros(5, 3, dtype=torch.long), torch.zeros(0, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="edges"):
        laplacian(verts, torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="edges"):
        norm_laplacian(verts, torch.tensor([[0, 5]]))
    with pytest.raises(ValueError, match="faces"):
        cot_laplacian(verts, torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match="faces"):
        cot_laplacian(verts, torch.tensor([[0.0, 1, 2]]))
    with pytest.raises(ValueError, match="faces"):
        cot_laplacian(verts, torch.tensor([[0, 1, -2]]))
