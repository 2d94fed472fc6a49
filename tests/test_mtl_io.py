"""Tests for meshrecon.io.mtl_io: the per-face texture atlas against a loop."""

import numpy as np
import pytest
import torch

from meshrecon.io.mtl_io import make_material_atlas, make_mesh_texture_atlas


def bilinear(image, u, v):
    """Colour of an (H, W, 3) image (row 0 at the top) at UV (u, v), (0, 0) the bottom-left
    texel centre and (1, 1) the top-right one; outside the image counts as black."""
    H, W, _ = image.shape
    x, y = u * (W - 1), (1 - v) * (H - 1)
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    out = torch.zeros(3, dtype=torch.float64)
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < H and 0 <= xx < W:
                out += wy * wx * image[yy, xx].double()
    return out


def naive_atlas(image, face_uvs, R):
    """Texel (r, c) of a face samples the centroid of its sub-triangle (Soft Rasterizer)."""
    out = torch.zeros(len(face_uvs), R, R, 3, dtype=torch.float64)
    for f, uv in enumerate(face_uvs.double()):
        for r in range(R):
            for c in range(R):
                if c + r < R:
                    w0, w1 = (c + 1 / 3) / R, (r + 1 / 3) / R
                else:
                    w0, w1 = (R - 1 - c + 2 / 3) / R, (R - 1 - r + 2 / 3) / R
                p = w0 * uv[0] + w1 * uv[1] + (1 - w0 - w1) * uv[2]
                out[f, r, c] = bilinear(image, float(p[0]), float(p[1]))
    return out


def test_material_atlas_matches_loop():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(7, 9, 3, generator=g)
    face_uvs = torch.rand(5, 3, 2, generator=g)
    atlas = make_material_atlas(torch.flip(image, [0]), face_uvs, 4)
    assert atlas.shape == (5, 4, 4, 3)
    assert torch.allclose(atlas.double(), naive_atlas(image, face_uvs, 4), atol=1e-5)


def test_mesh_atlas_colours_wrap_and_faces_without_uvs():
    g = torch.Generator().manual_seed(1)
    image = torch.rand(6, 6, 3, generator=g)
    verts_uvs = torch.rand(6, 2, generator=g)
    faces_uvs = torch.tensor([[0, 1, 2], [3, 4, 5], [0, 2, 4], [-1, -1, -1]])
    names = np.array(["tex", "tex", "flat", "tex"])
    props = {"tex": {"diffuse_color": torch.tensor([0.2, 0.3, 0.4])}, "flat": {}}
    args = (props, {"tex": image}, names, faces_uvs)
    atlas = make_mesh_texture_atlas(*args, verts_uvs, 2, "repeat")
    expected = naive_atlas(image, verts_uvs[faces_uvs[:2]], 2)
    assert torch.allclose(atlas[:2].double(), expected, atol=1e-5)
    assert (atlas[2] == 1).all()  # a material without colour or image: white
    # No UV indices (-1): the material's diffuse colour, not the texture at the last UV.
    assert torch.equal(atlas[3], torch.tensor([0.2, 0.3, 0.4]).expand(2, 2, 3))
    # "repeat" reads the fractional part (with a warning), "clamp" clamps to [0, 1].
    with pytest.warns(UserWarning, match="outside"):
        shifted = make_mesh_texture_atlas(*args, verts_uvs + 2.0, 2, "repeat")
    assert torch.allclose(shifted, atlas, atol=1e-5)
    clamped = make_mesh_texture_atlas(*args, verts_uvs * 3, 2, "clamp")
    ref = make_mesh_texture_atlas(*args, (verts_uvs * 3).clamp(0, 1), 2, None)
    assert torch.allclose(clamped, ref)
    with pytest.raises(ValueError, match="texture_wrap"):
        make_mesh_texture_atlas(*args, verts_uvs, 2, "mirror")
