"""Load and save triangle meshes (OBJ, PLY, OFF, STL, GLB/glTF) on top of trimesh.

Two entry points:

- :func:`load_mesh` / :func:`save_mesh` work on any supported format, chosen by extension, and
  return or take plain ``(verts, faces)`` tensors.
- :func:`load_obj` / :func:`save_obj` / :func:`load_objs_as_meshes` follow ``pytorch3d.io``
  (``verts, faces, aux``, with ``faces.verts_idx``, materials and textures), so code written for
  PyTorch3D, such as Mesh R-CNN, runs unchanged; they live in :mod:`meshrecon.io.obj_io` and
  are re-exported here.

:func:`load_meshes` / :func:`save_meshes` batch these into and out of a ``Meshes`` object.

Vertex order is always the file's: OBJ ``v`` lines keep their indices even when the file also
has ``vt``/``vn``, and the other formats are loaded with ``process=False`` so nothing is merged
or reordered. Polygons are fan-triangulated. Paths go through iopath's ``PathManager``, so URLs
and registered prefixes work wherever a local path does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import trimesh
from iopath.common.file_io import g_pathmgr

from meshrecon.io.obj_io import (
    Faces,
    Properties,
    _parse_obj,
    load_obj,
    load_objs_as_meshes,
    save_obj,
)
from meshrecon.io.utils import (
    Device,
    MeshIOError,
    NonFiniteVerticesError,
    PathLike,
    _check_index_range,
    _colors_to_unit,
    _path_str,
    _require_file,
    _validate_verts_faces,
)
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


# ----------------------------------------------------------------------------- helpers


def _extension(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in SUPPORTED_MESH_EXTENSIONS:
        raise ValueError(
            f"{path}: unsupported mesh extension {ext or '(none)'!r}; "
            f"supported: {', '.join(SUPPORTED_MESH_EXTENSIONS)}"
        )
    return ext


# ----------------------------------------------------------------------------- any format


def _trimesh_pieces(loaded, name: str) -> list[tuple[np.ndarray, np.ndarray, object]]:
    """``(verts, faces, geometry)`` of each triangle mesh in what trimesh returned, in order.

    A scene's meshes are transformed to world space in node order; a point cloud is one piece
    without faces. ``geometry`` is trimesh's object (its ``visual`` holds the colours).
    """
    if isinstance(loaded, trimesh.Trimesh):
        return [(np.asarray(loaded.vertices), np.asarray(loaded.faces, dtype=np.int64), loaded)]
    if isinstance(loaded, trimesh.PointCloud):
        return [(np.asarray(loaded.vertices), np.zeros((0, 3), np.int64), loaded)]
    if isinstance(loaded, trimesh.Scene):
        pieces = []
        for node in loaded.graph.nodes_geometry:
            transform, geom_name = loaded.graph[node]
            geom = loaded.geometry[geom_name]
            if not isinstance(geom, trimesh.Trimesh):
                continue  # paths and point clouds in a scene are not part of the surface
            v = trimesh.transformations.transform_points(np.asarray(geom.vertices), transform)
            pieces.append((v, np.asarray(geom.faces, dtype=np.int64), geom))
        if not pieces:
            raise MeshIOError(f"{name}: scene contains no triangle meshes")
        return pieces
    raise MeshIOError(f"{name}: file holds a {type(loaded).__name__}, not a triangle mesh")


def _trimesh_to_arrays(loaded, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Flatten whatever trimesh returned (mesh, point cloud or scene) into verts and faces."""
    pieces = _trimesh_pieces(loaded, name)
    offsets = np.cumsum([0] + [len(v) for v, _, _ in pieces[:-1]])
    verts = np.concatenate([v for v, _, _ in pieces])
    faces = np.concatenate([f + o for (_, f, _), o in zip(pieces, offsets)])
    return verts, faces


def _load_with_trimesh(name: str, ext: str):
    """Load a non-OBJ file with trimesh, unprocessed (glTF references checked first)."""
    local = g_pathmgr.get_local_path(name)
    if ext in (".gltf", ".glb"):
        from meshrecon.io.gltf_refs import check_gltf_references

        check_gltf_references(local, name)
    try:
        return trimesh.load(local, file_type=ext[1:], process=False)
    except Exception as e:
        # trimesh raises many exception types on malformed input (struct, json, key, index
        # errors...); all of them mean the same thing to a caller.
        raise MeshIOError(f"{name}: could not parse {ext} file: {e}") from e


def _check_arrays(verts: np.ndarray, faces, name: str) -> np.ndarray:
    """Validate loaded arrays (vertices present and finite, indices in range); (F, 3) faces."""
    if verts.shape[0] == 0:
        raise MeshIOError(f"{name}: file contains no vertices")
    if not np.isfinite(verts).all():
        raise NonFiniteVerticesError(f"{name}: vertex coordinates contain NaN or Inf")
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    _check_index_range(faces, verts.shape[0], "face vertex", name)
    return faces


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
        verts, faces = _trimesh_to_arrays(_load_with_trimesh(name, ext), name)
    faces = _check_arrays(verts, faces, name)
    return (
        torch.as_tensor(np.asarray(verts), dtype=torch.float32, device=device),
        torch.as_tensor(faces, dtype=torch.int64, device=device),
    )


def save_mesh(
    path: PathLike,
    verts: torch.Tensor,
    faces: torch.Tensor,
    *,
    verts_colors: torch.Tensor | None = None,
    comment: str | None = None,
) -> None:
    """Save a triangle mesh in the format given by the path's extension.

    PLY, STL and GLB are written binary; OFF and OBJ as text; ``.gltf`` embeds its buffer so
    the result is a single file. Vertex and face order are kept, except in STL, which stores
    every triangle with its own three vertices.

    Args:
        path: destination with a supported extension.
        verts: (V, 3) float tensor.
        faces: (F, 3) integer tensor, 0-based.
        verts_colors: (V, 3) sRGB colours, uint8 0..255 or float 0..1 (OBJ, PLY, GLB only):
            OBJ ``v x y z r g b``, PLY vertex ``red green blue`` (uint8), GLB ``COLOR_0``
            (float32, linear light as glTF 2.0 defines it; see :mod:`meshrecon.io.glb_writer`).
        comment: text stored in the file (OBJ, PLY, GLB only): OBJ ``#`` lines, PLY header
            ``comment`` lines, GLB ``asset.extras.comment``; e.g. the coordinate convention.

    Raises:
        ValueError: unsupported extension, wrong shapes or dtypes, face indices out of range,
            colours or a comment for a format that cannot hold them.
    """
    name = _path_str(path)
    ext = _extension(name)
    _validate_verts_faces(verts, faces)
    if (verts_colors is not None or comment is not None) and ext not in (".obj", ".ply", ".glb"):
        raise ValueError(f"{name}: verts_colors and comment are written to .obj, .ply, .glb only")
    if ext == ".obj":
        save_obj(name, verts, faces, verts_colors=verts_colors, comments=comment)
        return
    if ext == ".glb" and (verts_colors is not None or comment is not None):
        from meshrecon.io.glb_writer import glb_bytes

        extras = {"comment": comment} if comment is not None else None
        data = glb_bytes(verts, faces, verts_colors, extras)
        with g_pathmgr.open(name, "wb") as fh:
            fh.write(data)
        return
    mesh = trimesh.Trimesh(
        vertices=verts.detach().cpu().double().numpy(),
        faces=faces.detach().cpu().numpy().astype(np.int64),
        process=False,
    )
    if verts_colors is not None:
        unit = _colors_to_unit(verts_colors, verts.shape[0])
        mesh.visual = trimesh.visual.ColorVisuals(
            mesh, vertex_colors=np.round(unit * 255.0).astype(np.uint8)
        )
    if ext == ".gltf":
        exported = mesh.export(file_type="gltf", embed_buffers=True)
        (data,) = exported.values()  # embedded buffers: a single JSON file
    else:
        data = mesh.export(file_type=ext[1:])
    if isinstance(data, str):
        data = data.encode("utf-8")
    if ext == ".ply" and comment is not None:
        data = _ply_with_comment(data, comment)
    with g_pathmgr.open(name, "wb") as fh:
        fh.write(data)


def _ply_with_comment(data: bytes, comment: str) -> bytes:
    """``comment`` lines put into a PLY header, after its ``format`` line."""
    start = data.index(b"\n", data.index(b"format")) + 1
    lines = "".join(f"comment {line}".rstrip() + "\n" for line in comment.splitlines())
    return data[:start] + lines.encode("ascii", "replace") + data[start:]


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
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    paths = list(paths)
    if not paths:
        raise ValueError("paths must contain at least one file")
    verts, faces = zip(*(load_mesh(p, device=device) for p in paths))
    return Meshes(verts=list(verts), faces=list(faces))


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
