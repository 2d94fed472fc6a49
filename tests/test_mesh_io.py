import io

import numpy as np
import pytest
import torch
import trimesh

from meshrecon.io import (
    MeshIOError,
    load_mesh,
    load_meshes,
    load_obj,
    save_mesh,
    save_meshes,
    save_obj,
)
from meshrecon.structures import Meshes

OBJ_TEXT = """# a quad, a triangle with relative indices, and an unused vertex
mtllib missing.mtl
v 0 0 0
v 1 0 0
v 1 1 0
v 0 1 0
v 9 9 9
v 0 0 1
vt 0 0
vt 1 0
vt 1 1
vn 0 0 1
vn 0 1 0
usemtl something
f 1/1/1 2/2/1 3/3/1 4/1/1
f -1/1/2 -5/2/2 -4/3/2
"""


def _random_mesh(seed=0, num_verts=12, num_faces=20):
    g = torch.Generator().manual_seed(seed)
    verts = torch.rand(num_verts, 3, generator=g) * 4 - 2
    faces = torch.randint(0, num_verts, (num_faces, 3), generator=g)
    return verts, faces


def _triangles(verts, faces):
    """Triangles as sorted rows of coordinates: comparable whatever the vertex indexing."""
    tri = verts[faces].reshape(-1, 9).numpy().round(5)
    return tri[np.lexsort(tri.T[::-1])]


def test_load_obj_known_answer(tmp_path):
    path = tmp_path / "known.obj"
    path.write_text(OBJ_TEXT)
    with pytest.warns(UserWarning, match="material file not found"):
        verts, faces, aux = load_obj(path)
    expected_verts = torch.tensor(
        [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [9, 9, 9], [0, 0, 1]], dtype=torch.float32
    )
    assert verts.dtype == torch.float32
    assert torch.equal(verts, expected_verts)  # file order, unused vertex kept
    # quad (1,2,3,4) fan-split; "-1 -5 -4" with six vertices is (6, 2, 3)
    assert faces.verts_idx.tolist() == [[0, 1, 2], [0, 2, 3], [5, 1, 2]]
    assert faces.textures_idx.tolist() == [[0, 1, 2], [0, 2, 0], [0, 1, 2]]
    assert faces.normals_idx.tolist() == [[0, 0, 0], [0, 0, 0], [1, 1, 1]]
    # usemtl numbers materials by first use, as in PyTorch3D (its .mtl file is missing)
    assert faces.materials_idx.tolist() == [0, 0, 0]
    assert torch.equal(aux.normals, torch.tensor([[0.0, 0, 1], [0, 1, 0]]))
    assert torch.equal(aux.verts_uvs, torch.tensor([[0.0, 0], [1, 0], [1, 1]]))
    assert aux.texture_images is None
    from_stream, faces_stream, _ = load_obj(io.BytesIO(OBJ_TEXT.encode()), load_textures=False)
    assert torch.equal(from_stream, verts) and torch.equal(faces_stream.verts_idx, faces.verts_idx)
    # load_mesh reads OBJ through the same path
    v2, f2 = load_mesh(path)
    assert torch.equal(v2, verts) and torch.equal(f2, faces.verts_idx)


def test_load_obj_without_uvs_fills_minus_one(tmp_path):
    path = tmp_path / "plain.obj"
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1//1 2//1 3//1\nf 1 2 4\nvn 1 0 0\n")
    verts, faces, aux = load_obj(path)
    assert faces.verts_idx.tolist() == [[0, 1, 2], [0, 1, 3]]
    assert aux.verts_uvs is None
    assert (faces.textures_idx == -1).all()
    assert faces.normals_idx.tolist() == [[0, 0, 0], [-1, -1, -1]]


def test_load_obj_mixed_layouts_keep_file_order(tmp_path):
    path = tmp_path / "mixed.obj"
    path.write_text(
        "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 2 2 0\nvt 0 0\nvt 1 1\n"
        "f 1 2 3\nf 1/1 2/2 3/1 4/2 5/1\nf 5 4 3\n"
    )
    _, faces, aux = load_obj(path)
    # pentagon fan (1,2,3) (1,3,4) (1,4,5) sits between the two triangles, as in the file
    assert faces.verts_idx.tolist() == [[0, 1, 2], [0, 1, 2], [0, 2, 3], [0, 3, 4], [4, 3, 2]]
    missing = [-1, -1, -1]
    assert faces.textures_idx.tolist() == [missing, [0, 1, 0], [0, 0, 1], [0, 1, 0], missing]
    assert aux.verts_uvs.shape == (2, 2)


def test_obj_round_trip_and_decimal_places(tmp_path):
    verts, faces = _random_mesh(0)
    path = tmp_path / "rt.obj"
    save_obj(path, verts, faces)
    v2, f2, _ = load_obj(path)
    assert torch.equal(v2, verts)  # 9 significant digits: float32 exact
    assert torch.equal(f2.verts_idx, faces)

    save_obj(path, verts, faces, decimal_places=3)
    first = path.read_text().splitlines()[0]
    assert all(len(x.split(".")[1]) == 3 for x in first.split()[1:])
    v3, _, _ = load_obj(path)
    assert torch.allclose(v3, verts, atol=5e-4 + 1e-7)

    buf = io.StringIO()
    save_obj(buf, verts, faces[:0])
    assert buf.getvalue().count("\nv ") + 1 == verts.shape[0]
    assert "f " not in buf.getvalue()


@pytest.mark.parametrize("ext", [".obj", ".ply", ".off", ".glb", ".gltf"])
def test_save_load_round_trip_keeps_order(tmp_path, ext):
    verts, faces = _random_mesh(1)
    path = tmp_path / f"mesh{ext}"
    save_mesh(path, verts, faces)
    v2, f2 = load_mesh(path)
    assert v2.dtype == torch.float32 and f2.dtype == torch.int64
    assert torch.allclose(v2, verts, atol=1e-6)
    assert torch.equal(f2, faces)


def test_stl_round_trip_keeps_triangles(tmp_path):
    verts, faces = _random_mesh(2)
    path = tmp_path / "mesh.stl"
    save_mesh(path, verts, faces)
    v2, f2 = load_mesh(path)
    assert f2.shape == faces.shape
    assert np.allclose(_triangles(v2, f2), _triangles(verts, faces), atol=1e-5)


def test_off_and_ply_known_answer_with_quads(tmp_path):
    off = tmp_path / "quad.off"
    off.write_text("OFF\n5 2 0\n0 0 0\n2 0 0\n2 2 0\n0 2 0\n1 1 1\n4 0 1 2 3\n3 4 0 1\n")
    ply = tmp_path / "quad.ply"
    ply.write_text(
        "ply\nformat ascii 1.0\nelement vertex 5\nproperty float x\nproperty float y\n"
        "property float z\nelement face 2\nproperty list uchar int vertex_indices\nend_header\n"
        "0 0 0\n2 0 0\n2 2 0\n0 2 0\n1 1 1\n4 0 1 2 3\n3 4 0 1\n"
    )
    expected_verts = torch.tensor(
        [[0, 0, 0], [2, 0, 0], [2, 2, 0], [0, 2, 0], [1, 1, 1]], dtype=torch.float32
    )
    for path in (off, ply):
        verts, faces = load_mesh(path)
        assert torch.equal(verts, expected_verts), path
        assert faces.shape == (3, 3), path
        # trimesh groups faces by polygon size, so only the set of triangles is the file's:
        # the triangle as is, and the quad as two triangles of area 2 covering it
        rows = [sorted(f) for f in faces.tolist()]
        assert [0, 1, 4] in rows, path
        quad = faces[[i for i, r in enumerate(rows) if r != [0, 1, 4]]]
        assert set(quad.flatten().tolist()) == {0, 1, 2, 3}
        areas = torch.linalg.cross(
            verts[quad[:, 1]] - verts[quad[:, 0]], verts[quad[:, 2]] - verts[quad[:, 0]]
        ).norm(dim=1)
        assert torch.allclose(areas / 2, torch.tensor([2.0, 2.0]))


def test_glb_scene_is_concatenated_with_transforms(tmp_path):
    tri = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]], process=False)
    scene = trimesh.Scene()
    shift = np.eye(4)
    shift[:3, 3] = [10.0, 0.0, 0.0]
    scene.add_geometry(tri, node_name="a", geom_name="a")
    scene.add_geometry(tri.copy(), node_name="b", geom_name="b", transform=shift)
    path = tmp_path / "scene.glb"
    path.write_bytes(scene.export(file_type="glb"))
    verts, faces = load_mesh(path)
    assert verts.shape == (6, 3) and faces.shape == (2, 3)
    expected_v = torch.tensor(
        [[0, 0, 0], [1, 0, 0], [0, 1, 0], [10, 0, 0], [11, 0, 0], [10, 1, 0]], dtype=torch.float32
    )
    expected_f = torch.tensor([[0, 1, 2], [3, 4, 5]])
    assert np.allclose(_triangles(verts, faces), _triangles(expected_v, expected_f))


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.obj"):
        load_mesh(tmp_path / "missing.obj")
    with pytest.raises(FileNotFoundError, match="missing.obj"):
        load_obj(tmp_path / "missing.obj")
    (tmp_path / "mesh.xyz").write_text("0 0 0\n")
    with pytest.raises(ValueError, match=r"unsupported.*\.obj.*\.ply"):
        load_mesh(tmp_path / "mesh.xyz")

    cases = {
        "empty.obj": ("", "no vertices"),
        "range.obj": ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n", "out of range"),
        "zero.obj": ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", "index 0"),
        "garbage.obj": ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 x\n", "corrupt"),
        "empty.ply": ("", "could not parse"),
        "range.off": ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", "range"),
        "range_uv.obj": ("v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/1 2/2 3/1\n", "face vt"),
        "line.obj": ("v 0 0 0\nv 1 0 0\nf 1 2\n", "2 vertices"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(MeshIOError, match=message) as info:
            load_mesh(path)
        assert name in str(info.value)

    verts, faces = _random_mesh(3)
    good = tmp_path / "good.ply"
    save_mesh(good, verts, faces)
    truncated = tmp_path / "truncated.ply"
    truncated.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(MeshIOError, match="truncated.ply"):
        load_mesh(truncated)
    junk = tmp_path / "junk.glb"
    junk.write_bytes(b"glTF\x02\x00\x00\x00garbage")
    with pytest.raises(MeshIOError, match="junk.glb"):
        load_mesh(junk)


def test_save_argument_errors(tmp_path):
    verts, faces = _random_mesh(4)
    with pytest.raises(ValueError, match="verts"):
        save_mesh(tmp_path / "a.ply", verts[:, :2], faces)
    with pytest.raises(ValueError, match="faces"):
        save_mesh(tmp_path / "a.ply", verts, faces[:, :2])
    with pytest.raises(ValueError, match="integer"):
        save_mesh(tmp_path / "a.ply", verts, faces.float())
    with pytest.raises(ValueError, match="out of range"):
        save_obj(tmp_path / "a.obj", verts, faces + verts.shape[0])
    with pytest.raises(ValueError, match="unsupported"):
        save_mesh(tmp_path / "a.dae", verts, faces)
    with pytest.raises(ValueError, match="decimal_places"):
        save_obj(tmp_path / "a.obj", verts, faces, decimal_places=-1)


def test_meshes_batch_round_trip(tmp_path):
    v0, f0 = _random_mesh(5, 10, 8)
    v1, f1 = _random_mesh(6, 7, 5)
    meshes = Meshes(verts=[v0, v1], faces=[f0, f1])
    written = save_meshes(meshes, str(tmp_path / "m_{:02d}.ply"))
    assert [p.rsplit("/", 1)[-1] for p in written] == ["m_00.ply", "m_01.ply"]
    loaded = load_meshes(written)
    assert len(loaded) == 2
    for a, b in zip(loaded.verts_list(), [v0, v1]):
        assert torch.allclose(a, b, atol=1e-6)
    for a, b in zip(loaded.faces_list(), [f0, f1]):
        assert torch.equal(a, b)
    mixed = [tmp_path / "x.obj", tmp_path / "y.off"]
    save_meshes(meshes, mixed)
    again = load_meshes(mixed)
    assert torch.equal(again.faces_list()[1], f1)
    with pytest.raises(ValueError, match="2 items"):
        save_meshes(meshes, [tmp_path / "only.obj"])
    with pytest.raises(ValueError, match="pattern"):
        save_meshes(meshes, str(tmp_path / "nopattern.obj"))
    with pytest.raises(ValueError, match="at least one"):
        load_meshes([])
