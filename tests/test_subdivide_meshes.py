import pytest
import torch
from conftest import load_golden

from meshrecon.ops import SubdivideMeshes, ico_sphere
from meshrecon.structures import Meshes


def naive_subdivide(verts: torch.Tensor, faces: torch.Tensor, feats: torch.Tensor | None = None):
    """Loop reference for one mesh, written from the documented ordering.

    New vertices: the old ones, then one per undirected edge, edges sorted as (min, max) pairs.
    New faces: block f0 for every face, then f1, f2, f3.
    """
    edges = sorted(
        {tuple(sorted((f[i], f[(i + 1) % 3]))) for f in faces.tolist() for i in range(3)}
    )
    slot = {e: verts.shape[0] + k for k, e in enumerate(edges)}
    new_verts = [verts[i] for i in range(verts.shape[0])]
    new_feats = [] if feats is None else [feats[i] for i in range(feats.shape[0])]
    for a, b in edges:
        new_verts.append((verts[a] + verts[b]) / 2)
        if feats is not None:
            new_feats.append((feats[a] + feats[b]) / 2)
    blocks = [[], [], [], []]
    for v0, v1, v2 in faces.tolist():
        m0 = slot[tuple(sorted((v1, v2)))]
        m1 = slot[tuple(sorted((v2, v0)))]
        m2 = slot[tuple(sorted((v0, v1)))]
        blocks[0].append([v0, m2, m1])
        blocks[1].append([v1, m0, m2])
        blocks[2].append([v2, m1, m0])
        blocks[3].append([m0, m1, m2])
    out_v = torch.stack(new_verts) if new_verts else verts.new_zeros((0, 3))
    out_f = torch.tensor(sum(blocks, []), dtype=torch.int64).view(-1, 3)
    out_feats = None
    if feats is not None:
        out_feats = torch.stack(new_feats) if new_feats else feats.new_zeros((0, feats.shape[1]))
    return out_v, out_f, out_feats


@pytest.fixture
def hetero_batch():
    g = torch.Generator().manual_seed(0)
    sphere = ico_sphere(1)
    meshes = []
    # A closed sphere, a random triangle soup with shared vertices, a single triangle, an empty
    # mesh and a mesh with vertices but no faces.
    meshes.append(
        (sphere.verts_list()[0] + 0.1 * torch.randn(42, 3, generator=g), sphere.faces_list()[0])
    )
    meshes.append((torch.randn(9, 3, generator=g), torch.randint(0, 9, (7, 3), generator=g)))
    meshes.append((torch.randn(3, 3, generator=g), torch.tensor([[0, 1, 2]])))
    meshes.append((torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.int64)))
    meshes.append((torch.randn(4, 3, generator=g), torch.zeros(0, 3, dtype=torch.int64)))
    # Random soups may hold degenerate faces (repeated vertex); keep only proper triangles.
    v, f = meshes[1]
    keep = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])
    meshes[1] = (v, f[keep])
    return meshes


def test_golden_both_paths():
    gold = load_golden("ico_subdivide")
    src = Meshes(verts=gold["sub_src_verts"], faces=gold["sub_src_faces"])
    for sub in (SubdivideMeshes(), SubdivideMeshes(src)):
        out, feats = sub(src, feats=gold["sub_src_feats"])
        for n in range(2):
            torch.testing.assert_close(
                out.verts_list()[n], gold["sub_verts"][n], rtol=1e-5, atol=1e-6
            )
            assert torch.equal(out.faces_list()[n], gold["sub_faces"][n])
        torch.testing.assert_close(feats, gold["sub_feats"], rtol=1e-5, atol=1e-6)


def test_heterogeneous_matches_naive(hetero_batch):
    g = torch.Generator().manual_seed(1)
    meshes = Meshes(verts=[v for v, _ in hetero_batch], faces=[f for _, f in hetero_batch])
    feats = torch.randn(meshes.verts_packed().shape[0], 4, generator=g)
    out, new_feats = SubdivideMeshes()(meshes, feats=feats)
    assert len(out) == len(hetero_batch)
    feats_list = feats.split(meshes.num_verts_per_mesh().tolist())
    ref_feats = []
    for n, (v, f) in enumerate(hetero_batch):
        rv, rf, rfe = naive_subdivide(v, f, feats_list[n])
        torch.testing.assert_close(out.verts_list()[n], rv)
        assert torch.equal(out.faces_list()[n], rf)
        ref_feats.append(rfe)
    torch.testing.assert_close(new_feats, torch.cat(ref_feats))
    # Without feats only the meshes come back.
    assert isinstance(SubdivideMeshes()(meshes), Meshes)


def test_homogeneous_matches_heterogeneous():
    g = torch.Generator().manual_seed(2)
    base = ico_sphere(2)
    verts = base.verts_list()[0] + 0.05 * torch.randn(3, 162, 3, generator=g)
    faces = base.faces_list()[0].expand(3, -1, -1)
    meshes = Meshes(verts=list(verts), faces=list(faces))
    feats = torch.randn(3 * 162, 5, generator=g)
    hom, hom_feats = SubdivideMeshes(base)(meshes, feats=feats)
    het, het_feats = SubdivideMeshes()(meshes, feats=feats)
    assert torch.equal(hom.verts_packed(), het.verts_packed())
    assert torch.equal(hom.faces_packed(), het.faces_packed())
    assert torch.equal(hom_feats, het_feats)
    # Padded features keep their padded layout.
    _, padded = SubdivideMeshes(base)(meshes, feats=feats.view(3, 162, 5))
    assert padded.shape == (3, 642, 5)
    assert torch.equal(padded.reshape(-1, 5), het_feats)


def test_orientation_preserved():
    sphere = ico_sphere(1)
    out = SubdivideMeshes()(sphere)
    tri = out.verts_packed()[out.faces_packed()]
    normal = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert ((normal * tri.mean(1)).sum(1) > 0).all()


def test_gradcheck():
    g = torch.Generator().manual_seed(3)
    tetra_faces = torch.tensor([[0, 1, 2], [0, 2, 3], [0, 3, 1], [1, 3, 2]])
    tetra = torch.randn(4, 3, dtype=torch.float64, generator=g).requires_grad_(True)
    other = torch.randn(3, 3, dtype=torch.float64, generator=g).requires_grad_(True)
    feats = torch.randn(7, 1, dtype=torch.float64, generator=g).requires_grad_(True)
    faces = [tetra_faces, torch.tensor([[0, 1, 2]])]

    def fn(v0, v1, fe):
        out, new_feats = SubdivideMeshes()(Meshes(verts=[v0, v1], faces=faces), feats=fe)
        return out.verts_packed(), new_feats

    assert torch.autograd.gradcheck(fn, (tetra, other, feats), fast_mode=True)

    template = Meshes(verts=[tetra.detach()], faces=[tetra_faces])

    def fn_hom(v0, v1):
        meshes = Meshes(verts=[v0, v1], faces=[tetra_faces, tetra_faces])
        return SubdivideMeshes(template)(meshes).verts_packed()

    second = torch.randn(4, 3, dtype=torch.float64, generator=g).requires_grad_(True)
    assert torch.autograd.gradcheck(fn_hom, (tetra, second), fast_mode=True)


def test_invalid_inputs():
    sphere = ico_sphere(1)
    with pytest.raises(ValueError, match="template"):
        SubdivideMeshes(sphere)(ico_sphere(2))
    with pytest.raises(ValueError, match="feats"):
        SubdivideMeshes()(sphere, feats=torch.zeros(5, 2))
    with pytest.raises(ValueError, match="feats"):
        SubdivideMeshes(sphere)(sphere, feats=torch.zeros(5, 2))
    with pytest.raises(ValueError, match="meshes"):
        SubdivideMeshes()(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="meshes"):
        SubdivideMeshes(Meshes(verts=[], faces=[]))
    with pytest.raises(ValueError, match="feats is on meta"):
        SubdivideMeshes()(sphere, feats=torch.zeros(42, 2, device="meta"))


def test_subdivide_faces_numbering():
    sphere = ico_sphere(0)
    faces = SubdivideMeshes().subdivide_faces(sphere)
    assert faces.shape == (80, 3)
    # New vertices are numbered after the 12 old ones, one per edge.
    assert int(faces.max()) == 12 + 30 - 1
    # Block f3 holds only midpoints.
    assert bool((faces[60:] >= 12).all())


def test_template_state_dict_matches_pytorch3d():
    sub = SubdivideMeshes(ico_sphere(0))
    # Checkpoints written with PyTorch3D's module hold exactly this buffer.
    assert list(sub.state_dict()) == ["_subdivided_faces"]
    assert torch.equal(sub.state_dict()["_subdivided_faces"], sub.subdivide_faces(ico_sphere(0)))
    assert sub.to("cpu")._subdivided_faces.device.type == "cpu"
