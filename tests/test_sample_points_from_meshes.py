import pytest
import torch
from scipy.stats import chi2

from meshrecon.ops.sample_points_from_meshes import (
    _guided_search,
    replay_samples,
    sample_points_from_meshes,
)
from meshrecon.structures import Meshes


def stacked_triangles(num_faces: int, seed: int, dtype=torch.float32):
    """Disjoint triangles of varied area, triangle k lying in the plane z = k, alternately
    wound, so a sample's z names its face and the face normal is +z or -z."""
    g = torch.Generator().manual_seed(seed)
    corners = torch.rand(num_faces, 3, 2, generator=g, dtype=dtype) * torch.linspace(
        0.3, 2.0, num_faces, dtype=dtype
    ).view(-1, 1, 1)
    d1, d2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    clockwise = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0] < 0
    corners[clockwise] = corners[clockwise][:, [0, 2, 1]]
    z = torch.arange(num_faces, dtype=dtype).view(-1, 1, 1).expand(-1, 3, 1)
    verts = torch.cat([corners, z], dim=2).reshape(-1, 3)
    faces = torch.arange(3 * num_faces).view(-1, 3)
    faces[1::2] = faces[1::2].flip(1)
    return verts, faces


def tri_areas(verts, faces):
    tri = verts[faces]
    return 0.5 * torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).norm(dim=1)


def barycentric(points, tri):
    """Barycentric coordinates of points (P, 3) in triangles (P, 3, 3), by least squares, and
    the distance from each point to the triangle's plane."""
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    A = torch.stack([e1, e2], dim=2).double()  # (P, 3, 2)
    rhs = (points - tri[:, 0]).double().unsqueeze(2)
    st = torch.linalg.lstsq(A, rhs).solution[:, :, 0]
    residual = (A @ st.unsqueeze(2) - rhs)[:, :, 0].norm(dim=1)
    bary = torch.stack([1 - st.sum(1), st[:, 0], st[:, 1]], dim=1)
    return bary, residual


def test_samples_lie_on_their_faces_with_face_normals():
    torch.manual_seed(0)
    verts, faces = stacked_triangles(12, seed=1)
    samples, normals = sample_points_from_meshes(
        Meshes([verts], [faces]), num_samples=3000, return_normals=True
    )
    assert samples.shape == normals.shape == (1, 3000, 3)
    face = samples[0, :, 2].round().long()
    torch.testing.assert_close(samples[0, :, 2], face.to(samples.dtype))
    bary, residual = barycentric(samples[0], verts[faces[face]])
    assert residual.max() < 1e-5
    assert bary.min() > -1e-5 and bary.max() < 1 + 1e-5
    # The alternate winding flips the normal: odd faces face -z.
    up = torch.where(face % 2 == 0, 1.0, -1.0)
    expected = torch.stack([torch.zeros_like(up), torch.zeros_like(up), up], dim=1)
    torch.testing.assert_close(normals[0], expected)


def test_samples_on_random_mesh_surface():
    # A generic (connected, non-planar) mesh: every sample is on some face.
    g = torch.Generator().manual_seed(5)
    verts = torch.randn(10, 3, generator=g)
    faces = torch.stack([torch.randperm(10, generator=g)[:3] for _ in range(12)])
    torch.manual_seed(1)
    samples = sample_points_from_meshes(Meshes([verts], [faces]), num_samples=400)[0]
    tri = verts[faces]  # (F, 3, 3)
    P, F = samples.shape[0], faces.shape[0]
    bary, residual = barycentric(
        samples.repeat_interleave(F, 0), tri.repeat(P, 1, 1)
    )  # all sample x face pairs
    inside = (bary.min(1).values > -1e-4) & (residual < 1e-4)
    assert inside.view(P, F).any(1).all()


def test_face_counts_proportional_to_area():
    torch.manual_seed(2)
    verts, faces = stacked_triangles(20, seed=3)
    n = 40000
    samples = sample_points_from_meshes(Meshes([verts], [faces]), num_samples=n)
    counts = torch.bincount(samples[0, :, 2].round().long(), minlength=20).double()
    areas = tri_areas(verts, faces).double()
    expected = n * areas / areas.sum()
    stat = ((counts - expected) ** 2 / expected).sum().item()
    assert stat < chi2.ppf(0.9999, df=19)
    # ... and far from uniform over faces, so the test can tell the two apart.
    uniform = torch.full_like(expected, n / 20)
    assert ((counts - uniform) ** 2 / uniform).sum().item() > chi2.ppf(0.9999, df=19)


def test_uniform_inside_each_triangle():
    # The four midpoint sub-triangles have equal areas: each gets a quarter of the samples.
    torch.manual_seed(3)
    verts = torch.tensor([[0.0, 0, 0], [3, 0, 0], [0.5, 2, 0]])
    n = 20000
    samples = sample_points_from_meshes(Meshes([verts], [torch.tensor([[0, 1, 2]])]), n)[0]
    bary, _ = barycentric(samples, verts.expand(n, 3, 3))
    corner = torch.where(bary > 0.5)  # in the sub-triangle at that corner, else the middle one
    region = torch.full((n,), 3, dtype=torch.long)
    region[corner[0]] = corner[1]
    counts = torch.bincount(region, minlength=4).double()
    stat = ((counts - n / 4) ** 2 / (n / 4)).sum().item()
    assert stat < chi2.ppf(0.9999, df=3)


def sample_loop(verts_list, faces_list, num_samples):
    """Reference with the same random draws (face draws, then barycentric ones), inverting the
    area CDF and combining corners one sample at a time."""
    valid = [i for i, f in enumerate(faces_list) if f.shape[0] > 0]
    face_draws = torch.rand(len(valid), num_samples, dtype=torch.float64)
    uv = torch.rand(2, len(valid), num_samples, dtype=verts_list[valid[0]].dtype)
    out = [verts_list[valid[0]].new_zeros(num_samples, 3) * 0 for _ in faces_list]
    for r, i in enumerate(valid):
        with torch.no_grad():
            cdf = tri_areas(verts_list[i], faces_list[i]).double().cumsum(0)
            cdf = cdf / cdf[-1]
        rows = []
        for s in range(num_samples):
            face = next(k for k in range(len(cdf)) if cdf[k] > face_draws[r, s])
            a, b, c = verts_list[i][faces_list[i][face]]
            u, v = uv[0, r, s].sqrt(), uv[1, r, s]
            rows.append((1 - u) * a + u * (1 - v) * b + u * v * c)
        out[i] = torch.stack(rows)
    return torch.stack(out)


def ragged_batch(seed: int):
    g = torch.Generator().manual_seed(seed)
    verts_list = [torch.randn(n, 3, generator=g) for n in (6, 4, 9, 5)]
    faces_list = [
        torch.stack([torch.randperm(6, generator=g)[:3] for _ in range(5)]),
        torch.zeros(0, 3, dtype=torch.long),
        torch.stack([torch.randperm(9, generator=g)[:3] for _ in range(11)]),
        torch.zeros(0, 3, dtype=torch.long),
    ]
    return verts_list, faces_list


def test_matches_loop_forward_backward_ragged():
    verts_list, faces_list = ragged_batch(seed=4)
    v1 = [v.clone().requires_grad_(True) for v in verts_list]
    v2 = [v.clone().requires_grad_(True) for v in verts_list]
    torch.manual_seed(7)
    out = sample_points_from_meshes(Meshes(v1, faces_list), num_samples=30)
    torch.manual_seed(7)
    ref = sample_loop(v2, faces_list, 30)
    torch.testing.assert_close(out, ref)
    assert out[1].abs().max() == 0 and out[3].abs().max() == 0
    grad = torch.randn_like(out)
    g1 = torch.autograd.grad(out, v1, grad, allow_unused=True)
    g2 = torch.autograd.grad(ref, v2, grad, allow_unused=True)
    for a, b, v in zip(g1, g2, verts_list):
        a = torch.zeros_like(v) if a is None else a
        b = torch.zeros_like(v) if b is None else b
        torch.testing.assert_close(a, b)


def test_gradient_reaches_verts():
    # Barycentric weights sum to one, so d(sum of samples)/d(verts) sums to N_valid * S.
    verts_list, faces_list = ragged_batch(seed=6)
    leaves = [v.clone().requires_grad_(True) for v in verts_list]
    samples, normals = sample_points_from_meshes(
        Meshes(leaves, faces_list), num_samples=50, return_normals=True
    )
    samples.sum().backward()
    total = sum(v.grad.sum(0) for v in leaves if v.grad is not None)
    torch.testing.assert_close(total, torch.full((3,), 100.0))
    assert normals[1].abs().max() == 0 and normals[0].norm(dim=1).sub(1).abs().max() < 1e-5


def test_deterministic_under_seed():
    meshes = Meshes(*ragged_batch(seed=8))
    torch.manual_seed(11)
    a = sample_points_from_meshes(meshes, 64, return_normals=True)
    torch.manual_seed(11)
    b = sample_points_from_meshes(meshes, 64, return_normals=True)
    c = sample_points_from_meshes(meshes, 64, return_normals=True)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a[0], c[0])


def test_double_precision_and_degenerate_mesh():
    verts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [2, 0, 0]], dtype=torch.float64)
    flat = Meshes([verts], [torch.tensor([[0, 1, 2]])])
    samples = sample_points_from_meshes(flat, 10)
    assert samples.dtype == torch.float64
    assert samples[0, :, 1:].abs().max() == 0 and (samples[0, :, 0] <= 2).all()


def test_invalid_inputs():
    meshes = Meshes(*ragged_batch(seed=9))
    with pytest.raises(ValueError, match="num_samples"):
        sample_points_from_meshes(meshes, 0)
    with pytest.raises(ValueError, match="num_samples"):
        sample_points_from_meshes(meshes, 2.5)
    with pytest.raises(ValueError, match="textures"):
        sample_points_from_meshes(meshes, 10, return_textures=True)
    with pytest.raises(ValueError, match="Meshes are empty"):
        sample_points_from_meshes(Meshes([torch.rand(3, 3)], [torch.zeros(0, 3).long()]))
    with pytest.raises(ValueError, match="Meshes are empty"):
        sample_points_from_meshes(Meshes([torch.tensor([])] * 2, [torch.tensor([])] * 2))
    with pytest.raises(ValueError, match="Meshes are empty"):
        sample_points_from_meshes(Meshes([], []))
    bad = torch.rand(3, 3)
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        sample_points_from_meshes(Meshes([bad], [torch.tensor([[0, 1, 2]])]))


@pytest.mark.parametrize("power", [1, 4, 12])
def test_guided_search_equals_binary_search(power):
    # Skewed CDFs crowd many faces into one bucket and exercise the binary-search fallback.
    g = torch.Generator().manual_seed(power)
    weights = torch.rand(4, 257, generator=g, dtype=torch.float64) ** power
    weights[torch.rand(4, 257, generator=g) < 0.2] = 0  # zero-area faces are never drawn
    weights[:, 0] += 1e-6
    cdf = weights.cumsum(1)
    cdf = cdf / cdf[:, -1:]
    draws = torch.rand(4, 3000, generator=g, dtype=torch.float64)
    draws[:, :50] = cdf[:, :50]  # draws exactly on a boundary
    got = _guided_search(cdf, draws)
    torch.testing.assert_close(got, torch.searchsorted(cdf, draws, right=True), rtol=0, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_samples_on_faces():
    verts, faces = stacked_triangles(12, seed=4)
    torch.manual_seed(0)
    samples, normals = sample_points_from_meshes(
        Meshes([verts.cuda()], [faces.cuda()]), num_samples=2000, return_normals=True
    )
    samples, normals = samples.cpu(), normals.cpu()
    face = samples[0, :, 2].round().long()
    bary, residual = barycentric(samples[0], verts[faces[face]])
    assert residual.max() < 1e-5 and bary.min() > -1e-5
    torch.testing.assert_close(normals[0, :, 2].abs(), torch.ones(2000))


@pytest.mark.parametrize("scale", [1e18, 1e30, 3e37])
def test_huge_finite_coordinates_sample_like_the_unit_mesh(scale):
    # Before: float32 areas overflowed to inf, the CDF became NaN and its int64 face index
    # raised "index -9223372036854775807 is out of bounds".
    from meshrecon.ops import ico_sphere

    sphere = ico_sphere(2)
    v, f = sphere.verts_packed(), sphere.faces_packed()
    torch.manual_seed(0)
    ref, ref_n = sample_points_from_meshes(Meshes([v, v], [f, f]), 2000, return_normals=True)
    torch.manual_seed(0)
    got, got_n = sample_points_from_meshes(
        Meshes([v, v * scale], [f, f]), 2000, return_normals=True
    )
    # Same draws, same faces: the huge mesh's samples are the unit mesh's, scaled.
    torch.testing.assert_close(got[0], ref[0])
    torch.testing.assert_close(got[1] / scale, ref[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_n, ref_n, rtol=0, atol=1e-6)


def test_replay_samples_gives_the_recorded_points_and_their_gradients():
    """Inside replay_samples, each call uses the next recorded (face, barycentric) draw: the
    points are those combinations of the face corners (empty meshes stay zero rows), the
    normals the faces' normals, gradients reach the vertices, and no random number is used."""
    v1, f1 = stacked_triangles(4, seed=3, dtype=torch.float64)
    v2, f2 = stacked_triangles(3, seed=4, dtype=torch.float64)
    empty = (torch.zeros(0, 3, dtype=torch.float64), torch.zeros(0, 3, dtype=torch.int64))
    verts = [v1.requires_grad_(True), empty[0], v2]
    meshes = Meshes(verts=verts, faces=[f1, empty[1], f2])
    # Packed faces: mesh 0 owns 0..3, mesh 2 owns 4..6.
    face_idx = torch.tensor([[0, 3, 3, 1], [4, 6, 5, 4]])
    bary = torch.rand(3, 2, 4, dtype=torch.float64)
    bary = bary / bary.sum(0, keepdim=True)
    state = torch.random.get_rng_state()
    with replay_samples([(face_idx, bary), (face_idx, bary)]) as left:
        pts, nrm = sample_points_from_meshes(meshes, 4, return_normals=True)
        assert len(left) == 1
        again = sample_points_from_meshes(meshes, 4)
        assert not left
    assert torch.equal(torch.random.get_rng_state(), state)
    tri = meshes.verts_packed()[meshes.faces_packed()]
    want = (bary.permute(1, 2, 0)[..., None] * tri[face_idx]).sum(2)
    torch.testing.assert_close(pts[[0, 2]], want, rtol=0, atol=1e-14)
    assert torch.equal(pts[1], torch.zeros(4, 3, dtype=torch.float64))
    assert torch.equal(again, pts)
    # The stacked triangles lie in planes z = k, wound alternately: normals are +-z.
    assert torch.equal(nrm[[0, 2], :, :2].abs(), torch.zeros(2, 4, 2, dtype=torch.float64))
    (g,) = torch.autograd.grad(pts[0, 1, 0], v1)
    assert torch.allclose(g[f1[3], 0], bary[:, 0, 1])


def test_replay_samples_refuses_draws_that_do_not_fit():
    v, f = stacked_triangles(4, seed=5)
    mesh = Meshes(verts=[v, v], faces=[f, f])
    good = (torch.tensor([[0, 1], [4, 7]]), torch.full((3, 2, 2), 1 / 3))
    with replay_samples([]), pytest.raises(ValueError, match="no draw left"):
        sample_points_from_meshes(mesh, 2)
    with replay_samples([good]), pytest.raises(ValueError, match="does not fit"):
        sample_points_from_meshes(mesh, 3)
    outside = (torch.tensor([[0, 4], [4, 7]]), good[1])  # face 4 belongs to mesh 1
    with replay_samples([outside]), pytest.raises(ValueError, match="outside"):
        sample_points_from_meshes(mesh, 2)
    # Outside a block, sampling is random again.
    assert sample_points_from_meshes(mesh, 2).shape == (2, 2, 3)
