import numpy as np
import pytest
import torch
from PIL import Image

from meshrecon.ops import ico_sphere
from meshrecon.render import (
    checker_texture,
    colorize_depth,
    look_at_view_transform,
    rasterize,
    render_meshes,
    save_image,
    stripes_texture,
    transform_points,
    unproject_depth,
    value_noise_texture,
)
from meshrecon.structures import Meshes

K = torch.tensor([90.0, 90.0, 32.0, 32.0])


def plane(z: float = 2.0, tilt: float = 0.0) -> Meshes:
    """A square facing the camera (normal towards -Z), optionally tilted about Y."""
    verts = torch.tensor([[-1.0, -1, 0], [1.0, -1, 0], [1.0, 1, 0], [-1.0, 1, 0]])
    c, s = np.cos(tilt), np.sin(tilt)
    rot = torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float32)
    verts = verts @ rot.T + torch.tensor([0.0, 0.0, z])
    # (v1 - v0) x (v2 - v0) points to -Z: towards the camera.
    return Meshes([verts], [torch.tensor([[0, 2, 1], [0, 3, 2]])])


def test_outputs_agree_with_rasterizer_and_normals_face_camera():
    sphere = ico_sphere(3)
    R, t = look_at_view_transform(3.0, 15.0, 40.0)
    mesh = Meshes([transform_points(sphere.verts_packed(), R[0], t[0])], [sphere.faces_packed()])
    out = render_meshes(mesh, K, 64)
    frags = rasterize(mesh, K=K, image_size=64)
    assert torch.equal(out["pix_to_face"], frags.pix_to_face)
    assert torch.equal(out["mask"], frags.pix_to_face >= 0)
    torch.testing.assert_close(out["depth"], frags.zbuf)
    assert out["rgb"].shape == (1, 64, 64, 3) and "instance" not in out
    m = out["mask"][0]
    n = out["normals"][0][m]
    torch.testing.assert_close(n.norm(dim=1), torch.ones(len(n)))
    pts, _ = unproject_depth(out["depth"][0], K)
    assert ((n * pts[m]).sum(1) < 0).all()  # facing the camera
    face_n = mesh.faces_normals_packed()[out["pix_to_face"][0][m]]
    torch.testing.assert_close(n, face_n)  # outward normals of visible faces already face it
    assert (out["normals"][0][~m] == 0).all()
    assert (out["rgb"][0][~m] == 1).all()  # white background
    smooth = render_meshes(mesh, K, 64, smooth_normals=True)
    # Sphere vertex normals point away from the centre: check on the interpolated normals.
    centre = transform_points(torch.zeros(1, 3), R[0], t[0])[0]
    radial = torch.nn.functional.normalize(pts[m] - centre, dim=1)
    flat_dot = (n * radial).sum(1)
    smooth_dot = (smooth["normals"][0][m] * radial).sum(1)
    assert smooth_dot.min() > 0.98 and smooth_dot.mean() > flat_dot.mean()


def test_lambert_shading_analytic():
    mesh = plane()
    color = torch.tensor([[0.2, 0.6, 1.0]]).expand(2, 3)
    head_on = render_meshes(mesh, K, 64, face_colors=color, light_dir=(0.0, 0.0, -1.0))
    m = head_on["mask"][0]
    assert m.sum() > 1000
    torch.testing.assert_close(head_on["rgb"][0][m], color[:1].expand(int(m.sum()), 3))
    grazing = render_meshes(mesh, K, 64, face_colors=color, light_dir=(1.0, 0.0, 0.0), ambient=0.3)
    torch.testing.assert_close(grazing["rgb"][0][m], 0.3 * color[:1].expand(int(m.sum()), 3))
    angled = render_meshes(mesh, K, 64, face_colors=color, light_dir=(0.0, 1.0, -1.0), ambient=0.2)
    shade = 0.2 + 0.8 * np.cos(np.pi / 4)
    torch.testing.assert_close(angled["rgb"][0][m], shade * color[:1].expand(int(m.sum()), 3))
    # The back of the plane is lit the same way: normals are turned to the camera.
    back = Meshes([mesh.verts_packed()], [mesh.faces_packed().flip(1)])
    torch.testing.assert_close(render_meshes(back, K, 64, face_colors=color)["rgb"], head_on["rgb"])


def test_vertex_colors_are_interpolated_perspective_correctly():
    mesh = plane(z=2.5, tilt=0.9)  # strongly tilted: affine interpolation would be wrong
    verts = mesh.verts_packed()
    # Colours that are an affine function of the 3D position stay that function on the surface.
    w = torch.tensor([[0.2, 0.0, 0.0], [0.0, 0.3, 0.0], [0.1, 0.1, 0.15]])

    def colour_of(p):
        return p @ w.T + torch.tensor([0.5, 0.5, 0.1])

    out = render_meshes(mesh, K, 64, vertex_colors=colour_of(verts), ambient=1.0)
    m = out["mask"][0]
    pts, _ = unproject_depth(out["depth"][0], K)
    torch.testing.assert_close(out["rgb"][0][m], colour_of(pts[m]), atol=1e-5, rtol=0)


def test_texture_fn_gets_surface_points_and_texture_verts():
    mesh = plane(z=2.0, tilt=0.5)
    seen = {}

    def texture(points, face_idx):
        seen["points"], seen["faces"] = points, face_idx
        return torch.full((len(points), 3), 0.5)

    out = render_meshes(mesh, K, 64, texture_fn=texture, ambient=1.0)
    m = out["mask"][0]
    pts, _ = unproject_depth(out["depth"][0], K)
    torch.testing.assert_close(seen["points"], pts[m], atol=1e-5, rtol=0)
    assert torch.equal(seen["faces"], out["pix_to_face"][0][m])
    assert torch.allclose(out["rgb"][0][m], torch.tensor(0.5))
    # Model-frame coordinates: a texture fixed to the object.
    model = mesh.verts_packed() * 3.0 - 1.0
    render_meshes(mesh, K, 64, texture_fn=texture, texture_verts=model)
    torch.testing.assert_close(seen["points"], pts[m] * 3.0 - 1.0, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="texture_fn"):
        render_meshes(mesh, K, 64, texture_fn=lambda p, f: torch.zeros(len(p), 2))


def test_instance_map_and_background_image():
    near = plane(z=2.0)
    far_verts = near.verts_packed() * torch.tensor([1.0, 0.5, 1.0]) + torch.tensor([2.0, 0, 1.0])
    scene = Meshes(
        [torch.cat([near.verts_packed(), far_verts])],
        [torch.cat([near.faces_packed(), near.faces_packed() + 4])],
    )
    ids = torch.tensor([3, 3, 7, 7])
    bg = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    K_wide = torch.tensor([20.0, 20.0, 32.0, 32.0])
    out = render_meshes(scene, K_wide, 64, face_instance_ids=ids, background=bg)
    inst = out["instance"][0]
    assert set(inst.unique().tolist()) == {-1, 3, 7}
    assert torch.equal(inst >= 0, out["mask"][0])
    torch.testing.assert_close(
        out["depth"][0][inst == 3], torch.full_like(out["depth"][0][inst == 3], 2.0)
    )
    torch.testing.assert_close(
        out["depth"][0][inst == 7], torch.full_like(out["depth"][0][inst == 7], 3.0)
    )
    assert torch.equal(out["rgb"][0][~out["mask"][0]], bg[0][~out["mask"][0]])
    with pytest.raises(ValueError, match="face_instance_ids"):
        render_meshes(scene, K, 64, face_instance_ids=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="background"):
        render_meshes(scene, K, 64, background=torch.zeros(5, 5, 3))


def test_checker_and_stripes_values():
    checker = checker_texture(size=0.5, color_a=(1.0, 1.0, 1.0), color_b=(0.0, 0.0, 0.0))
    p = torch.tensor([[0.1, 0.1, 0.1], [0.6, 0.1, 0.1], [0.6, 0.6, 0.1], [-0.1, 0.1, 0.1]])
    out = checker(p, torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(out[:, 0], torch.tensor([1.0, 0.0, 1.0, 0.0]))
    stripes = stripes_texture(
        period=1.0, direction=(0, 0, 2), color_a=(1, 0, 0), color_b=(0, 0, 1), duty=0.25
    )
    z = torch.tensor([0.1, 0.3, 1.2, -0.9, -0.5])
    pts = torch.stack([torch.zeros(5), torch.zeros(5), z], 1)
    torch.testing.assert_close(stripes(pts, None)[:, 0], torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0]))


def test_value_noise_is_smooth_seeded_and_in_range():
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(2000, 3, generator=g) * 4 - 2
    noise = value_noise_texture(scale=0.5, color_a=(0, 0, 0), color_b=(1, 1, 1), seed=3)
    a = noise(pts, None)
    assert a.min() >= 0 and a.max() <= 1 and a.std() > 0.05
    torch.testing.assert_close(
        a, value_noise_texture(scale=0.5, color_a=(0, 0, 0), color_b=(1, 1, 1), seed=3)(pts, None)
    )
    other = value_noise_texture(scale=0.5, color_a=(0, 0, 0), color_b=(1, 1, 1), seed=4)
    assert (a - other(pts, None)).abs().mean() > 0.05
    # Continuous: a step of 1e-3 of the lattice spacing moves the value very little.
    step = noise(pts + 5e-4, None)
    assert (a - step).abs().max() < 0.02


def test_save_image_and_colorize_depth(tmp_path):
    import matplotlib

    rgb = torch.zeros(4, 5, 3)
    rgb[1, 2] = torch.tensor([1.0, 0.5, 0.0])
    save_image(tmp_path / "a.png", rgb)
    back = np.asarray(Image.open(tmp_path / "a.png"))
    assert back.shape == (4, 5, 3) and tuple(back[1, 2]) == (255, 128, 0) and back[0, 0].sum() == 0
    depth = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    img = colorize_depth(depth, cmap="magma", background=(9, 9, 9))
    assert img.dtype == np.uint8 and img.shape == (2, 2, 3)
    cmap = matplotlib.colormaps["magma"]
    assert tuple(img[0, 0]) == (9, 9, 9)
    assert np.abs(img[0, 1].astype(int) - np.round(np.array(cmap(0.0)[:3]) * 255)).max() <= 1
    assert np.abs(img[1, 1].astype(int) - np.round(np.array(cmap(1.0)[:3]) * 255)).max() <= 1
    fixed = colorize_depth(depth, vmin=0.0, vmax=6.0)
    mid = np.round(np.array(matplotlib.colormaps["viridis"](0.5)[:3]) * 255)
    assert np.abs(fixed[1, 1].astype(int) - mid).max() <= 1
    with pytest.raises(ValueError, match="cmap"):
        colorize_depth(depth, cmap="no-such-map")
