"""Transforms: every target moves with the image (flip, resize, crop, rotation, depth scale)."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from meshrecon.data.transforms import (
    CropTransform,
    HFlipTransform,
    RandomFlip,
    ResizeShortestEdge,
    ResizeTransform,
    RotationTransform,
    TransformList,
    VFlipTransform,
    apply_augmentations,
    color_jitter,
    depth_scale_augment,
    random_crop,
)
from meshrecon.render.cameras import project_points

H, W = 48, 64
K = np.array([70.0, 70.0, 30.0, 26.0])  # principal point off-centre on purpose


def box_mesh(center, size):
    """A closed axis-aligned box, outward-facing triangles."""
    c = torch.tensor(center, dtype=torch.float32)
    s = torch.tensor(size, dtype=torch.float32) / 2
    corners = torch.tensor(
        [[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=torch.float32
    )
    verts = c + corners * s
    faces = torch.tensor(
        [
            [0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
            [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3],
        ]
    )  # fmt: skip
    return verts, faces


def face_normals(verts, faces):
    v = verts[faces]
    n = torch.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0], dim=1)
    return n / n.norm(dim=1, keepdim=True)


def render_mask(verts, faces, K, h, w):
    """Silhouette by filling every projected triangle (PIL polygon fill)."""
    uv = project_points(verts, torch.as_tensor(K, dtype=torch.float32)).numpy()
    img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(img)
    for f in faces.tolist():
        draw.polygon([tuple(uv[i]) for i in f], fill=255)
    return np.asarray(img) > 0


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_flipped_mesh_projects_onto_flipped_mask():
    verts, faces = box_mesh([0.05, -0.02, 1.0], [0.2, 0.15, 0.3])
    mask = render_mask(verts, faces, K, H, W)
    assert mask.sum() > 100
    f = HFlipTransform(W)
    flipped_mask = f.apply_segmentation(mask)
    flipped = render_mask(
        f.apply_points_cam(verts), f.apply_faces(faces), f.apply_intrinsics(K), H, W
    )
    assert iou(flipped, flipped_mask) > 0.95
    # Without moving K (cx -> W - cx) the mesh would land elsewhere: the test can fail.
    wrong = render_mask(f.apply_points_cam(verts), faces, K, H, W)
    assert iou(wrong, flipped_mask) < 0.8


def test_flip_reverses_winding_consistently_with_normals():
    verts, faces = box_mesh([0.0, 0.0, 1.0], [0.2, 0.3, 0.4])
    n = face_normals(verts, faces)
    f = HFlipTransform(W)
    n_flipped = face_normals(f.apply_points_cam(verts), f.apply_faces(faces))
    assert torch.allclose(n_flipped, f.apply_normals_cam(n), atol=1e-6)
    # Outward normals stay outward: they point away from the box centre.
    centre = f.apply_points_cam(verts).mean(0)
    face_centres = f.apply_points_cam(verts)[f.apply_faces(faces)].mean(1)
    assert ((face_centres - centre) * n_flipped).sum(1).gt(0).all()


@pytest.mark.parametrize("flip_cls,size", [(HFlipTransform, W), (VFlipTransform, H)])
def test_two_flips_are_identity(flip_cls, size, rng):
    f = flip_cls(size)
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    mask = rng.random((H, W)) > 0.5
    depth = rng.random((H, W)).astype(np.float32)
    boxes = np.array([[3.0, 4.0, 20.0, 30.0], [0.0, 0.0, W, H]])
    verts, faces = box_mesh([0.1, 0.0, 1.0], [0.2, 0.2, 0.2])
    grid = torch.from_numpy(rng.random((5, 6, 7)) > 0.5)
    R, t = (
        torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0)))[0],
        (torch.tensor([0.1, 0.2, 2.0])),
    )
    assert not np.array_equal(f.apply_image(img), img)
    np.testing.assert_array_equal(f.apply_image(f.apply_image(img)), img)
    np.testing.assert_array_equal(f.apply_segmentation(f.apply_segmentation(mask)), mask)
    np.testing.assert_array_equal(f.apply_depth(f.apply_depth(depth)), depth)
    np.testing.assert_allclose(f.apply_box(f.apply_box(boxes)), boxes)
    np.testing.assert_allclose(f.apply_intrinsics(f.apply_intrinsics(K)), K)
    assert torch.equal(f.apply_points_cam(f.apply_points_cam(verts)), verts)
    assert torch.equal(f.apply_faces(f.apply_faces(faces)), faces)
    assert torch.equal(f.apply_frustum_voxels(f.apply_frustum_voxels(grid)), grid)
    R2, t2 = f.apply_extrinsics(*f.apply_extrinsics(R, t))
    assert torch.allclose(R2, R) and torch.allclose(t2, t)


def test_flipped_box_matches_flipped_mask():
    mask = np.zeros((H, W), dtype=bool)
    mask[5:20, 3:11] = True
    f = HFlipTransform(W)
    box = f.apply_box(np.array([[3.0, 5.0, 11.0, 20.0]]))[0]
    ys, xs = np.nonzero(f.apply_segmentation(mask))
    np.testing.assert_allclose(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])


def test_resize_keeps_projection_consistent():
    pts = torch.tensor([[0.1, 0.05, 1.0], [-0.2, 0.1, 2.0], [0.0, -0.1, 1.5]])
    r = ResizeTransform(H, W, 96, 160)
    uv = project_points(pts, torch.as_tensor(K, dtype=torch.float32)).numpy()
    uv2 = project_points(r.apply_points_cam(pts), torch.as_tensor(r.apply_intrinsics(K))).numpy()
    np.testing.assert_allclose(uv2, r.apply_coords(uv), rtol=1e-5)
    np.testing.assert_allclose(uv2[:, 0], uv[:, 0] * 160 / W, rtol=1e-5)
    np.testing.assert_allclose(uv2[:, 1], uv[:, 1] * 96 / H, rtol=1e-5)
    assert torch.equal(r.apply_points_cam(pts), pts)  # metric geometry untouched


def test_meshrcnn_convention_scales_xy_and_keeps_focal():
    # Mesh R-CNN: K = [f, w/2, h/2] before and after, X and Y scaled by the resize factors.
    Kc = np.array([70.0, 70.0, W / 2, H / 2])
    pts = torch.tensor([[0.1, 0.05, 1.0], [-0.2, 0.1, 2.0]])
    r = TransformList([ResizeTransform(H, W, 96, 160), HFlipTransform(160)])
    sx, sy = r.meshrcnn_xy_scale()
    assert (sx, sy) == (160 / W, 96 / H)
    moved = r.apply_points_cam(pts) * torch.tensor([sx, sy, 1.0])
    K_new = torch.tensor([70.0, 70.0, 160 / 2, 96 / 2])
    uv = r.apply_coords(project_points(pts, torch.as_tensor(Kc, dtype=torch.float32)).numpy())
    np.testing.assert_allclose(project_points(moved, K_new).numpy(), uv, rtol=1e-5)
    with pytest.raises(ValueError, match="scale_K"):
        TransformList([CropTransform(0, 0, 10, 10)]).meshrcnn_xy_scale()


def test_crop_moves_principal_point_and_keeps_projection():
    c = CropTransform(5, 7, 40, 30)
    Kc = c.apply_intrinsics(K)
    np.testing.assert_allclose(Kc, [70.0, 70.0, 25.0, 19.0])
    pts = torch.tensor([[0.05, 0.02, 1.0]])
    uv = project_points(pts, torch.as_tensor(K, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(project_points(pts, torch.as_tensor(Kc)).numpy(), uv - [5, 7])
    img = np.arange(H * W, dtype=np.float32).reshape(H, W)
    assert c.apply_image(img)[0, 0] == img[7, 5]
    np.testing.assert_allclose(c.apply_box(np.array([[0.0, 0.0, 20.0, 60.0]])), [[0, 0, 15, 30]])


def test_rotation_is_a_camera_roll():
    rot = RotationTransform(H, W, 4.0, center=(K[2], K[3]))
    pts = torch.tensor([[0.1, 0.05, 1.0], [-0.2, 0.1, 2.0]])
    Kt = torch.as_tensor(K, dtype=torch.float32)
    uv = rot.apply_coords(project_points(pts, Kt).numpy())
    np.testing.assert_allclose(project_points(rot.apply_points_cam(pts), Kt).numpy(), uv, atol=1e-4)
    np.testing.assert_allclose(rot.apply_intrinsics(K), K)
    # The image turns the same way as the coordinates (PIL's counter-clockwise).
    img = np.zeros((H, W), dtype=np.uint8)
    img[10, 50] = 255
    rot90 = RotationTransform(H, W, 90.0, center=(32.0, 24.0))
    y, x = np.unravel_index(np.argmax(rot90.apply_segmentation(img)), img.shape)
    np.testing.assert_allclose(rot90.apply_coords(np.array([[50.5, 10.5]])), [[x + 0.5, y + 0.5]])


def test_resize_nearest_keeps_depth_values_and_mask_dtype(rng):
    depth = rng.choice([0.0, 1.5, 3.25], size=(H, W)).astype(np.float32)
    r = ResizeTransform(H, W, 37, 81)
    out = r.apply_depth(depth)
    assert out.shape == (37, 81) and out.dtype == np.float32
    assert set(np.unique(out)) <= {0.0, 1.5, 3.25}
    assert r.apply_segmentation(depth > 1).dtype == bool
    assert r.apply_image(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).shape == (37, 81, 3)


def test_depth_scale_augmentation_divides_depth(rng):
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = np.full((H, W), 3.0, dtype=np.float32)
    depth[:5] = 0.0
    img2, d2, K2 = depth_scale_augment(img, depth, K, 1.5)
    assert img2.shape == (72, 96, 3) and d2.shape == (72, 96)
    np.testing.assert_allclose(np.unique(d2), [0.0, 2.0])
    np.testing.assert_allclose(K2, [70.0, 70.0, 45.0, 39.0])
    # A point at depth Z seen at pixel u is, after the augmentation, at depth Z / s and at s u.
    p = torch.tensor([[0.1, 0.05, 3.0]])
    uv = project_points(p, torch.as_tensor(K, dtype=torch.float32)).numpy()
    uv2 = project_points(p / torch.tensor([1.0, 1.0, 1.5]), torch.as_tensor(K2)).numpy()
    np.testing.assert_allclose(uv2, uv * 1.5, rtol=1e-5)


def test_random_crop_and_centre_crop(rng):
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = rng.random((H, W)).astype(np.float32)
    im2, d2, K2, t = random_crop(img, depth, K, (20, 30), rng)
    assert im2.shape == (20, 30, 3) and d2.shape == (20, 30)
    np.testing.assert_allclose(K2[2:], K[2:] - [t.x0, t.y0])
    np.testing.assert_array_equal(d2, depth[t.y0 : t.y0 + 20, t.x0 : t.x0 + 30])
    _, _, K3, t3 = random_crop(img, None, K, (20, 30), center=True)
    assert (t3.x0, t3.y0) == (17, 14)
    with pytest.raises(ValueError, match="larger"):
        random_crop(img, None, K, (100, 30), rng)


def test_color_jitter():
    img = np.full((2, 2, 3), 100, dtype=np.uint8)
    out = color_jitter(img, [0.8, 1.0, 3.0])
    np.testing.assert_array_equal(out[0, 0], [80, 100, 255])


def test_resize_shortest_edge_detectron2_semantics(rng):
    aug = ResizeShortestEdge((800,), 1333, "choice")
    t = aug.get_transform(480, 640, rng)
    assert (t.new_h, t.new_w) == (800, 1067)
    t = aug.get_transform(100, 1000, rng)
    assert (t.new_h, t.new_w) == (133, 1333)
    aug = ResizeShortestEdge((20, 30), 1000, "range")
    sizes = {min(aug.get_transform(40, 80, rng).output_size(40, 80)) for _ in range(50)}
    assert sizes <= set(range(20, 31)) and len(sizes) > 3


def test_augmentations_are_reproducible_given_a_seed():
    img = np.zeros((H, W, 3), dtype=np.uint8)
    augs = [ResizeShortestEdge((20, 60), 200, "range"), RandomFlip(0.5)]
    a = [repr(apply_augmentations(augs, img, np.random.default_rng(3))[1]) for _ in range(2)]
    assert a[0] == a[1]
    flips = [
        type(RandomFlip(0.5).get_transform(H, W, np.random.default_rng(s))).__name__
        for s in range(20)
    ]
    assert {"HFlipTransform", "NoOpTransform"} == set(flips)
