"""Tests of the procedural shape library: primitives, category builders, Shape methods."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from meshrecon.data.datasets.synthetic import primitives as pr
from meshrecon.data.datasets.synthetic.shapes import (
    CATEGORIES,
    MATERIAL_COLORS,
    Part,
    Shape,
    make_shape,
    shape_seed_stream,
)
from meshrecon.structures import Meshes

SEEDS = range(20)


def _shape(category: str, index: int, seed: int = 0) -> Shape:
    return make_shape(category, shape_seed_stream(seed, category, index))


def _assert_closed_oriented(verts: np.ndarray, faces: np.ndarray, what: str) -> None:
    """Every directed edge occurs once and its reverse once: closed, 2-manifold, consistent."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    directed = {tuple(e) for e in edges.tolist()}
    assert len(directed) == len(edges), f"{what}: a directed edge is used twice"
    missing = [e for e in directed if (e[1], e[0]) not in directed]
    assert not missing, f"{what}: open edges {missing[:3]}"
    assert pr.signed_volume(verts, faces) > 0, f"{what}: inward-oriented"
    tri = np.asarray(verts, np.float64)[faces]
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    assert area.min() > 1e-12, f"{what}: degenerate face"


def _winding_numbers(points: np.ndarray, verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Generalized winding number (sum of signed solid angles / 4 pi) of a mesh at points.

    An inside test independent of ray parity: 1 inside a closed outward mesh, 0 outside.
    """
    tri = np.asarray(verts, np.float64)[faces]
    out = np.zeros(len(points))
    for start in range(0, len(points), 512):
        p = points[start : start + 512, None, None, :]
        a, b, c = (tri[None, :, k, :] - p[:, :, 0, :] for k in range(3))
        la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
        det = np.einsum("pfi,pfi->pf", a, np.cross(b, c))
        dot = lambda x, y: np.einsum("pfi,pfi->pf", x, y)  # noqa: E731
        den = la * lb * lc + dot(a, b) * lc + dot(b, c) * la + dot(c, a) * lb
        out[start : start + 512] = (2.0 * np.arctan2(det, den)).sum(axis=1) / (4 * np.pi)
    return out


def _inside_union(shape: Shape, points: np.ndarray) -> np.ndarray:
    inside = np.zeros(len(points), dtype=bool)
    for part in shape.parts:
        # Only points in a part's bounding box can be inside it.
        near = np.all((points >= part.verts.min(0)) & (points <= part.verts.max(0)), axis=1)
        inside[near] |= _winding_numbers(points[near], part.verts, part.faces) > 0.5
    return inside


# ---------------------------------------------------------------------------------------------
# Primitives
# ---------------------------------------------------------------------------------------------


def _polygon_factor(n: int) -> float:
    """Area of a regular n-gon inscribed in the unit circle, over pi."""
    return n * np.sin(2 * np.pi / n) / (2 * np.pi)


@pytest.mark.parametrize(
    "name, mesh, volume",
    [
        ("box", pr.box((0.2, 0.3, 0.5), (1, 2, 3)), 0.03),
        ("cylinder", pr.cylinder(0.5, 2.0, 0, 64), np.pi * 0.25 * 2 * _polygon_factor(64)),
        ("cone", pr.frustum(1.0, 0.0, 3.0, 0, 64), np.pi * 3 / 3 * _polygon_factor(64)),
        ("ellipsoid", pr.ellipsoid((1, 2, 3), 0, 16), 4 / 3 * np.pi * 6),
        # (r=0.25 sphere) + (0.5 cylinder): 4/3 pi r^3 + pi r^2 * 0.5
        ("capsule", pr.capsule(0.25, 1.0, 0, 64, 16), np.pi * (4 / 3 * 0.25**3 + 0.25**2 * 0.5)),
        ("torus", pr.torus(1.0, 0.25, 0, 96, 48), 2 * np.pi**2 * 1.0 * 0.25**2),
        # Minkowski sum of box (a, b, c) and a ball of radius r.
        (
            "rounded_box",
            pr.rounded_box((1.0, 0.6, 0.8), 0.1, 0, 16),
            0.8 * 0.4 * 0.6
            + 2 * 0.1 * (0.8 * 0.4 + 0.4 * 0.6 + 0.8 * 0.6)
            + np.pi * 0.1**2 * (0.8 + 0.4 + 0.6)
            + 4 / 3 * np.pi * 0.1**3,
        ),
        (
            "cylinder_between",
            pr.cylinder_between((0, 0, 0), (1, 1, 1), 0.1, 64),
            np.pi * 0.01 * np.sqrt(3) * _polygon_factor(64),
        ),
    ],
)
def test_primitive_closed_with_expected_volume(name, mesh, volume):
    verts, faces = mesh
    _assert_closed_oriented(verts, faces, name)
    assert faces.dtype == np.int64
    # Tessellated curved surfaces are a little smaller than the analytic solid.
    assert pr.signed_volume(verts, faces) == pytest.approx(volume, rel=0.02)


def test_lathe_open_vase_profile_is_hollow():
    # Up the outside, over the rim, down the inside to a floor: a cup with a real cavity.
    profile = [[0, 0], [1, 0.0], [1, 2], [0.9, 2], [0.9, 0.2], [0, 0.2]]
    verts, faces = pr.lathe(profile, 48)
    _assert_closed_oriented(verts, faces, "cup")
    solid = np.pi * 2 * (1 - 0.81) + np.pi * 0.81 * 0.2
    assert pr.signed_volume(verts, faces) == pytest.approx(solid * _polygon_factor(48), rel=1e-9)
    centre_inside = _winding_numbers(np.array([[0.0, 1.0, 0.0]]), verts, faces)
    assert abs(centre_inside[0]) < 1e-6  # the cavity is outside the solid


def test_lathe_orientation_independent_of_profile_direction():
    profile = np.array([[0, 0], [1, 0.5], [0.5, 1.5], [0, 2]], dtype=float)
    v1, f1 = pr.lathe(profile, 12)
    v2, f2 = pr.lathe(profile[::-1], 12)
    assert pr.signed_volume(v1, f1) == pytest.approx(pr.signed_volume(v2, f2))
    _assert_closed_oriented(v2, f2, "reversed profile")


def test_rotations_and_transform():
    r = pr.rotation_between([0, 1, 0], [1, 2, 3])
    np.testing.assert_allclose(r @ [0, 1, 0], np.array([1, 2, 3]) / np.sqrt(14), atol=1e-12)
    np.testing.assert_allclose(pr.rotation_between([0, 1, 0], [0, -1, 0]) @ [0, 1, 0], [0, -1, 0])
    np.testing.assert_allclose(pr.rotation_z(-np.pi / 2) @ [0, 1, 0], [1, 0, 0], atol=1e-12)
    verts, faces = pr.transform(pr.box(1.0), pr.rotation_x(0.3), (1, 2, 3))
    np.testing.assert_allclose(verts.mean(axis=0), [1, 2, 3], atol=1e-12)
    _assert_closed_oriented(verts, faces, "rotated box")


@pytest.mark.parametrize(
    "call, arg",
    [
        (lambda: pr.box((1, -1, 1)), "size"),
        (lambda: pr.rounded_box(1.0, 0.6), "radius"),
        (lambda: pr.rounded_box(1.0, 0.1, segments=3), "segments"),
        (lambda: pr.cylinder(0.0, 1.0), "radii"),
        (lambda: pr.capsule(1.0, 1.0), "length"),
        (lambda: pr.torus(1.0, 2.0), "minor_radius"),
        (lambda: pr.lathe([[0, 0], [0, 1]], 8), "axis"),
        (lambda: pr.lathe([[1, 0]], 8), "profile"),
        (lambda: pr.transform(pr.box(1.0), np.diag([1.0, 1.0, -1.0])), "rotation"),
        (lambda: pr.cylinder_between((0, 0, 0), (0, 0, 0), 0.1), "start and end"),
    ],
)
def test_primitive_bad_input(call, arg):
    with pytest.raises(ValueError, match=arg):
        call()


# ---------------------------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------------------------


def test_categories_are_pix3d_names():
    assert CATEGORIES == (
        "bed",
        "bookcase",
        "chair",
        "desk",
        "misc",
        "sofa",
        "table",
        "tool",
        "wardrobe",
    )


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_category_builds_closed_normalized_parts(category):
    for index in SEEDS:
        shape = _shape(category, index)
        assert shape.category == category and shape.variant
        assert len(shape.parts) >= 1
        for part in shape.parts:
            assert part.verts.dtype == np.float32 and part.verts.shape[1] == 3
            assert part.faces.dtype == np.int64 and part.faces.shape[1] == 3
            assert part.material in MATERIAL_COLORS
            _assert_closed_oriented(part.verts, part.faces, f"{category}#{index}/{part.name}")
        lo, hi = shape.bounds
        np.testing.assert_allclose((lo + hi) / 2, 0.0, atol=1e-6)
        assert np.linalg.norm(hi - lo) == pytest.approx(1.0, abs=1e-5)
        verts, faces = shape.verts, shape.faces
        assert 50 <= len(faces) <= 3000
        assert faces.max() == len(verts) - 1 and faces.min() == 0
        ids = shape.part_ids
        assert ids.shape == (len(faces),) and np.all(np.diff(ids) >= 0)
        # Faces of part k index part k's vertices, in the concatenated arrays.
        k = len(shape.parts) - 1
        np.testing.assert_array_equal(
            verts[faces[ids == k]], shape.parts[k].verts[shape.parts[k].faces]
        )
        assert shape.face_colors().shape == (len(faces), 3)


@pytest.mark.parametrize("category", CATEGORIES)
def test_same_seed_same_shape_different_seed_different_shape(category):
    a, b, c = _shape(category, 3), _shape(category, 3), _shape(category, 4)
    assert [p.name for p in a.parts] == [p.name for p in b.parts]
    np.testing.assert_array_equal(a.verts, b.verts)
    np.testing.assert_array_equal(a.faces, b.faces)
    assert [p.material for p in a.parts] == [p.material for p in b.parts]
    assert a.verts.shape != c.verts.shape or not np.array_equal(a.verts, c.verts)
    # A different global seed gives a different object for the same index.
    d = _shape(category, 3, seed=1)
    assert a.verts.shape != d.verts.shape or not np.array_equal(a.verts, d.verts)


def test_shape_seed_stream_reproducible_and_independent():
    draw = lambda *args: shape_seed_stream(*args).random(4)  # noqa: E731
    np.testing.assert_array_equal(draw(7, "chair", 2), draw(7, "chair", 2))
    assert not np.array_equal(draw(7, "chair", 2), draw(7, "chair", 3))
    assert not np.array_equal(draw(7, "chair", 2), draw(7, "table", 2))
    assert not np.array_equal(draw(7, "chair", 2), draw(8, "chair", 2))
    with pytest.raises(ValueError, match="seed"):
        shape_seed_stream(-1, "chair", 0)
    with pytest.raises(ValueError, match="index"):
        shape_seed_stream(0, "chair", 1.5)


def test_make_shape_bad_input():
    with pytest.raises(ValueError, match="category"):
        make_shape("airplane", np.random.default_rng(0))
    with pytest.raises(ValueError, match="rng"):
        make_shape("chair", 0)


def _descriptor(shape: Shape) -> np.ndarray:
    """Bounding-box extents (x, y, z), log part count and log face count."""
    lo, hi = shape.bounds
    return np.concatenate([hi - lo, [np.log(len(shape.parts)), np.log(len(shape.faces))]])


def test_categories_differ_and_vary_within():
    train = {c: np.stack([_descriptor(_shape(c, i)) for i in SEEDS]) for c in CATEGORIES}
    centroids = np.stack([train[c].mean(axis=0) for c in CATEGORIES])
    scale = np.concatenate(list(train.values())).std(axis=0)
    # Held-out objects are told apart by nearest centroid of five crude numbers: categories
    # differ in proportions and part structure, not just in name.
    correct = 0
    for label, c in enumerate(CATEGORIES):
        for i in range(20, 30):
            dist = np.linalg.norm((centroids - _descriptor(_shape(c, i))) / scale, axis=1)
            correct += int(np.argmin(dist) == label)
    assert correct / (10 * len(CATEGORIES)) > 0.75
    # Category-defining proportions (normalised extents x, y, z).
    mean = {c: train[c][:, :3].mean(axis=0) for c in CATEGORIES}
    for tall in ("wardrobe", "bookcase"):
        assert np.all(train[tall][:, 1] > train[tall][:, 2])
    assert np.all(train["tool"][:, 2] < 0.2 * train["tool"][:, 0])  # a flat, long tool
    assert mean["bed"][2] > max(mean["bed"][0], mean["bed"][1])  # long along Z
    assert mean["sofa"][0] > mean["sofa"][1]
    assert mean["table"][1] < max(mean["table"][0], mean["table"][2])
    # Real intra-class variety: several part structures and part counts per category.
    for c in CATEGORIES:
        shapes = [_shape(c, i) for i in SEEDS]
        assert len({s.variant for s in shapes}) >= 3, c
        assert len({len(s.parts) for s in shapes}) >= 2 or c == "misc", c


def test_topology_features_of_categories():
    names = {c: [[p.name for p in _shape(c, i).parts] for i in SEEDS] for c in CATEGORIES}
    legs = [sum(n.startswith("leg_") for n in parts) for parts in names["chair"]]
    assert {3, 4} <= set(legs) and 0 in legs  # legged chairs and star bases / sleds
    shelves = [sum(n.startswith("shelf_") for n in parts) for parts in names["bookcase"]]
    assert min(shelves) >= 2 and max(shelves) <= 6 and len(set(shelves)) >= 3
    doors = [sum(n.startswith("door_") for n in parts) for parts in names["wardrobe"]]
    assert set(doors) <= {1, 2, 3} and len(set(doors)) >= 2
    assert all(any(n.startswith("drawer_") for n in parts) for parts in names["desk"])
    assert not any(any(n.startswith("drawer_") for n in parts) for parts in names["table"])
    assert all("headboard" in parts or "head_post" in parts for parts in names["bed"])
    assert all(any(n.startswith("seat_cushion") for n in parts) for parts in names["sofa"])
    kinds = {_shape("tool", i).variant.split("/")[0] for i in SEEDS}
    assert kinds == {"hammer", "wrench", "screwdriver"}


# ---------------------------------------------------------------------------------------------
# Shape methods
# ---------------------------------------------------------------------------------------------


def test_to_meshes_and_parts_to_meshes():
    shape = _shape("chair", 0)
    meshes = shape.to_meshes()
    assert isinstance(meshes, Meshes) and len(meshes) == 1
    torch.testing.assert_close(meshes.verts_packed(), torch.from_numpy(shape.verts))
    assert meshes.faces_packed().shape == (len(shape.faces), 3)
    assert len(shape.parts_to_meshes()) == len(shape.parts)


@pytest.mark.parametrize("category", CATEGORIES)
def test_voxelize_agrees_with_winding_number_inside_test(category):
    shape = _shape(category, 5)
    size = 14
    occ = shape.voxelize(size)
    assert occ.shape == (size,) * 3 and occ.dtype == bool
    lo, hi = shape.voxel_bounds()
    idx = np.stack(np.meshgrid(*(np.arange(size),) * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    # Voxel [z, y, x] with "corner" alignment covers lo + [x, y, z] * pitch .. + pitch.
    centres = lo + (idx[:, ::-1] + 0.5) * (hi - lo) / size
    expected = _inside_union(shape, centres).reshape((size,) * 3)
    assert occ.any()
    assert np.mean(occ != expected) < 0.005, f"{np.sum(occ != expected)} voxels disagree"


# Bulky categories: for thin boards (a chair's slats) a 64^3 grid's error is mostly discretization.
@pytest.mark.parametrize("category", ["wardrobe", "bed", "sofa"])
def test_voxel_volume_matches_union_volume(category):
    shape = _shape(category, 1)
    size = 64
    bounds = np.array([[-0.5] * 3, [0.5] * 3])
    occ = shape.voxelize(size, bounds=bounds)
    voxel_volume = occ.mean()  # the box has volume 1
    part_sum = sum(pr.signed_volume(p.verts, p.faces) for p in shape.parts)
    tri = shape.verts.astype(np.float64)[shape.faces]
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum() / 2
    # Voxels that can go either way lie within a voxel of the surface.
    slack = 0.25 * area / size
    points = np.random.default_rng(0).uniform(-0.5, 0.5, size=(20000, 3))
    mc_volume = _inside_union(shape, points).mean()
    mc_err = 3 * np.sqrt(mc_volume * (1 - mc_volume) / len(points))
    # Overlapping parts make the sum of part volumes an upper bound of the union's volume.
    assert mc_volume <= part_sum + mc_err
    assert voxel_volume <= part_sum + slack
    assert abs(voxel_volume - mc_volume) < mc_err + 0.1 * mc_volume
    # Filled, not a shell: the biggest part alone voxelizes to its divergence-theorem volume.
    volumes = [pr.signed_volume(p.verts, p.faces) for p in shape.parts]
    big = shape.parts[int(np.argmax(volumes))]
    big_tri = big.verts.astype(np.float64)[big.faces]
    big_area = np.linalg.norm(
        np.cross(big_tri[:, 1] - big_tri[:, 0], big_tri[:, 2] - big_tri[:, 0]), axis=1
    ).sum()
    big_voxels = Shape(category, [big]).voxelize(size, bounds=bounds).mean()
    assert abs(big_voxels - max(volumes)) < 0.25 * big_area / 2 / size
    assert max(volumes) > big_area / 2 / size  # a one-voxel shell would be far smaller


def test_voxelize_or_of_overlapping_parts_is_not_parity():
    shape = _shape("wardrobe", 0)
    # Two copies of the same part: parity over their concatenation would cancel everywhere.
    body = next(p for p in shape.parts if p.name == "body")
    doubled = Shape("wardrobe", [body, body])
    np.testing.assert_array_equal(doubled.voxelize(12), Shape("wardrobe", [body]).voxelize(12))
    # The body is an axis-aligned box: exactly the voxels whose centres it contains are set.
    lo, hi = shape.voxel_bounds()
    centres = lo[:, None] + (np.arange(12) + 0.5)[None, :] * ((hi - lo) / 12)[:, None]
    blo, bhi = body.verts.min(axis=0), body.verts.max(axis=0)
    counts = ((centres > blo[:, None]) & (centres < bhi[:, None])).sum(axis=1)
    assert doubled.voxelize(12).sum() == np.prod(counts) > 0
    with pytest.raises(ValueError, match="grid_size"):
        shape.voxelize(1)
    with pytest.raises(ValueError, match="bounds"):
        shape.voxelize(8, bounds=np.zeros(3))


def test_sample_surface_area_weighted_on_surface():
    shape = _shape("table", 2)
    points, normals = shape.sample_surface(20000, np.random.default_rng(0))
    again, _ = shape.sample_surface(20000, np.random.default_rng(0))
    np.testing.assert_array_equal(points, again)
    assert points.shape == normals.shape == (20000, 3) and points.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
    lo, hi = shape.bounds
    assert np.all(points >= lo - 1e-6) and np.all(points <= hi + 1e-6)
    # The share of samples on each part follows its share of the area.
    tri = shape.verts.astype(np.float64)[shape.faces]
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1) / 2
    part_area = np.bincount(shape.part_ids, weights=area) / area.sum()
    # Each point lies in the plane of some face of its nearest part; use the top (part 0).
    top = shape.parts[0]
    tlo, thi = top.verts.min(axis=0), top.verts.max(axis=0)
    on_top = np.all((points >= tlo - 1e-6) & (points <= thi + 1e-6), axis=1)
    assert on_top.mean() == pytest.approx(part_area[0], abs=0.02)
    # Outward normals: on the top face of the table top the normal points up.
    top_face = on_top & (np.abs(points[:, 1] - thi[1]) < 1e-6)
    assert top_face.sum() > 100 and np.all(normals[top_face, 1] > 0.99)
    with pytest.raises(ValueError, match="num"):
        shape.sample_surface(0, np.random.default_rng(0))


def test_shape_thinner_than_a_voxel_keeps_its_surface_voxels():
    # A 0.01-thick slab at 32^3 (voxels 1/32 wide here) contains no voxel centre: parity alone
    # would leave the grid empty. The surface fallback marks the voxels the slab crosses.
    verts, faces = pr.box((0.9, 0.01, 0.6), center=(0.0, 0.013, 0.0))
    shape = Shape("table", [Part("top", verts.astype(np.float32), faces, "wood")])
    bounds = np.array([[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]])
    occ = shape.voxelize(32, bounds=bounds)
    assert occ.any()
    zs, ys, xs = np.nonzero(occ)
    # One layer of voxels at the slab's height, spanning its extent.
    assert set(ys.tolist()) == {16}
    assert xs.max() - xs.min() + 1 >= 28 and zs.max() - zs.min() + 1 >= 19
    # A solid box is left to the inside test alone.
    verts, faces = pr.box((0.5, 0.5, 0.5))
    solid = Shape("misc", [Part("block", verts.astype(np.float32), faces, "wood")])
    assert solid.voxelize(32, bounds=bounds).sum() == 16**3
