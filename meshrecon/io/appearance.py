"""A mesh together with its colours: vertex or face colours, materials, or UV textures.

:func:`load_mesh_with_appearance` reads the same geometry as :func:`meshrecon.io.load_mesh`
(same vertex and face order, same checks, glTF references refused the same way) and adds the
colours the file carries, in one of three forms a renderer takes directly
(:func:`meshrecon.render.render_meshes`):

* ``face_colors`` (F, 3): per-face colours (PLY/OFF face colours, OBJ materials' ``Kd``, a
  glTF material's base colour);
* ``vertex_colors`` (V, 3): per-vertex colours, interpolated (PLY/OFF/glTF vertex colours, OBJ
  ``v x y z r g b``); glTF's ``COLOR_0`` holds linear light (glTF 2.0), converted here to
  sRGB like every other colour (a float32 ``COLOR_0`` of a GLB is read at full precision);
* ``atlas`` (F, R, R, 3): one R x R patch per face sampled from a UV texture image (OBJ
  ``map_Kd``, glTF ``baseColorTexture`` times ``baseColorFactor``), PyTorch3D's
  ``TexturesAtlas`` layout. Files that mix forms (a glTF scene with one textured and one
  vertex-coloured mesh) get an atlas for all faces.

Colours are RGB in [0, 1] (alpha is dropped). A file without colours has none of the three.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import torch

from meshrecon.io.mesh_io import (
    _check_arrays,
    _extension,
    _load_with_trimesh,
    _trimesh_pieces,
)
from meshrecon.io.mtl_io import _cell_barycentrics, make_material_atlas
from meshrecon.io.obj_io import load_obj
from meshrecon.io.obj_parser import _parse_obj
from meshrecon.io.utils import PathLike, _path_str, _require_file, linear_to_srgb
from meshrecon.utils.image_limits import check_image_pixels

__all__ = ["MeshAppearance", "load_mesh_with_appearance"]

# The grey of faces without a colour in a file whose other faces have one.
_DEFAULT_GREY = 0.8


@dataclasses.dataclass
class MeshAppearance:
    """The colours of a mesh in one form (at most one field is set).

    Attributes:
        face_colors: (F, 3) float32 in [0, 1], or None.
        vertex_colors: (V, 3) float32 in [0, 1], or None.
        atlas: (F, R, R, 3) float32 in [0, 1], or None.
        source: what the colours came from, for logs (``"texture"``, ``"vertex colours"``,
            ``"face colours"``, ``"materials"``, ``"none"``).
    """

    face_colors: torch.Tensor | None = None
    vertex_colors: torch.Tensor | None = None
    atlas: torch.Tensor | None = None
    source: str = "none"

    @property
    def kind(self) -> str:
        """``"face"``, ``"vertex"``, ``"atlas"`` or ``"none"``."""
        for kind in ("face", "vertex", "atlas"):
            if getattr(self, "atlas" if kind == "atlas" else f"{kind}_colors") is not None:
                return kind
        return "none"

    def select(self, face_mask: torch.Tensor, vert_index: torch.Tensor) -> MeshAppearance:
        """The appearance of a sub-mesh.

        Args:
            face_mask: (F,) bool, the faces kept.
            vert_index: (V',) int64, the old index of each kept vertex (their new order).
        """
        return MeshAppearance(
            face_colors=None if self.face_colors is None else self.face_colors[face_mask],
            vertex_colors=None if self.vertex_colors is None else self.vertex_colors[vert_index],
            atlas=None if self.atlas is None else self.atlas[face_mask],
            source=self.source,
        )


def _unit_colors(colors: np.ndarray) -> torch.Tensor:
    """uint8 0..255 or float colours (..., 3 or 4) to float32 RGB in [0, 1]."""
    c = np.asarray(colors)[..., :3]
    if c.dtype == np.uint8 or (c.size and float(np.nanmax(c)) > 1.0):
        c = c.astype(np.float64) / 255.0
    return torch.from_numpy(np.clip(np.nan_to_num(c.astype(np.float32)), 0.0, 1.0))


def _constant_atlas(face_colors: torch.Tensor, size: int) -> torch.Tensor:
    return face_colors[:, None, None, :].expand(-1, size, size, 3).contiguous()


def _vertex_atlas(vertex_colors: torch.Tensor, faces: torch.Tensor, size: int) -> torch.Tensor:
    """Vertex colours as per-face patches: each texel the barycentric mix at its centre."""
    bary = _cell_barycentrics(size, torch.device("cpu"))  # (R, R, 3)
    return torch.einsum("rck,fkd->frcd", bary, vertex_colors[faces])


def _simplify(appearance: MeshAppearance) -> MeshAppearance:
    """An atlas whose patches are each one colour becomes face colours (cheaper to render)."""
    atlas = appearance.atlas
    if atlas is not None and bool((atlas == atlas[:, :1, :1]).all()):
        return MeshAppearance(face_colors=atlas[:, 0, 0].contiguous(), source=appearance.source)
    return appearance


# ----------------------------------------------------------------------------- OBJ
def _obj_appearance(name: str, data: dict, texture_size: int) -> MeshAppearance:
    if data["mtllib"] is not None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _, _, aux = load_obj(
                name, load_textures=True, create_texture_atlas=True, texture_atlas_size=texture_size
            )
        for w in caught:  # a missing .mtl or image: say so once, as load_obj does
            warnings.warn(str(w.message), stacklevel=3)
        if aux.texture_images:
            return _simplify(MeshAppearance(atlas=aux.texture_atlas, source="texture"))
        if aux.material_colors:
            return MeshAppearance(
                face_colors=aux.texture_atlas[:, 0, 0].contiguous(), source="materials"
            )
    if data.get("vertex_colors") is not None:
        return MeshAppearance(
            vertex_colors=_unit_colors(data["vertex_colors"]), source="vertex colours"
        )
    return MeshAppearance()


# ----------------------------------------------------------------------------- trimesh
def _material_texture(material) -> tuple[np.ndarray | None, np.ndarray]:
    """(image (H, W, 3) float in [0, 1] or None, factor (3,)) of a trimesh material."""
    image = getattr(material, "baseColorTexture", None)
    factor = getattr(material, "baseColorFactor", None)
    if image is None:
        image = getattr(material, "image", None)
    if factor is None:
        # SimpleMaterial: its diffuse colour is the face colour when there is no image; a
        # texture is used as it is (PyTorch3D ignores Kd under map_Kd too).
        diffuse = getattr(material, "diffuse", None)
        factor = diffuse if image is None and diffuse is not None else np.full(3, 255, np.uint8)
    factor = _unit_colors(np.asarray(factor)).numpy()
    if image is None:
        return None, factor
    check_image_pixels(image.width, image.height, "texture image")
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return array, factor


def _piece_appearance(geom, faces: np.ndarray, size: int) -> MeshAppearance:
    """The colours of one trimesh geometry, in the form it holds them."""
    visual = getattr(geom, "visual", None)
    kind = getattr(visual, "kind", None)
    if kind == "vertex":
        colors = _unit_colors(visual.vertex_colors)
        return MeshAppearance(vertex_colors=colors, source="vertex colours")
    if kind == "face":
        return MeshAppearance(face_colors=_unit_colors(visual.face_colors), source="face colours")
    if kind != "texture" or getattr(visual, "material", None) is None:
        return MeshAppearance()
    image, factor = _material_texture(visual.material)
    uv = getattr(visual, "uv", None)
    if image is None or uv is None or len(uv) == 0:
        color = torch.from_numpy(np.broadcast_to(factor, (len(faces), 3)).copy())
        return MeshAppearance(face_colors=color, source="materials")
    # trimesh gives UVs with v = 0 at the bottom of the image (it flips glTF's on load), as
    # make_material_atlas expects; glTF's default wrap is "repeat".
    uvs = np.asarray(uv, dtype=np.float32)[faces]
    # Only coordinates outside [0, 1] wrap: v = 1 is the top row, not the bottom one.
    outside = (uvs < 0.0) | (uvs > 1.0)
    uvs = torch.from_numpy(np.where(outside, uvs % 1.0, uvs))
    flipped = torch.flip(torch.from_numpy(image), [0])
    atlas = make_material_atlas(flipped, uvs, size) * torch.from_numpy(factor)
    return MeshAppearance(atlas=atlas.clamp(0.0, 1.0), source="texture")


def _gltf_colors_to_srgb(name, ext, loaded, pieces, appearances) -> list[MeshAppearance]:
    """Turn the glTF vertex colours (``COLOR_0``, linear light) of ``appearances`` into sRGB.

    trimesh keeps them as 8-bit values; a GLB's float ``COLOR_0`` is read again from trimesh's
    raw arrays so that dark tones keep their precision.
    """
    raw: dict = {}
    if ext == ".glb" and any(a.kind == "vertex" for a in appearances):
        import trimesh
        from iopath.common.file_io import g_pathmgr

        with open(g_pathmgr.get_local_path(name), "rb") as fh:
            geometry = trimesh.exchange.gltf.load_glb(fh).get("geometry", {})
        raw = {k: g.get("vertex_colors") for k, g in geometry.items() if isinstance(g, dict)}
    names = {id(g): k for k, g in getattr(loaded, "geometry", {}).items()}
    out = []
    for (v, _, geom), app in zip(pieces, appearances):
        if app.kind != "vertex":
            out.append(app)
            continue
        linear = app.vertex_colors.double().numpy()
        exact = raw.get(names.get(id(geom)))
        if exact is not None and np.asarray(exact).dtype.kind == "f" and len(exact) == len(v):
            linear = np.asarray(exact, dtype=np.float64)[:, :3]
        srgb = torch.from_numpy(linear_to_srgb(linear).astype(np.float32))
        out.append(MeshAppearance(vertex_colors=srgb, source=app.source))
    return out


def _merge(
    pieces: list[MeshAppearance], faces: list[np.ndarray], num_verts: list[int], size: int
) -> MeshAppearance:
    """One appearance for the concatenated pieces (uncoloured pieces grey where others are not)."""
    kinds = {p.kind for p in pieces} - {"none"}
    if not kinds:
        return MeshAppearance()
    sources = sorted({p.source for p in pieces if p.kind != "none"})
    source = ", ".join(sources)
    if len(pieces) == 1:
        return _simplify(pieces[0])
    if kinds == {"face"}:
        parts = [
            p.face_colors if p.kind == "face" else torch.full((len(f), 3), _DEFAULT_GREY)
            for p, f in zip(pieces, faces)
        ]
        return MeshAppearance(face_colors=torch.cat(parts), source=source)
    if kinds == {"vertex"}:
        parts = [
            p.vertex_colors if p.kind == "vertex" else torch.full((n, 3), _DEFAULT_GREY)
            for p, n in zip(pieces, num_verts)
        ]
        return MeshAppearance(vertex_colors=torch.cat(parts), source=source)
    atlases = []
    for p, f in zip(pieces, faces):
        if p.kind == "atlas":
            atlases.append(p.atlas.float())
        elif p.kind == "vertex":
            atlases.append(_vertex_atlas(p.vertex_colors, torch.from_numpy(f), size))
        else:
            colors = p.face_colors if p.kind == "face" else torch.full((len(f), 3), _DEFAULT_GREY)
            atlases.append(_constant_atlas(colors, size))
    return _simplify(MeshAppearance(atlas=torch.cat(atlases), source=source))


def load_mesh_with_appearance(
    path: PathLike, texture_size: int = 4
) -> tuple[torch.Tensor, torch.Tensor, MeshAppearance]:
    """Load a mesh like :func:`meshrecon.io.load_mesh`, with the colours its file holds.

    Args:
        path: ``.obj``, ``.ply``, ``.off``, ``.stl``, ``.glb`` or ``.gltf`` file.
        texture_size: R, the side of the per-face patch a UV texture is sampled into.

    Returns:
        verts (V, 3) float32, faces (F, 3) int64 (exactly :func:`load_mesh`'s), and a
        :class:`MeshAppearance` aligned with them.

    Raises:
        everything :func:`meshrecon.io.load_mesh` raises; ValueError for ``texture_size < 1``;
        :class:`meshrecon.utils.image_limits.ImageTooLargeError` for a huge texture image.
    """
    if isinstance(texture_size, bool) or not isinstance(texture_size, int) or texture_size < 1:
        raise ValueError(f"texture_size must be a positive int, got {texture_size!r}")
    name = _path_str(path)
    ext = _extension(name)
    _require_file(name)
    if ext == ".obj":
        data, _ = _parse_obj(name)
        verts, faces = data["verts"], data["faces"]
        faces = _check_arrays(verts, faces, name)
        appearance = _obj_appearance(name, data, texture_size) if len(faces) else MeshAppearance()
    else:
        loaded = _load_with_trimesh(name, ext)
        pieces = _trimesh_pieces(loaded, name)
        offsets = np.cumsum([0] + [len(v) for v, _, _ in pieces[:-1]])
        verts = np.concatenate([v for v, _, _ in pieces])
        faces = _check_arrays(
            verts, np.concatenate([f + o for (_, f, _), o in zip(pieces, offsets)]), name
        )
        appearances = [_piece_appearance(g, f, texture_size) for _, f, g in pieces]
        if ext in (".glb", ".gltf"):
            appearances = _gltf_colors_to_srgb(name, ext, loaded, pieces, appearances)
        appearance = _merge(
            appearances, [f for _, f, _ in pieces], [len(v) for v, _, _ in pieces], texture_size
        )
    return (
        torch.as_tensor(np.asarray(verts), dtype=torch.float32),
        torch.as_tensor(faces, dtype=torch.int64),
        appearance,
    )
