"""Voxel and mesh-refinement building blocks shared by the ROI and the whole-image heads.

Mesh R-CNN has two copies of each of these (``meshrcnn/`` for Pix3D ROI heads and
``shapenet/`` for whole-image ShapeNet heads) that differ only in parameter names and in a few
conventions. Here there is one implementation; the differences are constructor arguments:

- :class:`VoxelConvHead` predicts ``num_classes * voxel_size`` channels; the Pix3D ROI head
  uses its output directly on 12x12 ROI features, the ShapeNet head first resizes the image
  features to ``voxel_size / 2`` (``resize_input=True``).
- :class:`MeshRefinementStage` names its offset layer ``verts_offset`` (Pix3D) or
  ``vert_offset`` (ShapeNet), concatenates the previous stage's vertex features first (Pix3D)
  or last (ShapeNet), and samples the image with ``"border"`` (Pix3D) or ``"zeros"`` padding
  (ShapeNet). The caller passes the (N, V, 3) coordinates at which to sample the image
  (Pix3D: the box-normalized vertices themselves; ShapeNet: the vertices projected with the
  camera matrix, y flipped).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from meshrecon.layers import Conv2d, ConvTranspose2d, get_norm, weight_init
from meshrecon.ops import GraphConv, SubdivideMeshes, vert_align
from meshrecon.ops.graph_conv import graph_adjacency
from meshrecon.structures import Meshes

__all__ = [
    "VoxelConvHead",
    "MeshRefinementStage",
    "MeshRefinementHead",
    "AlignFn",
    "vert_align_linear",
]

# meshes -> (align coords (N, V_max, 3) or None, packed positions (sum(V_n), 3) or None)
AlignFn = Callable[[Meshes], tuple[torch.Tensor | None, torch.Tensor | None]]

_OFFSET_NAMES = ("verts_offset", "vert_offset")
_FEAT_ORDERS = ("prev_first", "prev_last")


class VoxelConvHead(nn.Module):
    """Convs, a 2x transposed conv and a 1x1 predictor giving per-depth-slice voxel logits.

    Submodules ``voxel_fcn1 .. voxel_fcnN``, ``deconv`` and ``predictor`` carry the names and
    shapes of Mesh R-CNN's ``VoxelRCNNConvUpsampleHead`` (``roi_heads.voxel_head.*``) and of its
    ShapeNet ``VoxelHead`` (``voxel_head.*``).

    Input (B, C_in, H, W); output (B, num_classes, voxel_size, 2H', 2W') logits where H' = W' =
    voxel_size / 2 if ``resize_input`` else H, W (the output axes are (D, H, W): depth first).
    """

    def __init__(
        self,
        input_channels: int,
        conv_dim: int,
        num_conv: int,
        voxel_size: int,
        norm: str = "",
        num_classes: int = 1,
        resize_input: bool = False,
    ) -> None:
        """
        Args:
            input_channels: channels of the input feature map.
            conv_dim: channels of every hidden conv and of the deconv.
            num_conv: number of 3x3 conv + ReLU layers (``voxel_fcn1..N``).
            voxel_size: depth resolution D of the output (= number of predictor channels per
                class); for a cube grid the spatial output (2H) must also equal it.
            norm: Detectron2 norm name for the hidden convs ("" for none; then convs have
                biases).
            num_classes: 1 for class-agnostic voxels, else the number of classes.
            resize_input: bilinearly resize the input to ``voxel_size / 2`` first (ShapeNet).

        Raises:
            ValueError: if a size is not positive, or ``voxel_size`` is odd with
                ``resize_input``.
        """
        super().__init__()
        for name, value in (
            ("input_channels", input_channels),
            ("conv_dim", conv_dim),
            ("voxel_size", voxel_size),
            ("num_classes", num_classes),
        ):
            if int(value) <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if num_conv < 0:
            raise ValueError(f"num_conv must be >= 0, got {num_conv}")
        if resize_input and voxel_size % 2:
            raise ValueError(f"voxel_size must be even when resize_input=True, got {voxel_size}")
        self.voxel_size = voxel_size
        self.num_classes = num_classes
        self.resize_input = resize_input
        self.conv_norm_relus: list[Conv2d] = []
        prev = input_channels
        for k in range(num_conv):
            conv = Conv2d(
                prev,
                conv_dim,
                kernel_size=3,
                stride=1,
                padding=1,
                bias=not norm,
                norm=get_norm(norm, conv_dim),
                activation=F.relu,
            )
            self.add_module(f"voxel_fcn{k + 1}", conv)
            self.conv_norm_relus.append(conv)
            prev = conv_dim
        self.deconv = ConvTranspose2d(prev, conv_dim, kernel_size=2, stride=2, padding=0)
        self.predictor = Conv2d(conv_dim, num_classes * voxel_size, kernel_size=1)
        for layer in [*self.conv_norm_relus, self.deconv]:
            weight_init.c2_msra_fill(layer)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.constant_(self.predictor.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) features -> (B, num_classes, D, H_out, W_out) voxel logits."""
        if x.dim() != 4:
            raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
        if self.resize_input:
            half = self.voxel_size // 2
            x = F.interpolate(x, size=half, mode="bilinear", align_corners=False)
        for layer in self.conv_norm_relus:
            x = layer(x)
        x = F.relu(self.deconv(x))
        x = self.predictor(x)
        return x.reshape(x.shape[0], self.num_classes, self.voxel_size, x.shape[2], x.shape[3])


def vert_align_linear(
    img_feats: torch.Tensor | Sequence[torch.Tensor],
    grid: torch.Tensor,
    linear: nn.Linear,
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """``linear(vert_align(img_feats, grid))``: (N, V, out_features), computed the cheap way.

    vert_align reads each map at a point as a weighted sum of map cells (bilinear weights; the
    padding mode only decides which cells, or zeros), and a linear map commutes with weighted
    sums: ``W (sum_k w_k f_k) = sum_k w_k (W f_k)``. So each map is first multiplied by its
    block of columns of ``linear.weight`` (a 1x1 convolution), the projected maps are sampled
    and summed, and the bias is added once. The result is that of the direct order up to float
    rounding, with the same gradients. It is cheaper because a mesh has more vertices than a
    feature map has cells (Mesh R-CNN: about 3000 vertices against 14 x 14 ROI cells, or 35 x 35
    and smaller maps of a 137-pixel image), and vert_align and its backward, slow on CPU, move
    ``out_features`` channels per map instead of the map's own (e.g. 4 x 64 instead of 960).

    Args:
        img_feats: (N, C, H, W) feature map or a list of them; the channels, in list order,
            are ``linear``'s inputs.
        grid: (N, V, 3) (or (N, V, 2)) sampling positions in [-1, 1], as for vert_align.
        linear: the layer applied to the sampled features (``sum C == in_features``).
        padding_mode: vert_align's padding mode.
    """
    maps = [img_feats] if torch.is_tensor(img_feats) else list(img_feats)
    channels = [int(f.shape[1]) for f in maps]
    if sum(channels) != linear.in_features:
        raise ValueError(
            f"img_feats have {sum(channels)} channels ({channels}) but the linear layer takes "
            f"{linear.in_features}"
        )
    weights = torch.split(linear.weight, channels, dim=1)
    projected = [F.conv2d(f, w[:, :, None, None]) for f, w in zip(maps, weights)]
    sampled = vert_align(projected, grid, padding_mode=padding_mode)
    N, V = sampled.shape[:2]
    sampled = sampled.view(N, V, len(maps), linear.out_features).sum(dim=2)
    return sampled if linear.bias is None else sampled + linear.bias


class MeshRefinementStage(nn.Module):
    """One refinement stage: vert-align, bottleneck, graph convs, tanh vertex offsets.

    Per vertex i with position p_i: ``a_i = ReLU(bottleneck(vert_align(img, c_i)))`` sampled at
    the alignment coordinate c_i; the first graph conv sees ``[f_i, a_i, p_i]`` (``prev_first``)
    or ``[a_i, p_i, f_i]`` (``prev_last``) where f_i are the previous stage's features (absent
    in the first stage); each graph conv is followed by ReLU and re-concatenation of p_i; the
    offset is ``tanh(offset_layer([h_i, p_i]))``.
    """

    def __init__(
        self,
        img_feat_dim: int,
        vert_feat_dim: int,
        hidden_dim: int,
        stage_depth: int,
        gconv_init: str = "normal",
        offset_name: str = "verts_offset",
        feat_order: str = "prev_first",
        padding_mode: str = "border",
    ) -> None:
        """
        Args:
            img_feat_dim: channels produced by vert-align (sum over the feature maps).
            vert_feat_dim: channels of the previous stage's vertex features (0 for the first).
            hidden_dim: width of the bottleneck and of every graph conv.
            stage_depth: number of graph convs (``gconvs.0 .. gconvs.{depth-1}``).
            gconv_init: ``"normal"`` or ``"zero"`` (see :class:`GraphConv`).
            offset_name: attribute name of the offset Linear: ``"verts_offset"`` (Mesh R-CNN
                Pix3D checkpoints) or ``"vert_offset"`` (ShapeNet checkpoints).
            feat_order: ``"prev_first"`` (Pix3D) or ``"prev_last"`` (ShapeNet) concatenation of
                the previous vertex features in the first graph conv's input.
            padding_mode: vert-align padding, ``"border"`` (Pix3D) or ``"zeros"`` (ShapeNet).

        Raises:
            ValueError: if ``offset_name``, ``feat_order`` is unknown or a size is invalid.
        """
        super().__init__()
        if offset_name not in _OFFSET_NAMES:
            raise ValueError(f"offset_name must be one of {_OFFSET_NAMES}, got {offset_name!r}")
        if feat_order not in _FEAT_ORDERS:
            raise ValueError(f"feat_order must be one of {_FEAT_ORDERS}, got {feat_order!r}")
        if stage_depth < 1:
            raise ValueError(f"stage_depth must be >= 1, got {stage_depth}")
        if vert_feat_dim < 0:
            raise ValueError(f"vert_feat_dim must be >= 0, got {vert_feat_dim}")
        self.offset_name = offset_name
        self.feat_order = feat_order
        self.padding_mode = padding_mode
        self.vert_feat_dim = vert_feat_dim
        self.bottleneck = nn.Linear(img_feat_dim, hidden_dim)
        offset = nn.Linear(hidden_dim + 3, 3)
        self.add_module(offset_name, offset)
        self.gconvs = nn.ModuleList(
            GraphConv(
                hidden_dim + 3 + (vert_feat_dim if i == 0 else 0),
                hidden_dim,
                init=gconv_init,
                directed=False,
            )
            for i in range(stage_depth)
        )
        nn.init.normal_(self.bottleneck.weight, mean=0.0, std=0.01)
        nn.init.constant_(self.bottleneck.bias, 0)
        nn.init.zeros_(offset.weight)
        nn.init.constant_(offset.bias, 0)

    @property
    def offset_layer(self) -> nn.Linear:
        """The offset Linear, whatever its checkpoint name."""
        return getattr(self, self.offset_name)

    def forward(
        self,
        img_feats: torch.Tensor | Sequence[torch.Tensor],
        meshes: Meshes,
        vert_feats: torch.Tensor | None = None,
        align_coords: torch.Tensor | None = None,
        vert_pos: torch.Tensor | None = None,
    ) -> tuple[Meshes, torch.Tensor]:
        """Refine ``meshes`` once.

        Args:
            img_feats: (N, C, H, W) feature map or a list of them (channels summing to
                ``img_feat_dim``), one batch element per mesh.
            meshes: N meshes to refine, sum(V_n) packed vertices.
            vert_feats: (sum(V_n), vert_feat_dim) packed features of the previous stage, or
                None in the first stage.
            align_coords: (N, V_max, 3) padded coordinates (x, y in [-1, 1]) at which to sample
                ``img_feats``; None samples at ``meshes.verts_padded()``.
            vert_pos: (sum(V_n), 3) packed positions concatenated to the vertex features;
                None uses ``meshes.verts_packed()`` (ShapeNet passes the projected vertices).

        Returns:
            (refined meshes, (sum(V_n), hidden_dim) packed vertex features).
        """
        pos = meshes.verts_packed() if vert_pos is None else vert_pos
        if pos.shape != meshes.verts_packed().shape:
            raise ValueError(
                f"vert_pos must have shape {tuple(meshes.verts_packed().shape)}, got "
                f"{tuple(pos.shape)}"
            )
        grid = meshes.verts_padded() if align_coords is None else align_coords
        if grid.dim() != 3 or grid.shape[:2] != meshes.verts_padded().shape[:2]:
            raise ValueError(
                "align_coords must have shape (N, V_max, 3) matching meshes.verts_padded(), got "
                f"{tuple(grid.shape)}"
            )
        if (vert_feats is None) != (self.vert_feat_dim == 0):
            raise ValueError(
                f"vert_feats must be given iff vert_feat_dim > 0 (vert_feat_dim="
                f"{self.vert_feat_dim}, vert_feats is {'None' if vert_feats is None else 'set'})"
            )
        # bottleneck(vert_align(...)), projecting the maps before sampling them (much cheaper).
        sampled = vert_align_linear(
            img_feats, grid.to(pos.dtype), self.bottleneck, padding_mode=self.padding_mode
        )
        sampled = F.relu(sampled.flatten(0, 1)[meshes.verts_padded_to_packed_idx()])
        if vert_feats is None:
            parts = [sampled, pos]
        elif self.feat_order == "prev_first":
            parts = [vert_feats, sampled, pos]
        else:
            parts = [sampled, pos, vert_feats]
        feats = torch.cat(parts, dim=1)
        edges = meshes.edges_packed()
        hidden = feats
        for gconv in self.gconvs:
            # The mesh caches the adjacency: the stage's convolutions build it once.
            adjacency = graph_adjacency(meshes, feats, gconv.directed)
            hidden = F.relu(gconv(feats, edges, adjacency))
            feats = torch.cat([hidden, pos], dim=1)
        offsets = torch.tanh(self.offset_layer(feats))
        return meshes.offset_verts(offsets), hidden


class MeshRefinementHead(nn.Module):
    """``num_stages`` :class:`MeshRefinementStage` under ``stages.K``, optionally subdividing.

    The first stage has no previous vertex features; later stages take the previous stage's
    ``hidden_dim`` features. With ``subdivide`` the mesh (and its features) are subdivided
    between stages (Pixel2Mesh+ baseline).
    """

    def __init__(
        self,
        img_feat_dim: int,
        hidden_dim: int,
        stage_depth: int,
        num_stages: int,
        gconv_init: str = "normal",
        offset_name: str = "verts_offset",
        feat_order: str = "prev_first",
        padding_mode: str = "border",
        subdivide: bool = False,
    ) -> None:
        """
        Args:
            img_feat_dim, hidden_dim, stage_depth, gconv_init, offset_name, feat_order,
                padding_mode: as for :class:`MeshRefinementStage`.
            num_stages: number of stages (>= 1).
            subdivide: subdivide the mesh and features after every stage but the last.

        Raises:
            ValueError: if ``num_stages`` < 1.
        """
        super().__init__()
        if num_stages < 1:
            raise ValueError(f"num_stages must be >= 1, got {num_stages}")
        self.num_stages = num_stages
        self.subdivide = subdivide
        self.stages = nn.ModuleList(
            MeshRefinementStage(
                img_feat_dim,
                0 if i == 0 else hidden_dim,
                hidden_dim,
                stage_depth,
                gconv_init=gconv_init,
                offset_name=offset_name,
                feat_order=feat_order,
                padding_mode=padding_mode,
            )
            for i in range(num_stages)
        )

    def forward(
        self,
        img_feats: torch.Tensor | Sequence[torch.Tensor],
        meshes: Meshes,
        align_fn: AlignFn | None = None,
    ) -> list[Meshes]:
        """Run all stages.

        Args:
            img_feats: (N, C, H, W) feature map or list of them.
            meshes: N initial meshes.
            align_fn: called with the current meshes before every stage; returns the
                (N, V_max, 3) vert-align coordinates and the (sum(V_n), 3) packed positions to
                concatenate to the features (either may be None: the vertex positions). None
                (Pix3D ROI heads) samples at, and concatenates, the vertex positions.

        Returns:
            list of ``num_stages`` Meshes, the output of each stage.
        """
        outputs = []
        vert_feats = None
        for i, stage in enumerate(self.stages):
            coords, pos = (None, None) if align_fn is None else align_fn(meshes)
            meshes, vert_feats = stage(img_feats, meshes, vert_feats, coords, pos)
            outputs.append(meshes)
            if self.subdivide and i < self.num_stages - 1:
                meshes, vert_feats = SubdivideMeshes()(meshes, feats=vert_feats)
        return outputs
