"""Normalization of the per-item tensors given to Meshes and Pointclouds; submesh selection.

PyTorch3D accepts a few loose forms that real code relies on: ``torch.tensor([])`` (1-D, no
elements) for an empty mesh or cloud, and float face indices that it casts to int64. These
helpers turn such inputs into the strict forms the structures work with, and raise a ValueError
naming the argument for anything else.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["as_index_rows", "as_rows", "drop_face_padding", "select_submeshes"]


def as_rows(x: object, cols: int, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``x`` as a (M, cols) tensor; a 1-D tensor without elements becomes (0, cols).

    Args:
        x: the item given by the caller.
        cols: the required number of columns.
        name: the argument's name in error messages, e.g. ``"verts[2]"``.
        dtype: if given, an empty item is cast to it (an empty tensor's dtype carries no
            information, and ``torch.tensor([])`` is float32 whatever the batch holds).

    Raises:
        ValueError: if ``x`` is not a tensor of shape (M, cols) or an empty 1-D tensor.
    """
    if not torch.is_tensor(x):
        raise ValueError(f"{name} must be a tensor of shape (M, {cols}), got {type(x).__name__}")
    if x.ndim == 1 and x.numel() == 0:
        x = x.reshape(0, cols)  # reshape keeps an empty leaf's autograd connection
    if x.ndim != 2 or x.shape[1] != cols:
        raise ValueError(f"{name} must be a tensor of shape (M, {cols}), got {tuple(x.shape)}")
    if dtype is not None and x.shape[0] == 0 and x.dtype != dtype:
        x = x.to(dtype)
    return x


def as_index_rows(x: torch.Tensor, name: str) -> torch.Tensor:
    """An index tensor as int64; float tensors holding whole numbers are cast, as PyTorch3D does.

    Raises:
        ValueError: for bool or complex tensors, and for float tensors holding a non-integer
            or non-finite value (PyTorch3D would truncate those silently).
    """
    if x.dtype == torch.bool or x.dtype.is_complex:
        raise ValueError(f"{name} must hold integer vertex indices, got {x.dtype}")
    if x.is_floating_point():
        if x.numel() and not bool((torch.isfinite(x) & (x == x.round())).all()):
            raise ValueError(f"{name} is a float tensor holding non-integer indices")
    return x.to(torch.int64)


def drop_face_padding(faces: torch.Tensor, name: str) -> torch.Tensor:
    """The rows of a (F, 3) face tensor before its padding rows.

    As in PyTorch3D, a row holding a negative index is padding. PyTorch3D drops such rows
    wherever they are in a list entry; here they must all come after the real faces (the rule
    of the padded form), because dropping a row from the middle would shift the index of every
    later face and silently misalign per-face data.
    """
    real = faces.ge(0).all(1)
    count = int(real.sum())
    if count == faces.shape[0]:
        return faces
    if not bool(real[:count].all()):
        raise ValueError(
            f"{name}: padding rows (with a negative index) must come after the real faces"
        )
    return faces[:count]


def select_submeshes(
    verts_list: list[torch.Tensor],
    faces_list: list[torch.Tensor],
    face_indices: Sequence[Sequence[torch.Tensor] | torch.Tensor] | torch.Tensor,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The vertex and face lists of ``Meshes.submeshes`` (see there for ``face_indices``)."""
    if torch.is_tensor(face_indices) and face_indices.ndim != 3:
        raise ValueError(
            "face_indices given as a tensor must have shape (N, S, K), "
            f"got {tuple(face_indices.shape)}"
        )
    N = len(verts_list)
    if len(face_indices) != N:
        raise ValueError(
            f"face_indices must have one entry per mesh ({N}), got {len(face_indices)}"
        )
    sub_verts, sub_faces = [], []
    for n, (selection, verts, faces) in enumerate(zip(face_indices, verts_list, faces_list)):
        if torch.is_tensor(selection) and not (
            selection.ndim == 2 or (selection.ndim == 1 and selection.numel() == 0)
        ):
            raise ValueError(
                f"face_indices[{n}] must be a list of 1-D tensors or a tensor (S, K), "
                f"got shape {tuple(selection.shape)}"
            )
        for k, ids in enumerate(selection):
            name = f"face_indices[{n}][{k}]"
            if not torch.is_tensor(ids) or ids.ndim != 1 or ids.is_floating_point():
                raise ValueError(f"{name} must be a 1-D integer tensor of face indices")
            ids = ids.to(faces.device)
            if ids.dtype != torch.bool and ids.numel():
                lo, hi = torch.aminmax(ids)
                if int(lo) < -len(faces) or int(hi) >= len(faces):
                    raise ValueError(
                        f"{name} must index the {len(faces)} faces of mesh {n}, "
                        f"got values in [{int(lo)}, {int(hi)}]"
                    )
            elif ids.dtype == torch.bool and ids.shape[0] != len(faces):
                raise ValueError(f"{name}: a bool mask must have {len(faces)} entries")
            kept = faces[ids]
            # The sorted unique vertex ids are the submesh's vertices; each face corner's
            # rank among them is its new index.
            used, local = torch.unique(kept, sorted=True, return_inverse=True)
            sub_verts.append(verts[used])
            sub_faces.append(local.view(-1, 3))
    return sub_verts, sub_faces
