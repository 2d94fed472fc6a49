"""Wavefront OBJ files with PyTorch3D's ``load_obj`` / ``save_obj`` / ``load_objs_as_meshes``.

Vertex order is always the file's: ``v`` lines keep their indices even when the file also has
``vt``/``vn`` (trimesh's own OBJ loader would duplicate such vertices). Polygons are
fan-triangulated. Materials (``mtllib``/``usemtl``, Kd/Ka/Ks/Ns and ``map_Kd`` images) are read
by :mod:`meshrecon.io.mtl_io`. Paths go through an iopath ``PathManager``, so URLs and
registered prefixes work wherever a local path does.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from typing import IO, NamedTuple

import numpy as np
import torch
from iopath.common.file_io import PathManager
from PIL import Image

from meshrecon.io.mtl_io import load_mtl, make_mesh_texture_atlas
from meshrecon.io.obj_parser import _parse_obj
from meshrecon.io.utils import (
    Device,
    PathLike,
    _colors_to_unit,
    _path_manager,
    _validate_index_rows,
)
from meshrecon.structures import Meshes

__all__ = ["Faces", "Properties", "load_obj", "load_objs_as_meshes", "save_obj"]

_TEXTURE_WRAPS = ("repeat", "clamp", None)


class Faces(NamedTuple):
    """Face index tensors of an OBJ file, as ``pytorch3d.io.load_obj`` returns them.

    Attributes:
        verts_idx: (F, 3) int64, indices into ``verts``.
        normals_idx: (F, 3) int64, indices into ``aux.normals``; -1 where the file has none.
        textures_idx: (F, 3) int64, indices into ``aux.verts_uvs``; -1 where the file has none.
        materials_idx: (F,) int64, each face's material, numbered in order of first ``usemtl``;
            -1 for faces before any ``usemtl``.
    """

    verts_idx: torch.Tensor
    normals_idx: torch.Tensor
    textures_idx: torch.Tensor
    materials_idx: torch.Tensor


class Properties(NamedTuple):
    """Auxiliary OBJ data, as ``pytorch3d.io.load_obj`` returns it.

    Attributes:
        normals: (Vn, 3) float32 ``vn`` vectors, or None.
        verts_uvs: (Vt, 2) float32 ``vt`` coordinates, or None.
        material_colors: with ``load_textures``, a dict material name -> dict of
            ``"diffuse_color"`` / ``"ambient_color"`` / ``"specular_color"`` (3,) and
            ``"shininess"`` (1,) tensors; else None.
        texture_images: with ``load_textures``, a dict material name -> (H, W, 3) float32 RGB
            image in [0, 1]; else None.
        texture_atlas: with ``create_texture_atlas``, (F, R, R, 3) float32 per-face patches;
            else None.
    """

    normals: torch.Tensor | None
    verts_uvs: torch.Tensor | None
    material_colors: dict | None
    texture_images: dict | None
    texture_atlas: torch.Tensor | None


# ----------------------------------------------------------------------------- loading


def load_obj(
    f: PathLike | IO,
    load_textures: bool = True,
    create_texture_atlas: bool = False,
    texture_atlas_size: int = 4,
    texture_wrap: str | None = "repeat",
    device: Device = "cpu",
    path_manager: PathManager | None = None,
) -> tuple[torch.Tensor, Faces, Properties]:
    """Load an OBJ file, and optionally its materials and texture images, as PyTorch3D does.

    Args:
        f: path (local, URL or iopath prefix) or an open file object.
        load_textures: read the ``mtllib`` file's materials and their ``map_Kd`` images into
            ``aux.material_colors`` / ``aux.texture_images``. A missing .mtl or image file is
            skipped with a warning (as in PyTorch3D); a file without ``mtllib`` simply has no
            materials (PyTorch3D warns there too).
        create_texture_atlas: also build ``aux.texture_atlas``, an (F, R, R, 3) colour patch
            per face (see :func:`meshrecon.io.mtl_io.make_mesh_texture_atlas`).
        texture_atlas_size: the patch size R.
        texture_wrap: for the atlas, how UVs outside [0, 1] are read: ``"repeat"`` (the
            fractional part), ``"clamp"`` or None (as they are).
        device: device of the returned tensors.
        path_manager: iopath PathManager for the OBJ, MTL and image paths (default: iopath's
            global one, which knows meshrecon's URL prefixes).

    Returns:
        verts: (V, 3) float32, every ``v`` line in file order.
        faces: :class:`Faces` with ``verts_idx`` (F, 3) int64 and, where the file has them,
            ``normals_idx``/``textures_idx`` (F, 3) int64 (otherwise -1), ``materials_idx`` (F,).
        aux: :class:`Properties`.

    The .mtl file and the images are looked up relative to the OBJ's folder (for a file
    object, relative to the working directory, as in PyTorch3D). If the OBJ names no material
    and the .mtl defines a single one, every face gets material 0.

    Raises:
        FileNotFoundError: the OBJ path does not exist.
        ValueError: an unknown ``texture_wrap`` or a ``texture_atlas_size`` below 1.
        MeshIOError: no vertices, unparsable lines, or face indices out of range (naming the
            file and line).
    """
    if texture_wrap not in _TEXTURE_WRAPS:
        raise ValueError(f"texture_wrap must be 'repeat', 'clamp' or None, got {texture_wrap!r}")
    if create_texture_atlas and (
        isinstance(texture_atlas_size, bool)
        or not isinstance(texture_atlas_size, int)
        or texture_atlas_size < 1
    ):
        raise ValueError(f"texture_atlas_size must be a positive int, got {texture_atlas_size!r}")
    data, name = _parse_obj(f, path_manager)
    device = torch.device(device) if device is not None else torch.device("cpu")

    def as_tensor(a: np.ndarray | None, dtype: torch.dtype) -> torch.Tensor | None:
        return None if a is None else torch.as_tensor(a, dtype=dtype, device=device)

    verts = as_tensor(data["verts"], torch.float32)
    verts_idx = as_tensor(data["faces"], torch.int64)
    missing = torch.full_like(verts_idx, -1)
    materials_idx = as_tensor(data["materials"], torch.int64)
    verts_uvs = as_tensor(data["uvs"], torch.float32)
    textures_idx = (
        missing.clone() if data["faces_tex"] is None else as_tensor(data["faces_tex"], torch.int64)
    )

    material_names = list(data["material_names"])
    material_colors, texture_images = None, None
    if load_textures and data["mtllib"] is not None:
        data_dir = os.path.dirname(name) if isinstance(f, str | os.PathLike) else "."
        mtl_path = os.path.join(data_dir, data["mtllib"])
        if _path_manager(path_manager).exists(mtl_path):
            material_colors, texture_images = load_mtl(
                mtl_path,
                material_names=material_names,
                data_dir=data_dir,
                device=device,
                path_manager=path_manager,
            )
        else:
            warnings.warn(f"{name}: material file not found: {mtl_path}", stacklevel=2)
    if material_colors and not material_names:
        # No usemtl line and a single material in the .mtl file: it applies to every face.
        material_names.append(next(iter(material_colors)))
        materials_idx = materials_idx.clamp(min=0)

    texture_atlas = None
    if create_texture_atlas:
        # Each face's material name, "" for faces without one (index -1).
        face_material_names = np.array([""] + material_names)[materials_idx.cpu().numpy() + 1]
        texture_atlas = make_mesh_texture_atlas(
            material_colors,
            texture_images,
            face_material_names,
            textures_idx,
            verts_uvs,
            texture_atlas_size,
            texture_wrap,
        )

    faces = Faces(
        verts_idx=verts_idx,
        normals_idx=missing
        if data["faces_norm"] is None
        else as_tensor(data["faces_norm"], torch.int64),
        textures_idx=textures_idx,
        materials_idx=materials_idx,
    )
    aux = Properties(
        normals=as_tensor(data["normals"], torch.float32),
        verts_uvs=verts_uvs,
        material_colors=material_colors,
        texture_images=texture_images,
        texture_atlas=texture_atlas,
    )
    return verts, faces, aux


def load_objs_as_meshes(
    files: PathLike | IO | Sequence[PathLike | IO],
    device: Device = None,
    load_textures: bool = True,
    create_texture_atlas: bool = False,
    texture_atlas_size: int = 4,
    texture_wrap: str | None = "repeat",
    path_manager: PathManager | None = None,
) -> Meshes:
    """Load OBJ files into one ``Meshes`` batch, with PyTorch3D's signature.

    meshrecon's ``Meshes`` carries no textures, so a texture PyTorch3D would attach is refused
    rather than dropped: with ``load_textures=True`` (the default, as in PyTorch3D) a file whose
    material has a texture image raises a ValueError naming the argument; untextured files load
    as in PyTorch3D. Paths with another mesh extension (.ply, .off, ...) are read with
    :func:`meshrecon.io.load_mesh`.

    Args:
        files: a path or file object, or a sequence of them.
        device: device of the returned meshes.
        load_textures: read the materials, so that a texture image is detected (see above).
        create_texture_atlas: must be False (a texture atlas cannot be stored on Meshes; use
            :func:`load_obj` for ``aux.texture_atlas``).
        texture_atlas_size: passed to :func:`load_obj`.
        texture_wrap: passed to :func:`load_obj`.
        path_manager: iopath PathManager for every path.

    Returns:
        Meshes with one mesh per file, in order.

    Raises:
        ValueError: ``files`` is empty, ``create_texture_atlas`` is True, or a file has a
            texture image while ``load_textures`` is True; anything :func:`load_obj` raises.
    """
    from meshrecon.io.mesh_io import SUPPORTED_MESH_EXTENSIONS, load_mesh

    if create_texture_atlas:
        raise ValueError(
            "create_texture_atlas=True: meshrecon's Meshes carries no textures; call load_obj "
            "with create_texture_atlas=True to get the atlas as aux.texture_atlas"
        )
    if isinstance(files, str | os.PathLike) or hasattr(files, "read"):
        files = [files]
    files = list(files)
    if not files:
        raise ValueError("files must contain at least one file")
    verts_list, faces_list = [], []
    for f in files:
        ext = os.path.splitext(os.fspath(f))[1].lower() if isinstance(f, str | os.PathLike) else ""
        if ext in SUPPORTED_MESH_EXTENSIONS and ext != ".obj":
            verts, faces = load_mesh(f, device=device)
            verts_list.append(verts)
            faces_list.append(faces)
            continue
        verts, faces, aux = load_obj(
            f,
            load_textures=load_textures,
            texture_wrap=texture_wrap,
            texture_atlas_size=texture_atlas_size,
            device=device,
            path_manager=path_manager,
        )
        if aux.texture_images:
            raise ValueError(
                f"load_textures=True: {getattr(f, 'name', f)} has a texture image (material "
                f"{next(iter(aux.texture_images))!r}) but meshrecon's Meshes carries no "
                "textures; pass load_textures=False to load the geometry only, or use load_obj "
                "to get the image and UVs"
            )
        verts_list.append(verts)
        faces_list.append(faces.verts_idx)
    return Meshes(verts=verts_list, faces=faces_list)


# ----------------------------------------------------------------------------- saving


def _as_rows_or_empty(x: torch.Tensor | None, cols: int, name: str) -> torch.Tensor | None:
    """``x`` as (M, cols), accepting an empty tensor of any shape (PyTorch3D allows those)."""
    if x is None:
        return None
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a tensor, got {type(x).__name__}")
    if x.numel() == 0:
        return x.reshape(0, cols)
    if x.ndim != 2 or x.shape[1] != cols:
        raise ValueError(f"{name} must be a tensor of shape (M, {cols}), got {tuple(x.shape)}")
    return x


def _float_rows(prefix: str, values: torch.Tensor, fmt: str) -> str:
    buf = io.StringIO()
    np.savetxt(buf, values.detach().cpu().double().numpy(), fmt=fmt, delimiter=" ")
    return "".join(f"{prefix} {line}\n" for line in buf.getvalue().splitlines())


def _face_rows(
    faces: torch.Tensor, uvs_idx: torch.Tensor | None, normals_idx: torch.Tensor | None
) -> str:
    """``f`` lines with corners ``v``, ``v/vt``, ``v//vn`` or ``v/vt/vn`` (1-based)."""
    columns = [faces] + [idx for idx in (uvs_idx, normals_idx) if idx is not None]
    table = torch.stack([c.detach().cpu().long() + 1 for c in columns], dim=2).numpy()
    if uvs_idx is None and normals_idx is None:
        corner = "%d"
    elif normals_idx is None:
        corner = "%d/%d"
    elif uvs_idx is None:
        corner = "%d//%d"
    else:
        corner = "%d/%d/%d"
    buf = io.StringIO()
    np.savetxt(buf, table.reshape(table.shape[0], -1), fmt=" ".join([corner] * 3))
    return "".join(f"f {line}\n" for line in buf.getvalue().splitlines())


def save_obj(
    f: PathLike | IO,
    verts: torch.Tensor,
    faces: torch.Tensor,
    decimal_places: int | None = None,
    path_manager: PathManager | None = None,
    *,
    normals: torch.Tensor | None = None,
    faces_normals_idx: torch.Tensor | None = None,
    verts_uvs: torch.Tensor | None = None,
    faces_uvs: torch.Tensor | None = None,
    texture_map: torch.Tensor | None = None,
    verts_colors: torch.Tensor | None = None,
    comments: Sequence[str] | str | None = None,
) -> None:
    """Write a mesh as an OBJ file, with optional normals, UVs, texture image, vertex colours.

    With ``texture_map`` the file references ``<stem>.mtl`` (material ``mesh``, whose ``map_Kd``
    is ``<stem>.png``), and both are written next to the OBJ, as PyTorch3D does; loading the
    result with :func:`load_obj` gives the UVs and the image back.

    Args:
        f: destination path, or a text file object (not with ``texture_map``, which needs a
            folder to write the .mtl and .png into).
        verts: (V, 3) float tensor (an empty tensor for none).
        faces: (F, 3) integer tensor, 0-based indices into ``verts`` (an empty tensor for none).
        decimal_places: digits after the decimal point; None writes enough significant digits
            (9) to read float32 values back exactly, where PyTorch3D writes 6 decimals.
        path_manager: iopath PathManager for the paths written.
        normals: (Vn, 3) float tensor written as ``vn`` lines; needs ``faces_normals_idx``.
        faces_normals_idx: (F, 3) integer indices into ``normals`` per face corner.
        verts_uvs: (Vt, 2) float tensor written as ``vt`` lines; needs ``faces_uvs``.
        faces_uvs: (F, 3) integer indices into ``verts_uvs`` per face corner.
        texture_map: (H, W, 3) float image in [0, 1] (values outside are clamped, then rounded
            to 8 bits); needs ``verts_uvs`` and ``faces_uvs``.
        verts_colors: (V, 3) colours, uint8 0..255 or float 0..1, written as the common
            ``v x y z r g b`` extension (r, g, b in [0, 1], sRGB as in images) that
            :func:`meshrecon.io.appearance.load_mesh_with_appearance`, trimesh, MeshLab and
            Blender read.
        comments: text written at the top of the file as ``#`` lines (one per line of it),
            e.g. the coordinate convention of the vertices.

    Unlike PyTorch3D, which silently writes no UVs unless all three texture arguments are
    given, UVs without a ``texture_map`` are written (no .mtl or .png), and a ``texture_map``
    without UVs is an error.

    Raises:
        ValueError: wrong shapes or dtypes, indices out of range, an argument given without
            its partner, a negative ``decimal_places``, or ``texture_map`` with a file object.
    """
    verts = _as_rows_or_empty(verts, 3, "verts")
    faces = _as_rows_or_empty(faces, 3, "faces")
    if not verts.is_floating_point() and verts.numel():
        raise ValueError(f"verts must be a floating point tensor, got {verts.dtype}")
    _validate_index_rows(faces, "faces", verts.shape[0], "verts")
    if decimal_places is not None and (not isinstance(decimal_places, int) or decimal_places < 0):
        raise ValueError(f"decimal_places must be a non-negative int or None, got {decimal_places}")
    if (normals is None) != (faces_normals_idx is None):
        raise ValueError("normals and faces_normals_idx must both be given or both be None")
    if (verts_uvs is None) != (faces_uvs is None):
        raise ValueError("verts_uvs and faces_uvs must both be given or both be None")
    if texture_map is not None and verts_uvs is None:
        raise ValueError("texture_map needs verts_uvs and faces_uvs to be given too")
    normals = _as_rows_or_empty(normals, 3, "normals")
    verts_uvs = _as_rows_or_empty(verts_uvs, 2, "verts_uvs")
    for idx, idx_name, target, target_name in (
        (faces_normals_idx, "faces_normals_idx", normals, "normals"),
        (faces_uvs, "faces_uvs", verts_uvs, "verts_uvs"),
    ):
        if idx is not None:
            idx = _as_rows_or_empty(idx, 3, idx_name)
            _validate_index_rows(idx, idx_name, target.shape[0], target_name)
            if idx.shape[0] != faces.shape[0]:
                raise ValueError(
                    f"{idx_name} must have one row per face ({faces.shape[0]}), got {idx.shape[0]}"
                )
    if texture_map is not None:
        if not isinstance(texture_map, torch.Tensor) or texture_map.ndim != 3:
            raise ValueError("texture_map must be a tensor of shape (H, W, 3)")
        if texture_map.shape[2] != 3 or texture_map.numel() == 0:
            raise ValueError(
                f"texture_map must have shape (H, W, 3), got {tuple(texture_map.shape)}"
            )
        if not isinstance(f, str | os.PathLike):
            raise ValueError("texture_map needs f to be a path: the .mtl and .png go beside it")

    colors = None
    if verts_colors is not None:
        colors = torch.from_numpy(_colors_to_unit(verts_colors, verts.shape[0]))
    fmt = "%.9g" if decimal_places is None else f"%.{decimal_places}f"
    parts = []
    if comments is not None:
        lines = comments.splitlines() if isinstance(comments, str) else list(comments)
        parts.append("".join(f"# {line}".rstrip() + "\n" for line in lines))
    if texture_map is not None:
        stem = os.path.splitext(os.path.basename(os.fspath(f)))[0]
        parts.append(f"mtllib {stem}.mtl\nusemtl mesh\n")
    if colors is None:
        parts.append(_float_rows("v", verts, fmt))
    else:
        # Six decimals hold an 8-bit colour exactly after rounding (1/255 = 0.0039...).
        rows = [_float_rows("v", verts, fmt).splitlines(), _float_rows("", colors, "%.6f")]
        parts.append("".join(f"{v}{c}\n" for v, c in zip(rows[0], rows[1].splitlines())))
    if normals is not None:
        parts.append(_float_rows("vn", normals, fmt))
    if verts_uvs is not None:
        parts.append(_float_rows("vt", verts_uvs, fmt))
    if faces.shape[0]:
        parts.append(_face_rows(faces, faces_uvs, faces_normals_idx))
    text = "".join(parts)
    pm = _path_manager(path_manager)
    if isinstance(f, str | os.PathLike):
        with pm.open(os.fspath(f), "w") as fh:
            fh.write(text)
    elif hasattr(f, "write"):
        f.write(text if not isinstance(f, io.BufferedIOBase | io.RawIOBase) else text.encode())
    else:
        raise ValueError(f"f must be a path or a file object, got {type(f).__name__}")
    if texture_map is not None:
        base = os.path.splitext(os.fspath(f))[0]
        pixels = texture_map.detach().cpu().float().clamp(0.0, 1.0).mul(255.0).round()
        buf = io.BytesIO()
        Image.fromarray(pixels.to(torch.uint8).numpy()).save(buf, format="PNG")
        with pm.open(base + ".png", "wb") as fh:
            fh.write(buf.getvalue())
        with pm.open(base + ".mtl", "w") as fh:
            fh.write(f"newmtl mesh\nmap_Kd {stem}.png\n")
