"""OptimizeMVS: z-buffer, front and diversity losses, r-refinement, FPS, head, evaluator."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from meshrecon.evaluation.optimize_mvs_evaluation import OptimizeMVSEvaluator
from meshrecon.modeling.heads.optimize_mvs import OptimizeMVSHead, camera_to_world, refine_noise
from meshrecon.modeling.heads.optimize_mvs_losses import (
    consistency_loss,
    depth_front_points,
    diversity_loss,
    front_constraint_loss,
    sample_farthest_points,
    zbuffer_first,
)
from meshrecon.modeling.heads.psgn import PSGNHead
from meshrecon.render.cameras import project_points, transform_points

# 32 x 32 images, f = 40, principal point at the centre; an 8 x 8 z-buffer (4 pixels per cell).
SIZE, GRID = 32, 8
K1 = torch.tensor([40.0, 40.0, 16.0, 16.0])


def _rot(axis: int, angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    i, j = [a for a in range(3) if a != axis]
    R = torch.eye(3)
    R[i, i], R[i, j], R[j, i], R[j, j] = c, -s, s, c
    return R


def _plane_depth(z: float = 2.0, lo: int = 8, hi: int = 24) -> torch.Tensor:
    """(1, SIZE, SIZE) depth: a fronto-parallel square at depth z over pixels [lo, hi)^2."""
    d = torch.zeros(1, SIZE, SIZE)
    d[:, lo:hi, lo:hi] = z
    return d


# ---------------------------------------------------------------------------- z-buffer
def test_zbuffer_keeps_the_nearest_point_of_each_cell():
    # Pixel (u, v) = (10, 10) -> cell (2, 2); (26, 10) -> cell (2, 6). X = (cx - u) Z / f.
    def at(u, v, z):
        return [(16 - u) * z / 40, (16 - v) * z / 40, z]

    pts = torch.tensor(
        [
            at(10, 10, 2.0),  # visible: nearest of its cell
            at(11, 9, 3.0),  # same cell, behind: hidden
            at(26, 10, 5.0),  # alone in its cell: visible even if far
            [0.0, 0.0, -1.0],  # behind the camera
            at(40, 10, 2.0),  # projects outside the image
        ]
    )[None]
    vis = zbuffer_first(pts, K1[None], (SIZE, SIZE), GRID)
    assert vis.tolist() == [[True, False, True, False, False]]
    # lengths: padded points never count.
    vis = zbuffer_first(pts, K1[None], (SIZE, SIZE), GRID, lengths=torch.tensor([2]))
    assert vis.tolist() == [[True, False, False, False, False]]


def test_depth_front_points_is_the_min_pooled_depth_lifted():
    torch.manual_seed(0)
    depth = torch.rand(2, SIZE, SIZE) + 1.0
    depth[:, :4] = 0.0  # the top row of cells has no surface
    K = torch.stack([K1, torch.tensor([30.0, 35.0, 15.0, 17.0])])
    pts, lengths = depth_front_points(depth, K, GRID)
    for n in range(2):
        got = pts[n, : lengths[n]]
        ref = []  # naive loop: per cell the pixel of smallest depth, lifted at its centre
        for ci in range(GRID):
            for cj in range(GRID):
                block = depth[n, 4 * ci : 4 * ci + 4, 4 * cj : 4 * cj + 4]
                if not (block > 0).any():
                    continue
                b = torch.where(block > 0, block, torch.full_like(block, 1e9))
                k = int(b.argmin())
                i, j = 4 * ci + k // 4, 4 * cj + k % 4
                z = depth[n, i, j]
                fx, fy, cx, cy = K[n]
                ref.append([(cx - (j + 0.5)) * z / fx, (cy - (i + 0.5)) * z / fy, z])
        ref = torch.tensor(ref)
        assert got.shape == ref.shape == (GRID * (GRID - 1), 3)
        order = lambda p: p[torch.argsort(p[:, 2])]  # noqa: E731
        torch.testing.assert_close(order(got), order(ref))


# ---------------------------------------------------------------------------- front constraint
def test_front_constraint_zero_on_visible_surface_and_grows_as_points_move():
    depth = _plane_depth()
    gt, n = depth_front_points(depth, K1[None], GRID)
    surface = gt[:, : n[0]]
    # Points hidden behind the surface (same rays, deeper) are not seen, so they cost nothing.
    hidden = surface * 1.5
    cloud = torch.cat([surface, hidden], dim=1).requires_grad_(True)
    loss, valid = front_constraint_loss(cloud, depth, K1[None], GRID)
    assert bool(valid[0]) and float(loss.detach()[0]) == 0.0
    # Moving the visible points by dz along Z: each point's neighbour is its own ray's point,
    # so Chamfer = dz^2 each way (the cells do not change for these small moves).
    previous = 0.0
    for dz in (0.01, 0.02, 0.05):
        moved = torch.cat([surface + torch.tensor([0.0, 0.0, -dz]), hidden], dim=1)
        moved.requires_grad_(True)
        loss, _ = front_constraint_loss(moved, depth, K1[None], GRID)
        torch.testing.assert_close(loss[0], torch.tensor(2 * dz * dz), rtol=1e-4, atol=1e-7)
        assert float(loss.detach()[0]) > previous
        previous = float(loss.detach()[0])
        loss.sum().backward()
        # Only the visible points get a gradient; descent (-grad) moves them back to +Z.
        g = moved.grad[0]
        assert torch.all(g[: n[0], 2] < 0) and torch.all(g[n[0] :] == 0)


def test_front_constraint_empty_view_is_invalid_not_nan():
    cloud = torch.randn(2, 20, 3) * 0.1 + torch.tensor([0.0, 0.0, 2.0])
    depth = torch.cat([_plane_depth(), torch.zeros(1, SIZE, SIZE)])
    loss, valid = front_constraint_loss(cloud, depth, K1.expand(2, 4), GRID)
    assert valid.tolist() == [True, False] and float(loss[1]) == 0.0
    assert torch.isfinite(loss).all()
    with pytest.raises(ValueError, match="depth"):
        front_constraint_loss(cloud, depth[:1], K1.expand(2, 4), GRID)


def test_front_constraint_emd_zero_on_surface():
    depth = _plane_depth()
    gt, n = depth_front_points(depth, K1[None], GRID)
    loss, _ = front_constraint_loss(
        gt[:, : n[0]], depth, K1[None], GRID, distance="emd", emd_points=64
    )
    # Resampled with replacement, the two sets are drawn from the same points: small, not 0.
    assert float(loss[0]) < 0.15
    far = gt[:, : n[0]] + torch.tensor([0.0, 0.0, 0.5])
    far_loss, _ = front_constraint_loss(far, depth, K1[None], GRID, distance="emd", emd_points=64)
    assert float(far_loss[0]) > 0.45


# ---------------------------------------------------------------------------- diversity
def test_diversity_matches_its_definition():
    torch.manual_seed(0)
    B, n, D = 2, 4, 16
    noise = torch.randn(B, n, D)
    # One-point clouds: Chamfer between them is 2 |c_i - c_j|^2 (both directions).
    centers = torch.randn(B, n, 3) * 0.05
    clouds = centers[:, :, None, :]
    margin = 0.01
    loss, _ = diversity_loss(clouds, noise, margin)
    ref = []
    for b in range(B):
        for i in range(n):
            for j in range(i + 1, n):
                d_r = (noise[b, i] - noise[b, j]).norm() / math.sqrt(2 * D)
                d_s = 2 * ((centers[b, i] - centers[b, j]) ** 2).sum()
                ref.append(torch.relu(margin * d_r - d_s))
    torch.testing.assert_close(loss, torch.stack(ref).mean())


def test_diversity_zero_when_shapes_far_enough_and_grows_with_r_distance():
    noise = torch.tensor([[[0.0, 0.0], [2.0, 0.0]]])  # d_r = 2 / sqrt(4) = 1
    clouds = torch.tensor([[[[0.0, 0.0, 0.0]], [[0.1, 0.0, 0.0]]]])  # D = 2 * 0.01 = 0.02
    assert float(diversity_loss(clouds, noise, margin=0.02)[0]) == 0.0
    torch.testing.assert_close(diversity_loss(clouds, noise, margin=0.05)[0], torch.tensor(0.03))
    # Farther inputs ask for farther shapes: same shapes, larger hinge.
    far = noise * 3
    assert float(diversity_loss(clouds, far, 0.05)[0]) > float(
        diversity_loss(clouds, noise, 0.05)[0]
    )
    # The gradient pushes the two shapes apart.
    clouds = clouds.clone().requires_grad_(True)
    diversity_loss(clouds, noise, 0.05)[0].backward()
    assert float(clouds.grad[0, 0, 0, 0]) > 0 and float(clouds.grad[0, 1, 0, 0]) < 0
    with pytest.raises(ValueError):
        diversity_loss(clouds[0], noise, 0.05)


# ---------------------------------------------------------------------------- consistency
def test_consistency_is_zero_for_agreeing_views_and_mean_of_pairs():
    torch.manual_seed(0)
    base = torch.randn(50, 3)
    same = base.expand(3, -1, -1)
    assert float(consistency_loss(same)) == 0.0
    clouds = torch.stack([base, base + 0.1, base - 0.2])
    from meshrecon.ops import chamfer_distance

    pairs = [(0, 1), (0, 2), (1, 2)]
    ref = torch.stack(
        [chamfer_distance(clouds[i][None], clouds[j][None])[0] for i, j in pairs]
    ).mean()
    torch.testing.assert_close(consistency_loss(clouds), ref)
    # Batched over candidate sets.
    assert consistency_loss(torch.stack([same, clouds])).shape == (2,)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_refinement_lowers_the_consistency_loss(optimizer):
    torch.manual_seed(0)
    V, D, P = 3, 8, 40
    base = torch.randn(P, 3) * 0.3
    A = torch.randn(V, P * 3, D) * 0.05  # each view maps its r to a deformation of the shape

    def generate(r):
        return base + torch.einsum("vkd,vd->vk", A, r).view(V, P, 3)

    r0 = torch.randn(V, D)
    r, history = refine_noise(
        generate, r0, steps=40, lr=0.1 if optimizer == "adam" else 5.0, optimizer=optimizer
    )
    final = float(consistency_loss(generate(r)))
    assert final <= history[0]
    assert final < 0.5 * history[0]
    torch.testing.assert_close(torch.tensor(final), torch.tensor(min(history)))


# ---------------------------------------------------------------------------- cameras, FPS
def test_camera_to_world_inverts_the_extrinsics():
    torch.manual_seed(0)
    R = torch.stack([_rot(1, 0.7) @ _rot(0, 0.3), _rot(2, -1.1)])
    R[1, :, 0] *= -1  # a flipped view (det -1) is inverted too
    t = torch.randn(2, 3)
    world = torch.randn(2, 5, 7, 3)
    cam = transform_points(world, R, t)
    torch.testing.assert_close(camera_to_world(cam, R, t), world, atol=1e-5, rtol=1e-5)


def test_sample_farthest_points_against_a_naive_loop():
    line = torch.tensor([[[0.0, 0, 0], [3.0, 0, 0], [10.0, 0, 0], [6.0, 0, 0], [1.0, 0, 0]]])
    pts, idx = sample_farthest_points(line, 3)
    assert idx.tolist() == [[0, 2, 3]]  # 0, then 10 (farthest), then 6 (4 from 10, 6 from 0)
    torch.manual_seed(0)
    x = torch.randn(2, 60, 3)
    _, idx = sample_farthest_points(x, 10)
    for n in range(2):
        chosen = [0]
        for _ in range(9):
            d = torch.cdist(x[n], x[n, chosen]).min(dim=1).values
            chosen.append(int(d.argmax()))
        assert idx[n].tolist() == chosen
    assert sample_farthest_points(x, 100)[0].shape == (2, 60, 3)
    with pytest.raises(ValueError):
        sample_farthest_points(x, 0)


# ---------------------------------------------------------------------------- head
class _TinyBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)

    def forward(self, x):
        a = torch.relu(self.c1(x))
        return {"res2": a, "res3": torch.relu(self.c2(a))}


def _head(**kw):
    gen = PSGNHead(
        feature_channels=[8, 16],
        num_fc_points=16,
        conv_grid=(4, 4),
        fc_dims=(32,),
        deconv_dim=8,
        noise_dim=6,
        mon_samples=1,
        center=(0.0, 0.0, 2.0),
    )
    args = dict(samples_per_image=3, zbuffer_size=GRID, num_candidates=4, refine_steps=5)
    args.update(kw)
    return OptimizeMVSHead(backbone=_TinyBackbone(), generator=gen, **args)


def _views(V):
    R = torch.stack([_rot(1, 2 * math.pi * v / V) for v in range(V)])
    t = torch.tensor([0.0, 0.0, 2.0]).expand(V, 3).clone()
    return {"K": K1.expand(V, 4).clone(), "R": R, "t": t}


def test_head_training_losses_and_gradients():
    torch.manual_seed(0)
    head = _head(full_shape_weight=1.0).train()
    num_views = torch.tensor([2, 1])
    views = _views(3)
    images = torch.randn(3, 3, SIZE, SIZE)
    depth = _plane_depth().expand(3, -1, -1)
    targets = [
        {"depth": depth[:2], "points": torch.randn(30, 3) * 0.2},
        {"depth": depth[2:], "points": torch.randn(30, 3) * 0.2},
    ]
    losses = head(images, num_views, targets=targets, views=views)
    assert set(losses) == {"loss_front", "loss_diversity", "loss_full_shape"}
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    assert head.generator.conv_points.weight.grad.abs().sum() > 0
    assert head.backbone.c1.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="depth"):
        head(images, num_views, targets=[{}, {}], views=views)
    with pytest.raises(ValueError, match="cameras"):
        head(images, num_views, targets=targets, views=None)


def test_union_front_equals_own_view_front_for_a_single_view():
    torch.manual_seed(0)
    head = _head().train()
    views = _views(1)
    images = torch.randn(1, 3, SIZE, SIZE)
    targets = [{"depth": _plane_depth()}]
    torch.manual_seed(1)
    own = head(images, torch.tensor([1]), targets=targets, views=views)["loss_front"]
    head.front_mode = "union"
    torch.manual_seed(1)
    union = head(images, torch.tensor([1]), targets=targets, views=views)["loss_front"]
    torch.testing.assert_close(own, union)


def test_head_inference_selects_and_refines():
    torch.manual_seed(0)
    head = _head(output_points=20, eval_view_counts=[1, 2], refine_steps=3).eval()
    views = _views(5)
    images = torch.randn(5, 3, SIZE, SIZE)
    with torch.no_grad():
        out = head(images, torch.tensor([3, 2]), views=views)
    assert len(out) == 2
    a = out[0]
    assert a["hypotheses_world"].shape == (3, 4, 32, 3)
    assert a["points_world"].shape == (20, 3) and a["views_world"].shape == (3, 32, 3)
    c = a["consistency"]
    assert c["refined"] <= c["selected"] <= c["random"]
    # points is the union in the first view's camera frame.
    torch.testing.assert_close(
        a["points"], transform_points(a["points_world"], views["R"][0], views["t"][0])
    )
    assert [r["views_world"].shape[0] for r in a["by_num_views"]] == [1, 2]
    assert [r["views_world"].shape[0] for r in out[1]["by_num_views"]] == [1, 2]
    # Seeded draws: the same prediction twice.
    with torch.no_grad():
        again = head(images, torch.tensor([3, 2]), views=views)
    torch.testing.assert_close(again[0]["points_world"], a["points_world"])


def test_head_generates_in_the_view_frame():
    """Each view's cloud projects where the generator put it in that view's camera frame."""
    torch.manual_seed(0)
    head = _head().eval()
    views = _views(2)
    feats = head.encode(torch.randn(2, 3, SIZE, SIZE))
    noise = torch.randn(2, 1, 6)
    cam = head.generate(feats, noise)[:, 0]
    world = camera_to_world(cam, views["R"], views["t"])
    back = transform_points(world, views["R"], views["t"])
    torch.testing.assert_close(project_points(back, views["K"]), project_points(cam, views["K"]))


# ---------------------------------------------------------------------------- evaluator
def test_evaluator_oracle_picks_the_right_hypothesis():
    torch.manual_seed(0)
    gt = torch.nn.functional.normalize(torch.randn(2000, 3), dim=1) * 0.4
    views = _views(2)
    good = gt[:500]
    bad = good * 1.5
    hyp = torch.stack([torch.stack([bad, good]), torch.stack([bad, good])])  # (V, C, P, 3)
    out = {
        "hypotheses_world": hyp,
        "points_world": torch.cat([good, gt[500:1000]]),
        "selected_world": hyp[:, 1],
        "consistency": {"random": 0.1, "selected": 0.0, "refined": 0.0},
    }
    x = {"image_id": "a/b", "category_id": 0, "R": views["R"], "t": views["t"], "points": gt}
    ev = OptimizeMVSEvaluator(
        fps_points=[200],
        shapenet_args={"num_samples": 2000, "thresholds": (0.1, 0.3, 0.5), "class_names": ["x"]},
    )
    ev.process([x], [out])
    res = ev.evaluate()
    for key in ("single", "oracle", "multiview", "multiview_fps200", "multiview_random"):
        assert res[key]["num_instances"] == 2  # scored in both views' frames
    assert res["oracle"]["Chamfer-L2"] < 0.2 * res["single"]["Chamfer-L2"]
    assert res["oracle"]["F1@0.300000"] > res["single"]["F1@0.300000"]
    assert res["consistency"]["random"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="hypotheses_world"):
        ev.process([x], [{"points": gt}])


# ---------------------------------------------------------------------------- depth mapper
def test_multiview_depth_mapper_renders_missing_depth(tmp_path):
    import numpy as np
    from PIL import Image

    from meshrecon.data.multiview_depth_mapper import MultiViewDepthMapper
    from meshrecon.ops import ico_sphere

    sphere = ico_sphere(3)
    mesh_path = str(tmp_path / "sphere.pt")
    torch.save({"verts": sphere.verts_list()[0] * 0.5, "faces": sphere.faces_list()[0]}, mesh_path)
    views = []
    for i, angle in enumerate((0.0, 1.0)):
        path = str(tmp_path / f"{i}.png")
        Image.fromarray(np.full((SIZE, SIZE, 3), 255, np.uint8)).save(path)
        views.append(
            {
                "file_name": path,
                "height": SIZE,
                "width": SIZE,
                "K": K1.tolist(),
                "R": _rot(1, angle).tolist(),
                "t": [0.0, 0.0, 2.0],
                "view_index": i,
            }
        )
    record = {"synset_id": "s", "model_id": "m", "mesh": mesh_path, "views": views}
    mapper = MultiViewDepthMapper(is_train=False, num_views=2, crop_size=0, load_annotations=False)
    out = mapper(record)
    depth = out["depth"]
    assert depth.shape == (2, SIZE, SIZE)
    # A sphere of radius 0.5 two units away: 1.5 at the centre pixel, nothing in the corners.
    torch.testing.assert_close(depth[:, 16, 16], torch.tensor([1.5, 1.5]), atol=0.01, rtol=0)
    assert float(depth[:, 0, 0].abs().max()) == 0.0
    # Its front surface, lifted, lies on the sphere.
    pts, n = depth_front_points(depth, out["K"], GRID)
    world = camera_to_world(pts, out["R"], out["t"])
    radius = world[0, : n[0]].norm(dim=-1)
    torch.testing.assert_close(radius, torch.full_like(radius, 0.5), atol=0.01, rtol=0)
    with pytest.raises(ValueError, match="mesh"):
        mapper({**record, "mesh": None})
