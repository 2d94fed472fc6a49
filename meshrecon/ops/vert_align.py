"""Sample image features at projected vertex positions (PyTorch3D's ``vert_align``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["vert_align"]

_INTERP_MODES = ("bilinear", "nearest")
_PADDING_MODES = ("zeros", "border", "reflection")


def vert_align(
    feats: torch.Tensor | Sequence[torch.Tensor],
    verts: torch.Tensor | Any,
    return_packed: bool = False,
    interp_mode: str = "bilinear",
    padding_mode: str = "zeros",
    align_corners: bool = True,
) -> torch.Tensor:
    """Sample per-vertex features from image feature maps.

    Called "perceptual feature pooling" in Pixel2Mesh (Wang et al., ECCV 2018) and "vert align"
    in Mesh R-CNN (Gkioxari et al., ICCV 2019). Only the (x, y) coordinates of each vertex are
    used; they must be normalised so that (-1, -1) is the top-left and (+1, +1) the
    bottom-right of the feature map, as for ``torch.nn.functional.grid_sample``.

    Args:
        feats: (N, C, H, W) feature map, or a list of them with the same N and possibly
            different C, H, W.
        verts: (N, V, 3) tensor of vertex positions, or an object with ``verts_padded()``
            (``Meshes``) or ``points_padded()`` (``Pointclouds``).
        return_packed: if True, return packed features of shape (sum(V_n), C) instead of
            padded ones. For a tensor ``verts`` this flattens the first two dimensions; for
            ``Meshes`` / ``Pointclouds`` the padding rows are dropped.
        interp_mode: ``"bilinear"`` or ``"nearest"``.
        padding_mode: how to treat positions outside [-1, 1]: ``"zeros"``, ``"border"`` or
            ``"reflection"``.
        align_corners: if True, -1 and +1 refer to the centres of the corner pixels; if False,
            to the outer corners of the corner pixels.

    Returns:
        (N, V, sum(C_i)) tensor of sampled features, the maps' channels concatenated in list
        order; or (sum(V_n), sum(C_i)) when ``return_packed`` is True.

    Raises:
        ValueError: if ``verts`` is neither an (N, V, 3) tensor nor a Meshes/Pointclouds-like
            object, a feature map is not 4-dimensional, batch sizes or devices differ, or a
            mode is unknown.
    """
    if torch.is_tensor(verts):
        if verts.dim() != 3 or verts.shape[2] < 2:
            raise ValueError(f"verts must have shape (N, V, 3), got {tuple(verts.shape)}")
        grid = verts
    elif hasattr(verts, "verts_padded"):
        grid = verts.verts_padded()
    elif hasattr(verts, "points_padded"):
        grid = verts.points_padded()
    else:
        raise ValueError(
            "verts must be an (N, V, 3) tensor or have a verts_padded() or points_padded() "
            f"method, got {type(verts).__name__}"
        )
    if interp_mode not in _INTERP_MODES:
        raise ValueError(f"interp_mode must be one of {_INTERP_MODES}, got {interp_mode!r}")
    if padding_mode not in _PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")

    feats_list = [feats] if torch.is_tensor(feats) else list(feats)
    if not feats_list:
        raise ValueError("feats must be a tensor or a non-empty list of tensors")
    for i, feat in enumerate(feats_list):
        if not torch.is_tensor(feat) or feat.dim() != 4:
            shape = tuple(feat.shape) if torch.is_tensor(feat) else type(feat).__name__
            raise ValueError(f"feats[{i}] must have shape (N, C, H, W), got {shape}")
        if feat.shape[0] != grid.shape[0]:
            raise ValueError(
                f"feats[{i}] has batch size {feat.shape[0]} but verts has {grid.shape[0]}"
            )
        if feat.device != grid.device:
            raise ValueError(f"feats[{i}] is on {feat.device} but verts on {grid.device}")

    grid = grid[:, None, :, :2]  # (N, 1, V, 2): a 1 x V "image" of sampling positions
    sampled = [
        F.grid_sample(
            feat,
            grid.to(feat.dtype),
            mode=interp_mode,
            padding_mode=padding_mode,
            align_corners=align_corners,
        )[:, :, 0].transpose(1, 2)  # (N, V, C)
        for feat in feats_list
    ]
    feats_sampled = sampled[0] if len(sampled) == 1 else torch.cat(sampled, dim=2)

    if return_packed:
        feats_sampled = feats_sampled.reshape(-1, feats_sampled.shape[-1])
        if hasattr(verts, "verts_padded_to_packed_idx"):
            packed_idx = verts.verts_padded_to_packed_idx()
        elif hasattr(verts, "padded_to_packed_idx"):
            packed_idx = verts.padded_to_packed_idx()
        else:
            packed_idx = None
        if packed_idx is not None:
            feats_sampled = feats_sampled.index_select(0, packed_idx.to(feats_sampled.device))
    return feats_sampled
