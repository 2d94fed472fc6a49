"""Text parsing of Wavefront OBJ files into numpy arrays, for :mod:`meshrecon.io.obj_io`.

Vertices go through trimesh's fast text helpers; faces are grouped by index layout and parsed
vectorized, then put back in file order. Every error names the file and, where one line is at
fault, its line number.
"""

from __future__ import annotations

import os
import re
from typing import IO

import numpy as np
from iopath.common.file_io import PathManager

from meshrecon.io.utils import (
    MeshIOError,
    NonFiniteVerticesError,
    PathLike,
    _fan_triangulate,
    _path_manager,
    _require_file,
)

try:
    # trimesh's public OBJ loader re-indexes vertices whenever vt/vn are present; its text
    # helpers give the raw, file-ordered arrays that PyTorch3D's load_obj semantics need.
    from trimesh.exchange.obj import _parse_faces_vectorized, _parse_vertices

    _HAVE_OBJ_HELPERS = True
except ImportError:  # pragma: no cover - depends on the installed trimesh
    _HAVE_OBJ_HELPERS = False

# A face-line token equal to 0 (as a vertex, uv or normal index), which OBJ does not allow.
_ZERO_INDEX = re.compile(r"(?<![\d.+-])0(?![\d.])")
# The statements read line by line (with their line numbers): faces and material switches.
# A line ending in a backslash continues on the next one.
_STATEMENT = re.compile(r"^[ \t]*(f|usemtl|mtllib)[ \t]+((?:[^\n]*\\\n)*[^\n]*)", re.M)


def _read_text(f: PathLike | IO, path_manager: PathManager | None) -> tuple[str, str]:
    """Return (text, name) of a path or an open text/binary file."""
    if isinstance(f, str | os.PathLike):
        path = os.fspath(f)
        _require_file(path, path_manager=path_manager)
        with _path_manager(path_manager).open(path, "rb") as fh:
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


def _face_line_error(lines: list[str], linenos: list[int], name: str) -> MeshIOError:
    """The error naming the first face line whose indices are not integers in int64's range."""
    for line, lineno in zip(lines, linenos):
        for token in line.replace("/", " ").split():
            try:
                np.array([token], dtype=np.int64)
            except OverflowError:
                return MeshIOError(
                    f"{name}:{lineno}: corrupt OBJ face line: index {token} does not fit in 64 bits"
                )
            except ValueError:
                return MeshIOError(
                    f"{name}:{lineno}: corrupt OBJ face line: index {token!r} is not an integer"
                )
    return MeshIOError(f"{name}: unreadable face indices")  # pragma: no cover - not reached


def _parse_obj_faces(
    lines: list[str], linenos: list[int], counts: tuple[int, int, int], name: str
) -> tuple[list, np.ndarray]:
    """Parse and triangulate face lines (without the leading 'f').

    Returns ``([faces, faces_tex, faces_norm], line of each triangle)``. ``counts`` holds the
    number of v, vt and vn entries, to resolve negative (relative) indices and check ranges. A
    layer no line has is None; lines lacking a layer that others have get -1 there, as PyTorch3D
    does.
    """
    for line, lineno in zip(lines, linenos):
        if _ZERO_INDEX.search(line):
            raise MeshIOError(f"{name}:{lineno}: OBJ face index 0 is invalid (indices start at 1)")
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
        try:
            array = np.array(" ".join(group_lines).replace("/", " ").split(), dtype=np.int64)
        except (OverflowError, ValueError):
            raise _face_line_error(group_lines, [linenos[i] for i in members], name) from None
        array[array > 0] -= 1  # OBJ is 1-based; negative indices stay relative for now
        parsed = _parse_faces_vectorized(array, columns, group_lines[0])
        corners = parsed[0].shape[1]
        if corners < 3:
            lineno = linenos[members[0]]
            raise MeshIOError(
                f"{name}:{lineno}: OBJ face with {corners} vertices: {group_lines[0]!r}"
            )
        tri_line = np.repeat(np.asarray(members), corners - 2)
        for layer, (idx, count, what) in enumerate(zip(parsed, counts, ("v", "vt", "vn"))):
            if idx is None:
                tris = np.full((len(members) * (corners - 2), 3), -1, dtype=np.int64)
            else:
                present[layer] = True
                # Relative indices count back from the end of the list read so far; for the
                # usual layout (all vertices before any face) that is the end of the file's.
                idx = np.where(idx < 0, idx + count, idx)
                tris = _fan_triangulate(idx)
                bad = ((tris < 0) | (tris >= count)).any(1)
                if bad.any():
                    lineno = linenos[tri_line[int(bad.argmax())]]
                    raise MeshIOError(
                        f"{name}:{lineno}: face {what} index out of range [1, {count}] "
                        f"(the file has {count} '{what}' lines)"
                    )
            layers[layer].append(tris)
        order.append(tri_line)
    line_of_tri = np.concatenate(order)
    perm = np.argsort(line_of_tri, kind="stable")
    tris = [np.concatenate(parts)[perm] if present[k] else None for k, parts in enumerate(layers)]
    return tris, line_of_tri[perm]


def _parse_obj(f: PathLike | IO, path_manager: PathManager | None = None) -> tuple[dict, str]:
    """Parse an OBJ file into numpy arrays, material names and the ``mtllib`` reference."""
    if not _HAVE_OBJ_HELPERS:  # pragma: no cover - depends on the installed trimesh
        raise ImportError(
            "OBJ loading uses trimesh.exchange.obj._parse_vertices/_parse_faces_vectorized, "
            "which the installed trimesh lacks; install trimesh 4.x"
        )
    text, name = _read_text(f, path_manager)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines, linenos, line_material = [], [], []
    material_names: list[str] = []
    material, mtllib = -1, None
    for match in _STATEMENT.finditer(text):
        keyword = match.group(1)
        rest = match.group(2).replace("\\\n", " ").split("#", 1)[0].strip()
        if keyword == "f":
            if rest:
                lines.append(rest)
                linenos.append(text.count("\n", 0, match.start()) + 1)
                line_material.append(material)
        elif keyword == "usemtl" and rest:
            if rest.split()[0] not in material_names:
                material_names.append(rest.split()[0])
            material = material_names.index(rest.split()[0])
        elif keyword == "mtllib" and rest:
            mtllib = rest  # the rest of the line: file names may hold spaces
    try:
        # trimesh's helper expects the text normalized the way its own loader does it.
        v, vn, vt, vc = _parse_vertices(text="\n{}\n".format(text.strip().replace("\\\n", "")))
        if v is None or len(v) == 0:
            raise MeshIOError(f"{name}: OBJ file contains no vertices ('v' lines)")
        if v.ndim != 2 or v.shape[1] != 3:
            raise MeshIOError(f"{name}: OBJ vertices must have 3 finite coordinates each")
        if not np.isfinite(v).all():
            raise NonFiniteVerticesError(f"{name}: OBJ vertex coordinates contain NaN or Inf")
        if vt is not None:
            vt = vt.reshape(len(vt), -1)[:, :2]  # a third (w) coordinate is not used
        if vc is not None and (vc.shape != (len(v), 3) or not np.isfinite(vc).all()):
            vc = None  # "v x y z r g b" on some lines only, or garbage: no vertex colours
        counts = (len(v), 0 if vt is None else len(vt), 0 if vn is None else len(vn))
        if lines:
            (faces, faces_tex, faces_norm), tri_line = _parse_obj_faces(
                lines, linenos, counts, name
            )
            materials = np.asarray(line_material, dtype=np.int64)[tri_line]
        else:
            faces, faces_tex, faces_norm = np.zeros((0, 3), np.int64), None, None
            materials = np.zeros((0,), np.int64)
    except MeshIOError:
        raise
    except (ValueError, IndexError, TypeError) as e:
        raise MeshIOError(f"{name}: corrupt OBJ file: {e}") from e
    data = {"verts": v, "normals": vn, "uvs": vt, "faces": faces, "faces_tex": faces_tex}
    data.update(faces_norm=faces_norm, materials=materials)
    # Vertex colours ("v x y z r g b", an extension many tools write), as in the file.
    data.update(material_names=material_names, mtllib=mtllib, vertex_colors=vc)
    return data, name
