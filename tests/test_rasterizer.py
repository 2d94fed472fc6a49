import numpy as np
import pytest
import torch
from matplotlib.path import Path as MplPath

from meshrecon.ops import ico_sphere
from meshrecon.render import (
    look_at_view_transform,
    project_points,
    rasterize,
    transform_points,
    unproject_depth,
)
from meshrecon.structures import Meshes


# ------------------------------------------------------------------ fixtures
def box_mesh(half=(0.5, 0.35, 0.25)) -> tuple[torch.Tensor, torch.Tensor]:
    corners = torch.tensor(
        [[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=torch.float32
    ) * torch.tensor(half)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = [(a, b, c) for a, b, c, d in quads] + [(a, c, d) for a, b, c, d in quads]
    return corners, torch.tensor(faces)


def random_closed_mesh(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A star-shaped, non-convex closed mesh: an ico-sphere with random radii."""
    g = torch.Generator().manual_seed(seed)
    sphere = ico_sphere(2)
    verts = sphere.verts_packed() * (0.6 + 0.6 * torch.rand(162, 1, generator=g))
    return verts * torch.tensor([1.0, 0.7, 0.9]), sphere.faces_packed()


def reference_mask(verts_cam, faces, K, H, W) -> np.ndarray:
    """Union of the projected triangles, pixel centres tested with matplotlib's Path."""
    uv = project_points(verts_cam, K).numpy().astype(np.float64)
    jj, ii = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    centres = np.stack([jj.ravel(), ii.ravel()], 1)
    mask = np.zeros(H * W, dtype=bool)
    for tri in faces.tolist():
        pts = uv[tri]
        lo, hi = pts.min(0), pts.max(0)
        sel = np.nonzero(
            (centres[:, 0] >= lo[0])
            & (centres[:, 0] <= hi[0])
            & (centres[:, 1] >= lo[1])
            & (centres[:, 1] <= hi[1])
        )[0]
        if sel.size:
            mask[sel[MplPath(pts).contains_points(centres[sel])]] = True
    return mask.reshape(H, W)


def naive_rasterize(verts, faces, K, H, W, znear=1e-3):
    """Loop over pixels: Moller-Trumbore ray/triangle hits against every face, keep the nearest."""
    fx, fy, cx, cy = K.tolist()
    tri = verts[faces].double()
    p2f = torch.full((H, W), -1, dtype=torch.int64)
    zbuf = torch.zeros(H, W, dtype=torch.float64)
    bary = torch.zeros(H, W, 3, dtype=torch.float64)
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    for i in range(H):
        for j in range(W):
            d = torch.tensor([(cx - j - 0.5) / fx, (cy - i - 0.5) / fy, 1.0], dtype=torch.float64)
            pvec = torch.linalg.cross(d.expand_as(e2), e2, dim=1)
            det = (e1 * pvec).sum(1)
            inv = 1.0 / det
            tvec = -tri[:, 0]
            b1 = (tvec * pvec).sum(1) * inv
            qvec = torch.linalg.cross(tvec, e1, dim=1)
            b2 = (d * qvec).sum(1) * inv
            z = (e2 * qvec).sum(1) * inv  # ray parameter; d_z = 1 so it is Z
            hit = (det.abs() > 1e-12) & (b1 >= 0) & (b2 >= 0) & (b1 + b2 <= 1) & (z > znear)
            if hit.any():
                z_hit = torch.where(hit, z, torch.full_like(z, float("inf")))
                f = int(z_hit.argmin())
                p2f[i, j], zbuf[i, j] = f, z[f]
                bary[i, j] = torch.stack([1 - b1[f] - b2[f], b1[f], b2[f]])
    return p2f, zbuf, bary


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / float((a | b).sum())


# ------------------------------------------------------------------ coverage
@pytest.mark.parametrize("size", [(137, 137), (240, 320)])
@pytest.mark.parametrize("shape", ["sphere", "box", "random"])
def test_mask_matches_projected_triangles(shape, size):
    H, W = size
    if shape == "sphere":
        sphere = ico_sphere(3)
        verts, faces = sphere.verts_packed(), sphere.faces_packed()
    elif shape == "box":
        verts, faces = box_mesh()
    else:
        verts, faces = random_closed_mesh(7)
    R, t = look_at_view_transform(2.6, 25.0, 35.0)
    verts_cam = transform_points(verts, R[0], t[0])
    K = torch.tensor([1.1 * W, 1.1 * W, W / 2 + 3.3, H / 2 - 5.1])
    frags = rasterize(verts_cam[None], faces, K, (H, W))
    assert frags.pix_to_face.shape == (1, H, W) and frags.pix_to_face.dtype == torch.int64
    mask = (frags.pix_to_face[0] >= 0).numpy()
    ref = reference_mask(verts_cam, faces, K, H, W)
    assert ref.sum() > 0.05 * H * W
    assert iou(mask, ref) > 0.98
    # Silhouette pixels are the only place the two may disagree.
    assert (mask != ref).sum() <= 0.01 * ref.sum()


def test_matches_naive_reference_with_near_plane_and_batch():
    g = torch.Generator().manual_seed(11)
    H, W = 12, 16
    K = torch.tensor([14.0, 15.0, 7.7, 6.2])
    meshes_v, meshes_f = [], []
    for _ in range(2):
        centres = torch.rand(25, 1, 3, generator=g) * torch.tensor([4.0, 3.0, 4.0]) - torch.tensor(
            [2.0, 1.5, -0.5]
        )
        v = (centres + 0.9 * torch.randn(25, 3, 3, generator=g)).reshape(-1, 3)
        meshes_v.append(v)
        meshes_f.append(torch.arange(75).reshape(25, 3))
    # Some triangles cross Z = 0 (clipped) and some lie entirely behind the camera.
    zs = torch.cat(meshes_v)[:, 2]
    assert (zs < 0).any() and (zs > 1).any()
    frags = rasterize(Meshes(meshes_v, meshes_f), K=K, image_size=(H, W))
    for n in range(2):
        p2f, zbuf, bary = naive_rasterize(meshes_v[n], meshes_f[n], K, H, W)
        ours = frags.pix_to_face[n] - 25 * n * (frags.pix_to_face[n] >= 0)
        assert (ours == p2f).float().mean() > 0.99  # edge-grazing ties may differ
        same = (ours == p2f) & (p2f >= 0)
        assert same.sum() > 20
        torch.testing.assert_close(frags.zbuf[n][same].double(), zbuf[same], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(frags.bary[n][same].double(), bary[same], atol=1e-4, rtol=0)
        assert (frags.zbuf[n][p2f < 0] == 0).all()


# ------------------------------------------------------------------ depth and barycentrics
def test_sphere_depth_matches_ray_sphere_intersection():
    H, W = 120, 160
    r, d = 0.8, 3.0
    sphere = ico_sphere(5)
    verts = sphere.verts_packed() / sphere.verts_packed().norm(dim=1, keepdim=True)
    centre = torch.tensor([0.2, -0.1, d])
    K = torch.tensor([150.0, 150.0, 80.0, 60.0])
    frags = rasterize((verts * r + centre)[None], sphere.faces_packed(), K, (H, W))
    rays, _ = unproject_depth(torch.ones(H, W), K)  # directions with d_z = 1
    b = (rays * centre).sum(-1)
    a = (rays * rays).sum(-1)
    disc = b * b - a * (centre.dot(centre) - r * r)
    hit = disc > 0
    z_true = (b - disc.clamp(min=0).sqrt()) / a
    # Only rays meeting the surface within 60 degrees of its normal: there the facets'
    # distance from the sphere (< 3e-4 r for level 5) changes depth by at most twice that.
    pts = rays * z_true[..., None]
    normal = torch.nn.functional.normalize(pts - centre, dim=-1)
    cos = -(normal * torch.nn.functional.normalize(rays, dim=-1)).sum(-1)
    inner = hit & (cos > 0.5)
    mask = frags.pix_to_face[0] >= 0
    assert (mask[inner]).all()
    assert not mask[~hit].any()
    err = (frags.zbuf[0][inner] - z_true[inner]).abs().max()
    assert err < 2e-3 * r


def test_unprojected_depth_lies_on_the_assigned_triangle():
    verts, faces = random_closed_mesh(3)
    R, t = look_at_view_transform(2.2, -15.0, 120.0)
    verts_cam = transform_points(verts, R[0], t[0]).double()
    K = torch.tensor([200.0, 190.0, 70.0, 66.0], dtype=torch.float64)
    frags = rasterize(verts_cam, faces, K, 137)
    assert frags.zbuf.dtype == torch.float64
    mask = frags.pix_to_face[0] >= 0
    pts, valid = unproject_depth(frags.zbuf[0], K)
    assert torch.equal(valid, mask)
    f = frags.pix_to_face[0][mask]
    tri = verts_cam[faces[f]]  # (P, 3, 3)
    # Perspective-correct barycentrics interpolate the 3D hit point exactly.
    bary = frags.bary[0][mask]
    interp = (tri * bary[..., None]).sum(1)
    scale = frags.zbuf[0][mask].max()
    assert (interp - pts[mask]).norm(dim=1).max() < 1e-9 * scale
    # Distance to the triangle's plane, and the hit inside it (barycentrics in [0, 1]).
    n = torch.nn.functional.normalize(
        torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=1), dim=1
    )
    plane_dist = ((pts[mask] - tri[:, 0]) * n).sum(1).abs()
    assert plane_dist.max() < 1e-4 * scale
    assert (bary > -1e-9).all() and torch.allclose(bary.sum(1), torch.ones_like(bary[:, 0]))
    # float32 keeps the same accuracy relative to the depth scale.
    f32 = rasterize(verts_cam.float(), faces, K.float(), 137)
    both = mask & (f32.pix_to_face[0] == frags.pix_to_face[0])
    assert both.float().sum() > 0.99 * mask.sum()
    assert (f32.zbuf[0][both].double() - frags.zbuf[0][both]).abs().max() < 1e-4 * scale


def test_floor_crossing_the_near_plane_is_clipped_not_dropped():
    H, W = 40, 60
    K = torch.tensor([50.0, 50.0, 30.0, 20.0])
    # Floor Y = -1 from 5 m behind the camera to 30 m in front, two triangles.
    verts = torch.tensor([[-20.0, -1, -5], [20.0, -1, -5], [20.0, -1, 30], [-20.0, -1, 30]])
    faces = torch.tensor([[0, 2, 1], [0, 3, 2]])
    frags = rasterize(verts, faces, K, (H, W), znear=0.1)
    v = torch.arange(H, dtype=torch.float32) + 0.5
    z_expect = 50.0 / (v - 20.0)  # ray hits Y = -1 at Z = fy / (v - cy)
    rows_visible = (v > 20.0) & (z_expect < 30.0)
    rays, _ = unproject_depth(torch.ones(H, W), K)
    x_at_hit = rays[..., 0] * z_expect[:, None]
    expect = rows_visible[:, None] & (x_at_hit.abs() < 20.0)
    mask = frags.pix_to_face[0] >= 0
    assert torch.equal(mask, expect)
    torch.testing.assert_close(frags.zbuf[0][mask], z_expect[:, None].expand(H, W)[mask])


# ------------------------------------------------------------------ z-buffer, culling, packing
def test_nearer_triangle_wins_regardless_of_order():
    K = torch.tensor([40.0, 40.0, 16.0, 16.0])
    near = torch.tensor([[-1.0, -1, 2], [1.0, -1, 2], [0.0, 1, 2]])
    far = torch.tensor([[-0.5, -1.5, 3], [1.5, -0.5, 3], [0.0, 1.5, 3]])
    for order in ((near, far), (far, near)):
        verts = torch.cat(order)
        faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
        frags = rasterize(verts, faces, K, 32)
        near_idx = 0 if order[0] is near else 1
        near_mask = torch.from_numpy(reference_mask(near, faces[:1], K, 32, 32))
        far_mask = torch.from_numpy(reference_mask(far, faces[:1], K, 32, 32))
        overlap = near_mask & far_mask
        assert overlap.sum() > 50
        assert (frags.pix_to_face[0][overlap] == near_idx).all()
        torch.testing.assert_close(
            frags.zbuf[0][overlap], torch.full_like(frags.zbuf[0][overlap], 2.0)
        )
        only_far = far_mask & ~near_mask
        assert (frags.pix_to_face[0][only_far] == 1 - near_idx).float().mean() > 0.95


def test_grid_has_no_cracks_on_exact_edges():
    # A 6 x 6 quad grid whose vertices project to pixel centres, so many pixel centres lie
    # exactly on shared edges (and diagonals): every pixel inside must be covered.
    n = 6
    ys, xs = torch.meshgrid(torch.arange(n + 1.0), torch.arange(n + 1.0), indexing="ij")
    verts = torch.stack(
        [xs.flatten() - 3.0, ys.flatten() - 3.0, torch.full(((n + 1) ** 2,), 2.0)], 1
    )
    idx = torch.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]
    faces = torch.cat([torch.stack([a, b, c], -1), torch.stack([a, c, d], -1)]).reshape(-1, 3)
    K = torch.tensor([8.0, 8.0, 24.5, 24.5])  # 4 px per unit at Z = 2; vertices on centres
    frags = rasterize(verts, faces, K, 49)
    mask = frags.pix_to_face[0] >= 0
    assert mask[12:37, 12:37].all() and mask.sum() == 25 * 25
    torch.testing.assert_close(frags.zbuf[0][mask], torch.full((625,), 2.0))


def test_backface_culling():
    sphere = ico_sphere(2)
    verts = sphere.verts_packed() + torch.tensor([0.0, 0.0, 3.0])
    K = torch.tensor([60.0, 60.0, 32.0, 32.0])
    a = rasterize(verts, sphere.faces_packed(), K, 64)
    b = rasterize(verts, sphere.faces_packed(), K, 64, cull_backfaces=True)
    assert torch.equal(a.pix_to_face, b.pix_to_face)
    flipped = rasterize(verts, sphere.faces_packed().flip(1), K, 64, cull_backfaces=True)
    # Inverted orientation: only the far inside of the sphere remains, at larger depth.
    assert torch.equal(flipped.pix_to_face >= 0, a.pix_to_face >= 0)
    m = a.pix_to_face >= 0
    assert (flipped.zbuf[m] > a.zbuf[m]).all()


def test_input_forms_agree_and_chunking_is_invisible():
    verts0, faces0 = random_closed_mesh(1)
    verts1, faces1 = box_mesh()
    R, t = look_at_view_transform(torch.tensor([2.5, 2.0]), 20.0, torch.tensor([10.0, 250.0]))
    v0 = transform_points(verts0, R[0], t[0])
    v1 = transform_points(verts1, R[1], t[1])
    K = torch.tensor([[120.0, 120.0, 40.0, 30.0], [100.0, 110.0, 42.0, 28.0]])
    meshes = Meshes([v0, v1], [faces0, faces1])
    a = rasterize(meshes, K=K, image_size=(60, 80))
    b = rasterize(meshes, K, (60, 80))
    c = rasterize(meshes.verts_padded(), meshes.faces_padded(), K, (60, 80))
    d = rasterize(meshes, K=K, image_size=(60, 80), max_candidates=2000)
    for other in (b, c, d):
        assert torch.equal(a.pix_to_face, other.pix_to_face)
        torch.testing.assert_close(a.zbuf, other.zbuf)
        torch.testing.assert_close(a.bary, other.bary)
    # Packed indices: the box's faces come after the 320 faces of mesh 0.
    assert (a.pix_to_face[1][a.pix_to_face[1] >= 0] >= 320).all()
    assert (a.pix_to_face[0].max() < 320) and (a.pix_to_face[1] >= 0).any()
    # Shared faces (F, 3) with batched verts.
    e = rasterize(torch.stack([v0, v0]), faces0, K, (60, 80))
    assert torch.equal(e.pix_to_face[0], a.pix_to_face[0])
    assert torch.equal(
        e.pix_to_face[1] - 320 * (e.pix_to_face[1] >= 0),
        rasterize(v0, faces0, K[1], (60, 80)).pix_to_face[0],
    )


def test_gradients_reach_the_vertices():
    verts = torch.tensor([[-1.0, -1, 2], [1.0, -1, 2.5], [0.0, 1, 3]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2]])
    K = torch.tensor([20.0, 20.0, 8.0, 8.0], dtype=torch.float64)
    base = rasterize(verts, faces, K, 16)
    inner = (base.bary[0].amin(-1) > 0.1).nonzero()
    assert len(inner) > 5

    def zbuf_at(v):
        fr = rasterize(v, faces, K, 16)
        return torch.cat(
            [fr.zbuf[0][inner[:, 0], inner[:, 1]], fr.bary[0][inner[:, 0], inner[:, 1]].flatten()]
        )

    assert torch.autograd.gradcheck(zbuf_at, (verts.clone().requires_grad_(),), eps=1e-6, atol=1e-5)


def test_bad_inputs():
    verts = torch.rand(5, 3)
    faces = torch.tensor([[0, 1, 2]])
    with pytest.raises(ValueError, match="K"):
        rasterize(verts, faces, torch.ones(3), 8)
    with pytest.raises(ValueError, match="image_size"):
        rasterize(verts, faces, torch.ones(4), (0, 8))
    with pytest.raises(ValueError, match="faces"):
        rasterize(verts, torch.tensor([[0, 1, 7]]), torch.ones(4), 8)
    with pytest.raises(ValueError, match="verts"):
        rasterize(torch.ones(5, 2), faces, torch.ones(4), 8)
