"""Vertex colours and header comments through the mesh writers (OBJ, PLY, GLB) and back."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
import trimesh

from meshrecon.io import load_mesh, save_mesh
from meshrecon.io.appearance import load_mesh_with_appearance
from meshrecon.io.utils import linear_to_srgb, srgb_to_linear
from meshrecon.ops import ico_sphere


def _mesh_and_colors(seed=0):
    sphere = ico_sphere(1)
    verts, faces = sphere.verts_packed(), sphere.faces_packed()
    g = torch.Generator().manual_seed(seed)
    colors = torch.randint(0, 256, (verts.shape[0], 3), generator=g, dtype=torch.uint8)
    colors[:4] = torch.tensor([[0, 0, 0], [1, 2, 3], [255, 255, 255], [10, 128, 250]])
    return verts, faces, colors


@pytest.mark.parametrize("ext", ["obj", "ply", "glb"])
@pytest.mark.parametrize("as_float", [False, True])
def test_vertex_colors_round_trip(tmp_path, ext, as_float):
    verts, faces, colors = _mesh_and_colors()
    given = colors.float() / 255.0 if as_float else colors
    path = tmp_path / f"m.{ext}"
    save_mesh(path, verts, faces, verts_colors=given, comment="frame: camera\nunits: metres")
    v, f, app = load_mesh_with_appearance(str(path))
    assert torch.allclose(v, verts, atol=1e-6) and torch.equal(f, faces)
    assert app.kind == "vertex"
    # Within 1/255 of what was written, dark tones included (GLB stores linear light).
    err = (app.vertex_colors.double() - colors.double() / 255.0).abs().max()
    assert float(err) <= 1 / 255 + 1e-9
    # The plain loader still reads the geometry.
    assert torch.equal(load_mesh(path)[1], faces)


def test_comment_is_stored_in_each_format(tmp_path):
    verts, faces, colors = _mesh_and_colors()
    note = "vertices in the camera frame: +X left, +Y up, +Z forward"
    for ext in ("obj", "ply", "glb"):
        save_mesh(tmp_path / f"m.{ext}", verts, faces, verts_colors=colors, comment=note)
    assert (tmp_path / "m.obj").read_text().startswith(f"# {note}\n")
    header = (tmp_path / "m.ply").read_bytes().split(b"end_header")[0].decode()
    assert f"comment {note}\n" in header and header.startswith("ply\nformat binary")
    data = (tmp_path / "m.glb").read_bytes()
    (json_len,) = struct.unpack("<I", data[12:16])
    tree = json.loads(data[20 : 20 + json_len])
    assert tree["asset"]["extras"]["comment"] == note
    # COLOR_0 is linear light (glTF 2.0): the sRGB transfer function of what was given.
    raw = trimesh.exchange.gltf.load_glb(open(tmp_path / "m.glb", "rb"))["geometry"]
    (stored,) = [g["vertex_colors"] for g in raw.values()]
    assert stored.dtype == np.float32
    np.testing.assert_allclose(stored, srgb_to_linear(colors.numpy() / 255.0), atol=1e-6)
    # And a file without colours or comment is written as before (trimesh's GLB).
    save_mesh(tmp_path / "plain.glb", verts, faces)
    assert load_mesh_with_appearance(str(tmp_path / "plain.glb"))[2].kind == "none"


def test_srgb_transfer_function_is_inverted():
    x = np.linspace(0, 1, 1001)
    np.testing.assert_allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-12)
    assert srgb_to_linear(np.array([0.5]))[0] == pytest.approx(0.21404, abs=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"verts_colors": torch.zeros(3, 3)}, r"shape \(42, 3\)"),
        ({"verts_colors": torch.full((42, 3), 1.5)}, "lie in \\[0, 1\\]"),
        ({"verts_colors": torch.zeros(42, 3, dtype=torch.int32)}, "uint8"),
    ],
)
def test_bad_colors_are_refused(tmp_path, kwargs, match):
    verts, faces, _ = _mesh_and_colors()
    for ext in ("obj", "ply", "glb"):
        with pytest.raises(ValueError, match=match):
            save_mesh(tmp_path / f"m.{ext}", verts, faces, **kwargs)


def test_colors_for_a_format_without_them_are_refused(tmp_path):
    verts, faces, colors = _mesh_and_colors()
    with pytest.raises(ValueError, match="m.stl: verts_colors and comment"):
        save_mesh(tmp_path / "m.stl", verts, faces, verts_colors=colors)
