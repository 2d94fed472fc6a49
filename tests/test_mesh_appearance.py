"""Colours of mesh files (load_mesh_with_appearance) and their rendering (atlas, chunks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from meshrecon.io import MeshIOError, load_mesh
from meshrecon.io.appearance import load_mesh_with_appearance
from meshrecon.io.mtl_io import _cell_barycentrics
from meshrecon.io.utils import NonFiniteVerticesError
from meshrecon.render import render_meshes, sample_atlas
from meshrecon.structures import Meshes

RED, BLUE = (250, 10, 10), (10, 10, 250)


def _two_colour_quad() -> trimesh.Trimesh:
    """A unit quad in the XY plane, UV = (x, y), on an image whose top half is red."""
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    image = np.zeros((8, 8, 3), np.uint8)
    image[:4], image[4:] = RED, BLUE  # row 0 is the top of the picture: v = 1
    visual = trimesh.visual.TextureVisuals(uv=v[:, :2], image=Image.fromarray(image))
    return trimesh.Trimesh(v, f, visual=visual, process=False)


@pytest.mark.parametrize("ext", ["obj", "glb"])
def test_uv_texture_becomes_an_atlas_with_the_right_halves(tmp_path, ext):
    path = str(tmp_path / f"quad.{ext}")
    _two_colour_quad().export(path)
    verts, faces, app = load_mesh_with_appearance(path, texture_size=8)
    v0, f0 = load_mesh(path)
    assert torch.equal(verts, v0) and torch.equal(faces, f0)
    assert app.kind == "atlas" and app.source == "texture" and app.atlas.shape == (2, 8, 8, 3)
    # Each texel is the image at the UV of its centre: red above v = 0.5, blue below. trimesh
    # writes a glTF base colour factor of 0.4 grey with the texture; glTF multiplies them.
    factor = 0.4 if ext == "glb" else 1.0
    bary = _cell_barycentrics(8, torch.device("cpu"))
    tri_uv = verts[faces][:, :, :2]  # UV = (x, y) here
    uv = torch.einsum("rck,fkd->frcd", bary, tri_uv)
    red = torch.tensor(RED) / 255 * factor
    blue = torch.tensor(BLUE) / 255 * factor
    far = (uv[..., 1] - 0.5).abs() > 0.1  # away from the edge between the halves
    expected = torch.where((uv[..., 1] > 0.5)[..., None], red, blue)
    assert torch.allclose(app.atlas[far], expected[far], atol=0.02)


def test_vertex_face_and_material_colours(tmp_path):
    box = trimesh.creation.box()
    colors = np.random.default_rng(0).integers(0, 256, (8, 4)).astype(np.uint8)
    box.visual.vertex_colors = colors
    box.export(tmp_path / "v.ply")
    _, _, app = load_mesh_with_appearance(str(tmp_path / "v.ply"))
    assert app.kind == "vertex" and torch.allclose(
        app.vertex_colors, torch.from_numpy(colors[:, :3] / 255.0).float()
    )
    box = trimesh.creation.box()
    box.visual.face_colors = np.tile([0, 255, 0, 255], (12, 1))
    box.export(tmp_path / "f.ply")
    _, faces, app = load_mesh_with_appearance(str(tmp_path / "f.ply"))
    assert app.kind == "face" and torch.equal(app.face_colors, torch.tensor([[0.0, 1, 0]] * 12))
    # OBJ vertex colours, 0..1 or 0..255, and MTL diffuse colours per material.
    (tmp_path / "vc.obj").write_text("v 0 0 0 1 0 0\nv 1 0 0 0 1 0\nv 0 1 0 0 0 1\nf 1 2 3\n")
    _, _, app = load_mesh_with_appearance(str(tmp_path / "vc.obj"))
    assert torch.equal(app.vertex_colors, torch.eye(3))
    (tmp_path / "vc255.obj").write_text(
        "v 0 0 0 255 0 0\nv 1 0 0 0 255 0\nv 0 1 0 0 0 255\nf 1 2 3\n"
    )
    assert torch.equal(
        load_mesh_with_appearance(str(tmp_path / "vc255.obj"))[2].vertex_colors, torch.eye(3)
    )
    (tmp_path / "m.mtl").write_text("newmtl a\nKd 1 0 0\nnewmtl b\nKd 0 0 1\n")
    (tmp_path / "m.obj").write_text(
        "mtllib m.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\nusemtl a\nf 1 2 3\nusemtl b\nf 2 4 3\n"
    )
    _, _, app = load_mesh_with_appearance(str(tmp_path / "m.obj"))
    assert app.kind == "face" and app.source == "materials"
    assert torch.equal(app.face_colors, torch.tensor([[1.0, 0, 0], [0, 0, 1]]))
    trimesh.creation.box().export(tmp_path / "plain.stl")
    assert load_mesh_with_appearance(str(tmp_path / "plain.stl"))[2].kind == "none"


def test_scene_pieces_are_merged_into_one_form(tmp_path):
    coloured = trimesh.creation.box()
    coloured.visual.vertex_colors = np.tile([255, 0, 0, 255], (8, 1))
    plain = trimesh.creation.box()
    plain.apply_translation([3, 0, 0])
    trimesh.Scene([coloured, plain]).export(tmp_path / "vp.glb")
    verts, _, app = load_mesh_with_appearance(str(tmp_path / "vp.glb"))
    assert app.kind == "vertex" and app.vertex_colors.shape == (len(verts), 3)
    red_part = verts[:, 0] < 1.5  # the coloured box sits at x = 0, the plain one at x = 3
    assert torch.equal(app.vertex_colors[red_part], torch.tensor([[1.0, 0, 0]]).expand(8, 3))
    assert torch.allclose(app.vertex_colors[~red_part], torch.full((8, 3), 0.8))
    quad = _two_colour_quad()
    quad.apply_translation([3, 0, 0])
    trimesh.Scene([coloured, quad]).export(tmp_path / "vt.glb")
    verts, faces, app = load_mesh_with_appearance(str(tmp_path / "vt.glb"), texture_size=4)
    assert app.kind == "atlas" and app.atlas.shape == (len(faces), 4, 4, 3)
    box_faces = verts[faces][:, :, 0].mean(1) < 1.5
    # Vertex colours become patches of the barycentric mix (here all red).
    assert torch.allclose(app.atlas[box_faces], torch.tensor([1.0, 0, 0]), atol=1e-6)


def test_non_finite_vertices_have_their_own_error(tmp_path):
    (tmp_path / "nan.obj").write_text("v 0 0 0\nv 1 nan 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(NonFiniteVerticesError, match="NaN or Inf"):
        load_mesh(str(tmp_path / "nan.obj"))
    mesh = trimesh.Trimesh([[0, 0, 0], [1, np.inf, 0], [0, 1, 0]], [[0, 1, 2]], process=False)
    mesh.export(tmp_path / "inf.ply")
    with pytest.raises(NonFiniteVerticesError):
        load_mesh_with_appearance(str(tmp_path / "inf.ply"))
    assert issubclass(NonFiniteVerticesError, MeshIOError)  # callers catching MeshIOError


def test_sample_atlas_reads_each_texel_at_its_own_centre():
    R = 5
    atlas = torch.rand(3, R, R, 3, generator=torch.Generator().manual_seed(0))
    bary = _cell_barycentrics(R, torch.device("cpu")).reshape(-1, 3)  # texel centres
    for f in range(3):
        got = sample_atlas(atlas, torch.full((R * R,), f), bary.double())
        assert torch.equal(got, atlas[f].reshape(-1, 3))
    # Corners and edges stay in range.
    corners = torch.eye(3, dtype=torch.float64)
    assert sample_atlas(atlas, torch.zeros(3, dtype=torch.long), corners).shape == (3, 3)


def test_constant_atlas_renders_like_face_colours():
    verts = torch.tensor([[-0.5, -0.5, 2.0], [0.5, -0.5, 2.2], [0.0, 0.5, 1.8], [0.6, 0.6, 2.0]])
    faces = torch.tensor([[0, 1, 2], [1, 3, 2]])
    colors = torch.tensor([[0.9, 0.2, 0.1], [0.1, 0.3, 0.8]], dtype=torch.float64)
    mesh = Meshes(verts=[verts.double()], faces=[faces])
    K = torch.tensor([40.0, 40.0, 16.0, 16.0], dtype=torch.float64)
    a = render_meshes(mesh, K, 32, face_colors=colors)
    atlas = colors[:, None, None, :].expand(2, 4, 4, 3).float()
    b = render_meshes(mesh, K, 32, atlas=atlas)
    assert a["mask"].sum() > 50
    assert torch.allclose(a["rgb"], b["rgb"], atol=1e-6)
    with pytest.raises(ValueError, match="atlas must be"):
        render_meshes(mesh, K, 32, atlas=atlas[:1])


def test_render_views_in_chunks_gives_the_same_images(monkeypatch):
    from meshrecon.data.datasets.synthetic import rendering
    from meshrecon.render import r2n2_camera

    sphere = trimesh.creation.icosphere(1, radius=0.4)
    verts, faces = np.asarray(sphere.vertices), np.asarray(sphere.faces)
    colors = np.random.default_rng(0).random((len(faces), 3))
    K, R, t = r2n2_camera(torch.tensor([0.0, 90, 200]), torch.tensor([25.0, 30, 28]), 1.4, 32)
    whole = rendering.render_views(verts, faces, colors, K, R, t, (32, 32))
    monkeypatch.setattr(rendering, "_MAX_PACKED_VALUES", 1)  # one view per call
    parts = rendering.render_views(verts, faces, colors, K, R, t, (32, 32))
    assert all(np.array_equal(whole[k], parts[k]) for k in ("rgb", "mask", "depth"))
    with pytest.raises(ValueError, match="at most one"):
        rendering.render_views(verts, faces, colors, K, R, t, (32, 32), vertex_colors=verts)
