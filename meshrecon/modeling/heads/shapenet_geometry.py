"""Coordinate conversions of Mesh R-CNN's ShapeNet heads (voxel space, Blender NDC, camera).

The voxel-space maps (:func:`voxel_to_camera`, :func:`blender_ndc_to_camera`) live in
:mod:`meshrecon.render.frustum` and stay importable from here.

Mesh R-CNN predicts ShapeNet voxels in a [-1, 1]^3 space: camera-frame points projected with
Blender's default projection matrix (see
:func:`meshrecon.render.cameras.blender_projection_matrix`), y flipped to image orientation,
and the NDC depth rescaled so the dataset's depth range [0.67, 0.92] maps to [-1, 1]. The
refinement head then projects the camera-frame vertices back to NDC with the same matrix
(``P``) to sample image features.
"""

from __future__ import annotations

import torch

from meshrecon.render.frustum import SHAPENET_ZRANGE, blender_ndc_to_camera, voxel_to_camera
from meshrecon.structures import Meshes

__all__ = [
    "SHAPENET_MIN_ZMIN",
    "SHAPENET_MAX_ZMAX",
    "project_verts",
    "blender_ndc_to_camera",
    "voxel_to_camera",
    "voxel_to_world",
    "shapenet_align_fn",
]

# Blender-NDC depth range that voxel depth -1 .. 1 spans (meshrecon.render.frustum's).
SHAPENET_MIN_ZMIN, SHAPENET_MAX_ZMAX = SHAPENET_ZRANGE


def project_verts(verts: torch.Tensor, P: torch.Tensor, eps: float = 0.1) -> torch.Tensor:
    """Apply homogeneous 4x4 projections and divide by w (|w| clamped to >= ``eps``).

    Args:
        verts: (N, V, 3) points, or (V, 3) with a (4, 4) ``P``.
        P: (N, 4, 4) projection matrices (row-vector convention: out = P @ [x, y, z, 1]).
        eps: smallest |w| allowed, keeping the sign of w (w == 0 counts as positive).

    Returns:
        (N, V, 3) (or (V, 3)) projected points.
    """
    single = verts.dim() == 2
    if single:
        if P.dim() != 2:
            raise ValueError(f"P must be (4, 4) for (V, 3) verts, got {tuple(P.shape)}")
        verts, P = verts[None], P[None]
    if verts.dim() != 3 or verts.shape[2] != 3:
        raise ValueError(f"verts must have shape (N, V, 3), got {tuple(verts.shape)}")
    if P.dim() != 3 or P.shape[1:] != (4, 4) or P.shape[0] != verts.shape[0]:
        raise ValueError(f"P must have shape ({verts.shape[0]}, 4, 4), got {tuple(P.shape)}")
    ones = torch.ones_like(verts[..., :1])
    hom = torch.bmm(torch.cat([verts, ones], dim=2), P.to(verts.dtype).transpose(1, 2))
    w = hom[..., 3:]
    sign = torch.where(w < 0, -torch.ones_like(w), torch.ones_like(w))
    out = hom[..., :3] / (sign * w.abs().clamp(min=eps))
    return out[0] if single else out


def voxel_to_world(meshes: Meshes) -> Meshes:
    """Meshes in the ShapeNet voxel space -> the same meshes in the camera frame.

    Mesh R-CNN calls this frame "world"; the name is kept for familiarity. Faces are shared.
    """
    verts = voxel_to_camera(meshes.verts_packed())
    counts = meshes.num_verts_per_mesh().tolist()
    return Meshes(verts=list(verts.split(counts, dim=0)), faces=meshes.faces_list())


def shapenet_align_fn(P: torch.Tensor):
    """The ``align_fn`` of :class:`MeshRefinementHead` for camera-frame ShapeNet meshes.

    Mesh R-CNN's ShapeNet stage projects the vertices with ``P``, samples image features at
    the projection with y flipped, and concatenates the (unflipped) projected positions, not
    the camera-frame ones, to the vertex features.

    Args:
        P: (N, 4, 4) projection matrices, one per mesh.

    Returns:
        A callable ``meshes -> ((N, V_max, 3) align coords, (sum(V_n), 3) packed positions)``.
    """

    def align(meshes: Meshes) -> tuple[torch.Tensor, torch.Tensor]:
        proj = project_verts(meshes.verts_padded(), P)
        pos_packed = proj.flatten(0, 1)[meshes.verts_padded_to_packed_idx()]
        flip = torch.tensor([1.0, -1.0, 1.0], dtype=proj.dtype, device=proj.device)
        return proj * flip, pos_packed

    return align
