"""Wavefront MTL materials and per-face texture atlases (``pytorch3d.io.mtl_io``).

``load_mtl`` reads the diffuse / ambient / specular colours, the shininess and the diffuse
texture image (``map_Kd``) of the materials an OBJ file uses. ``make_mesh_texture_atlas`` turns
them into one small R x R colour patch per face, sampled from the texture image at the face's
UV triangle as in Soft Rasterizer (Liu et al., ICCV 2019), the layout PyTorch3D's
``TexturesAtlas`` uses.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from iopath.common.file_io import PathManager

from meshrecon.io.utils import Device, MeshIOError, _path_manager
from meshrecon.utils.image_limits import open_image

__all__ = ["load_mtl", "make_material_atlas", "make_mesh_texture_atlas"]

MaterialProperties = dict[str, dict[str, torch.Tensor]]
TextureImages = dict[str, torch.Tensor]

# MTL keyword -> the property name load_obj reports (PyTorch3D's names).
_COLOR_KEYS = {"Kd": "diffuse_color", "Ka": "ambient_color", "Ks": "specular_color"}
_TEXTURE_WRAPS = ("repeat", "clamp", None)


def _parse_mtl(
    f: str, path_manager: PathManager, device: Device
) -> tuple[MaterialProperties, dict[str, str]]:
    properties: MaterialProperties = {}
    texture_files: dict[str, str] = {}
    material = None
    with path_manager.open(f, "r") as fh:
        lines = fh.read().splitlines()
    for lineno, line in enumerate(lines, 1):
        tokens = line.split("#", 1)[0].split()
        if not tokens:
            continue
        key = tokens[0]
        if key == "newmtl":
            if len(tokens) < 2:
                raise MeshIOError(f"{f}:{lineno}: newmtl without a material name")
            material = tokens[1]
            properties[material] = {}
            continue
        if key not in (*_COLOR_KEYS, "Ns", "map_Kd"):
            continue  # other MTL statements (Ke, Ni, d, illum, map_Bump, ...) are not used
        if material is None:
            raise MeshIOError(f"{f}:{lineno}: {key} before any newmtl")
        if key == "map_Kd":
            # The rest of the line, so that file names with spaces survive.
            texture_files[material] = line.strip()[len("map_Kd") :].strip()
            continue
        count = 1 if key == "Ns" else 3
        try:
            values = np.array(tokens[1 : 1 + count], dtype=np.float32)
        except ValueError as e:
            raise MeshIOError(f"{f}:{lineno}: {key} must hold {count} numbers: {line!r}") from e
        if values.shape != (count,):
            raise MeshIOError(f"{f}:{lineno}: {key} must hold {count} numbers: {line!r}")
        name = "shininess" if key == "Ns" else _COLOR_KEYS[key]
        properties[material][name] = torch.from_numpy(values).to(device)
    return properties, texture_files


def _read_texture(path: str, path_manager: PathManager, device: Device) -> torch.Tensor:
    """(H, W, 3) float32 RGB in [0, 1]."""
    # Refused above MAX_IMAGE_PIXELS from the header, like every image meshrecon reads.
    with path_manager.open(path, "rb") as fh:
        try:
            with open_image(fh, path) as image:
                image.load()
                array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        except OSError as e:
            raise MeshIOError(f"{path}: unreadable texture image: {e}") from e
    return torch.from_numpy(array).to(device)


def load_mtl(
    f: str,
    *,
    material_names: list[str],
    data_dir: str,
    device: Device = "cpu",
    path_manager: PathManager | None = None,
) -> tuple[MaterialProperties, TextureImages]:
    """Load the materials an OBJ file uses, with their texture images.

    Args:
        f: path of the .mtl file.
        material_names: the materials named by the OBJ's ``usemtl`` lines; if empty and the
            file defines exactly one material, that one is used (as PyTorch3D does).
        data_dir: folder against which the ``map_Kd`` file names are resolved.
        device: device of the returned tensors.
        path_manager: iopath PathManager for every path (default: iopath's global one).

    Returns:
        ``(material_properties, texture_images)``: for each used material, a dict that may hold
        ``"diffuse_color"``, ``"ambient_color"``, ``"specular_color"`` (float32 (3,)) and
        ``"shininess"`` (float32 (1,)); and, for each used material with a readable
        ``map_Kd``, its image as float32 (H, W, 3) RGB in [0, 1]. A missing texture file is
        skipped with a warning, as in PyTorch3D.

    Raises:
        ValueError: if no material is named and the file defines several (PyTorch3D's rule).
        MeshIOError: on a malformed line or an unreadable texture image.
    """
    pm = _path_manager(path_manager)
    properties, texture_files = _parse_mtl(f, pm, device)
    used = list(material_names)
    if not used and properties:
        if len(properties) > 1:
            raise ValueError(
                f"{f}: the OBJ file names no material (no usemtl line) and the MTL file defines "
                f"{len(properties)}, so which one applies is ambiguous"
            )
        used.append(next(iter(properties)))
    kept: MaterialProperties = {}
    images: TextureImages = {}
    for material in used:
        if material in texture_files:
            path = os.path.join(data_dir, texture_files[material])
            if pm.exists(path):
                images[material] = _read_texture(path, pm, device)
            else:
                warnings.warn(
                    f"{f}: texture file of material {material!r} not found: {path}", stacklevel=3
                )
        if material in properties:
            kept[material] = properties[material]
    return kept, images


def _cell_barycentrics(size: int, device: torch.device) -> torch.Tensor:
    """(R, R, 3) barycentric coordinates of the texel centres of the R x R per-face patch.

    The face's triangle is cut into R^2 small triangles, one per texel: cell (row r, col c)
    with c + r < R takes the centroid of the upright triangle at (c, r), the others the
    centroid of the inverted triangle mirrored into the upper half (Soft Rasterizer's layout).
    """
    r, c = torch.meshgrid(
        torch.arange(size, device=device, dtype=torch.float32),
        torch.arange(size, device=device, dtype=torch.float32),
        indexing="ij",
    )
    lower = (c + r) < size
    w0 = torch.where(lower, c + 1.0 / 3.0, size - 1.0 - c + 2.0 / 3.0) / size
    w1 = torch.where(lower, r + 1.0 / 3.0, size - 1.0 - r + 2.0 / 3.0) / size
    return torch.stack([w0, w1, 1.0 - w0 - w1], dim=-1)


def make_material_atlas(
    image: torch.Tensor, faces_verts_uvs: torch.Tensor, texture_size: int
) -> torch.Tensor:
    """Sample one R x R colour patch per face from a texture image.

    Texel (r, c) of a face's patch is the bilinearly interpolated image colour at the UV of the
    barycentric point :func:`_cell_barycentrics` assigns it. UV (0, 0) is the bottom-left
    corner of the image and (1, 1) the top-right one, as in OBJ files.

    Args:
        image: (H, W, C) float texture, already flipped so that row 0 is the bottom of the
            picture (``torch.flip(image, [0])`` of an image read top row first).
        faces_verts_uvs: (F, 3, 2) UVs of each face's three corners.
        texture_size: the patch size R.

    Returns:
        (F, R, R, C) patches, in the dtype of ``faces_verts_uvs``.
    """
    R = texture_size
    bary = _cell_barycentrics(R, faces_verts_uvs.device).to(faces_verts_uvs.dtype)
    uv = torch.einsum("rck,fkd->frcd", bary, faces_verts_uvs)  # (F, R, R, 2)
    grid = (uv * 2.0 - 1.0).reshape(1, -1, R, 2)  # one (F*R, R) "image" of sample points
    src = image.to(faces_verts_uvs.dtype).permute(2, 0, 1)[None]  # (1, C, H, W)
    # align_corners=True maps UV 0 and 1 to the centres of the edge texels, as Soft
    # Rasterizer's kernel does.
    out = F.grid_sample(src, grid, mode="bilinear", align_corners=True)  # (1, C, F*R, R)
    return out[0].permute(1, 2, 0).reshape(-1, R, R, image.shape[2])


def make_mesh_texture_atlas(
    material_properties: MaterialProperties | None,
    texture_images: TextureImages | None,
    face_material_names: np.ndarray,
    faces_uvs: torch.Tensor,
    verts_uvs: torch.Tensor | None,
    texture_size: int,
    texture_wrap: str | None,
) -> torch.Tensor:
    """Build the (F, R, R, 3) per-face texture atlas of a mesh.

    Every face starts white; faces of a material with a diffuse colour take that colour; faces
    of a material with a texture image, and with UV indices, take patches sampled from the
    image (:func:`make_material_atlas`).

    Args:
        material_properties: the first output of :func:`load_mtl` (or None).
        texture_images: the second output of :func:`load_mtl` (or None).
        face_material_names: (F,) array of each face's material name, "" for none.
        faces_uvs: (F, 3) int64 indices into ``verts_uvs``; -1 where a face has none.
        verts_uvs: (T, 2) UV coordinates, or None / empty.
        texture_size: the patch size R (a positive int).
        texture_wrap: how UVs outside [0, 1] are read: ``"repeat"`` keeps the fractional part
            (with a warning, as in PyTorch3D), ``"clamp"`` clamps to [0, 1], None leaves them
            (samples outside the image are then black).

    Returns:
        (F, R, R, 3) float32 atlas on the device of ``faces_uvs``.

    Raises:
        ValueError: for an unknown ``texture_wrap`` or a ``texture_size`` below 1.

    Unlike PyTorch3D, a face without UV indices (-1, the file gave none) keeps its material's
    diffuse colour (or white) instead of reading the texture at the last UV of the file.
    """
    if texture_wrap not in _TEXTURE_WRAPS:
        raise ValueError(f"texture_wrap must be 'repeat', 'clamp' or None, got {texture_wrap!r}")
    if isinstance(texture_size, bool) or not isinstance(texture_size, int) or texture_size < 1:
        raise ValueError(f"texture_atlas_size must be a positive int, got {texture_size!r}")
    R, num_faces, device = texture_size, faces_uvs.shape[0], faces_uvs.device
    atlas = torch.ones((num_faces, R, R, 3), dtype=torch.float32, device=device)
    material_properties = material_properties or {}
    texture_images = texture_images or {}
    names = np.asarray(face_material_names)

    def faces_of(material: str) -> torch.Tensor:
        return torch.from_numpy(names == material).to(device)

    for material, props in material_properties.items():
        if "diffuse_color" in props:
            atlas[faces_of(material)] = props["diffuse_color"].to(device, torch.float32)
    if verts_uvs is None or len(verts_uvs) == 0 or not texture_images:
        return atlas
    has_uvs = faces_uvs.ge(0).all(1)
    faces_verts_uvs = verts_uvs.to(device, torch.float32)[faces_uvs.clamp(min=0)]  # (F, 3, 2)
    if texture_wrap == "repeat":
        if bool(((faces_verts_uvs < 0) | (faces_verts_uvs > 1)).any()):
            warnings.warn(
                "texture UV coordinates outside [0, 1]: their integer part is ignored "
                "(texture_wrap='repeat')",
                stacklevel=3,
            )
            faces_verts_uvs = faces_verts_uvs % 1
    elif texture_wrap == "clamp":
        faces_verts_uvs = faces_verts_uvs.clamp(0.0, 1.0)
    for material, image in texture_images.items():
        chosen = faces_of(material) & has_uvs
        if not bool(chosen.any()):
            continue
        flipped = torch.flip(image[:, :, :3].to(device, torch.float32), [0])
        atlas[chosen] = make_material_atlas(flipped, faces_verts_uvs[chosen], R)
    return atlas
