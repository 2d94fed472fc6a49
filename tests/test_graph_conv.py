import pytest
import torch
from conftest import load_golden

from meshrecon.ops.graph_conv import GraphConv, gather_scatter, gather_scatter_python


def gather_scatter_loop(input: torch.Tensor, edges: torch.Tensor, directed: bool) -> torch.Tensor:
    """Obviously correct reference: one edge at a time."""
    out = [input[i] * 0 for i in range(input.shape[0])]
    for a, b in edges.tolist():
        out[a] = out[a] + input[b]
        if not directed:
            out[b] = out[b] + input[a]
    return torch.stack(out)


def random_graph(num_verts: int, num_edges: int, dim: int, seed: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(num_verts, dim, generator=g, dtype=dtype)
    edges = torch.randint(0, num_verts, (num_edges, 2), generator=g)
    return feats, edges


@pytest.mark.parametrize("directed", [False, True])
def test_golden_pytorch3d(directed):
    gold = load_golden("graph_conv")
    conv = GraphConv(16, 8, directed=directed)
    prefix = f"directed{directed}_"
    state = {k: gold[prefix + k.replace(".", "_")] for k in conv.state_dict()}
    conv.load_state_dict(state)
    out = conv(gold["feats"], gold["edges"])
    torch.testing.assert_close(out, gold[prefix + "out"], rtol=1e-5, atol=1e-6)


def test_state_dict_keys_match_checkpoints():
    conv = GraphConv(5, 7)
    assert sorted(conv.state_dict()) == ["w0.bias", "w0.weight", "w1.bias", "w1.weight"]
    assert conv.w0.weight.shape == (7, 5) and conv.w1.bias.shape == (7,)


@pytest.mark.parametrize("directed", [False, True])
@pytest.mark.parametrize("num_verts,num_edges", [(1, 0), (7, 0), (7, 20), (40, 150)])
def test_gather_scatter_matches_loop(directed, num_verts, num_edges):
    feats, edges = random_graph(num_verts, num_edges, 5, seed=num_verts + num_edges)
    x1 = feats.clone().requires_grad_(True)
    x2 = feats.clone().requires_grad_(True)
    x3 = feats.clone().requires_grad_(True)
    out1 = gather_scatter(x1, edges, directed)
    out2 = gather_scatter_loop(x2, edges, directed)
    out3 = gather_scatter_python(x3, edges, directed)
    torch.testing.assert_close(out1, out2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out3, out2, rtol=1e-5, atol=1e-6)
    grad = torch.randn_like(feats)
    out1.backward(grad)
    out2.backward(grad)
    out3.backward(grad)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x3.grad, x2.grad, rtol=1e-5, atol=1e-6)


def test_gather_scatter_directed_convention():
    # On v0 -> v1 -> v2 the update of v1 reads v2 (PyTorch3D / Morris et al.).
    feats = torch.tensor([[1.0], [10.0], [100.0]])
    edges = torch.tensor([[0, 1], [1, 2]])
    out = gather_scatter(feats, edges, directed=True)
    torch.testing.assert_close(out, torch.tensor([[10.0], [100.0], [0.0]]))
    out = gather_scatter(feats, edges, directed=False)
    torch.testing.assert_close(out, torch.tensor([[10.0], [101.0], [10.0]]))


def test_gather_scatter_half_precision_fallback():
    feats, edges = random_graph(12, 30, 4, seed=3)
    out = gather_scatter(feats.bfloat16(), edges)
    ref = gather_scatter_loop(feats, edges, directed=False)
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=5e-2)


@pytest.mark.parametrize("directed", [False, True])
def test_gather_scatter_gradcheck(directed):
    feats, edges = random_graph(6, 10, 3, seed=11, dtype=torch.float64)
    feats.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: gather_scatter(x, edges, directed), (feats,))
    assert torch.autograd.gradgradcheck(lambda x: gather_scatter(x, edges, directed), (feats,))


@pytest.mark.parametrize("directed", [False, True])
def test_graph_conv_matches_loop_forward_backward(directed):
    torch.manual_seed(0)
    feats, edges = random_graph(30, 80, 6, seed=5)
    conv = GraphConv(6, 4, directed=directed)
    x1 = feats.clone().requires_grad_(True)
    x2 = feats.clone().requires_grad_(True)
    out1 = conv(x1, edges)
    w0, w1 = conv.w0, conv.w1
    out2 = w0(x2) + gather_scatter_loop(w1(x2), edges, directed)
    torch.testing.assert_close(out1, out2, rtol=1e-5, atol=1e-6)
    grad = torch.randn_like(out1)
    g1 = torch.autograd.grad(out1, [x1, w0.weight, w1.weight, w1.bias], grad)
    g2 = torch.autograd.grad(out2, [x2, w0.weight, w1.weight, w1.bias], grad)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_graph_conv_gradcheck():
    torch.manual_seed(1)
    feats, edges = random_graph(5, 7, 3, seed=2, dtype=torch.float64)
    conv = GraphConv(3, 2).double()
    feats.requires_grad_(True)
    params = (feats, conv.w0.weight, conv.w0.bias, conv.w1.weight, conv.w1.bias)

    def fn(x, w0, b0, w1, b1):
        return x @ w0.t() + b0 + gather_scatter(x @ w1.t() + b1, edges)

    assert torch.autograd.gradcheck(fn, params)


def test_init_modes():
    torch.manual_seed(0)
    conv = GraphConv(64, 64, init="normal")
    assert conv.w0.bias.abs().max() == 0 and conv.w1.bias.abs().max() == 0
    assert 0.005 < conv.w0.weight.std().item() < 0.015
    conv = GraphConv(4, 3, init="zero")
    assert conv.w0.weight.abs().max() == 0 and conv.w1.weight.abs().max() == 0
    out = conv(torch.randn(5, 4), torch.tensor([[0, 1]]))
    # Zero weights leave only the biases: w0.b for every vertex plus w1.b once per neighbour.
    expected = conv.w0.bias.expand(5, 3) + torch.tensor([1, 1, 0, 0, 0.0])[:, None] * conv.w1.bias
    torch.testing.assert_close(out, expected)


def test_empty_graph_keeps_grad():
    conv = GraphConv(4, 3)
    x = torch.zeros(0, 4, requires_grad=True)
    out = conv(x, torch.zeros(0, 2, dtype=torch.long))
    assert out.shape == (0, 3)
    out.sum().backward()
    assert x.grad.shape == (0, 4)


def test_empty_graph_given_as_1d_tensors_like_pytorch3d():
    # PyTorch3D returns zeros((0, output_dim)) that carry gradients (it raised here before).
    conv = GraphConv(3, 2)
    verts = torch.tensor([], requires_grad=True)
    out = conv(verts, torch.tensor([]))
    assert out.shape == (0, 2) and out.requires_grad
    out.sum().backward()
    assert verts.grad.shape == (0,)
    # No edges given as torch.tensor([]): the same as a (0, 2) edge tensor.
    x = torch.randn(4, 3)
    torch.testing.assert_close(conv(x, torch.tensor([])), conv(x, torch.zeros(0, 2).long()))


def test_repr():
    assert repr(GraphConv(3, 5, directed=True)) == "GraphConv(3 -> 5, directed=True)"


def test_invalid_inputs():
    with pytest.raises(ValueError, match="init"):
        GraphConv(3, 4, init="xavier")
    with pytest.raises(ValueError, match="input_dim"):
        GraphConv(0, 4)
    conv = GraphConv(3, 4)
    with pytest.raises(ValueError, match="verts"):
        conv(torch.randn(5, 2), torch.zeros(0, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="edges"):
        conv(torch.randn(5, 3), torch.zeros(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="edges"):
        conv(torch.randn(5, 3), torch.tensor([[0, 5]]))
    with pytest.raises(ValueError, match="edges"):
        conv(torch.randn(5, 3), torch.tensor([[-1, 2]]))
    with pytest.raises(ValueError, match="integer"):
        gather_scatter(torch.randn(5, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="input"):
        gather_scatter(torch.randn(5), torch.zeros(2, 2, dtype=torch.long))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("directed", [False, True])
def test_cuda_matches_cpu(directed):
    feats, edges = random_graph(50, 200, 8, seed=9)
    x_cpu = feats.clone().requires_grad_(True)
    x_gpu = feats.cuda().requires_grad_(True)
    out_cpu = gather_scatter(x_cpu, edges, directed)
    out_gpu = gather_scatter(x_gpu, edges.cuda(), directed)
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(out_cpu)
    out_cpu.backward(grad)
    out_gpu.backward(grad.cuda())
    torch.testing.assert_close(x_gpu.grad.cpu(), x_cpu.grad, rtol=1e-5, atol=1e-5)


def _count_builds(monkeypatch):
    import meshrecon.ops.graph_conv as gc

    builds = []
    real = gc._adjacency_csr
    monkeypatch.setattr(gc, "_adjacency_csr", lambda *a: builds.append(1) or real(*a))
    return builds


@pytest.mark.parametrize("directed", [False, True])
def test_adjacency_built_once_per_mesh(monkeypatch, directed):
    """Several convolutions over one mesh, forward and backward, build its matrices once; the
    offset mesh of the next refinement stage (same faces) reuses them."""
    from meshrecon.ops import ico_sphere
    from meshrecon.ops.graph_conv import graph_adjacency

    builds = _count_builds(monkeypatch)
    meshes = ico_sphere(1)
    edges = meshes.edges_packed()
    feats = torch.randn(
        meshes.verts_packed().shape[0], 4, generator=torch.Generator().manual_seed(3)
    )
    x = feats.clone().requires_grad_(True)
    out = x
    for _ in range(3):
        out = gather_scatter(out, edges, directed, graph_adjacency(meshes, out, directed))
    out.sum().backward()
    # One matrix for an undirected graph (it is symmetric), A and A^T for a directed one.
    assert len(builds) == (2 if directed else 1)
    x_ref = feats.clone().requires_grad_(True)
    ref = x_ref
    for _ in range(3):
        ref = gather_scatter_loop(ref, edges, directed)
    ref.sum().backward()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-5)
    moved = meshes.offset_verts(torch.randn(meshes.verts_packed().shape))
    assert moved.adjacency_packed(directed) is meshes.adjacency_packed(directed)
    assert len(builds) == (2 if directed else 1)


def test_a_changed_mesh_gets_its_own_adjacency():
    """New faces (a new Meshes, a subdivided one) or another dtype never see a stale matrix;
    copies on another device (to / clone / detach) rebuild theirs."""
    from meshrecon.ops import SubdivideMeshes, ico_sphere
    from meshrecon.structures import Meshes

    a = ico_sphere(0)
    feats = torch.randn(12, 3, generator=torch.Generator().manual_seed(4))
    first = gather_scatter(feats, a.edges_packed(), adjacency=a.adjacency_packed())
    # The same vertices with other faces (vertex indices permuted: another graph).
    perm = torch.roll(torch.arange(12), 5)
    b = Meshes(verts=[a.verts_packed()], faces=[perm[a.faces_packed()]])
    out_b = gather_scatter(feats, b.edges_packed(), adjacency=b.adjacency_packed())
    torch.testing.assert_close(out_b, gather_scatter_loop(feats, b.edges_packed(), False))
    assert not torch.allclose(out_b, first)
    c = SubdivideMeshes()(a)
    assert c.adjacency_packed()[0].shape == (42, 42)
    a64 = a.adjacency_packed(dtype=torch.float64)
    assert a64[0].dtype == torch.float64 and a.adjacency_packed()[0].dtype == torch.float32
    # An adjacency of another dtype than the features is not used; one of another size fails.
    out64 = gather_scatter(feats.double(), a.edges_packed(), adjacency=a.adjacency_packed())
    torch.testing.assert_close(out64, gather_scatter_loop(feats.double(), a.edges_packed(), False))
    with pytest.raises(ValueError, match="adjacency"):
        gather_scatter(feats, a.edges_packed(), adjacency=c.adjacency_packed())
    for copy in (a.clone(), a.detach(), a.to("cpu", copy=True)):
        assert copy._adjacency_packed == {}
        torch.testing.assert_close(
            gather_scatter(feats, copy.edges_packed(), adjacency=copy.adjacency_packed()), first
        )


def test_no_process_global_adjacency_cache(monkeypatch):
    """The op keeps nothing between calls: the same edges tensor twice builds twice (the
    cache lives on the mesh), and the module holds no cache object."""
    import meshrecon.ops.graph_conv as gc

    builds = _count_builds(monkeypatch)
    feats, edges = random_graph(20, 40, 3, seed=4)
    gather_scatter(feats, edges)
    gather_scatter(feats, edges)
    assert len(builds) == 2
    assert not [n for n in vars(gc) if "cache" in n.lower() and not n.startswith("__")]
    held = {n for n, v in vars(gc).items() if isinstance(v, dict | list | set)}
    assert not {n for n in held if not n.startswith("__")}, held


def test_graph_conv_under_inference_mode():
    """Inference tensors have no version counter: their matrices are built, not cached."""
    feats, edges = random_graph(12, 30, 3, seed=5)
    conv = GraphConv(3, 4)
    with torch.inference_mode():
        e, x = edges.clone(), feats.clone()
        first = conv(x, e)
        e[:, 0] = e[:, 1]  # in place, which an inference tensor's version would not show
        second = conv(x, e)
    expected = conv.w0(feats) + gather_scatter_loop(conv.w1(feats), e.clone(), False)
    torch.testing.assert_close(second, expected.detach(), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(first, second)
