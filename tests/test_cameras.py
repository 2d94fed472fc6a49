import math

import pytest
import torch

from meshrecon.render import (
    K_from_fov,
    K_from_opencv_matrix,
    K_to_opencv_matrix,
    blender_projection_matrix,
    camera_center,
    camera_from_opengl,
    camera_to_opencv,
    camera_to_opengl,
    extrinsics_from_opencv,
    extrinsics_to_opencv,
    look_at_view_transform,
    opencv_to_camera,
    opengl_to_camera,
    pix3d_K,
    project_points,
    r2n2_camera,
    r2n2_extrinsic_opengl,
    transform_points,
    unproject_depth,
)


def random_rotation(g: torch.Generator, n: int | None = None) -> torch.Tensor:
    shape = (3, 3) if n is None else (n, 3, 3)
    q, r = torch.linalg.qr(torch.randn(*shape, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    return q * torch.det(q)[..., None, None]  # det +1


# ------------------------------------------------------------------ Mesh R-CNN's pipeline
def meshrcnn_extrinsic(az: float, el: float, dist: float) -> torch.Tensor:
    """compute_extrinsic_matrix as published in Mesh R-CNN's shapenet/utils/coords.py."""
    a, e = -math.radians(az), -math.radians(el)
    sa, ca, se, ce = math.sin(a), math.cos(a), math.sin(e), math.cos(e)
    world2obj = torch.tensor(
        [[ca * ce, sa * ce, -se], [-sa, ca, 0.0], [ca * se, sa * se, ce]], dtype=torch.float64
    )
    obj2cam = torch.tensor([[0.0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=torch.float64)
    RT = torch.eye(4, dtype=torch.float64)
    RT[:3, :3] = obj2cam @ world2obj
    RT[:3, 3] = -(obj2cam @ torch.tensor([dist, 0.0, 0.0], dtype=torch.float64))
    blender_import = torch.tensor(
        [[1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=torch.float64
    )
    return RT @ blender_import


MESHRCNN_INTRINSIC = torch.tensor(
    [
        [2.1875, 0.0, 0.0, 0.0],
        [0.0, 2.1875, 0.0, 0.0],
        [0.0, 0.0, -1.002002, -0.2002002],
        [0.0, 0.0, -1.0, 0.0],
    ],
    dtype=torch.float64,
)


def opengl_pixels(points, projection, extrinsic, H, W):
    """project_verts (homogeneous P = K RT, divide by w) then NDC (y up) -> pixels."""
    hom = torch.cat([points, torch.ones_like(points[:, :1])], 1)
    clip = hom @ (projection @ extrinsic).T
    ndc = clip[:, :3] / clip[:, 3:]
    return torch.stack([(ndc[:, 0] + 1) * W / 2, (1 - ndc[:, 1]) * H / 2], 1)


# ------------------------------------------------------------------ tests
def test_transform_points_unbatched_and_batched():
    g = torch.Generator().manual_seed(0)
    R = random_rotation(g, 4)
    t = torch.randn(4, 3, generator=g, dtype=torch.float64)
    p = torch.randn(4, 5, 7, 3, generator=g, dtype=torch.float64)
    out = transform_points(p, R, t)
    assert out.shape == p.shape
    for n in range(4):
        ref = torch.einsum("ij,abj->abi", R[n], p[n]) + t[n]
        torch.testing.assert_close(out[n], ref)
        torch.testing.assert_close(transform_points(p[n], R[n], t[n]), ref)
    # A shared rotation with per-image translations broadcasts.
    out2 = transform_points(p, R[0], t)
    torch.testing.assert_close(out2[2], transform_points(p[2], R[0], t[2]))
    # The camera centre maps to the origin.
    torch.testing.assert_close(
        transform_points(camera_center(R, t)[:, None], R, t), torch.zeros(4, 1, 3, dtype=R.dtype)
    )


def test_project_points_formula_and_batching():
    K = torch.tensor([[100.0, 120.0, 32.0, 24.0], [50.0, 60.0, 10.0, 12.0]])
    p = torch.tensor([[[0.5, -0.25, 2.0]], [[-1.0, 1.0, 4.0]]])
    uv = project_points(p, K)
    assert uv.shape == (2, 1, 2)
    torch.testing.assert_close(uv[0, 0], torch.tensor([32.0 - 100 * 0.25, 24.0 + 120 * 0.125]))
    torch.testing.assert_close(uv[1, 0], torch.tensor([10.0 + 50 * 0.25, 12.0 - 60 * 0.25]))
    # +X is left and +Y is up in the camera frame: they land left of / above the centre.
    assert uv[0, 0, 0] < 32 and uv[0, 0, 1] > 24


@pytest.mark.parametrize("batched", [False, True])
def test_unproject_depth_round_trip(batched):
    g = torch.Generator().manual_seed(1)
    H, W = 6, 9
    depth = torch.rand(2, H, W, generator=g, dtype=torch.float64) * 3 + 0.5
    depth[0, 2, 3] = 0.0
    depth[1, 0, 0] = float("nan")
    K = torch.tensor([[80.0, 70.0, 4.0, 3.5], [60.0, 65.0, 5.0, 2.0]], dtype=torch.float64)
    if not batched:
        depth, K = depth[0], K[0]
    points, valid = unproject_depth(depth, K)
    assert points.shape == (*depth.shape, 3) and valid.shape == depth.shape
    uv = project_points(points.reshape(*depth.shape[:-2], -1, 3), K)
    jj, ii = torch.meshgrid(torch.arange(W), torch.arange(H), indexing="xy")
    centres = torch.stack([jj + 0.5, ii + 0.5], -1).reshape(-1, 2).to(torch.float64)
    ok = valid.reshape(*depth.shape[:-2], -1)
    torch.testing.assert_close(uv[ok], centres.expand_as(uv)[ok])
    torch.testing.assert_close(points[..., 2][valid], depth[valid])
    assert (points[~valid] == 0).all()
    assert (~valid).sum() == (2 if batched else 1)


def test_look_at_azimuth_zero_is_plus_z():
    R, t = look_at_view_transform(2.5, 0.0, 0.0)
    torch.testing.assert_close(camera_center(R, t)[0], torch.tensor([0.0, 0.0, 2.5]))
    K = torch.tensor([100.0, 100.0, 50.0, 50.0])
    pts = transform_points(torch.tensor([[0.0, 0, 0], [0.5, 0, 0], [0, 0.5, 0]]), R[0], t[0])
    torch.testing.assert_close(pts[0], torch.tensor([0.0, 0.0, 2.5]))
    uv = project_points(pts, K)
    assert uv[1, 0] > 50 and abs(uv[1, 1] - 50) < 1e-5  # model +X appears on the right
    assert uv[2, 1] < 50 and abs(uv[2, 0] - 50) < 1e-5  # model +Y appears up


def test_look_at_positions_orthonormal_and_target():
    dist = torch.tensor([1.0, 2.0, 3.0, 2.0])
    elev = torch.tensor([10.0, -30.0, 60.0, 0.0])
    azim = torch.tensor([0.0, 90.0, 200.0, -45.0])
    at = torch.tensor([0.1, -0.2, 0.3])
    R, t = look_at_view_transform(dist, elev, azim, at=at)
    e, a = torch.deg2rad(elev), torch.deg2rad(azim)
    expect = at + dist[:, None] * torch.stack([e.cos() * a.sin(), e.sin(), e.cos() * a.cos()], 1)
    torch.testing.assert_close(camera_center(R, t), expect, atol=1e-5, rtol=1e-5)
    eye = torch.eye(3).expand(4, 3, 3)
    torch.testing.assert_close(R @ R.transpose(1, 2), eye, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.det(R), torch.ones(4), atol=1e-6, rtol=0)
    # The target lies on the optical axis at the camera distance; image "up" stays up.
    torch.testing.assert_close(
        transform_points(at.expand(4, 1, 3), R, t)[:, 0, :2], torch.zeros(4, 2), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(transform_points(at.expand(4, 1, 3), R, t)[:, 0, 2], dist)
    assert (R[:, 1, 1] > 0).all()  # camera +Y has a positive model-Y component
    # Radians give the same cameras.
    R2, t2 = look_at_view_transform(
        dist, torch.deg2rad(elev), torch.deg2rad(azim), at=at, degrees=False
    )
    torch.testing.assert_close(R2, R)


def test_look_at_pole_is_continuous():
    R_pole, _ = look_at_view_transform(2.0, 90.0, 30.0)
    R_near, _ = look_at_view_transform(2.0, 89.99, 30.0)
    assert torch.isfinite(R_pole).all()
    torch.testing.assert_close(R_pole, R_near, atol=1e-3, rtol=0)


def test_blender_projection_matrix_matches_meshrcnn():
    torch.testing.assert_close(blender_projection_matrix().double(), MESHRCNN_INTRINSIC)


@pytest.mark.parametrize(
    "az,el,dist", [(0.0, 0.0, 1.5), (37.0, 25.0, 1.3), (211.5, 29.0, 1.6), (-80.0, -10.0, 1.2)]
)
def test_r2n2_camera_agrees_with_meshrcnn_pipeline(az, el, dist):
    g = torch.Generator().manual_seed(2)
    points = (torch.rand(50, 3, generator=g, dtype=torch.float64) - 0.5) * 0.8
    RT = meshrcnn_extrinsic(az, el, dist)
    torch.testing.assert_close(r2n2_extrinsic_opengl(az, el, dist).double(), RT, atol=1e-6, rtol=0)
    ref = opengl_pixels(points, MESHRCNN_INTRINSIC, RT, 137, 137)
    K, R, t = r2n2_camera(az, el, dist)
    assert K.shape == (4,) and R.shape == (3, 3) and t.shape == (3,)
    torch.testing.assert_close(K, torch.tensor([149.84375, 149.84375, 68.5, 68.5]))
    ours = project_points(transform_points(points, R.double(), t.double()), K.double())
    torch.testing.assert_close(ours, ref, atol=1e-3, rtol=0)
    # The camera-frame depth is positive in front (our +Z forward).
    assert (transform_points(points, R.double(), t.double())[:, 2] > 0).all()
    # R2N2's azimuth 0 is the model's +X axis: the look-at camera at azimuth 90 - az.
    R_la, t_la = look_at_view_transform(dist, el, 90.0 - az)
    torch.testing.assert_close(R_la[0], R, atol=1e-5, rtol=0)
    torch.testing.assert_close(t_la[0], t, atol=1e-5, rtol=0)


def test_r2n2_camera_batched():
    az = torch.tensor([10.0, 100.0, 250.0])
    K, R, t = r2n2_camera(az, 27.0, torch.tensor([1.2, 1.4, 1.6]), image_size=224)
    assert K.shape == (3, 4) and R.shape == (3, 3, 3) and t.shape == (3, 3)
    torch.testing.assert_close(K[1], torch.tensor([2.1875 * 112, 2.1875 * 112, 112.0, 112.0]))
    K1, R1, t1 = r2n2_camera(100.0, 27.0, 1.4, image_size=224)
    torch.testing.assert_close(R[1], R1)
    torch.testing.assert_close(t[1], t1)
    with pytest.raises(ValueError, match="image_size"):
        r2n2_camera(0.0, 0.0, 1.0, image_size=(100, 120))


def test_opengl_converters_round_trip_and_agree_on_pixels():
    g = torch.Generator().manual_seed(3)
    H, W = 240, 320
    K = torch.tensor([300.0, 280.0, 150.0, 130.0], dtype=torch.float64)
    R = random_rotation(g)
    t = torch.tensor([0.1, -0.2, 4.0], dtype=torch.float64)
    P, E = camera_to_opengl(K, R, t, (H, W))
    points = torch.randn(40, 3, generator=g, dtype=torch.float64)
    ref = opengl_pixels(points, P, E, H, W)
    ours = project_points(transform_points(points, R, t), K)
    torch.testing.assert_close(ours, ref)
    K2, R2, t2 = camera_from_opengl(P, E, (H, W))
    torch.testing.assert_close(K2, K)
    torch.testing.assert_close(R2, R)
    torch.testing.assert_close(t2, t)
    # Points: OpenGL looks down -z.
    torch.testing.assert_close(
        opengl_to_camera(torch.tensor([1.0, 2.0, -3.0])), torch.tensor([-1.0, 2.0, 3.0])
    )
    with pytest.raises(ValueError, match="projection"):
        camera_from_opengl(torch.eye(4), E, (H, W))


def test_pix3d_K_matches_pix3d_projection():
    W, H, focal = 640, 480, 35.0
    K = pix3d_K(focal, W, H)
    f = focal * W / 32.0
    torch.testing.assert_close(K, torch.tensor([700.0, 700.0, 320.0, 240.0]))
    g = torch.Generator().manual_seed(4)
    R = random_rotation(g).float()
    trans = torch.tensor([0.05, -0.1, 2.5])
    v = torch.rand(20, 3, generator=g) - 0.5
    X = v @ R.T + trans  # Pix3D: rot_mat @ v + trans_mat
    ref = torch.stack([W / 2 - f * X[:, 0] / X[:, 2], H / 2 - f * X[:, 1] / X[:, 2]], 1)
    torch.testing.assert_close(project_points(transform_points(v, R, trans), K), ref)


def test_opencv_conversions():
    g = torch.Generator().manual_seed(5)
    K = torch.tensor([200.0, 210.0, 64.0, 48.0], dtype=torch.float64)
    p = torch.randn(10, 3, generator=g, dtype=torch.float64) + torch.tensor([0, 0, 5.0])
    cv = camera_to_opencv(p)
    torch.testing.assert_close(cv, p * torch.tensor([-1.0, -1.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(opencv_to_camera(cv), p)
    hom = cv @ K_to_opencv_matrix(K).T
    torch.testing.assert_close(hom[:, :2] / hom[:, 2:], project_points(p, K))
    torch.testing.assert_close(K_from_opencv_matrix(K_to_opencv_matrix(K)), K)
    R = random_rotation(g)
    t = torch.randn(3, generator=g, dtype=torch.float64)
    R_cv, t_cv = extrinsics_to_opencv(R, t)
    v = torch.randn(6, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        transform_points(v, R_cv, t_cv), camera_to_opencv(transform_points(v, R, t))
    )
    R_back, t_back = extrinsics_from_opencv(R_cv, t_cv)
    torch.testing.assert_close(R_back, R)
    torch.testing.assert_close(t_back, t)


def test_K_from_fov():
    K = K_from_fov(90.0, 200, 100)
    torch.testing.assert_close(K, torch.tensor([100.0, 100.0, 100.0, 50.0]))
    # A point on the edge of a 60-degree vertical field of view lands on the top image border.
    K = K_from_fov(60.0, 320, 240, axis="y")
    uv = project_points(torch.tensor([0.0, math.tan(math.radians(30.0)), 1.0]), K)
    torch.testing.assert_close(uv, torch.tensor([160.0, 0.0]), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="fov_deg"):
        K_from_fov(180.0, 10, 10)


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="K"):
        project_points(torch.ones(3), torch.ones(3))
    with pytest.raises(ValueError, match="points"):
        transform_points(torch.ones(4, 2), torch.eye(3), torch.zeros(3))
    with pytest.raises(ValueError, match="depth"):
        unproject_depth(torch.ones(2, 2, 2), torch.ones(3, 4))
    with pytest.raises(ValueError, match="focal_length_mm"):
        pix3d_K(0.0, 10, 10)
