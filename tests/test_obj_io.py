"""Tests for meshrecon.io.obj_io: PyTorch3D's load_obj / save_obj / load_objs_as_meshes
arguments (materials, normals, UVs, texture images, path managers) and error reports."""

import io

import numpy as np
import pytest
import torch
from iopath.common.file_io import g_pathmgr
from PIL import Image

from meshrecon.io import MeshIOError, load_obj, load_objs_as_meshes, save_mesh, save_obj
from meshrecon.structures import Meshes


def _mesh(seed=0):
    g = torch.Generator().manual_seed(seed)
    verts = torch.rand(6, 3, generator=g) * 2 - 1
    faces = torch.tensor([[0, 1, 2], [2, 3, 4], [4, 5, 0], [1, 3, 5]])
    normals = torch.nn.functional.normalize(torch.randn(4, 3, generator=g), dim=1)
    faces_normals_idx = torch.randint(0, 4, (4, 3), generator=g)
    verts_uvs = torch.rand(7, 2, generator=g)
    faces_uvs = torch.randint(0, 7, (4, 3), generator=g)
    texture = torch.rand(5, 8, 3, generator=g)
    return verts, faces, normals, faces_normals_idx, verts_uvs, faces_uvs, texture


class SpyPathManager:
    """Records every path opened or tested, and delegates to iopath's global manager."""

    def __init__(self):
        self.paths = []

    def open(self, path, mode="r", **kwargs):
        self.paths.append(str(path))
        return g_pathmgr.open(path, mode, **kwargs)

    def exists(self, path):
        self.paths.append(str(path))
        return g_pathmgr.exists(path)


# ---------------------------------------------------------------------- save_obj -> load_obj
def test_normals_uvs_and_texture_round_trip(tmp_path):
    verts, faces, normals, fn_idx, uvs, fuv_idx, texture = _mesh()
    path = tmp_path / "textured.obj"
    spy = SpyPathManager()
    save_obj(
        path,
        verts,
        faces,
        path_manager=spy,
        normals=normals,
        faces_normals_idx=fn_idx,
        verts_uvs=uvs,
        faces_uvs=fuv_idx,
        texture_map=texture,
    )
    # The OBJ references an MTL beside it, whose map_Kd is a PNG beside it (PyTorch3D's layout).
    text = path.read_text()
    assert text.startswith("mtllib textured.mtl\nusemtl mesh\n")
    first = fuv_idx[0] + 1
    assert f"f 1/{first[0]}/{fn_idx[0, 0] + 1} " in text
    assert (tmp_path / "textured.mtl").read_text() == "newmtl mesh\nmap_Kd textured.png\n"
    assert sorted(spy.paths) == sorted(
        str(tmp_path / n) for n in ("textured.obj", "textured.png", "textured.mtl")
    )

    spy = SpyPathManager()
    v, f, aux = load_obj(path, path_manager=spy)
    assert str(tmp_path / "textured.png") in spy.paths  # the image went through it too
    assert torch.equal(v, verts) and torch.equal(f.verts_idx, faces)
    assert torch.equal(aux.normals, normals) and torch.equal(f.normals_idx, fn_idx)
    assert torch.equal(aux.verts_uvs, uvs) and torch.equal(f.textures_idx, fuv_idx)
    assert f.materials_idx.tolist() == [0, 0, 0, 0]
    assert aux.material_colors == {"mesh": {}}
    image = aux.texture_images["mesh"]
    assert image.shape == (5, 8, 3) and image.dtype == torch.float32
    assert torch.equal(image, (texture * 255).round() / 255)


def test_partial_attributes_write_the_matching_face_layout(tmp_path):
    verts, faces, normals, fn_idx, uvs, fuv_idx, _ = _mesh(1)
    save_obj(tmp_path / "n.obj", verts, faces, normals=normals, faces_normals_idx=fn_idx)
    text = (tmp_path / "n.obj").read_text()
    assert "vt " not in text and f"f 1//{fn_idx[0, 0] + 1} " in text
    _, f, aux = load_obj(tmp_path / "n.obj")
    assert torch.equal(f.normals_idx, fn_idx) and (f.textures_idx == -1).all()
    # UVs without a texture image are written too (PyTorch3D drops them), with no MTL or PNG.
    save_obj(tmp_path / "t.obj", verts, faces, verts_uvs=uvs, faces_uvs=fuv_idx)
    assert f"f 1/{fuv_idx[0, 0] + 1} " in (tmp_path / "t.obj").read_text()
    assert not (tmp_path / "t.mtl").exists() and not (tmp_path / "t.png").exists()
    _, f, aux = load_obj(tmp_path / "t.obj")
    assert torch.equal(f.textures_idx, fuv_idx) and torch.equal(aux.verts_uvs, uvs)
    assert aux.material_colors is None and aux.texture_images is None
    # Empty inputs, also as torch.tensor([]) (PyTorch3D accepts "empty or (V, 3)").
    buf = io.StringIO()
    save_obj(buf, torch.tensor([]), torch.tensor([], dtype=torch.int64))
    assert buf.getvalue() == ""


def test_save_obj_argument_errors(tmp_path):
    verts, faces, normals, fn_idx, uvs, fuv_idx, texture = _mesh(2)
    out = tmp_path / "bad.obj"
    cases = [
        (dict(normals=normals), "faces_normals_idx"),
        (dict(faces_uvs=fuv_idx), "verts_uvs"),
        (dict(texture_map=texture), "texture_map needs verts_uvs"),
        (
            dict(normals=normals, faces_normals_idx=fn_idx + 4),
            "faces_normals_idx index out of range",
        ),
        (dict(normals=normals, faces_normals_idx=fn_idx[:2]), "one row per face"),
        (dict(verts_uvs=uvs[:, :1], faces_uvs=fuv_idx), "verts_uvs"),
        (dict(verts_uvs=uvs, faces_uvs=fuv_idx.float()), "faces_uvs must be an integer"),
        (dict(verts_uvs=uvs, faces_uvs=fuv_idx, texture_map=texture[..., :2]), "texture_map"),
    ]
    for kwargs, msg in cases:
        with pytest.raises(ValueError, match=msg):
            save_obj(out, verts, faces, **kwargs)
    with pytest.raises(ValueError, match="texture_map needs f to be a path"):
        save_obj(io.StringIO(), verts, faces, verts_uvs=uvs, faces_uvs=fuv_idx, texture_map=texture)


# ---------------------------------------------------------------------- load_obj with materials
MTL_TEXT = """newmtl red
Kd 1 0 0
Ka 0.1 0.2 0.3
Ks 0.5 0.5 0.5
Ns 10
newmtl pic
Kd 0 0 1
map_Kd my texture.png
newmtl unused
Kd 0 1 0
"""

OBJ_WITH_MATERIALS = """mtllib scene.mtl
v 0 0 0
v 1 0 0
v 1 1 0
v 0 1 0
vt 0 0
vt 1 0
vt 1 1
vt 0 1
f 1 2 3
usemtl pic
f 1/1 2/2 3/3 4/4
usemtl red
f 1 3 4
usemtl pic
f 2/2 3/3 4/4
"""


def _write_scene(tmp_path, image=None):
    (tmp_path / "scene.mtl").write_text(MTL_TEXT)
    (tmp_path / "scene.obj").write_text(OBJ_WITH_MATERIALS)
    if image is None:
        image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3) * 3
    Image.fromarray(image).save(tmp_path / "my texture.png")
    return tmp_path / "scene.obj", image


def test_load_obj_reads_materials_like_pytorch3d(tmp_path):
    path, image = _write_scene(tmp_path)
    verts, faces, aux = load_obj(path)
    # Materials are numbered by first usemtl; the face before any usemtl has -1.
    assert faces.materials_idx.tolist() == [-1, 0, 0, 1, 0]
    assert set(aux.material_colors) == {"pic", "red"}  # only the materials the OBJ uses
    red = aux.material_colors["red"]
    assert red["diffuse_color"].tolist() == [1, 0, 0] and red["shininess"].tolist() == [10.0]
    assert torch.allclose(red["ambient_color"], torch.tensor([0.1, 0.2, 0.3]))
    assert torch.allclose(red["specular_color"], torch.full((3,), 0.5))
    assert list(aux.texture_images) == ["pic"]  # a file name with a space
    assert torch.equal(aux.texture_images["pic"], torch.from_numpy(image).float() / 255)
    # Without load_textures nothing is read, but usemtl still numbers the faces.
    _, faces, aux = load_obj(path, load_textures=False)
    assert aux.material_colors is None and aux.texture_images is None
    assert faces.materials_idx.tolist() == [-1, 0, 0, 1, 0]
    # One material and no usemtl: it applies to every face (PyTorch3D's rule).
    (tmp_path / "one.mtl").write_text("newmtl only\nKd 0.5 0.5 0.5\n")
    (tmp_path / "one.obj").write_text("mtllib one.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    _, faces, aux = load_obj(tmp_path / "one.obj")
    assert faces.materials_idx.tolist() == [0] and list(aux.material_colors) == ["only"]
    # Several materials and no usemtl: ambiguous, refused.
    (tmp_path / "two.obj").write_text("mtllib scene.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(ValueError, match="ambiguous"):
        load_obj(tmp_path / "two.obj")


def test_load_obj_warns_about_missing_material_files(tmp_path):
    path, _ = _write_scene(tmp_path)
    (tmp_path / "my texture.png").unlink()
    with pytest.warns(UserWarning, match="texture file of material 'pic' not found"):
        _, _, aux = load_obj(path)
    assert aux.texture_images == {} and "red" in aux.material_colors
    (tmp_path / "scene.mtl").unlink()
    with pytest.warns(UserWarning, match="material file not found"):
        _, _, aux = load_obj(path)
    assert aux.material_colors is None


def test_texture_atlas_arguments(tmp_path):
    path, _ = _write_scene(tmp_path)
    _, faces, aux = load_obj(path, create_texture_atlas=True, texture_atlas_size=3)
    atlas = aux.texture_atlas
    assert atlas.shape == (5, 3, 3, 3) and atlas.dtype == torch.float32
    assert (atlas[0] == 1).all()  # no material: white
    assert torch.equal(atlas[3], torch.tensor([1.0, 0, 0]).expand(3, 3, 3))  # Kd only
    assert not torch.equal(atlas[1], atlas[2])  # textured: sampled at each face's UVs
    with pytest.raises(ValueError, match="texture_wrap"):
        load_obj(path, texture_wrap="mirror")
    with pytest.raises(ValueError, match="texture_atlas_size"):
        load_obj(path, create_texture_atlas=True, texture_atlas_size=0)


# ---------------------------------------------------------------------- load_objs_as_meshes
def test_load_objs_as_meshes_refuses_textures_it_cannot_carry(tmp_path):
    textured, _ = _write_scene(tmp_path)
    verts, faces = torch.rand(4, 3), torch.tensor([[0, 1, 2], [0, 2, 3]])
    save_obj(tmp_path / "plain.obj", verts, faces)
    save_mesh(tmp_path / "plain.ply", verts, faces)
    meshes = load_objs_as_meshes([tmp_path / "plain.obj", tmp_path / "plain.ply"])
    assert isinstance(meshes, Meshes) and len(meshes) == 2
    assert all(torch.equal(f, faces) for f in meshes.faces_list())
    with pytest.raises(ValueError, match="load_textures=True: .*scene.obj has a texture image"):
        load_objs_as_meshes([tmp_path / "plain.obj", textured])
    meshes = load_objs_as_meshes([textured], load_textures=False)
    assert meshes.num_faces_per_mesh().tolist() == [5]
    with pytest.raises(ValueError, match="create_texture_atlas"):
        load_objs_as_meshes([tmp_path / "plain.obj"], create_texture_atlas=True)
    spy = SpyPathManager()
    load_objs_as_meshes([tmp_path / "plain.obj"], path_manager=spy)
    assert str(tmp_path / "plain.obj") in spy.paths


# ---------------------------------------------------------------------- errors name the line
@pytest.mark.parametrize(
    "token, msg",
    [("100000000000000000000000", "does not fit in 64 bits"), ("1e23", "is not an integer")],
)
def test_huge_face_index_names_file_and_line(tmp_path, token, msg):
    path = tmp_path / "huge.obj"
    path.write_text(f"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n# a comment\nf 1 {token} 3\n")
    with pytest.raises(MeshIOError, match=rf"huge\.obj:6: .*{msg}"):
        load_obj(path)
    path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n\nf 1 2 3\nf 1 2 4\n")
    with pytest.raises(MeshIOError, match=r"huge\.obj:6: face v index out of range \[1, 3\]"):
        load_obj(path)
