import math

import pytest
import torch
from conftest import load_golden

from meshrecon.ops.mesh_losses import (
    mesh_edge_loss,
    mesh_laplacian_smoothing,
    mesh_normal_consistency,
)
from meshrecon.structures import Meshes

METHODS = ["uniform", "cot", "cotcurv"]


# ----------------------------------------------------------------------------- fixtures
def random_mesh(num_verts: int, num_faces: int, g: torch.Generator, dtype):
    verts = torch.randn(num_verts, 3, generator=g, dtype=dtype)
    faces = torch.stack([torch.randperm(num_verts, generator=g)[:3] for _ in range(num_faces)])
    return verts, faces


def octahedron(dtype):
    verts = torch.tensor(
        [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1.0]], dtype=dtype
    )
    faces = torch.tensor(
        [[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]]
    )
    return verts, faces


def fan_with_shared_edge(dtype, g):
    """Five triangles on edge (0, 1) (non-manifold, so >2 faces share it) plus noise."""
    verts = torch.randn(8, 3, generator=g, dtype=dtype)
    faces = torch.tensor([[0, 1, k] for k in range(2, 7)] + [[2, 3, 7], [1, 7, 2]])
    return verts, faces


def ragged_batch(dtype=torch.float64, seed=0):
    """Meshes with shared edges, a non-manifold fan, isolated verts and an empty mesh."""
    g = torch.Generator().manual_seed(seed)
    octa_v, octa_f = octahedron(dtype)
    octa_v = octa_v + 0.1 * torch.randn(octa_v.shape, generator=g, dtype=dtype)
    parts = [
        (octa_v, octa_f),
        random_mesh(9, 7, g, dtype),
        (torch.randn(5, 3, generator=g, dtype=dtype), torch.zeros(0, 3, dtype=torch.long)),
        fan_with_shared_edge(dtype, g),
        (torch.zeros(0, 3, dtype=dtype), torch.zeros(0, 3, dtype=torch.long)),
    ]
    return [p[0] for p in parts], [p[1] for p in parts]


def leaf_copies(verts_list):
    return [v.clone().requires_grad_(True) for v in verts_list]


# ----------------------------------------------------------------------------- references
def unique_edges(faces):
    edges = set()
    for f in faces.tolist():
        for a, b in ((f[1], f[2]), (f[2], f[0]), (f[0], f[1])):
            edges.add((min(a, b), max(a, b)))
    return sorted(edges)


def edge_loss_loop(verts_list, faces_list, target):
    total = 0.0
    for verts, faces in zip(verts_list, faces_list):
        edges = unique_edges(faces)
        for a, b in edges:
            total = total + ((verts[a] - verts[b]).norm() - target) ** 2 / len(edges)
    return total / len(verts_list)


def cot(u, w):
    angle = torch.acos(torch.dot(u, w) / (u.norm() * w.norm()))
    return torch.cos(angle) / torch.sin(angle)


def laplacian_loop(verts_list, faces_list, method):
    total = 0.0
    for verts, faces in zip(verts_list, faces_list):
        V = verts.shape[0]
        const = verts.detach()  # PyTorch3D treats the Laplacian's weights as constants
        weights = [dict() for _ in range(V)]
        area = [0.0] * V
        if method == "uniform":
            for a, b in unique_edges(faces):
                weights[a][b] = weights[b][a] = 1.0
        else:
            for f in faces.tolist():
                for k in range(3):
                    o, i, j = f[k], f[(k + 1) % 3], f[(k + 2) % 3]
                    c = cot(const[i] - const[o], const[j] - const[o])
                    weights[i][j] = weights[i].get(j, 0.0) + c
                    weights[j][i] = weights[j].get(i, 0.0) + c
                e1, e2 = const[f[1]] - const[f[0]], const[f[2]] - const[f[0]]
                face_area = 0.5 * torch.linalg.cross(e1, e2).norm()
                for v in f:
                    area[v] = area[v] + face_area
        for i in range(V):
            lv = verts[i] * 0
            wsum = sum(weights[i].values())
            for j, w in weights[i].items():
                lv = lv + w * verts[j]
            if method == "uniform":
                lv = lv / len(weights[i]) - verts[i] if weights[i] else -verts[i]
            elif method == "cot":
                lv = lv / wsum - verts[i] if wsum > 0 else -verts[i]
            else:
                lv = (lv - wsum * verts[i]) / (4 * area[i]) if area[i] > 0 else lv * 0
            total = total + lv.norm() / V
    return total / len(verts_list)


def normal_consistency_loop(verts_list, faces_list):
    total = 0.0
    for verts, faces in zip(verts_list, faces_list):
        at_edge = {}
        for f in faces.tolist():  # faces in packed order, as PyTorch3D lists them
            for a, b, opp in ((f[1], f[2], f[0]), (f[2], f[0], f[1]), (f[0], f[1], f[2])):
                at_edge.setdefault((min(a, b), max(a, b)), []).append(opp)
        terms = []
        for (a, b), opps in sorted(at_edge.items()):
            m = len(opps)
            for i in range(m - 1):
                for j in range(1, m):
                    if i == j:
                        continue
                    e = verts[b] - verts[a]
                    n0 = torch.linalg.cross(e, verts[opps[i]] - verts[a])
                    n1 = torch.linalg.cross(verts[opps[j]] - verts[a], e)
                    cos = torch.dot(n0, n1) / (n0.norm() * n1.norm())
                    terms.append(1 - cos)
        if terms:
            total = total + sum(terms) / len(terms)
    return total / len(verts_list)


# ----------------------------------------------------------------------------- golden
def test_golden_pytorch3d():
    gold = load_golden("mesh_losses")
    meshes = Meshes(gold["verts"], gold["faces"])
    checks = {
        "edge_loss": mesh_edge_loss(meshes),
        "edge_loss_target0.1": mesh_edge_loss(meshes, target_length=0.1),
        "normal_consistency": mesh_normal_consistency(meshes),
    }
    for method in METHODS:
        checks[f"laplacian_{method}"] = mesh_laplacian_smoothing(meshes, method=method)
    for key, value in checks.items():
        torch.testing.assert_close(value, gold[key], rtol=1e-5, atol=0, msg=key)


# ----------------------------------------------------------------------------- vs loops
def _compare(fast_fn, loop_fn, seed=0):
    verts_list, faces_list = ragged_batch(seed=seed)
    v1, v2 = leaf_copies(verts_list), leaf_copies(verts_list)
    fast = fast_fn(Meshes(v1, faces_list))
    ref = loop_fn(v2, faces_list)
    torch.testing.assert_close(fast, ref, rtol=1e-8, atol=1e-10)
    used = [i for i, v in enumerate(v2) if v.shape[0] > 0]
    g1 = torch.autograd.grad(fast, [v1[i] for i in used], allow_unused=True)
    g2 = torch.autograd.grad(ref, [v2[i] for i in used], allow_unused=True)
    for i, a, b in zip(used, g1, g2):
        a = torch.zeros_like(v1[i]) if a is None else a
        b = torch.zeros_like(v2[i]) if b is None else b
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("target", [0.0, 0.7])
def test_edge_loss_matches_loop(target):
    _compare(lambda m: mesh_edge_loss(m, target), lambda v, f: edge_loss_loop(v, f, target))


@pytest.mark.parametrize("method", METHODS)
def test_laplacian_smoothing_matches_loop(method):
    _compare(
        lambda m: mesh_laplacian_smoothing(m, method), lambda v, f: laplacian_loop(v, f, method)
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_normal_consistency_matches_loop(seed):
    _compare(mesh_normal_consistency, normal_consistency_loop, seed=seed)


def test_normal_consistency_fold_angles():
    # Two triangles on edge (0, 1), the second rotated by theta about it: loss = 1 - cos(theta).
    for theta in (0.0, math.pi / 3, math.pi / 2, 2.5):
        verts = torch.tensor(
            [[0.0, 0, 0], [1, 0, 0], [0.5, 1, 0], [0.5, -math.cos(theta), math.sin(theta)]]
        )
        meshes = Meshes([verts], [torch.tensor([[0, 1, 2], [1, 0, 3]])])
        expected = torch.tensor(1 - math.cos(theta))
        torch.testing.assert_close(mesh_normal_consistency(meshes), expected, atol=1e-6, rtol=0)


def test_flat_and_regular_cases():
    # A unit-edge flat strip: edge loss 0 at target 1, normal consistency 0.
    verts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0.5, math.sqrt(3) / 2, 0], [1.5, 0.866, 0]])
    verts[3, 1] = math.sqrt(3) / 2
    meshes = Meshes([verts], [torch.tensor([[0, 1, 2], [1, 3, 2]])])
    torch.testing.assert_close(mesh_edge_loss(meshes, 1.0), torch.tensor(0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        mesh_normal_consistency(meshes), torch.tensor(0.0), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize(
    "loss_fn",
    [
        mesh_edge_loss,
        lambda m: mesh_edge_loss(m, 0.3),
        mesh_normal_consistency,
        # Only "uniform": the cotangent variants hold their weights constant on purpose (as
        # PyTorch3D does), so their gradient is checked against the loop reference instead.
        mesh_laplacian_smoothing,
    ],
)
def test_gradcheck(loss_fn):
    verts, faces = octahedron(torch.float64)
    g = torch.Generator().manual_seed(3)
    verts = (
        verts + 0.1 * torch.randn(verts.shape, generator=g, dtype=verts.dtype)
    ).requires_grad_()
    assert torch.autograd.gradcheck(lambda v: loss_fn(Meshes([v], [faces])), (verts,))


# ----------------------------------------------------------------------------- edge cases
@pytest.mark.parametrize(
    "loss_fn",
    [
        mesh_edge_loss,
        mesh_normal_consistency,
        *[lambda m, method=method: mesh_laplacian_smoothing(m, method) for method in METHODS],
    ],
)
def test_empty_batches_give_zero(loss_fn):
    for meshes in (
        Meshes([], []),
        Meshes([torch.rand(4, 3)], [torch.zeros(0, 3, dtype=torch.long)]),
    ):
        loss = loss_fn(meshes)
        assert loss.shape == (1,) and loss.item() == 0.0 and loss.requires_grad


def test_each_mesh_weighs_the_same():
    # Duplicating a mesh in the batch must not change the mean; a bigger mesh must not dominate.
    verts_list, faces_list = ragged_batch(torch.float32)
    a = Meshes(verts_list[:2], faces_list[:2])
    b = Meshes(verts_list[:2] * 3, faces_list[:2] * 3)
    for fn in (mesh_edge_loss, mesh_normal_consistency, mesh_laplacian_smoothing):
        torch.testing.assert_close(fn(a), fn(b))
    single = [mesh_edge_loss(Meshes([v], [f])) for v, f in zip(verts_list[:2], faces_list[:2])]
    torch.testing.assert_close(mesh_edge_loss(a), (single[0] + single[1]) / 2)


def test_invalid_inputs():
    meshes = Meshes(*ragged_batch(torch.float32))
    with pytest.raises(ValueError, match="method"):
        mesh_laplacian_smoothing(meshes, method="cotan")
    with pytest.raises(ValueError, match="meshes"):
        mesh_edge_loss(torch.rand(3, 4, 3))
    with pytest.raises(ValueError, match="meshes"):
        mesh_normal_consistency([torch.rand(3, 3)])
