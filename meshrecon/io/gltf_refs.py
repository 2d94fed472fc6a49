"""External files that a glTF / GLB mesh names, checked before trimesh reads them.

A ``.gltf`` (or the JSON chunk of a ``.glb``) may name its buffers and images by URI, which a
loader resolves against the file's folder. A mesh from a dataset must not make the loader read
files elsewhere (``../../secret``, an absolute path, a symlink leading out), so every such URI
goes through :mod:`meshrecon.utils.path_policy` with the mesh's folder as the root. trimesh 5
refuses these too; trimesh 4, which meshrecon also supports, does not.
"""

from __future__ import annotations

import json
import os
import struct
from urllib.parse import unquote

from meshrecon.utils.path_policy import DatasetRoot, UnsafePathError

__all__ = ["check_gltf_references"]

_GLB_MAGIC = b"glTF"
_GLB_JSON_CHUNK = 0x4E4F534A  # "JSON"


def _gltf_json(path: str) -> dict | None:
    """The JSON document of a .gltf or .glb file (None if it cannot be read as one)."""
    with open(path, "rb") as f:
        head = f.read(20)
        if head[:4] == _GLB_MAGIC:
            if len(head) < 20:
                return None
            length, kind = struct.unpack("<II", head[12:20])
            if kind != _GLB_JSON_CHUNK:
                return None
            raw = f.read(length)
        else:
            raw = head + f.read()
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None  # trimesh reports the malformed file itself
    return doc if isinstance(doc, dict) else None


def check_gltf_references(path: str, name: str | None = None) -> None:
    """Refuse a glTF / GLB whose buffer or image URIs lead outside the file's folder.

    ``data:`` URIs (embedded content) are fine; other URIs must be relative paths below the
    folder holding ``path``.

    Args:
        path: a local ``.gltf`` or ``.glb`` file.
        name: the name to report (default ``path``).

    Raises:
        UnsafePathError: naming the file, the entry (``buffers[0]``) and the URI.
    """
    doc = _gltf_json(path)
    if doc is None:
        return
    root = DatasetRoot(os.path.dirname(os.path.abspath(path)), "mesh's folder")
    for key in ("buffers", "images"):
        entries = doc.get(key)
        if not isinstance(entries, list):
            continue
        for i, entry in enumerate(entries):
            uri = entry.get("uri") if isinstance(entry, dict) else None
            if not isinstance(uri, str) or uri.startswith("data:"):
                continue
            if "://" in uri:
                raise UnsafePathError(
                    f"{name or path} {key}[{i}]: URI {uri!r} names a remote resource; a mesh "
                    "file may only reference files in its own folder"
                )
            root.join(unquote(uri), f"{name or path} {key}[{i}] URI")
