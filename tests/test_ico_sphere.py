import pytest
import torch
from conftest import load_golden

from meshrecon.ops import SubdivideMeshes, ico_sphere
from meshrecon.structures import Meshes


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_golden_exact(level):
    gold = load_golden("ico_subdivide")
    mesh = ico_sphere(level)
    assert len(mesh) == 1
    torch.testing.assert_close(
        mesh.verts_list()[0], gold[f"ico{level}_verts"], rtol=1e-5, atol=1e-6
    )
    assert torch.equal(mesh.faces_list()[0], gold[f"ico{level}_faces"])


@pytest.mark.parametrize("level", [0, 1, 2, 3, 4])
def test_counts_closed_outward(level):
    mesh = ico_sphere(level)
    v, f = mesh.verts_list()[0], mesh.faces_list()[0]
    assert v.shape == (10 * 4**level + 2, 3) and f.shape == (20 * 4**level, 3)
    assert v.dtype == torch.float32 and f.dtype == torch.int64
    if level > 0:  # level 0 keeps PyTorch3D's 4-decimal icosahedron
        torch.testing.assert_close(v.norm(dim=1), torch.ones(v.shape[0]))
    directed = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    assert sorted(map(tuple, directed.tolist())) == sorted(map(tuple, directed.flip(1).tolist()))
    tri = v[f]
    normal = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert ((normal * tri.mean(1)).sum(1) > 0).all()


def test_level_is_normalized_subdivision():
    prev = ico_sphere(1)
    out = SubdivideMeshes()(prev)
    verts = out.verts_list()[0]
    expected = verts / verts.norm(dim=1, keepdim=True)
    mesh = ico_sphere(2)
    assert torch.equal(mesh.faces_list()[0], out.faces_list()[0])
    torch.testing.assert_close(mesh.verts_list()[0], expected)


def test_outputs_are_independent_copies():
    a = ico_sphere(2)
    a.verts_list()[0].mul_(3.0)
    a.faces_list()[0].zero_()
    b = ico_sphere(2)
    torch.testing.assert_close(b.verts_list()[0].norm(dim=1), torch.ones(162))
    assert int(b.faces_list()[0].max()) == 161


def test_device_and_type():
    mesh = ico_sphere(1, device="cpu")
    assert isinstance(mesh, Meshes) and mesh.verts_packed().device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda():
    assert torch.equal(ico_sphere(2, "cuda").verts_packed().cpu(), ico_sphere(2).verts_packed())


@pytest.mark.parametrize("level", [-1, 1.5, "2", True])
def test_invalid_level(level):
    with pytest.raises(ValueError, match="level"):
        ico_sphere(level)
