"""The original Pixel2Mesh head: block sizes, unpooling, perceptual pooling, losses, training."""

from __future__ import annotations

import pytest
import torch

from meshrecon.modeling.heads.pixel2mesh import (
    GResBlock,
    Pixel2MeshGResNetHead,
    laplacian_coordinates,
    perceptual_pool,
    perceptual_pool_linear,
    pixel2mesh_losses,
    unpool,
)
from meshrecon.modeling.meta_arch.single_view import ViewBatch
from meshrecon.ops import ellipsoid, sample_points_from_meshes
from meshrecon.render.cameras import project_points
from meshrecon.structures import Meshes

SIZE = 32
K = torch.tensor([[40.0, 40.0, 16.0, 16.0]])


def _views(n=1, points=None, normals=None):
    return ViewBatch(image_size=(SIZE, SIZE), K=K.repeat(n, 1), points=points, normals=normals)


def test_block_sizes_and_graph_convs():
    head = Pixel2MeshGResNetHead(feature_channels=[4, 6], hidden_dim=8).eval()
    feats = [torch.randn(2, 4, 16, 16), torch.randn(2, 6, 8, 8)]
    stages = head.deform(feats, _views(2))
    sizes = [(a.verts_packed().shape[0] // 2, a.faces_packed().shape[0] // 2) for _, a in stages]
    assert sizes == [(156, 308), (618, 1232), (2466, 4928)]
    assert [b.num_gconvs for b in head.blocks] == [14, 14, 14]
    # Pooled input: xyz + 4 + 6 channels, then the previous block's hidden features.
    assert head.blocks[0].conv_in.w0.in_features == 13
    assert head.blocks[1].conv_in.w0.in_features == 13 + 8
    out = head(feats, _views(2))
    assert out[0]["mesh"][0].shape == (2466, 3) and out[0]["mesh"][1].shape == (4928, 3)


def test_unpooling_places_new_vertices_at_edge_midpoints():
    mesh = ellipsoid(0)
    feats = torch.randn(156, 5)
    new, new_feats = unpool(mesh, feats)
    edges = mesh.edges_packed()
    verts = mesh.verts_packed()
    assert new.verts_packed().shape[0] == 156 + edges.shape[0] == 618
    torch.testing.assert_close(new.verts_packed()[:156], verts)
    torch.testing.assert_close(new.verts_packed()[156:], verts[edges].mean(dim=1))
    torch.testing.assert_close(new_feats[156:], feats[edges].mean(dim=1))
    # Same topology as the level-1 ellipsoid (its vertices are projected onto the surface).
    assert torch.equal(new.faces_packed(), ellipsoid(1).faces_packed())


def test_perceptual_pooling_samples_the_projected_pixel():
    H = W = SIZE
    rows = torch.arange(H, dtype=torch.float32)[:, None].expand(H, W)
    cols = torch.arange(W, dtype=torch.float32)[None, :].expand(H, W)
    full = torch.stack([rows, cols])[None]  # stride 1: channel 0 = row, 1 = column
    half = torch.stack([rows[::2, ::2] // 2, cols[::2, ::2] // 2])[None]  # stride 2
    # A vertex projecting to the centre of pixel (row 9, col 5): u = 5.5, v = 9.5.
    Z = 1.3
    X = (K[0, 2] - 5.5) * Z / K[0, 0]
    Y = (K[0, 3] - 9.5) * Z / K[0, 1]
    v = torch.tensor([[[X, Y, Z]]])
    torch.testing.assert_close(project_points(v[0], K[0]), torch.tensor([[5.5, 9.5]]))
    out = perceptual_pool([full, half], v, K, (H, W))
    assert out.shape == (1, 1, 3 + 2 + 2)
    torch.testing.assert_close(out[0, 0, :3], v[0, 0])
    torch.testing.assert_close(out[0, 0, 3:5], torch.tensor([9.0, 5.0]))
    # On the stride-2 map, the centre of cell (4, 2) is image position (5, 9): exact there.
    v2 = torch.tensor([[[(K[0, 2] - 5.0) * Z / K[0, 0], (K[0, 3] - 9.0) * Z / K[0, 1], Z]]])
    torch.testing.assert_close(
        perceptual_pool([half], v2, K, (H, W))[0, 0, 3:], torch.tensor([4.0, 2.0])
    )
    # Halfway between two pixel centres: the bilinear mean.
    v3 = torch.tensor([[[(K[0, 2] - 6.0) * Z / K[0, 0], Y, Z]]])
    torch.testing.assert_close(
        perceptual_pool([full], v3, K, (H, W))[0, 0, 3:], torch.tensor([9.0, 5.5])
    )


def test_laplacian_and_move_terms_vanish_without_deformation():
    mesh = ellipsoid(0)
    pts, nrm = sample_points_from_meshes(mesh, 400, return_normals=True)
    losses = pixel2mesh_losses(mesh, mesh, pts, nrm, block=1)
    assert float(losses["loss_p2m_laplacian_1"]) == 0.0
    assert float(losses["loss_p2m_move_1"]) == 0.0
    assert "loss_p2m_move_0" not in pixel2mesh_losses(mesh, mesh, pts, nrm, block=0)
    # Uniform Laplacian coordinates are translation invariant.
    shifted = mesh.offset_verts(torch.tensor([0.1, 0.2, 0.3]).expand(156, 3))
    torch.testing.assert_close(
        laplacian_coordinates(shifted.verts_packed(), mesh.edges_packed()),
        laplacian_coordinates(mesh.verts_packed(), mesh.edges_packed()),
    )


def test_normal_loss_is_zero_for_edges_orthogonal_to_the_normals():
    # A flat grid in the plane z = 1 with ground-truth normals +z.
    xs = torch.linspace(-1, 1, 5)
    verts = torch.stack(torch.meshgrid(xs, xs, indexing="ij"), -1).reshape(-1, 2)
    verts = torch.cat([verts, torch.ones(25, 1)], 1)
    faces = []
    for i in range(4):
        for j in range(4):
            a = i * 5 + j
            faces += [[a, a + 1, a + 5], [a + 1, a + 6, a + 5]]
    flat = Meshes(verts=[verts], faces=[torch.tensor(faces)])
    gt = verts[None]
    up = torch.tensor([0.0, 0.0, 1.0]).expand(1, 25, 3)
    losses = pixel2mesh_losses(flat, flat, gt, up, block=0)
    assert float(losses["loss_p2m_normal_0"]) < 1e-6
    assert float(losses["loss_p2m_chamfer_0"]) == 0.0
    tilted = pixel2mesh_losses(
        flat, flat, gt, torch.tensor([1.0, 0.0, 0.0]).expand(1, 25, 3), block=0
    )
    assert float(tilted["loss_p2m_normal_0"]) > 0.1


def test_gresblock_shortcut_structure():
    block = GResBlock(5, 8, num_gconvs=6)
    assert len(block.res_convs) == 4
    mesh = ellipsoid(0)
    offsets, hidden = block(torch.randn(156, 5), mesh.edges_packed())
    assert offsets.shape == (156, 3) and hidden.shape == (156, 8)
    # conv_out starts small: the first deformation stays near the input.
    assert float(offsets.detach().abs().max()) < 0.1


def test_training_steps_lower_the_loss():
    torch.manual_seed(0)
    head = Pixel2MeshGResNetHead(
        feature_channels=[4],
        hidden_dim=8,
        num_blocks=1,
        num_gconvs=4,
        ellipsoid_center=(0.0, 0.0, 1.5),
    ).train()
    target = ellipsoid(1, axes=(0.3, 0.2, 0.25), center=(0.05, 0.0, 1.4))
    pts, nrm = sample_points_from_meshes(target, 600, return_normals=True)
    feats = [torch.randn(1, 4, 8, 8)]
    views = _views(1, pts, nrm)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)

    def total():
        return sum(head(feats, views).values())

    with torch.no_grad():
        before = float(total())
    for _ in range(15):
        opt.zero_grad()
        total().backward()
        opt.step()
    with torch.no_grad():
        after = float(total())
    assert after < 0.5 * before, (before, after)


def test_perceptual_pool_linear_matches_pooling_then_multiplying():
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(2, c, s, s, generator=g, dtype=torch.float64) for c, s in ((3, 8), (4, 5))]
    # Some vertices project outside the image (border clamping) or lie behind the camera.
    verts = torch.randn(2, 11, 3, generator=g, dtype=torch.float64) * 0.4
    verts[..., 2] += 1.0
    verts[0, 0, 2] = -0.3
    weight = torch.randn(5, 3 + 7, generator=g, dtype=torch.float64)
    results = []
    for fast in (False, True):
        f = [x.clone().requires_grad_() for x in feats]
        v, w = verts.clone().requires_grad_(), weight.clone().requires_grad_()
        Kd = K.double().repeat(2, 1)
        if fast:
            out = perceptual_pool_linear(f, v, Kd, (SIZE, SIZE), w)
        else:
            out = perceptual_pool(f, v, Kd, (SIZE, SIZE)) @ w.T
        out.backward(torch.cos(torch.arange(out.numel(), dtype=out.dtype)).view_as(out))
        results.append([out.detach(), *(x.grad for x in f), v.grad, w.grad])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="weight"):
        perceptual_pool_linear(feats, verts, K.double().repeat(2, 1), (SIZE, SIZE), weight[:, :9])


def test_head_deforms_as_pooling_then_the_first_graph_conv():
    """The head projects before pooling; the blocks' outputs and every gradient are those of
    the direct order (pool, concatenate the hidden features, run the block)."""
    torch.manual_seed(0)
    head = Pixel2MeshGResNetHead(feature_channels=[3, 4], hidden_dim=6, num_gconvs=4).double()
    for p in head.parameters():
        torch.nn.init.normal_(p, std=0.2)
    feats = [torch.randn(2, 3, 16, 16).double(), torch.randn(2, 4, 8, 8).double()]
    views = ViewBatch(image_size=(SIZE, SIZE), K=K.double().repeat(2, 1))

    def direct(features):
        meshes = head.initial_meshes(2)
        meshes = Meshes([v.double() for v in meshes.verts_list()], meshes.faces_list())
        hidden, out = None, []
        for b, block in enumerate(head.blocks):
            if b > 0:
                meshes, hidden = unpool(meshes, hidden)
            x = perceptual_pool(features, meshes.verts_padded(), views.K, views.image_size)
            x = x.flatten(0, 1)
            if hidden is not None:
                x = torch.cat([x, hidden], dim=1)
            offsets, hidden = block(x, meshes.edges_packed())
            meshes = meshes.offset_verts(offsets)
            out.append(meshes.verts_packed())
        return out

    results = []
    for fn in (direct, lambda f: [new.verts_packed() for _, new in head.deform(f, views)]):
        f = [x.clone().requires_grad_() for x in feats]
        head.zero_grad()
        outs = fn(f)
        sum(o.square().sum() for o in outs).backward()
        grads = [x.grad for x in f] + [p.grad.clone() for p in head.parameters()]
        results.append(([o.detach() for o in outs], grads))
    (want, want_grads), (got, got_grads) = results
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)
    for a, b in zip(got_grads, want_grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
