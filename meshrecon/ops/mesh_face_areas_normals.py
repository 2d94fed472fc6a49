"""Face areas and unit normals of a packed mesh (PyTorch3D's ``mesh_face_areas_normals``)."""

from __future__ import annotations

import torch

__all__ = ["mesh_face_areas_normals"]


def mesh_face_areas_normals(
    verts: torch.Tensor, faces: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Area and unit normal of every face.

    The normal of face (v0, v1, v2) is ``(v1 - v0) x (v2 - v0)`` divided by
    ``max(|(v1 - v0) x (v2 - v0)|, 1e-6)``, as in PyTorch3D's kernel, so a degenerate face gets
    a zero normal rather than NaN. ``Meshes.faces_areas_packed()`` and
    ``Meshes.faces_normals_packed()`` hold the same values.

    Args:
        verts: (V, 3) float tensor of vertex positions (any float dtype; PyTorch3D computes in
            float32 only).
        faces: (F, 3) integer tensor of indices into ``verts``.

    Returns:
        ``(areas (F,), normals (F, 3))`` in the dtype of ``verts``, differentiable with respect
        to ``verts``.

    Raises:
        ValueError: on wrong shapes or dtypes, different devices, or indices out of range.
    """
    if not torch.is_tensor(verts) or verts.ndim != 2 or verts.shape[1] != 3:
        shape = tuple(verts.shape) if torch.is_tensor(verts) else type(verts).__name__
        raise ValueError(f"verts must be a tensor of shape (V, 3), got {shape}")
    if not verts.is_floating_point():
        raise ValueError(f"verts must be a floating point tensor, got {verts.dtype}")
    if not torch.is_tensor(faces) or faces.ndim != 2 or faces.shape[1] != 3:
        shape = tuple(faces.shape) if torch.is_tensor(faces) else type(faces).__name__
        raise ValueError(f"faces must be a tensor of shape (F, 3), got {shape}")
    if faces.is_floating_point() or faces.dtype == torch.bool:
        raise ValueError(f"faces must be an integer tensor, got {faces.dtype}")
    if faces.device != verts.device:
        raise ValueError("verts and faces must be on the same device")
    if faces.numel():
        lo, hi = torch.aminmax(faces)
        if int(lo) < 0 or int(hi) >= verts.shape[0]:
            raise ValueError(
                f"faces must index vertices in [0, {verts.shape[0]}), "
                f"got values in [{int(lo)}, {int(hi)}]"
            )
    tri = verts[faces.long()]  # (F, 3, 3)
    cross = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=1)
    norm = torch.linalg.vector_norm(cross, dim=1)
    return norm / 2, cross / norm.clamp(min=1e-6).unsqueeze(1)
