"""Benchmark GraphConv: Mesh R-CNN's mesh-head layer size on a batch of level-4 ico spheres."""

from __future__ import annotations

import torch

from meshrecon.ops.graph_conv import GraphConv
from meshrecon.utils.benchmark import BenchCase

SUITE = "ops"


def _sphere_edges(num_meshes: int, level: int) -> tuple[int, torch.Tensor]:
    """(verts per mesh, packed edges) of a batch of ico spheres."""
    try:
        from meshrecon.ops.ico_sphere import ico_sphere

        mesh = ico_sphere(level)
        verts, edges = mesh.verts_packed(), mesh.edges_packed()
    except ImportError:
        import trimesh

        sphere = trimesh.creation.icosphere(subdivisions=level)
        verts = torch.as_tensor(sphere.vertices, dtype=torch.float32)
        edges = torch.as_tensor(sphere.edges_unique, dtype=torch.int64)
    num_verts = verts.shape[0]
    offsets = torch.arange(num_meshes).repeat_interleave(edges.shape[0]) * num_verts
    return num_verts, edges.repeat(num_meshes, 1) + offsets[:, None]


def _make(num_meshes: int, level: int, dim_in: int, dim_out: int):
    def make(device: torch.device):
        num_verts, edges = _sphere_edges(num_meshes, level)
        torch.manual_seed(0)
        conv = GraphConv(dim_in, dim_out).to(device)
        feats = torch.randn(num_meshes * num_verts, dim_in, device=device, requires_grad=True)
        edges = edges.to(device)

        def run(backward: bool):
            if not backward:
                with torch.no_grad():
                    return conv(feats, edges)
            out = conv(feats, edges)
            out.sum().backward()
            return out

        return run

    return make


CASES = [
    BenchCase(
        op="GraphConv",
        size="128->128, 16 x 2562 verts (ico_sphere(4))",
        make=_make(16, 4, 128, 128),
        reference_ms={"fwd+bwd": 240.0},
    ),
    BenchCase(
        op="GraphConv",
        size="259->128, 16 x 642 verts (ico_sphere(3))",
        make=_make(16, 3, 259, 128),
    ),
]
