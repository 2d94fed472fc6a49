"""Tests for meshrecon.structures.pointclouds against naive loops."""

import pytest
import torch

from meshrecon.structures import Pointclouds, join_pointclouds_as_batch, join_pointclouds_as_scene

SIZES = [6, 0, 11, 3]
C = 4


def random_clouds(sizes=SIZES, seed=0):
    g = torch.Generator().manual_seed(seed)
    points = [torch.randn(p, 3, generator=g) for p in sizes]
    normals = [torch.nn.functional.normalize(torch.randn(p, 3, generator=g), dim=1) for p in sizes]
    features = [torch.rand(p, C, generator=g) for p in sizes]
    return points, normals, features


def padded_by_loop(items, width):
    out = torch.zeros(len(items), max(len(x) for x in items), width)
    for i, x in enumerate(items):
        for k in range(len(x)):
            out[i, k] = x[k]
    return out


@pytest.mark.parametrize("from_padded", [False, True])
def test_views_match_loops(from_padded):
    points, normals, features = random_clouds()
    clouds = Pointclouds(points, normals=normals, features=features)
    if from_padded:
        clouds = Pointclouds(
            clouds.points_padded(), clouds.normals_padded(), clouds.features_padded()
        )
        P = max(SIZES)
        pad = [P - len(p) for p in points]
        points = [torch.cat([p, torch.zeros(k, 3)]) for p, k in zip(points, pad)]
        normals = [torch.cat([n, torch.zeros(k, 3)]) for n, k in zip(normals, pad)]
        features = [torch.cat([f, torch.zeros(k, C)]) for f, k in zip(features, pad)]
    sizes = [len(p) for p in points]
    assert clouds.num_points_per_cloud().tolist() == sizes
    for field, items, width in (
        ("points", points, 3),
        ("normals", normals, 3),
        ("features", features, C),
    ):
        assert all(torch.equal(a, b) for a, b in zip(getattr(clouds, f"{field}_list")(), items))
        assert torch.equal(getattr(clouds, f"{field}_packed")(), torch.cat(items))
        assert torch.equal(getattr(clouds, f"{field}_padded")(), padded_by_loop(items, width))
    first = [sum(sizes[:i]) for i in range(4)]
    assert clouds.cloud_to_packed_first_idx().tolist() == first
    assert clouds.packed_to_cloud_idx().tolist() == [i for i in range(4) for _ in range(sizes[i])]
    expected = [i * max(sizes) + k for i in range(4) for k in range(sizes[i])]
    assert clouds.padded_to_packed_idx().tolist() == expected


def test_mixed_list_points_padded_features():
    points, _, features = random_clouds()
    padded_features = padded_by_loop(features, C)
    clouds = Pointclouds(points, features=padded_features)
    assert torch.equal(clouds.features_packed(), torch.cat(features))
    assert clouds.normals_list() is None and clouds.normals_packed() is None
    assert clouds.normals_padded() is None


def test_flags_and_empty():
    points, _, _ = random_clouds()
    clouds = Pointclouds(points)
    assert clouds.valid.tolist() == [True, False, True, True]
    assert not clouds.equisized and not clouds.isempty() and len(clouds) == 4
    assert Pointclouds([points[0], points[0]]).equisized
    assert Pointclouds([points[1]]).isempty()
    empty = Pointclouds([])
    assert empty.isempty() and empty.points_packed().shape == (0, 3)
    assert empty.points_padded().shape == (0, 0, 3)
    assert empty.get_bounding_boxes().shape == (0, 3, 2)


def test_bounding_boxes_match_loop():
    points, _, _ = random_clouds(seed=1)
    boxes = Pointclouds(points).get_bounding_boxes()
    for i, p in enumerate(points):
        if len(p):
            assert torch.equal(boxes[i], torch.stack([p.min(0).values, p.max(0).values], 1))
        else:
            assert not boxes[i].any()


def test_gradients_flow_through_views():
    points, normals, _ = random_clouds(seed=2)
    source = [p.clone().requires_grad_(True) for p in points]
    clouds = Pointclouds(source, normals=normals)
    g = torch.Generator().manual_seed(3)
    w_padded = torch.randn(clouds.points_padded().shape, generator=g)
    w_packed = torch.randn(clouds.points_packed().shape, generator=g)
    (
        (clouds.points_padded() * w_padded).sum() + (clouds.points_packed() * w_packed).sum()
    ).backward()
    for i, s in enumerate(source):
        if len(s):
            expected = w_padded[i, : len(s)] + w_packed.split(SIZES)[i]
            assert torch.allclose(s.grad, expected)
    padded = clouds.points_padded().detach().requires_grad_(True)
    Pointclouds(padded).points_packed().pow(2).sum().backward()
    assert torch.allclose(padded.grad, 2 * padded)


def test_offset_and_scale():
    points, normals, _ = random_clouds(seed=4)
    clouds = Pointclouds(points, normals=normals)
    clouds.points_padded()
    offsets = torch.randn(20, 3, generator=torch.Generator().manual_seed(5))
    moved = clouds.offset(offsets)
    assert torch.equal(clouds.points_packed(), torch.cat(points))
    for a, p, o in zip(moved.points_list(), points, offsets.split(SIZES)):
        assert torch.allclose(a, p + o)
    assert torch.allclose(
        moved.points_padded(),
        padded_by_loop([p + o for p, o in zip(points, offsets.split(SIZES))], 3),
    )
    shift = torch.tensor([0.5, 1.0, -1.0])
    assert clouds.offset_(shift) is clouds
    assert torch.allclose(clouds.points_padded()[2, :11], points[2] + shift)
    assert torch.equal(clouds.normals_packed(), torch.cat(normals))
    with pytest.raises(ValueError, match="offsets_packed"):
        clouds.offset_(torch.zeros(2, 3))

    factors = torch.tensor([2.0, 3.0, -1.0, 0.5])
    scaled = Pointclouds(points).scale(factors)
    for i, p in enumerate(scaled.points_list()):
        assert torch.allclose(p, points[i] * factors[i])
    assert torch.allclose(Pointclouds(points).scale_(3.0).points_packed(), 3 * torch.cat(points))
    with pytest.raises(ValueError, match="scale"):
        Pointclouds(points).scale_(torch.ones(2))


def test_update_padded():
    points, normals, features = random_clouds(seed=6)
    clouds = Pointclouds(points, normals=normals, features=features)
    new_points = (clouds.points_padded() + 1).requires_grad_(True)
    new = clouds.update_padded(new_points)
    assert new.num_points_per_cloud().tolist() == SIZES
    for a, p in zip(new.points_list(), points):
        assert torch.allclose(a, p + 1)
    assert torch.equal(new.normals_packed(), torch.cat(normals))
    assert torch.equal(new.features_packed(), torch.cat(features))
    new.points_packed().sum().backward()
    assert torch.equal(new_points.grad, padded_by_loop([torch.ones(k, 3) for k in SIZES], 3))
    new_feats = clouds.features_padded() * 2
    both = clouds.update_padded(clouds.points_padded(), new_features_padded=new_feats)
    assert torch.allclose(both.features_packed(), 2 * torch.cat(features))
    assert torch.equal(clouds.points_packed(), torch.cat(points))
    with pytest.raises(ValueError, match="new_points_padded"):
        clouds.update_padded(torch.zeros(4, 2, 3))
    with pytest.raises(ValueError, match="new_features_padded"):
        clouds.update_padded(clouds.points_padded(), new_features_padded=torch.zeros(4, 11, 2))


def test_getitem_split_extend_join():
    points, normals, features = random_clouds(seed=7)
    clouds = Pointclouds(points, normals=normals, features=features)

    def same(c, idx):
        return len(c) == len(idx) and all(
            torch.equal(c.points_list()[k], points[i])
            and torch.equal(c.normals_list()[k], normals[i])
            and torch.equal(c.features_list()[k], features[i])
            for k, i in enumerate(idx)
        )

    assert same(clouds[1], [1]) and same(clouds[-2], [2]) and same(clouds[1:], [1, 2, 3])
    assert same(clouds[[3, 0]], [3, 0]) and same(clouds[torch.tensor([2, 2])], [2, 2])
    assert same(clouds[torch.tensor([False, True, False, True])], [1, 3])
    with pytest.raises(IndexError):
        clouds[torch.tensor([1.0])]
    p, n, f = clouds.get_cloud(2)
    assert torch.equal(p, points[2]) and torch.equal(n, normals[2]) and torch.equal(f, features[2])

    parts = clouds.split([1, 3])
    assert same(parts[0], [0]) and same(parts[1], [1, 2, 3])
    assert same(join_pointclouds_as_batch(parts), [0, 1, 2, 3])
    assert same(clouds.extend(2), [0, 0, 1, 1, 2, 2, 3, 3])
    with pytest.raises(ValueError, match="N must be"):
        clouds.extend(-1)
    with pytest.raises(ValueError, match="some pointclouds have normals"):
        join_pointclouds_as_batch([clouds, Pointclouds(points)])
    with pytest.raises(ValueError, match="list of Pointclouds"):
        join_pointclouds_as_batch(clouds)

    scene = join_pointclouds_as_scene(clouds)
    assert len(scene) == 1 and torch.equal(scene.points_packed(), torch.cat(points))
    assert torch.equal(scene.features_packed(), torch.cat(features))


def test_clone_detach_to():
    points, normals, _ = random_clouds(seed=8)
    source = [p.clone().requires_grad_(True) for p in points]
    clouds = Pointclouds(source, normals=normals)
    cloned = clouds.clone()
    cloned.offset_(torch.ones(3))
    assert torch.equal(clouds.points_packed().detach(), torch.cat(points))
    cloned.points_packed().sum().backward()
    assert torch.equal(source[0].grad, torch.ones_like(source[0]))
    assert not clouds.detach().points_packed().requires_grad
    assert clouds.to("cpu") is clouds
    assert clouds.to("cpu", copy=True) is not clouds


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_roundtrip():
    points, normals, _ = random_clouds(seed=9)
    clouds = Pointclouds(points, normals=normals).cuda()
    assert clouds.points_padded().is_cuda and clouds.normals_packed().is_cuda
    assert torch.equal(clouds.cpu().points_packed(), torch.cat(points))


def test_invalid_inputs_raise():
    points, normals, features = random_clouds(seed=10)
    cases = [
        ((torch.zeros(2, 3),), {}, "points"),
        (([torch.zeros(2, 2)],), {}, "points\\[0\\]"),
        (([torch.zeros(2, 3, dtype=torch.long)],), {}, "floating"),
        ((points,), {"normals": normals[:2]}, "normals"),
        ((points,), {"normals": [f for f in features]}, "3 channels"),
        ((points,), {"features": [f[:1] for f in features]}, "rows"),
        (
            (points,),
            {"features": [features[0], features[1][:, :2], features[2], features[3]]},
            "channels",
        ),
        ((points,), {"features": torch.zeros(4, 3, C)}, "features"),
        (("abc",), {}, "points"),
    ]
    for args, kwargs, msg in cases:
        with pytest.raises(ValueError, match=msg):
            Pointclouds(*args, **kwargs)


# ---------------------------------------------------------------------- PyTorch3D's loose inputs
def test_empty_clouds_as_1d_tensors_and_none_entries_like_pytorch3d():
    points, normals, features = random_clouds(seed=20)  # cloud 1 is empty
    ref = Pointclouds(points, normals=normals, features=features)
    loose = Pointclouds(
        [p if len(p) else torch.tensor([]) for p in points],
        normals=[n if len(n) else None for n in normals],
        features=[f if len(f) else None for f in features],
    )
    for field in ("points", "normals", "features"):
        for form in ("padded", "packed"):
            a, b = getattr(loose, f"{field}_{form}")(), getattr(ref, f"{field}_{form}")()
            assert torch.equal(a, b), (field, form)
    assert loose.normals_list()[1].shape == (0, 3)
    assert loose.features_list()[1].shape == (0, C)
    # None (or no rows) is only allowed for an empty cloud: the entry is named.
    with pytest.raises(ValueError, match=r"normals\[0\]"):
        Pointclouds(points, normals=[None, *normals[1:]])
    with pytest.raises(ValueError, match=r"features\[2\]"):
        Pointclouds(points, features=[features[0], None, torch.tensor([]), features[3]])


def test_no_normals_or_features_on_batches_without_points_like_pytorch3d():
    empty_cases = [
        Pointclouds([], normals=[], features=[]),
        Pointclouds(torch.zeros(0, 4, 3), torch.zeros(0, 4, 3), torch.zeros(0, 4, 2)),
        Pointclouds([torch.tensor([]), torch.zeros(0, 3)], normals=[None, None]),
    ]
    for clouds in empty_cases:
        for field in ("normals", "features"):
            for form in ("list", "packed", "padded"):
                assert getattr(clouds, f"{field}_{form}")() is None, (field, form)
        assert clouds.points_packed().shape == (0, 3)
    # Given (0, C) entries of empty clouds are kept (PyTorch3D keeps the list too).
    kept = Pointclouds([torch.zeros(0, 3)], normals=[torch.zeros(0, 3)])
    assert kept.normals_list()[0].shape == (0, 3) and kept.normals_padded().shape == (1, 0, 3)


# ---------------------------------------------------------------------- subsample
def test_subsample_keeps_random_subsets_with_their_normals_and_features():
    g = torch.Generator().manual_seed(30)
    sizes = [10, 0, 4, 7]
    points = [torch.randn(p, 3, generator=g) for p in sizes]
    # Features hold each point's index and normals its position: both must follow the point.
    features = [torch.arange(p, dtype=torch.float32)[:, None] for p in sizes]
    clouds = Pointclouds(points, normals=[p * 2 for p in points], features=features)
    torch.manual_seed(0)
    sub = clouds.subsample(5)
    assert sub.num_points_per_cloud().tolist() == [5, 0, 4, 5]
    for p, sp, sn, sf in zip(points, sub.points_list(), sub.normals_list(), sub.features_list()):
        idx = sf[:, 0].long()
        assert len(set(idx.tolist())) == len(idx)  # without replacement
        assert torch.equal(sp, p[idx]) and torch.equal(sn, 2 * p[idx])
    torch.manual_seed(0)
    again = clouds.subsample(5)
    assert torch.equal(again.points_packed(), sub.points_packed())  # torch.manual_seed repeats
    per_cloud = clouds.subsample([3, 9, 4, 0])
    assert per_cloud.num_points_per_cloud().tolist() == [3, 0, 4, 0]
    assert clouds.subsample(10) is clouds  # nothing to do: self, as in PyTorch3D
    for bad, msg in (([1, 2], "4 entries"), (-1, "non-negative")):
        with pytest.raises(ValueError, match=msg):
            clouds.subsample(bad)


def test_subsample_draws_every_subset_uniformly():
    clouds = Pointclouds([torch.arange(4, dtype=torch.float32)[:, None].expand(4, 3)])
    torch.manual_seed(1)
    counts = torch.zeros(4)
    for _ in range(400):
        counts[clouds.subsample(2).points_packed()[:, 0].long()] += 1
    # Each point is kept with probability 1/2: 200 of 400 draws, binomial sd 10.
    assert ((counts - 200).abs() < 50).all(), counts


# ---------------------------------------------------------------------- inside_box
def test_inside_box_matches_loop():
    points, _, _ = random_clouds(seed=31)
    clouds = Pointclouds(points)
    g = torch.Generator().manual_seed(31)
    lo = torch.rand(4, 3, generator=g) - 1.0
    boxes = torch.stack([lo, lo + 1.2], 1)  # (N, 2, 3)

    def loop(per_cloud_box):
        return torch.tensor(
            [
                all(b[0, d] <= p[d] <= b[1, d] for d in range(3))
                for p, b in zip(clouds.points_packed(), per_cloud_box)
            ],
            dtype=torch.bool,
        )

    owner = clouds.packed_to_cloud_idx()
    assert torch.equal(clouds.inside_box(boxes), loop(boxes[owner]))
    assert torch.equal(clouds.inside_box(boxes[0]), loop(boxes[0].expand(len(owner), 2, 3)))
    assert torch.equal(clouds.inside_box(boxes[:1]), clouds.inside_box(boxes[0]))
    # The boundary is inside.
    on_edge = Pointclouds([torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.01]])])
    unit = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    assert on_edge.inside_box(unit).tolist() == [True, True, False]
    for bad, msg in ((torch.zeros(2, 2), "shape"), (boxes[:2], "shape"), (unit.flip(0), "min")):
        with pytest.raises(ValueError, match=msg):
            clouds.inside_box(bad)


# ---------------------------------------------------------------------- estimate_normals
def test_estimate_normals_on_a_plane_and_assign_to_self():
    g = torch.Generator().manual_seed(32)
    plane = torch.cat([torch.rand(60, 2, generator=g), torch.zeros(60, 1)], 1)
    tilted = plane @ torch.linalg.qr(torch.randn(3, 3, generator=g)).Q.T
    clouds = Pointclouds([tilted, tilted[:40]])
    normals = clouds.estimate_normals(neighborhood_size=8)
    assert normals.shape == (2, 60, 3)
    expected = torch.linalg.cross(tilted[1] - tilted[0], tilted[2] - tilted[0], dim=0)
    expected = expected / expected.norm()
    cos = normals[0] @ expected
    assert torch.allclose(cos.abs(), torch.ones(60), atol=1e-4)
    assert not normals[1, 40:].any()  # padding rows are zero
    assert clouds.normals_list() is None  # not assigned unless asked
    clouds.estimate_normals(neighborhood_size=8, assign_to_self=True)
    assert torch.equal(clouds.normals_padded(), normals)
    assert torch.equal(clouds.normals_list()[1], normals[1, :40])
    with pytest.raises(ValueError, match="neighborhood_size"):
        clouds.estimate_normals(neighborhood_size=40)
