"""Load and save triangle meshes (OBJ, PLY, OFF, STL, GLB/glTF) on top of trimesh.

Two entry points:

- :func:`load_mesh` / :func:`save_mesh` work on any supported format, chosen by extension, and
  return or take plain ``(verts, faces)`` tensors.
- :func:`load_obj` / :func:`save_obj` follow ``pytorch3d.io`` (``verts, faces, aux``, with
  ``faces.verts_idx``), so code written for PyTorch3D, such as Mesh R-CNN, runs unchanged.

:func:`load_meshes` / :func:`save_meshes` batch these into and out of a ``Meshes`` object.

Vertex order is always the file's: OBJ ``v`` lines keep their indices even when the file also
has ``vt``/``vn`` (trimesh's own OBJ loader would duplicate such vertices), and the other
formats are loaded with ``process=False`` so nothing is merged or reordered. Polygons are
fan-triangulated. Paths go through iopath's ``PathManager``, so URLs and registered prefixes
work wherever a local path does.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, NamedTuple

import numpy as np
import torch
import trimesh
from iopath.common.file_io import g_pathmgr

try:
    # trimesh's public OBJ loader re-indexes vertices whenever vt/vn are present; its text
    # helpers give the raw, file-ordered arrays that PyTorch3D's load_obj semantics need.
    from trimesh.exchange.obj import _parse_faces_vectorized, _parse_vertices

    _HAVE_OBJ_HELPERS = True
except ImportError:  # pragma: no cover - depends on the installed trimesh
    _HAVE_OBJ_HELPERS = False

if TYPE_CHECKING:
    from meshrecon.structures import Meshes

__all__ = [
    "MeshIOError",
    "SUPPORTED_MESH_EXTENSIONS",
    "Faces",
    "Properties",
    "load_mesh",
    "save_mesh",
    "load_obj",
    "save_obj",
    "load_meshes",
    "save_meshes",
    "load_objs_as_meshes",
]

SUPPORTED_MESH_EXTENSIONS = (".obj", ".ply", ".off", ".stl", ".glb", ".gltf")

PathLike = str | os.PathLike
# A face-line token equal to 0 (as a vertex, uv or normal index), which OBJ does not allow.
_ZERO_INDEX = re.compile(r"(?<![\d.+-])0(?![\d.])")
Device = str | torch.device | None


class MeshIOError(ValueError):
    """A mesh, point cloud or voxel file is missing data, truncated or otherwise unreadable."""


class Faces(NamedTuple):
    """Face index tensors of an OBJ file, as ``pytorch3d.io.load_obj`` returns them.

    Attributes:
        verts_idx: (F, 3) int64, indices into ``verts``.
        normals_idx: (F, 3) int64, indices into ``aux.normals``; -1 where the file has none.
        textures_idx: (F, 3) int64, indices into ``aux.verts_uvs``; -1 where the file has none.
        materials_idx: (F,) int64, always -1 (materials are not loaded).
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
        material_colors, texture_images, texture_atlas: always None (materials and textures
            are not loaded).
    """

    normals: torch.Tensor | None
    verts_uvs: torch.Tensor | None
    material_colors: dict | None
    texture_images: dict | None
    texture_atlas: torch.Tensor | None


# ----------------------------------------------------------------------------- helpers


def _path_str(path: PathLike) -> str:
    if not isinstance(path, str | os.PathLike):
        raise ValueError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    return os.fspath(path)


def _extension(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in SUPPORTED_MESH_EXTENSIONS:
        raise ValueError(
            f"{path}: unsupported mesh extension {ext or '(none)'!r}; "
            f"supported: {', '.join(SUPPORTED_MESH_EXTENSIONS)}"
        )
    return ext


def _require_file(path: str, what: str = "mesh") -> None:
    try:
        exists = g_pathmgr.exists(path)
    except NotImplementedError:
        return  # e.g. http:// handlers cannot test existence; opening the file reports it
    if not exists:
        raise FileNotFoundError(f"{what} file not found: {path}")


def _fan_triangulate(polys: np.ndarray) -> np.ndarray:
    """(F, k) polygons -> (F * (k - 2), 3) triangles (0, i, i + 1), grouped by polygon."""
    k = polys.shape[1]
    if k == 3:
        return polys
    tris = [np.stack([polys[:, 0], polys[:, i], polys[:, i + 1]], axis=1) for i in range(1, k - 1)]
    # Interleave so the triangles of one polygon stay adjacent, as in the file.
    return np.stack(tris, axis=1).reshape(-1, 3)


def _check_index_range(idx: np.ndarray, count: int, what: str, name: str) -> None:
    if idx.size and (idx.min() < 0 or idx.max() >= count):
        raise MeshIOError(
            f"{name}: {what} indices out of range [0, {count}): "
            f"min {int(idx.min())}, max {int(idx.max())}"
        )


def _validate_verts_faces(verts: torch.Tensor, faces: torch.Tensor) -> None:
    if not isinstance(verts, torch.Tensor) or verts.ndim != 2 or verts.shape[1] != 3:
        got = tuple(verts.shape) if isinstance(verts, torch.Tensor) else type(verts).__name__
        raise ValueError(f"verts must be a tensor of shape (V, 3), got {got}")
    if not verts.is_floating_point():
        raise ValueError(f"verts must be a floating point tensor, got {verts.dtype}")
    if not isinstance(faces, torch.Tensor) or faces.ndim != 2 or faces.shape[1] != 3:
        got = tuple(faces.shape) if isinstance(faces, torch.Tensor) else type(faces).__name__
        raise ValueError(f"faces must be a tensor of shape (F, 3), got {got}")
    if faces.is_floating_point() or faces.dtype == torch.bool:
        raise ValueError(f"faces must be an integer tensor, got {faces.dtype}")
    if faces.numel() and (faces.min() < 0 or faces.max() >= verts.shape[0]):
        raise ValueError(
            f"faces index out of range [0, {verts.shape[0]}): "
            f"min {int(faces.min())}, max {int(faces.max())}"
        )


# ----------------------------------------------------------------------------- OBJ


def _read_text(f: PathLike | IO) -> tuple[str, str]:
    """Return (text, name) of a path or an open text/binary file."""
    if isinstance(f, str | os.PathLike):
        path = os.fspath(f)
        _require_file(path)
        with g_pathmgr.open(path, "rb") as fh:
            data = fh.read()
        name = path
    elif hasattr(f, "read"):
        data = f.read()
        name = str(getattr(f, "name", "<file object>"))
    else:
        raise ValueError(f"f must be a path or a file object, got {type(f).__name__}")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            data = data.decode("latin-1")
    return data, name


def _parse_obj_faces(lines: list[str], counts: tuple[int, int, int], name: str) -> list:
    """Face lines (without the leading 'f') -> [faces, faces_tex, faces_norm], triangulated.

    ``counts`` holds the number of v, vt and vn entries, to resolve negative (relative)
    indices and check ranges. A layer no line has is None; lines lacking a layer that others
    have get -1 there, as PyTorch3D does.
    """
    if _ZERO_INDEX.search(" ".join(lines)):
        raise MeshIOError(f"{name}: OBJ face index 0 is invalid (indices start at 1)")
    # trimesh parses one index layout at a time, so group lines that share a layout (number
    # of entries and of slashes) and put the triangles back in file order afterwards.
    keys = [(len(line.replace("/", " ").split()), line.count("/")) for line in lines]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    layers: list[list[np.ndarray]] = [[], [], []]
    present = [False, False, False]
    order = []
    for (columns, _), members in groups.items():
        group_lines = [lines[i] for i in members]
        array = np.array(" ".join(group_lines).replace("/", " ").split(), dtype=np.int64)
        array[array > 0] -= 1  # OBJ is 1-based; negative indices stay relative for now
        parsed = _parse_faces_vectorized(array, columns, group_lines[0])
        corners = parsed[0].shape[1]
        if corners < 3:
            raise MeshIOError(f"{name}: OBJ face with {corners} vertices: {group_lines[0]!r}")
        for layer, (idx, count, what) in enumerate(zip(parsed, counts, ("v", "vt", "vn"))):
            if idx is None:
                tris = np.full((len(members) * (corners - 2), 3), -1, dtype=np.int64)
            else:
                present[layer] = True
                # Relative indices count back from the end of the list read so far; for the
                # usual layout (all vertices before any face) that is the end of the file's.
                idx = np.where(idx < 0, idx + count, idx)
                _check_index_range(idx, count, f"face {what}", name)
                tris = _fan_triangulate(idx)
            layers[layer].append(tris)
        order.append(np.repeat(np.asarray(members), corners - 2))
    perm = np.argsort(np.concatenate(order), kind="stable")
    return [np.concatenate(parts)[perm] if present[k] else None for k, parts in enumerate(layers)]


def _parse_obj(f: PathLike | IO) -> tuple[dict, str]:
    if not _HAVE_OBJ_HELPERS:  # pragma: no cover - depends on the installed trimesh
        raise ImportError(
            "OBJ loading uses trimesh.exchange.obj._parse_vertices/_parse_faces_vectorized, "
            "which the installed trimesh lacks; install trimesh 4.x"
        )
    text, name = _read_text(f)
    # trimesh's helpers expect the text normalized the way its own loader does it.
    text = "\n{}\n".format(text.strip().replace("\r\n", "\n").replace("\\\n", ""))
    try:
        v, vn, vt, _ = _parse_vertices(text=text)
        if v is None or len(v) == 0:
            raise MeshIOError(f"{name}: OBJ file contains no vertices ('v' lines)")
        if v.ndim != 2 or v.shape[1] != 3 or not np.isfinite(v).all():
            raise MeshIOError(f"{name}: OBJ vertices must have 3 finite coordinates each")
        lines = [ln.split("#", 1)[0].strip() for ln in re.findall(r"^f\s+(.*)$", text, re.M)]
        lines = [ln for ln in lines if ln]
        counts = (len(v), 0 if vt is None else len(vt), 0 if vn is None else len(vn))
        if lines:
            faces, faces_tex, faces_norm = _parse_obj_faces(lines, counts, name)
        else:
            faces, faces_tex, faces_norm = np.zeros((0, 3), np.int64), None, None
    except MeshIOError:
        raise
    except (ValueError, IndexError, TypeError) as e:
        raise MeshIOError(f"{name}: corrupt OBJ file: {e}") from e
    data = {"verts": v, "normals": vn, "uvs": vt}
    data.update(faces=faces, faces_tex=faces_tex, faces_norm=faces_norm)
    return data, name


def load_obj(
    f: PathLike | IO,
    load_textures: bool = False,
    device: Device = None,
) -> tuple[torch.Tensor, Faces, Properties]:
    """Load an OBJ file the way ``pytorch3d.io.load_obj`` does.

    Args:
        f: path (local, URL or iopath prefix) or an open file object.
        load_textures: accepted for compatibility; materials and texture images are never
            loaded, so the material and texture fields of ``aux`` stay None either way.
        device: device of the returned tensors (default CPU).

    Returns:
        verts: (V, 3) float32, every ``v`` line in file order.
        faces: :class:`Faces` with ``verts_idx`` (F, 3) int64 and, where the file has them,
            ``normals_idx``/``textures_idx`` (F, 3) int64 (otherwise -1).
        aux: :class:`Properties` with ``normals`` (Vn, 3) and ``verts_uvs`` (Vt, 2) or None.

    Raises:
        FileNotFoundError: the path does not exist.
        MeshIOError: no vertices, unparsable lines, or face indices out of range.
    """
    del load_textures  # see docstring: textures are out of scope
    data, _ = _parse_obj(f)

    def as_tensor(a: np.ndarray | None, dtype: torch.dtype) -> torch.Tensor | None:
        return None if a is None else torch.as_tensor(a, dtype=dtype, device=device)

    verts = as_tensor(data["verts"], torch.float32)
    verts_idx = as_tensor(data["faces"], torch.int64)
    missing = torch.full_like(verts_idx, -1)
    faces = Faces(
        verts_idx=verts_idx,
        normals_idx=missing
        if data["faces_norm"] is None
        else as_tensor(data["faces_norm"], torch.int64),
        textures_idx=missing.clone()
        if data["faces_tex"] is None
        else as_tensor(data["faces_tex"], torch.int64),
        materials_idx=torch.full((verts_idx.shape[0],), -1, dtype=torch.int64, device=device),
    )
    aux = Properties(
        normals=as_tensor(data["normals"], torch.float32),
        verts_uvs=as_tensor(data["uvs"], torch.float32),
        material_colors=None,
        texture_images=None,
        texture_atlas=None,
    )
    return verts, faces, aux


def save_obj(
    f: PathLike | IO,
    verts: torch.Tensor,
    faces: torch.Tensor,
    decimal_places: int | None = None,
) -> None:
    """Write ``v`` and ``f`` lines of an OBJ file, like ``pytorch3d.io.save_obj``.

    Args:
        f: destination path or a text file object opened for writing.
        verts: (V, 3) float tensor.
        faces: (F, 3) integer tensor, 0-based indices into ``verts`` (F may be 0).
        decimal_places: digits after the decimal point; None writes enough significant digits
            (9) to read float32 values back exactly, where PyTorch3D writes 6 decimals.

    Raises:
        ValueError: wrong shapes or dtypes, or face indices out of range.
    """
    _validate_verts_faces(verts, faces)
    if decimal_places is not None and (not isinstance(decimal_places, int) or decimal_places < 0):
        raise ValueError(f"decimal_places must be a non-negative int or None, got {decimal_places}")
    fmt = "%.9g" if decimal_places is None else f"%.{decimal_places}f"
    buf = io.StringIO()
    np.savetxt(
        buf, verts.detach().cpu().double().numpy(), fmt=fmt, delimiter=" ", header="", comments=""
    )
    v_text = "".join("v " + line + "\n" for line in buf.getvalue().splitlines())
    buf = io.StringIO()
    np.savetxt(buf, faces.detach().cpu().numpy().astype(np.int64) + 1, fmt="%d", delimiter=" ")
    f_text = "".join("f " + line + "\n" for line in buf.getvalue().splitlines())
    text = v_text + f_text
    if isinstance(f, str | os.PathLike):
        with g_pathmgr.open(os.fspath(f), "w") as fh:
            fh.write(text)
    elif hasattr(f, "write"):
        f.write(text if not isinstance(f, io.BufferedIOBase | io.RawIOBase) else text.encode())
    else:
        raise ValueError(f"f must be a path or a file object, got {type(f).__name__}")


# ----------------------------------------------------------------------------- any format


def _trimesh_to_arrays(loaded, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Flatten whatever trimesh returned (mesh, point cloud or scene) into verts and faces."""
    if isinstance(loaded, trimesh.Trimesh):
        return np.asarray(loaded.vertices), np.asarray(loaded.faces, dtype=np.int64)
    if isinstance(loaded, trimesh.PointCloud):
        return np.asarray(loaded.vertices), np.zeros((0, 3), np.int64)
    if isinstance(loaded, trimesh.Scene):
        verts, faces, offset = [], [], 0
        for node in loaded.graph.nodes_geometry:
            transform, geom_name = loaded.graph[node]
            geom = loaded.geometry[geom_name]
            if not isinstance(geom, trimesh.Trimesh):
                continue  # paths and point clouds in a scene are not part of the surface
            v = trimesh.transformations.transform_points(np.asarray(geom.vertices), transform)
            verts.append(v)
            faces.append(np.asarray(geom.faces, dtype=np.int64) + offset)
            offset += len(v)
        if not verts:
            raise MeshIOError(f"{name}: scene contains no triangle meshes")
        return np.concatenate(verts), np.concatenate(faces)
    raise MeshIOError(f"{name}: file holds a {type(loaded).__name__}, not a triangle mesh")


def load_mesh(path: PathLike, device: Device = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a triangle mesh from any supported format, chosen by extension.

    GLB/glTF scenes are flattened: every mesh node is transformed to world space and the
    meshes are concatenated in node order. STL stores every triangle separately, so an STL
    mesh has ``3 * F`` vertices (nothing is merged). Vertex order is always the file's; face
    order too, except that trimesh lists the triangles of a PLY/OFF file that mixes polygon
    sizes before the triangulated larger polygons (OBJ keeps file order).

    Args:
        path: ``.obj``, ``.ply``, ``.off``, ``.stl``, ``.glb`` or ``.gltf`` path (local, URL or
            iopath prefix).
        device: device of the returned tensors.

    Returns:
        verts: (V, 3) float32.
        faces: (F, 3) int64, triangles; F is 0 for a file with vertices only.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the extension is not supported.
        MeshIOError: the file is empty, corrupt, or has face indices out of range.
    """
    name = _path_str(path)
    ext = _extension(name)
    _require_file(name)
    if ext == ".obj":
        data, _ = _parse_obj(name)
        verts, faces = data["verts"], data["faces"]
    else:
        local = g_pathmgr.get_local_path(name)
        try:
            loaded = trimesh.load(local, file_type=ext[1:], process=False)
        except Exception as e:
            # trimesh raises many exception types on malformed input (struct, json, key, index
            # errors...); all of them mean the same thing to a caller.
            raise MeshIOError(f"{name}: could not parse {ext} file: {e}") from e
        verts, faces = _trimesh_to_arrays(loaded, name)
    if verts.shape[0] == 0:
        raise MeshIOError(f"{name}: file contains no vertices")
    if not np.isfinite(verts).all():
        raise MeshIOError(f"{name}: vertex coordinates contain NaN or Inf")
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    _check_index_range(faces, verts.shape[0], "face vertex", name)
    return (
        torch.as_tensor(np.asarray(verts), dtype=torch.float32, device=device),
        torch.as_tensor(faces, dtype=torch.int64, device=device),
    )


def save_mesh(path: PathLike, verts: torch.Tensor, faces: torch.Tensor) -> None:
    """Save a triangle mesh in the format given by the path's extension.

    PLY, STL and GLB are written binary; OFF and OBJ as text; ``.gltf`` embeds its buffer so
    the result is a single file. Vertex and face order are kept, except in STL, which stores
    every triangle with its own three vertices.

    Args:
        path: destination with a supported extension.
        verts: (V, 3) float tensor.
        faces: (F, 3) integer tensor, 0-based.

    Raises:
        ValueError: unsupported extension, wrong shapes or dtypes, face indices out of range.
    """
    name = _path_str(path)
    ext = _extension(name)
    _validate_verts_faces(verts, faces)
    if ext == ".obj":
        save_obj(name, verts, faces)
        return
    mesh = trimesh.Trimesh(
        vertices=verts.detach().cpu().double().numpy(),
        faces=faces.detach().cpu().numpy().astype(np.int64),
        process=False,
    )
    if ext == ".gltf":
        exported = mesh.export(file_type="gltf", embed_buffers=True)
        (data,) = exported.values()  # embedded buffers: a single JSON file
    else:
        data = mesh.export(file_type=ext[1:])
    if isinstance(data, str):
        data = data.encode("utf-8")
    with g_pathmgr.open(name, "wb") as fh:
        fh.write(data)


# ----------------------------------------------------------------------------- batches


def load_meshes(paths: PathLike | Sequence[PathLike], device: Device = None) -> Meshes:
    """Load several mesh files (any supported format) into one ``Meshes`` batch.

    The counterpart of ``pytorch3d.io.load_objs_as_meshes``, without textures.

    Args:
        paths: one path or a sequence of paths.
        device: device of the returned meshes.

    Returns:
        Meshes with ``len(paths)`` meshes, in the order given.

    Raises:
        ValueError: ``paths`` is empty; anything :func:`load_mesh` raises.
    """
    from meshrecon.structures import Meshes

    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    paths = list(paths)
    if not paths:
        raise ValueError("paths must contain at least one file")
    verts, faces = zip(*(load_mesh(p, device=device) for p in paths))
    return Meshes(verts=list(verts), faces=list(faces))


def load_objs_as_meshes(
    files: Sequence[PathLike], device: Device = None, load_textures: bool = False
) -> Meshes:
    """Alias of :func:`load_meshes` with PyTorch3D's signature (textures are not loaded)."""
    del load_textures
    return load_meshes(files, device=device)


def _expand_paths(paths: PathLike | Sequence[PathLike], n: int) -> list[str]:
    if isinstance(paths, str | os.PathLike):
        pattern = os.fspath(paths)
        if "{" not in pattern:
            raise ValueError(
                f"paths must be a sequence of {n} paths or a format pattern such as "
                f"'out/mesh_{{:03d}}.obj', got {pattern!r}"
            )
        return [pattern.format(i) for i in range(n)]
    out = [_path_str(p) for p in paths]
    if len(out) != n:
        raise ValueError(f"got {len(out)} paths for {n} items")
    return out


def save_meshes(meshes: Meshes, paths: PathLike | Sequence[PathLike]) -> list[str]:
    """Save every mesh of a ``Meshes`` batch to its own file.

    Args:
        meshes: batch of N meshes.
        paths: N paths, or a ``str.format`` pattern with one field filled by the mesh index,
            e.g. ``"out/pred_{:04d}.ply"``. Each extension picks its file's format.

    Returns:
        The N paths written.

    Raises:
        ValueError: the number of paths differs from N, or anything :func:`save_mesh` raises.
    """
    targets = _expand_paths(paths, len(meshes))
    for target, verts, faces in zip(targets, meshes.verts_list(), meshes.faces_list()):
        save_mesh(target, verts, faces)
    return targets
