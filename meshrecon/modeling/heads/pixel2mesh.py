"""The original Pixel2Mesh (Wang et al., ECCV 2018): ellipsoid -> three G-ResNet blocks.

Each block pools image features at the projections of the current vertices (perceptual
feature pooling through the view's intrinsics ``K``), runs a graph residual network (a graph
conv in, pairs of graph convs with a shortcut around each pair, a graph conv out to 3 offsets)
and moves the vertices; between blocks the mesh and the hidden vertex features are unpooled:
a new vertex at every edge midpoint, each triangle split into four. From Pixel2Mesh's ellipsoid
(:func:`meshrecon.ops.ellipsoid`) this gives 156 -> 618 -> 2466 vertices and 308 -> 1232 ->
4928 faces.

Graph convolutions are Pixel2Mesh's: ``f'_i = W0 f_i + W1 mean_{j in N(i)} f_j + b`` (the
authors' code normalizes the neighbour sum); every conv but the last of a block is followed by
ReLU, and each shortcut averages, ``h <- (h + F(h)) / 2``, as in the authors' code. The last conv
predicts a displacement added to the block's input positions (the code predicts positions; a
displacement starts training from the ellipsoid instead of from the origin).

Losses after every block, with the authors' weights by default (see ``MODEL.PIXEL2MESH``):
Chamfer between the vertices and the ground-truth points, Pixel2Mesh's normal loss (edges
should be orthogonal to the ground-truth normal nearest their first vertex), edge length,
Laplacian preservation within a block and vertex move (blocks 2 and 3).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from meshrecon.config import configurable
from meshrecon.layers import ShapeSpec
from meshrecon.modeling.heads.build import MESH_HEAD_REGISTRY
from meshrecon.ops import SubdivideMeshes, ellipsoid, gather_scatter, knn_points
from meshrecon.ops.graph_conv import graph_adjacency
from meshrecon.render.cameras import project_points
from meshrecon.structures import Meshes, ViewBatch
from meshrecon.utils.stage_timer import stage

__all__ = [
    "GResBlock",
    "P2MGraphConv",
    "Pixel2MeshGResNetHead",
    "laplacian_coordinates",
    "perceptual_pool",
    "perceptual_pool_linear",
    "pixel2mesh_losses",
    "unpool",
]


def perceptual_pool(
    features: Sequence[torch.Tensor],
    verts: torch.Tensor,
    K: torch.Tensor,
    image_size: tuple[int, int],
    eps: float = 1e-4,
) -> torch.Tensor:
    """Sample each feature map at the vertices' image projections; append the positions.

    A vertex projecting to pixel position (u, v) (``u = cx - fx X / Z``, pixels, origin at the
    image's top-left corner, so pixel (i, j) has its centre at (j + 0.5, i + 0.5)) reads every
    map bilinearly at the same place of the image: a stride-s map at (u / s - 0.5, v / s - 0.5)
    in its own cell-centre units. Positions outside the image are clamped to its border, as
    Pixel2Mesh clamps them.

    Args:
        features: feature maps (N, C_k, H_k, W_k) covering the whole image.
        verts: (N, V, 3) camera-frame vertices (Z > 0 in front of the camera; |Z| is clamped to
            ``eps``).
        K: (N, 4) intrinsics ``[fx, fy, cx, cy]`` of the image.
        image_size: (H, W) of the image.

    Returns:
        (N, V, 3 + sum C_k): the positions, then the sampled features in map order.
    """
    grid = _pool_grid(verts, K, image_size, eps)
    out = [verts]
    for f in features:
        _check_map(f, verts)
        sampled = F.grid_sample(
            f,
            grid[:, :, None].to(f.dtype),
            mode="bilinear",
            padding_mode="border",
            align_corners=False,
        )
        out.append(sampled[..., 0].transpose(1, 2))
    return torch.cat(out, dim=-1)


def _pool_grid(verts: torch.Tensor, K: torch.Tensor, image_size: tuple[int, int], eps: float):
    """(N, V, 2) grid_sample positions of the vertices' projections (see perceptual_pool)."""
    if verts.dim() != 3 or verts.shape[-1] != 3:
        raise ValueError(f"verts must have shape (N, V, 3), got {tuple(verts.shape)}")
    if K.shape != (verts.shape[0], 4):
        raise ValueError(f"K must have shape ({verts.shape[0]}, 4), got {tuple(K.shape)}")
    z = verts[..., 2]
    z = torch.where(z < 0, -1.0, 1.0).to(z) * z.abs().clamp(min=eps)
    uv = project_points(torch.stack([verts[..., 0], verts[..., 1], z], -1), K.to(verts.dtype))
    H, W = image_size
    return torch.stack([uv[..., 0] * (2.0 / W) - 1.0, uv[..., 1] * (2.0 / H) - 1.0], -1)


def _check_map(f: torch.Tensor, verts: torch.Tensor) -> None:
    if f.dim() != 4 or f.shape[0] != verts.shape[0]:
        raise ValueError(f"features must be (N, C, H, W) maps, got {tuple(f.shape)}")


def perceptual_pool_linear(
    features: Sequence[torch.Tensor],
    verts: torch.Tensor,
    K: torch.Tensor,
    image_size: tuple[int, int],
    weight: torch.Tensor,
    eps: float = 1e-4,
) -> torch.Tensor:
    """``perceptual_pool(features, verts, K, image_size) @ weight.T``, computed the cheap way.

    Bilinear sampling is a weighted sum of map cells, so a linear map commutes with it: each
    map is first multiplied by its block of columns of ``weight`` (a 1x1 convolution), then
    sampled; the positions' block multiplies the positions. The result is the direct order's
    up to float rounding, with the same gradients, at a fraction of the cost when the maps have
    fewer cells than the mesh has vertices: the first graph conv of a block then reads
    ``out`` channels per map instead of 960 per vertex.

    Args:
        features, verts, K, image_size, eps: as for :func:`perceptual_pool`.
        weight: (out, 3 + sum C_k), the columns in :func:`perceptual_pool`'s output order.

    Returns:
        (N, V, out).
    """
    grid = _pool_grid(verts, K, image_size, eps)
    channels = [int(f.shape[1]) for f in features]
    if weight.dim() != 2 or weight.shape[1] != 3 + sum(channels):
        raise ValueError(
            f"weight must be (out, {3 + sum(channels)}) for maps of {channels} channels, got "
            f"{tuple(weight.shape)}"
        )
    w_pos, *w_maps = torch.split(weight, [3, *channels], dim=1)
    out = verts @ w_pos.T
    for f, w in zip(features, w_maps):
        _check_map(f, verts)
        projected = F.conv2d(f, w[:, :, None, None].to(f.dtype))
        sampled = F.grid_sample(
            projected,
            grid[:, :, None].to(f.dtype),
            mode="bilinear",
            padding_mode="border",
            align_corners=False,
        )
        out = out + sampled[..., 0].transpose(1, 2)
    return out


def unpool(meshes: Meshes, feats: torch.Tensor | None = None):
    """Pixel2Mesh's graph unpooling: a vertex at every edge midpoint, 1 -> 4 triangles.

    New vertices (and, with ``feats``, their features) are the means of their edge's two ends;
    the old vertices keep their indices and come first. See :class:`SubdivideMeshes`.

    Args:
        meshes: N meshes.
        feats: optional packed (sum V_n, C) vertex features.

    Returns:
        The unpooled meshes, or ``(meshes, feats)`` when ``feats`` is given.
    """
    return SubdivideMeshes()(meshes, feats)


def _vertex_degrees(edges: torch.Tensor, num_verts: int) -> torch.Tensor:
    """(num_verts,) int64 count of the edges at each vertex, at least 1.

    ``bincount`` would give the same counts, but its output size depends on the values, which
    ``torch.export`` cannot trace; a scatter into ``num_verts`` slots has a known size.
    """
    flat = edges.flatten().long()
    deg = torch.zeros(num_verts, dtype=torch.int64, device=edges.device)
    return deg.scatter_add(0, flat, torch.ones_like(flat)).clamp(min=1)


def laplacian_coordinates(
    verts: torch.Tensor,
    edges: torch.Tensor,
    adjacency: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``delta_i = v_i - mean_{j in N(i)} v_j`` for packed (V, 3) verts and (E, 2) edges
    (``adjacency``: the mesh's cached one, see :func:`gather_scatter`)."""
    deg = _vertex_degrees(edges, verts.shape[0])
    return verts - gather_scatter(verts, edges, adjacency=adjacency) / deg[:, None].to(verts.dtype)


class P2MGraphConv(nn.Module):
    """``out_i = w0(f_i) + w1(mean of the neighbours' f_j)`` (bias in ``w0`` only)."""

    def __init__(self, input_dim: int, output_dim: int) -> None:
        super().__init__()
        if input_dim <= 0 or output_dim <= 0:
            raise ValueError(f"input_dim and output_dim must be > 0, got {input_dim}, {output_dim}")
        self.w0 = nn.Linear(input_dim, output_dim)
        self.w1 = nn.Linear(input_dim, output_dim, bias=False)
        for layer in (self.w0, self.w1):
            nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(self.w0.bias)

    def forward(
        self,
        x: torch.Tensor,
        edges: torch.Tensor,
        adjacency: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """(V, input_dim) packed features, (E, 2) edges -> (V, output_dim); ``adjacency``:
        the mesh's cached one (see :func:`gather_scatter`)."""
        return self.combine(self.w0(x), self.w1(x), edges, adjacency)

    def combine(
        self,
        x_w0: torch.Tensor,
        x_w1: torch.Tensor,
        edges: torch.Tensor,
        adjacency: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The output from ``w0(x)`` and ``w1(x)`` (V, output_dim), computed by the caller."""
        deg = _vertex_degrees(edges, x_w1.shape[0])
        neigh = gather_scatter(x_w1, edges, adjacency=adjacency) / deg[:, None].to(x_w1.dtype)
        return x_w0 + neigh


class GResBlock(nn.Module):
    """A G-ResNet deformation block: ``conv_in``, ``(num_gconvs - 2) / 2`` residual pairs,
    ``conv_out`` to 3 coordinates. ``forward(x, edges) -> (offsets (V, 3), hidden (V, D))``."""

    def __init__(self, input_dim: int, hidden_dim: int, num_gconvs: int = 14) -> None:
        super().__init__()
        if num_gconvs < 2 or num_gconvs % 2:
            raise ValueError(f"num_gconvs must be an even number >= 2, got {num_gconvs}")
        self.conv_in = P2MGraphConv(input_dim, hidden_dim)
        self.res_convs = nn.ModuleList(
            P2MGraphConv(hidden_dim, hidden_dim) for _ in range(num_gconvs - 2)
        )
        self.conv_out = P2MGraphConv(hidden_dim, 3)
        # Small first offsets: training starts from the input shape.
        nn.init.normal_(self.conv_out.w0.weight, std=1e-3)
        nn.init.normal_(self.conv_out.w1.weight, std=1e-3)

    @property
    def num_gconvs(self) -> int:
        return 2 + len(self.res_convs)

    def forward(
        self,
        x: torch.Tensor | None,
        edges: torch.Tensor,
        projected: tuple[torch.Tensor, torch.Tensor] | None = None,
        adjacency: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``projected``: ``(conv_in.w0(x), conv_in.w1(x))``, given instead of ``x`` by a
        caller that computes them more cheaply (the head, before pooling). ``adjacency``: the
        mesh's cached one (see :func:`gather_scatter`), shared by the block's convolutions."""
        if projected is None:
            h = F.relu(self.conv_in(x, edges, adjacency))
        else:
            h = F.relu(self.conv_in.combine(*projected, edges, adjacency))
        for a, b in zip(self.res_convs[0::2], self.res_convs[1::2]):
            h = 0.5 * (h + F.relu(b(F.relu(a(h, edges, adjacency)), edges, adjacency)))
        return self.conv_out(h, edges, adjacency), h


def _nearest(src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared distance (differentiable) and index of each src point's nearest dst point."""
    idx = knn_points(src.detach(), dst.detach(), K=1).idx[..., 0]
    near = torch.gather(dst, 1, idx[..., None].expand(-1, -1, 3))
    return ((src - near) ** 2).sum(-1), idx


@stage("losses")
def pixel2mesh_losses(
    before: Meshes,
    after: Meshes,
    gt_points: torch.Tensor,
    gt_normals: torch.Tensor | None,
    *,
    block: int,
    chamfer_weight: float = 3000.0,
    chamfer_pred_weight: float = 0.55,
    normal_weight: float = 0.5,
    edge_weight: float = 300.0,
    laplacian_weight: float = 1500.0,
    laplacian_first_block: float = 0.1,
    move_weight: float = 100.0,
) -> dict[str, torch.Tensor]:
    """Pixel2Mesh's weighted losses of one block, ``before`` and ``after`` its deformation.

    Args:
        before, after: N meshes of one topology (the block's input after unpooling, and its
            output).
        gt_points, gt_normals: (N, P, 3) ground-truth surface samples and normals.
        block: 0-based block index (block 0 scales the Laplacian term by
            ``laplacian_first_block`` and has no move term).

    Returns:
        ``loss_p2m_{chamfer,normal,edge,laplacian[,move]}_{block}``.
    """
    verts = after.verts_padded()  # one topology: padded == per-mesh
    gt_to_pred, _ = _nearest(gt_points, verts)
    pred_to_gt, idx = _nearest(verts, gt_points)
    cham = gt_to_pred.mean() + chamfer_pred_weight * pred_to_gt.mean()
    edges = after.edges_packed()
    packed = after.verts_packed()
    vec = packed[edges[:, 0]] - packed[edges[:, 1]]
    losses = {
        f"loss_p2m_chamfer_{block}": cham * chamfer_weight,
        f"loss_p2m_edge_{block}": (vec**2).sum(-1).mean() * edge_weight,
    }
    if gt_normals is not None and normal_weight > 0:
        # GT normal of the GT point nearest each vertex, read at each edge's first vertex.
        near_n = torch.gather(gt_normals, 1, idx[..., None].expand(-1, -1, 3)).reshape(-1, 3)
        n_first = near_n[edges[:, 0]]
        cos = (F.normalize(n_first, dim=-1) * F.normalize(vec, dim=-1)).sum(-1).abs()
        losses[f"loss_p2m_normal_{block}"] = cos.mean() * normal_weight
    adjacency = graph_adjacency(after, packed)
    lap_before = laplacian_coordinates(before.verts_packed(), edges, adjacency)
    lap_after = laplacian_coordinates(packed, edges, adjacency)
    lap = ((lap_after - lap_before) ** 2).sum(-1).mean()
    factor = laplacian_first_block if block == 0 else 1.0
    losses[f"loss_p2m_laplacian_{block}"] = lap * laplacian_weight * factor
    if block > 0:
        move = ((packed - before.verts_packed()) ** 2).sum(-1).mean()
        losses[f"loss_p2m_move_{block}"] = move * move_weight
    return losses


@MESH_HEAD_REGISTRY.register()
class Pixel2MeshGResNetHead(nn.Module):
    """The original Pixel2Mesh mesh head (see the module docstring).

    ``forward(features, views)``: losses in training, ``[{"mesh": (verts, faces)}]`` (final
    block, camera frame) in inference. ``deform(features, views)`` returns the per-block meshes.
    """

    @configurable
    def __init__(
        self,
        *,
        feature_channels: Sequence[int],
        hidden_dim: int = 256,
        num_blocks: int = 3,
        num_gconvs: int = 14,
        ellipsoid_axes: Sequence[float] = (0.276, 0.194, 0.199),
        ellipsoid_center: Sequence[float] = (0.0, 0.0, 0.8),
        loss_weights: Mapping[str, float] | None = None,
    ) -> None:
        """
        Args:
            feature_channels: channels of each backbone map that perceptual pooling reads.
            hidden_dim: width of the graph convs (authors' code: 256 in training).
            num_blocks: deformation blocks (3), with unpooling between consecutive ones.
            num_gconvs: graph convs per block (14).
            ellipsoid_axes, ellipsoid_center: the initial ellipsoid (camera frame).
            loss_weights: keyword arguments of :func:`pixel2mesh_losses` (weights).
        """
        super().__init__()
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        if not feature_channels:
            raise ValueError("feature_channels must name at least one feature map")
        init = ellipsoid(0, axes=ellipsoid_axes, center=ellipsoid_center)
        self.register_buffer("init_verts", init.verts_packed().clone(), persistent=False)
        self.register_buffer("init_faces", init.faces_packed().clone(), persistent=False)
        pooled = 3 + int(sum(feature_channels))
        self.blocks = nn.ModuleList(
            GResBlock(pooled + (hidden_dim if b > 0 else 0), hidden_dim, num_gconvs)
            for b in range(num_blocks)
        )
        self.loss_weights = dict(loss_weights or {})

    @classmethod
    def from_config(cls, cfg, input_shape: Mapping[str, ShapeSpec]) -> dict[str, Any]:
        p = cfg.MODEL.PIXEL2MESH
        return {
            "feature_channels": [s.channels for s in input_shape.values()],
            "hidden_dim": p.HIDDEN_DIM,
            "num_blocks": p.NUM_BLOCKS,
            "num_gconvs": p.NUM_GCONVS,
            "ellipsoid_axes": p.ELLIPSOID_AXES,
            "ellipsoid_center": p.ELLIPSOID_CENTER,
            "loss_weights": {
                "chamfer_weight": p.CHAMFER_WEIGHT,
                "chamfer_pred_weight": p.CHAMFER_PRED_WEIGHT,
                "normal_weight": p.NORMAL_WEIGHT,
                "edge_weight": p.EDGE_WEIGHT,
                "laplacian_weight": p.LAPLACIAN_WEIGHT,
                "laplacian_first_block": p.LAPLACIAN_FIRST_BLOCK,
                "move_weight": p.MOVE_WEIGHT,
            },
        }

    def initial_meshes(self, n: int) -> Meshes:
        """n copies of the initial ellipsoid."""
        return Meshes(verts=[self.init_verts] * n, faces=[self.init_faces] * n)

    def deform(
        self, features: Sequence[torch.Tensor], views: ViewBatch
    ) -> list[tuple[Meshes, Meshes]]:
        """Run the blocks; per block ``(input meshes after unpooling, output meshes)``."""
        meshes = self.initial_meshes(len(views))
        hidden = None
        out = []
        for b, block in enumerate(self.blocks):
            if b > 0:
                meshes, hidden = unpool(meshes, hidden)
            projected = self._pool_projected(block.conv_in, features, meshes, views, hidden)
            adjacency = graph_adjacency(meshes, projected[1])
            offsets, hidden = block(
                None, meshes.edges_packed(), projected=projected, adjacency=adjacency
            )
            new = meshes.offset_verts(offsets)
            out.append((meshes, new))
            meshes = new
        return out

    @staticmethod
    def _pool_projected(
        conv: P2MGraphConv, features, meshes: Meshes, views: ViewBatch, hidden: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(conv.w0(x), conv.w1(x))`` for the block input ``x = [perceptual_pool(...),
        hidden]``, without building ``x``: both weights go through
        :func:`perceptual_pool_linear` together."""
        weight = torch.cat([conv.w0.weight, conv.w1.weight])
        pooled_dim = weight.shape[1] - (0 if hidden is None else hidden.shape[1])
        out = perceptual_pool_linear(
            features, meshes.verts_padded(), views.K, views.image_size, weight[:, :pooled_dim]
        ).flatten(0, 1)  # one topology: padded == packed
        if hidden is not None:
            out = out + hidden @ weight[:, pooled_dim:].T
        x_w0, x_w1 = out.split(conv.w0.out_features, dim=1)
        return x_w0 + conv.w0.bias, x_w1

    def forward(
        self, features: Sequence[torch.Tensor], views: ViewBatch, **unused: Any
    ) -> dict[str, torch.Tensor] | list[dict]:
        stages = self.deform(features, views)
        if self.training:
            points = views.require("points", for_="training Pixel2Mesh")
            losses: dict[str, torch.Tensor] = {}
            for b, (before, after) in enumerate(stages):
                losses.update(
                    pixel2mesh_losses(
                        before, after, points, views.normals, block=b, **self.loss_weights
                    )
                )
            return losses
        final = stages[-1][1]
        return [{"mesh": (v, f)} for v, f in zip(final.verts_list(), final.faces_list())]
