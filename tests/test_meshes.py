"""Tests for meshrecon.structures.meshes against PyTorch3D golden outputs and naive loops."""

import math

import pytest
import torch
from conftest import load_golden

from meshrecon.structures import Meshes, join_meshes_as_batch, join_meshes_as_scene

# (V, F) per mesh: ragged, with an empty mesh and a mesh with verts but no faces.
SIZES = [(9, 14), (0, 0), (12, 20), (5, 0), (4, 3)]


def random_meshes(sizes=SIZES, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    verts, faces = [], []
    for V, F in sizes:
        verts.append(torch.randn(V, 3, generator=g, dtype=dtype))
        # Three distinct corners per face: no degenerate triangles.
        corners = [torch.randperm(V, generator=g)[:3] for _ in range(F)]
        faces.append(torch.stack(corners) if F else torch.zeros(0, 3, dtype=torch.int64))
    return verts, faces


def torus(m=6, n=5, seed=0):
    """A closed m x n torus grid: every edge borders exactly two faces."""
    i, j = torch.meshgrid(torch.arange(m), torch.arange(n), indexing="ij")
    u, v = 2 * math.pi * i / m, 2 * math.pi * j / n
    verts = torch.stack(
        [(2 + torch.cos(v)) * torch.cos(u), (2 + torch.cos(v)) * torch.sin(u), torch.sin(v)], -1
    ).view(-1, 3)
    verts = verts + 0.01 * torch.randn(verts.shape, generator=torch.Generator().manual_seed(seed))
    a = (i * n + j).view(-1)
    b = (((i + 1) % m) * n + j).view(-1)
    c = (((i + 1) % m) * n + (j + 1) % n).view(-1)
    d = (i * n + (j + 1) % n).view(-1)
    faces = torch.cat([torch.stack([a, b, c], 1), torch.stack([a, c, d], 1)])
    return verts.float(), faces


def naive_face_geometry(verts, faces):
    """Per-face areas and unit normals, and area-weighted unit vertex normals, by loops."""
    areas, normals = [], []
    vnormals = torch.zeros(verts.shape, dtype=torch.float64)
    for f in faces.tolist():
        p0, p1, p2 = (verts[k].double() for k in f)
        cross = torch.linalg.cross(p1 - p0, p2 - p0)
        norm = cross.norm()
        areas.append(norm / 2)
        normals.append(cross / max(norm, 1e-6))
        for k in f:
            vnormals[k] += cross
    vnormals = torch.stack([n / max(n.norm(), 1e-6) for n in vnormals]) if len(verts) else vnormals
    areas = torch.stack(areas) if areas else torch.zeros(0, dtype=torch.float64)
    normals = torch.stack(normals) if normals else torch.zeros(0, 3, dtype=torch.float64)
    return areas, normals, vnormals


def naive_edges(faces_packed):
    return sorted(
        {
            tuple(sorted((f[a], f[b])))
            for f in faces_packed.tolist()
            for a, b in ((1, 2), (2, 0), (0, 1))
        }
    )


def close(a, b, tol=1e-5):
    return torch.allclose(a.double(), b.double(), rtol=tol, atol=tol * max(1.0, b.abs().max()))


# ---------------------------------------------------------------------- golden
def test_golden_views_match_pytorch3d():
    g = load_golden("mesh_losses")
    for meshes in (
        Meshes(g["verts"], g["faces"]),
        Meshes(
            torch.nn.utils.rnn.pad_sequence(g["verts"], batch_first=True),
            Meshes(g["verts"], g["faces"]).faces_padded(),
        ),
    ):
        assert close(meshes.faces_areas_packed(), g["faces_areas_packed"])
        assert close(meshes.faces_normals_packed(), g["faces_normals_packed"])
        assert torch.equal(meshes.edges_packed(), g["edges_packed"])
    meshes = Meshes(g["verts"], g["faces"])
    assert close(meshes.verts_normals_packed(), g["verts_normals_packed"])


# ---------------------------------------------------------------------- views
@pytest.mark.parametrize("from_padded", [False, True])
def test_views_match_loops(from_padded):
    verts, faces = random_meshes()
    meshes = Meshes(verts, faces)
    if from_padded:
        meshes = Meshes(meshes.verts_padded(), meshes.faces_padded())
        V = max(v.shape[0] for v in verts)
        verts = [torch.cat([v, torch.zeros(V - v.shape[0], 3)]) for v in verts]
    nv = [v.shape[0] for v in verts]
    nf = [f.shape[0] for f in faces]
    assert meshes.num_verts_per_mesh().tolist() == nv
    assert meshes.num_faces_per_mesh().tolist() == nf
    assert all(torch.equal(a, b) for a, b in zip(meshes.verts_list(), verts))
    assert all(torch.equal(a, b) for a, b in zip(meshes.faces_list(), faces))

    vp, fp = meshes.verts_padded(), meshes.faces_padded()
    assert vp.shape == (5, max(nv), 3) and fp.shape == (5, max(nf), 3)
    for i in range(5):
        assert torch.equal(vp[i, : nv[i]], verts[i]) and not vp[i, nv[i] :].any()
        assert torch.equal(fp[i, : nf[i]], faces[i]) and (fp[i, nf[i] :] == -1).all()

    vstart = [sum(nv[:i]) for i in range(5)]
    fstart = [sum(nf[:i]) for i in range(5)]
    assert torch.equal(meshes.verts_packed(), torch.cat(verts))
    assert torch.equal(meshes.faces_packed(), torch.cat([f + s for f, s in zip(faces, vstart)]))
    assert meshes.mesh_to_verts_packed_first_idx().tolist() == vstart
    assert meshes.mesh_to_faces_packed_first_idx().tolist() == fstart
    assert meshes.verts_packed_to_mesh_idx().tolist() == [i for i in range(5) for _ in range(nv[i])]
    assert meshes.faces_packed_to_mesh_idx().tolist() == [i for i in range(5) for _ in range(nf[i])]
    expected = [i * max(nv) + k for i in range(5) for k in range(nv[i])]
    assert meshes.verts_padded_to_packed_idx().tolist() == expected
    assert torch.equal(vp.view(-1, 3)[meshes.verts_padded_to_packed_idx()], meshes.verts_packed())


def test_flags_valid_equisized_isempty():
    verts, faces = random_meshes()
    meshes = Meshes(verts, faces)
    assert meshes.valid.tolist() == [True, False, True, False, True]
    assert not meshes.equisized and not meshes.isempty() and len(meshes) == 5
    same = Meshes([verts[0], verts[0]], [faces[0], faces[0]])
    assert same.equisized
    assert Meshes(verts[1:2], faces[1:2]).isempty()
    assert Meshes(verts[3:4], faces[3:4]).isempty()
    empty = Meshes([], [])
    assert empty.isempty() and len(empty) == 0
    assert empty.verts_packed().shape == (0, 3) and empty.faces_packed().shape == (0, 3)
    assert empty.verts_padded().shape == (0, 0, 3) and empty.edges_packed().shape == (0, 2)
    assert empty.get_bounding_boxes().shape == (0, 3, 2)


def test_padded_faces_count_and_padding_order():
    verts = torch.rand(2, 4, 3)
    faces = torch.tensor([[[0, 1, 2], [1, 2, 3]], [[0, 2, 3], [-1, -1, -1]]])
    meshes = Meshes(verts, faces)
    assert meshes.num_faces_per_mesh().tolist() == [2, 1]
    assert meshes.num_verts_per_mesh().tolist() == [4, 4]
    assert meshes.faces_packed().tolist() == [[0, 1, 2], [1, 2, 3], [4, 6, 7]]
    with pytest.raises(ValueError, match="padding"):
        Meshes(verts, faces.flip(1))


# ---------------------------------------------------------------------- edges
def test_edges_match_naive():
    verts, faces = random_meshes(seed=3)
    meshes = Meshes(verts, faces)
    fp = meshes.faces_packed()
    edges = meshes.edges_packed()
    assert edges.tolist() == [list(e) for e in naive_edges(fp)]
    owner = meshes.verts_packed_to_mesh_idx()[edges[:, 0]]
    assert torch.equal(meshes.edges_packed_to_mesh_idx(), owner)
    counts = [int((owner == i).sum()) for i in range(5)]
    assert meshes.num_edges_per_mesh().tolist() == counts
    assert meshes.mesh_to_edges_packed_first_idx().tolist() == [sum(counts[:i]) for i in range(5)]
    f2e = meshes.faces_packed_to_edges_packed()
    assert f2e.shape == fp.shape
    for f, e in zip(fp.tolist(), f2e.tolist()):
        for k in range(3):
            opposite = sorted((f[(k + 1) % 3], f[(k + 2) % 3]))
            assert edges[e[k]].tolist() == opposite


def test_closed_surface_edge_count():
    verts, faces = torus()
    meshes = Meshes([verts, verts], [faces, faces])
    F = faces.shape[0]
    assert meshes.num_edges_per_mesh().tolist() == [3 * F // 2] * 2
    # Each edge of a closed manifold borders exactly two faces.
    counts = torch.bincount(meshes.faces_packed_to_edges_packed().view(-1))
    assert (counts == 2).all()


# ---------------------------------------------------------------------- geometry
def test_normals_and_areas_match_naive():
    verts, faces = random_meshes(seed=1)
    meshes = Meshes(verts, faces)
    areas, normals, vnormals = naive_face_geometry(meshes.verts_packed(), meshes.faces_packed())
    assert close(meshes.faces_areas_packed(), areas)
    assert close(meshes.faces_normals_packed(), normals)
    assert close(meshes.verts_normals_packed(), vnormals)
    nf = meshes.num_faces_per_mesh().tolist()
    nv = meshes.num_verts_per_mesh().tolist()
    for i, (fl, vl) in enumerate(zip(meshes.faces_normals_list(), meshes.verts_normals_list())):
        assert fl.shape == (nf[i], 3) and vl.shape == (nv[i], 3)
        assert torch.equal(meshes.faces_normals_padded()[i, : nf[i]], fl)
        assert torch.equal(meshes.verts_normals_padded()[i, : nv[i]], vl)
    # Vertices of the face-less mesh have no normal.
    assert not meshes.verts_normals_list()[3].any()


def test_degenerate_face_has_zero_normal_and_area():
    verts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [0, 1, 0]])
    meshes = Meshes([verts], [torch.tensor([[0, 1, 2], [0, 1, 3]])])
    assert meshes.faces_areas_packed().tolist() == [0.0, 0.5]
    assert meshes.faces_normals_packed().tolist() == [[0.0, 0, 0], [0, 0, 1]]
    assert torch.isfinite(meshes.verts_normals_packed()).all()


def test_laplacian_matches_dense_loop():
    verts, faces = random_meshes(seed=2)
    meshes = Meshes(verts, faces)
    V = meshes.verts_packed().shape[0]
    neighbors = [set() for _ in range(V)]
    for a, b in meshes.edges_packed().tolist():
        neighbors[a].add(b)
        neighbors[b].add(a)
    dense = torch.zeros(V, V)
    for i in range(V):
        dense[i, i] = -1
        for j in neighbors[i]:
            dense[i, j] = 1 / len(neighbors[i])
    L = meshes.laplacian_packed()
    assert L.is_sparse and L.shape == (V, V)
    assert torch.allclose(L.to_dense(), dense)


def test_bounding_boxes_match_loop():
    verts, faces = random_meshes(seed=4)
    boxes = Meshes(verts, faces).get_bounding_boxes()
    assert boxes.shape == (5, 3, 2)
    for i, v in enumerate(verts):
        if len(v):
            assert torch.equal(boxes[i, :, 0], v.min(0).values)
            assert torch.equal(boxes[i, :, 1], v.max(0).values)
        else:
            assert not boxes[i].any()


# ---------------------------------------------------------------------- autograd
@pytest.mark.parametrize("from_padded", [False, True])
def test_gradients_flow_to_input_verts(from_padded):
    verts, faces = random_meshes(seed=5, dtype=torch.float64)
    if from_padded:
        ref = Meshes(verts, faces)
        source = ref.verts_padded().clone().requires_grad_(True)
        meshes = Meshes(source, ref.faces_padded())
        verts = list(ref.verts_padded().unbind(0))  # every padded row is a vertex here
    else:
        source = [v.clone().requires_grad_(True) for v in verts]
        meshes = Meshes(source, faces)
    g = torch.Generator().manual_seed(6)
    weights = [
        torch.randn(t.shape, generator=g, dtype=torch.float64)
        for t in (
            meshes.verts_normals_packed(),
            meshes.faces_normals_packed(),
            meshes.faces_areas_packed(),
            meshes.verts_padded(),
        )
    ]
    loss = (
        (meshes.verts_normals_packed() * weights[0]).sum()
        + (meshes.faces_normals_packed() * weights[1]).sum()
        + (meshes.faces_areas_packed() * weights[2]).sum()
        + (meshes.verts_padded() * weights[3]).sum()
    )
    loss.backward()
    # Reference: the naive loop implementation differentiated by autograd.
    packed = torch.cat(verts).requires_grad_(True)
    areas, normals, vnormals = naive_face_geometry(packed, meshes.faces_packed())
    padded_w = weights[3].view(-1, 3)[meshes.verts_padded_to_packed_idx()]
    ref_loss = (vnormals * weights[0]).sum() + (normals * weights[1]).sum()
    ref_loss = ref_loss + (areas * weights[2]).sum() + (packed * padded_w).sum()
    ref_loss.backward()
    got = (
        source.grad.view(-1, 3)[meshes.verts_padded_to_packed_idx()]
        if from_padded
        else torch.cat([s.grad if s.grad is not None else torch.zeros_like(s) for s in source])
    )
    assert torch.allclose(got, packed.grad, atol=1e-8)


def test_gradcheck_face_geometry():
    verts, faces = torus(4, 3)
    verts = verts.double().requires_grad_(True)

    def fn(v):
        m = Meshes([v], [faces])
        return m.faces_areas_packed(), m.faces_normals_packed(), m.verts_normals_packed()

    assert torch.autograd.gradcheck(fn, (verts,))


# ---------------------------------------------------------------------- updates
def test_offset_verts_packed_and_broadcast():
    verts, faces = random_meshes(seed=7)
    meshes = Meshes(verts, faces)
    meshes.verts_normals_packed(), meshes.verts_padded()
    offsets = torch.randn(meshes.verts_packed().shape, generator=torch.Generator().manual_seed(8))
    moved = meshes.offset_verts(offsets)
    fresh = Meshes([v + o for v, o in zip(verts, offsets.split([9, 0, 12, 5, 4]))], faces)
    assert torch.equal(meshes.verts_packed(), torch.cat(verts))  # out-of-place left self alone
    for a, b in ((moved, fresh),):
        assert torch.allclose(a.verts_padded(), b.verts_padded())
        assert all(torch.allclose(x, y) for x, y in zip(a.verts_list(), b.verts_list()))
        assert torch.allclose(a.verts_normals_packed(), b.verts_normals_packed(), atol=1e-5)
        assert torch.allclose(a.faces_areas_packed(), b.faces_areas_packed(), atol=1e-5)
    shift = torch.tensor([1.0, -2.0, 0.5])
    normals = meshes.verts_normals_packed()
    assert meshes.offset_verts_(shift) is meshes
    assert torch.equal(meshes.verts_packed(), torch.cat(verts) + shift)
    assert torch.allclose(meshes.verts_padded()[2, :12], verts[2] + shift)
    assert torch.allclose(meshes.verts_normals_packed(), normals, atol=1e-5)
    with pytest.raises(ValueError, match="vert_offsets_packed"):
        meshes.offset_verts_(torch.zeros(4, 3))


def test_scale_verts():
    verts, faces = random_meshes(seed=9)
    meshes = Meshes(verts, faces)
    areas = meshes.faces_areas_packed()
    scaled = meshes.scale_verts(2.0)
    assert torch.allclose(scaled.faces_areas_packed(), 4 * areas)
    factors = torch.tensor([1.0, 2.0, 3.0, 4.0, -5.0])
    meshes.scale_verts_(factors)
    for i, v in enumerate(meshes.verts_list()):
        assert torch.allclose(v, verts[i] * factors[i])
    assert torch.allclose(meshes.verts_padded()[4, :4], verts[4] * -5)
    with pytest.raises(ValueError, match="scale"):
        meshes.scale_verts_(torch.ones(3))


def test_update_padded():
    verts, faces = random_meshes(seed=10)
    meshes = Meshes(verts, faces)
    meshes.edges_packed(), meshes.verts_normals_packed()
    new_padded = (meshes.verts_padded() * 3 + 1).requires_grad_(True)
    new = meshes.update_padded(new_padded)
    fresh = Meshes([3 * v + 1 for v in verts], faces)
    assert torch.allclose(new.verts_packed(), fresh.verts_packed())
    assert torch.equal(new.faces_packed(), fresh.faces_packed())
    assert torch.equal(new.edges_packed(), fresh.edges_packed())
    assert torch.allclose(new.verts_normals_packed(), fresh.verts_normals_packed(), atol=1e-5)
    assert new.num_verts_per_mesh().tolist() == meshes.num_verts_per_mesh().tolist()
    new.faces_areas_packed().sum().backward()
    assert new_padded.grad is not None and new_padded.grad.abs().sum() > 0
    # self is untouched
    assert torch.equal(meshes.verts_packed(), torch.cat(verts))
    with pytest.raises(ValueError, match="new_verts_padded"):
        meshes.update_padded(torch.zeros(5, 3, 3))


# ---------------------------------------------------------------------- batch operations
def test_getitem_variants():
    verts, faces = random_meshes(seed=11)
    meshes = Meshes(verts, faces)

    def same(m, idx):
        return len(m) == len(idx) and all(
            torch.equal(a, verts[i]) and torch.equal(b, faces[i])
            for a, b, i in zip(m.verts_list(), m.faces_list(), idx)
        )

    assert same(meshes[2], [2]) and same(meshes[-1], [4])
    assert same(meshes[1:4], [1, 2, 3]) and same(meshes[::2], [0, 2, 4])
    assert same(meshes[[4, 0, 0]], [4, 0, 0])
    assert same(meshes[torch.tensor([3, 1])], [3, 1])
    assert same(meshes[torch.tensor([True, False, True, False, False])], [0, 2])
    assert same(meshes[torch.zeros(5, dtype=torch.bool)], [])
    assert [len(m) for m in meshes] == [1] * 5
    for bad in (torch.tensor([0.5]), "a", torch.ones(2, dtype=torch.bool)):
        with pytest.raises(IndexError):
            meshes[bad]
    with pytest.raises(IndexError):
        meshes[5]
    v, f = meshes.get_mesh_verts_faces(2)
    assert torch.equal(v, verts[2]) and torch.equal(f, faces[2])


def test_split_extend_join():
    verts, faces = random_meshes(seed=12)
    meshes = Meshes(verts, faces)
    parts = meshes.split([2, 3])
    assert [len(p) for p in parts] == [2, 3]
    joined = join_meshes_as_batch(parts)
    assert torch.equal(joined.verts_packed(), meshes.verts_packed())
    assert torch.equal(joined.faces_packed(), meshes.faces_packed())
    with pytest.raises(ValueError, match="split_sizes"):
        meshes.split([4, 3])
    with pytest.raises(ValueError, match="list of Meshes"):
        join_meshes_as_batch(meshes)

    extended = meshes.extend(2)
    assert len(extended) == 10
    for i in range(10):
        assert torch.equal(extended.verts_list()[i], verts[i // 2])
        assert torch.equal(extended.faces_list()[i], faces[i // 2])
    with pytest.raises(ValueError, match="N must be"):
        meshes.extend(0)

    scene = join_meshes_as_scene(meshes)
    assert len(scene) == 1
    assert torch.equal(scene.verts_packed(), meshes.verts_packed())
    assert torch.equal(scene.faces_packed(), meshes.faces_packed())
    assert join_meshes_as_scene([meshes[0]]).num_faces_per_mesh().tolist() == [14]
    # join_meshes_as_scene(m1, m2) would join m1 alone: refused, as in PyTorch3D.
    with pytest.raises(ValueError, match="include_textures"):
        join_meshes_as_scene(meshes[0], meshes[1])


def test_clone_detach_to():
    verts, faces = random_meshes(seed=13)
    source = [v.clone().requires_grad_(True) for v in verts]
    meshes = Meshes(source, faces)
    meshes.verts_normals_packed()
    cloned = meshes.clone()
    assert cloned.verts_packed() is not meshes.verts_packed()
    assert torch.equal(cloned.verts_normals_packed(), meshes.verts_normals_packed())
    cloned.verts_packed().sum().backward()
    assert all(torch.equal(s.grad, torch.ones_like(s)) for s in source if len(s))
    cloned.offset_verts_(torch.ones(3))
    assert torch.equal(meshes.verts_packed().detach(), torch.cat(verts))
    detached = meshes.detach()
    assert not detached.verts_packed().requires_grad
    assert not any(v.requires_grad for v in detached.verts_list())
    assert meshes.to("cpu") is meshes and meshes.cpu() is meshes
    copied = meshes.to("cpu", copy=True)
    assert copied is not meshes and torch.equal(copied.faces_packed(), meshes.faces_packed())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_roundtrip():
    verts, faces = random_meshes(seed=14)
    meshes = Meshes(verts, faces).cuda()
    assert meshes.verts_packed().is_cuda and meshes.edges_packed().is_cuda
    ref = Meshes(verts, faces)
    assert torch.allclose(
        meshes.verts_normals_packed().cpu(), ref.verts_normals_packed(), atol=1e-5
    )
    assert torch.equal(meshes.edges_packed().cpu(), ref.edges_packed())


# ---------------------------------------------------------------------- validation
def test_invalid_inputs_raise():
    v, f = torch.rand(4, 3), torch.tensor([[0, 1, 2]])
    cases = [
        (([v], [f, f]), {}, "same length"),
        (([v[:, :2]], [f]), {}, "verts\\[0\\]"),
        (([v], [f.float() + 0.5]), {}, "non-integer"),
        (([v], [f.bool()]), {}, "integer"),
        (([v.long()], [f]), {}, "floating"),
        (([v], [f + 2]), {}, "mesh 0"),
        (([v], [torch.cat([f - 1, f])]), {}, "padding"),
        (([torch.rand(2, 3, 3)], [f]), {}, "verts\\[0\\]"),
        ((v[None].expand(2, -1, -1), torch.stack([f, f + 2])), {}, "mesh 1"),
        (([v], f[None]), {}, "both"),
        ((v[None], f[None, :, :2]), {}, "faces"),
        ((v[None].expand(2, -1, -1), f[None]), {}, "batch size"),
        (([v], [f]), {"textures": object()}, "textures"),
        (([v], [f]), {"verts_normals": [torch.rand(3, 3)]}, "verts_normals"),
    ]
    for args, kwargs, msg in cases:
        with pytest.raises(ValueError, match=msg):
            Meshes(*args, **kwargs)


def test_given_verts_normals_are_used_until_verts_change():
    verts, faces = random_meshes(sizes=[(5, 4), (6, 6)], seed=15)
    given = [torch.nn.functional.normalize(torch.rand(v.shape), dim=1) for v in verts]
    meshes = Meshes(verts, faces, verts_normals=given)
    assert meshes.has_verts_normals()
    assert torch.equal(meshes.verts_normals_packed(), torch.cat(given))
    meshes.offset_verts_(torch.zeros(11, 3))
    assert torch.allclose(
        meshes.verts_normals_packed(), Meshes(verts, faces).verts_normals_packed()
    )


# ---------------------------------------------------------------------- PyTorch3D's loose inputs
def test_empty_meshes_given_as_1d_tensors_like_pytorch3d():
    verts, faces = random_meshes(seed=21)
    loose_v = [v if len(v) else torch.tensor([]) for v in verts]
    loose_f = [f if len(f) or len(v) else torch.tensor([]) for v, f in zip(verts, faces)]
    assert loose_v[1].shape == (0,) and loose_f[1].shape == (0,)
    strict, loose = Meshes(verts, faces), Meshes(loose_v, loose_f)
    assert loose.verts_list()[1].shape == (0, 3) and loose.faces_list()[1].dtype == torch.int64
    for view in ("verts_padded", "faces_padded", "verts_packed", "faces_packed", "edges_packed"):
        assert torch.equal(getattr(loose, view)(), getattr(strict, view)()), view
    assert loose.valid.tolist() == strict.valid.tolist()
    # The empty entry takes the batch's float type (torch.tensor([]) is float32).
    doubles = Meshes([verts[0].double(), torch.tensor([])], [faces[0], torch.tensor([])])
    assert doubles.verts_packed().dtype == torch.float64
    assert doubles.verts_list()[1].dtype == torch.float64
    # A batch of only empty meshes.
    empty = Meshes([torch.tensor([]), torch.tensor([])], [torch.tensor([]), torch.tensor([])])
    assert empty.isempty() and empty.verts_padded().shape == (2, 0, 3)
    assert empty.faces_packed().shape == (0, 3) and empty.num_faces_per_mesh().tolist() == [0, 0]
    # Gradients still reach the non-empty entries.
    v0 = verts[0].clone().requires_grad_()
    Meshes([v0, torch.tensor([])], [faces[0], torch.tensor([])]).verts_padded().sum().backward()
    assert torch.equal(v0.grad, torch.ones_like(v0))


@pytest.mark.parametrize("from_padded", [False, True])
def test_float_faces_are_cast_to_int64_like_pytorch3d(from_padded):
    verts, faces = random_meshes(seed=22)
    ref = Meshes(verts, faces)
    if from_padded:
        meshes = Meshes(ref.verts_padded(), ref.faces_padded().float())
        ref = Meshes(ref.verts_padded(), ref.faces_padded())
    else:
        meshes = Meshes(verts, [f.double() for f in faces])
    assert meshes.faces_padded().dtype == torch.int64
    assert torch.equal(meshes.faces_packed(), ref.faces_packed())
    assert torch.equal(meshes.edges_packed(), ref.edges_packed())
    # PyTorch3D would truncate these silently.
    for bad in (torch.tensor([[0.0, 1.5, 2.0]]), torch.tensor([[0.0, float("nan"), 2.0]])):
        with pytest.raises(ValueError, match="faces.*non-integer"):
            Meshes([torch.rand(3, 3)], [bad])


def test_list_faces_with_trailing_padding_rows_like_pytorch3d():
    verts, faces = random_meshes(sizes=[(6, 4), (5, 3)], seed=23)
    padded = [torch.cat([faces[0], torch.full((2, 3), -1)]), faces[1]]
    meshes = Meshes(verts, padded)
    assert meshes.num_faces_per_mesh().tolist() == [4, 3]
    assert torch.equal(meshes.faces_packed(), Meshes(verts, faces).faces_packed())
    # Padding in the middle would renumber the faces after it: refused, naming the entry.
    middle = torch.cat([faces[1][:1], torch.full((1, 3), -1), faces[1][1:]])
    with pytest.raises(ValueError, match=r"faces\[1\].*padding"):
        Meshes(verts, [faces[0], middle])


# ---------------------------------------------------------------------- submeshes
def naive_submesh(verts, faces, ids):
    """Keep faces[ids] and the vertices they use, in increasing index order, by loops."""
    kept = [faces[i].tolist() for i in ids]
    used = sorted({k for face in kept for k in face})
    new_index = {old: new for new, old in enumerate(used)}
    sub_faces = torch.tensor([[new_index[k] for k in face] for face in kept], dtype=torch.int64)
    return verts[used], sub_faces.view(-1, 3)


def test_submeshes_match_loop_in_all_input_forms():
    verts, faces = random_meshes(sizes=[(9, 10), (12, 14), (6, 5)], seed=24)
    meshes = Meshes(verts, faces)
    selection = [
        [torch.tensor([0, 3, 4]), torch.tensor([9]), torch.tensor([], dtype=torch.int64)],
        [],
        [torch.tensor([4, 0, 2])],
    ]
    sub = meshes.submeshes(selection)
    expected = [
        naive_submesh(verts[n], faces[n], ids.tolist())
        for n, sel in enumerate(selection)
        for ids in sel
    ]
    assert len(sub) == 4 and sub.num_faces_per_mesh().tolist() == [3, 1, 0, 3]
    for (v, f), sv, sf in zip(expected, sub.verts_list(), sub.faces_list()):
        assert torch.equal(sv, v) and torch.equal(sf, f)
    # Faces keep their corner positions: the same triangles as in the full mesh.
    assert torch.equal(sub.verts_list()[0][sub.faces_list()[0]], verts[0][faces[0][[0, 3, 4]]])
    # A 2-D tensor per mesh, and one (N, S, K) tensor, give the same as the lists.
    rows = [torch.tensor([[0, 1], [2, 3]]), torch.tensor([[5, 6]]), torch.zeros(0, 2).long()]
    lists = [[r for r in t] for t in rows]
    a, b = meshes.submeshes(rows), meshes.submeshes(lists)
    assert all(torch.equal(x, y) for x, y in zip(a.verts_list(), b.verts_list()))
    assert all(torch.equal(x, y) for x, y in zip(a.faces_list(), b.faces_list()))
    block = torch.tensor([[[0, 1]], [[2, 3]], [[4, 0]]])
    c = meshes.submeshes(block)
    assert len(c) == 3
    for n in range(3):
        v, f = naive_submesh(verts[n], faces[n], block[n, 0].tolist())
        assert torch.equal(c.verts_list()[n], v) and torch.equal(c.faces_list()[n], f)
    assert len(meshes.submeshes([[], [], []])) == 0


def test_submeshes_gradients_reach_the_original_vertices():
    verts, faces = random_meshes(sizes=[(8, 9)], seed=25)
    v = verts[0].clone().requires_grad_()
    meshes = Meshes([v], faces)
    ids = [torch.tensor([0, 1]), torch.tensor([1, 2, 3])]
    meshes.submeshes([ids]).verts_packed().sum().backward()
    # Each vertex gets one unit per submesh that uses it.
    uses = torch.zeros(8)
    for sel in ids:
        uses[faces[0][sel].unique()] += 1
    assert torch.equal(v.grad, uses[:, None].expand(8, 3))


def test_submeshes_invalid_inputs():
    verts, faces = random_meshes(sizes=[(6, 4), (5, 3)], seed=26)
    meshes = Meshes(verts, faces)
    cases = [
        ([[torch.tensor([0])]], "one entry per mesh"),
        ([[torch.tensor([0])], [torch.tensor([3])]], r"face_indices\[1\]\[0\].*3 faces"),
        ([[torch.tensor([0.0])], []], r"face_indices\[0\]\[0\].*integer"),
        ([torch.tensor([0, 1]), []], r"face_indices\[0\]"),
        (torch.zeros(2, 3).long(), "shape"),
    ]
    for selection, msg in cases:
        with pytest.raises(ValueError, match=msg):
            meshes.submeshes(selection)


@pytest.mark.parametrize("from_padded", [False, True])
def test_index_maps_need_no_packed_view_first(from_padded):
    # Each map is asked first, on a fresh batch (they used to be None until a packed view).
    verts, faces = random_meshes(seed=27)
    ref = Meshes(verts, faces)
    ref.verts_packed()
    for name in (
        "verts_packed_to_mesh_idx",
        "faces_packed_to_mesh_idx",
        "mesh_to_verts_packed_first_idx",
        "mesh_to_faces_packed_first_idx",
    ):
        fresh = Meshes(verts, faces)
        if from_padded:
            fresh = Meshes(fresh.verts_padded(), fresh.faces_padded())
            ref = Meshes(ref.verts_padded(), ref.faces_padded())
            ref.verts_packed()
        assert torch.equal(getattr(fresh, name)(), getattr(ref, name)()), name
