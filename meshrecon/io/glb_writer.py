"""Write a triangle mesh with vertex colours as a binary glTF 2.0 file (GLB).

trimesh's exporter stores vertex colours as 8-bit values, as given; glTF 2.0 defines
``COLOR_0`` as *linear* light, so viewers that follow it (three.js, Blender) would show sRGB
photo colours stored that way too bright, and 8 bits of linear light lose the dark tones. This
writer stores ``COLOR_0`` as float32 linear RGB (the sRGB transfer function applied), which
round-trips an 8-bit sRGB colour exactly, and puts a caller's notes (e.g. the coordinate
convention) into ``asset.extras``. :func:`meshrecon.io.appearance.load_mesh_with_appearance`
reads the colours back as sRGB.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import torch

from meshrecon.io.utils import _colors_to_unit, _validate_verts_faces, srgb_to_linear

__all__ = ["glb_bytes"]

_GLB_MAGIC = 0x46546C67  # "glTF"
_CHUNK_JSON = 0x4E4F534A
_CHUNK_BIN = 0x004E4942
_FLOAT, _UINT = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


def _pad(data: bytes, fill: bytes) -> bytes:
    return data + fill * (-len(data) % 4)


def glb_bytes(
    verts: torch.Tensor,
    faces: torch.Tensor,
    verts_colors: torch.Tensor | None = None,
    extras: dict | None = None,
) -> bytes:
    """The GLB file of one mesh: POSITION, triangle indices and, optionally, ``COLOR_0``.

    Args:
        verts: (V, 3) float, written as float32 in the file's frame as given.
        faces: (F, 3) integer, 0-based; F may be 0 (the file then holds the vertices as points).
        verts_colors: (V, 3) sRGB colours, uint8 0..255 or float 0..1; stored linear (float32).
        extras: JSON-serialisable dict stored as ``asset.extras``.

    Returns:
        The file's bytes.

    Raises:
        ValueError: wrong shapes or dtypes, indices out of range, colours outside [0, 1], or
            ``extras`` that JSON cannot hold.
    """
    _validate_verts_faces(verts, faces)
    v = verts.detach().cpu().numpy().astype("<f4")
    if not np.isfinite(v).all():
        raise ValueError("verts contain NaN or Inf")
    f = faces.detach().cpu().numpy().astype("<u4").reshape(-1)
    views, accessors, blobs, offset = [], [], [], 0

    def add(array: np.ndarray, target: int, accessor: dict) -> int:
        nonlocal offset
        data = array.tobytes()
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(data), "target": target})
        blobs.append(_pad(data, b"\0"))
        offset += len(blobs[-1])
        accessors.append({"bufferView": len(views) - 1, **accessor})
        return len(accessors) - 1

    attributes = {
        "POSITION": add(
            v,
            _ARRAY_BUFFER,
            {
                "componentType": _FLOAT,
                "count": len(v),
                "type": "VEC3",
                "min": v.min(0).tolist() if len(v) else [0.0] * 3,
                "max": v.max(0).tolist() if len(v) else [0.0] * 3,
            },
        )
    }
    if verts_colors is not None:
        linear = srgb_to_linear(_colors_to_unit(verts_colors, len(v))).astype("<f4")
        attributes["COLOR_0"] = add(
            linear, _ARRAY_BUFFER, {"componentType": _FLOAT, "count": len(v), "type": "VEC3"}
        )
    primitive: dict = {"attributes": attributes, "mode": 4 if len(f) else 0}
    if len(f):
        primitive["indices"] = add(
            f,
            _ELEMENT_ARRAY_BUFFER,
            {"componentType": _UINT, "count": len(f), "type": "SCALAR"},
        )
    asset: dict = {"version": "2.0", "generator": "meshrecon"}
    if extras:
        asset["extras"] = extras
    tree = {
        "asset": asset,
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [primitive]}],
        "accessors": accessors,
        "bufferViews": views,
        "buffers": [{"byteLength": offset}],
    }
    try:
        text = json.dumps(tree, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as err:
        raise ValueError(f"extras must be JSON-serialisable: {err}") from err
    json_chunk, bin_chunk = _pad(text, b" "), b"".join(blobs)
    total = 12 + 8 + len(json_chunk) + 8 + len(bin_chunk)
    return (
        struct.pack("<III", _GLB_MAGIC, 2, total)
        + struct.pack("<II", len(json_chunk), _CHUNK_JSON)
        + json_chunk
        + struct.pack("<II", len(bin_chunk), _CHUNK_BIN)
        + bin_chunk
    )
