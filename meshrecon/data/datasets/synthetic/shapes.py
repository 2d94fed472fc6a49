"""Procedural 3D shapes in Pix3D's nine categories, assembled from closed primitive parts.

``make_shape(category, rng)`` returns a :class:`Shape`: a list of :class:`Part` meshes, each a
closed, outward-oriented triangle mesh with a material hint for the renderer. Parts may overlap
or touch (a leg meets the seat), so the union is not one manifold; that is why parts stay
separate and :meth:`Shape.voxelize` fills each part by ray parity and ORs the results.

Proportions, part counts and part kinds are all drawn from the generator, so a category has real
topological variety (3/4 legs or a star base, slatted or solid backs, 2-6 shelves, 1-3 doors...).

Frame (as ShapeNet models are normalised): +Y up, the front faces +Z (a chair's seat opens
towards +Z, its back is at -Z; drawers, doors and shelves open towards +Z; a bed's headboard is
at -Z), +X is the object's left-right axis. Tools lie in the XY plane (long axis along X, thin
along Z) so their profile faces the front. Every shape is centred on its bounding-box centre and
scaled so the bounding-box diagonal is 1.

Layout: :mod:`.primitives` builds closed meshes (boxes, rounded boxes, surfaces of revolution,
tori...); :mod:`.assembly` collects parts and normalises them; :mod:`.seating` (chair, sofa,
bed), :mod:`.casework` (table, desk, bookcase, wardrobe) and :mod:`.objects` (tool, misc) hold
the category builders; this module is the public API.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from meshrecon.ops import points_to_voxel_coords, voxelize_meshes
from meshrecon.structures import Meshes

from .assembly import Assembly
from .casework import build_bookcase, build_desk, build_table, build_wardrobe
from .objects import build_misc, build_tool
from .seating import build_bed, build_chair, build_sofa

__all__ = [
    "CATEGORIES",
    "MATERIAL_COLORS",
    "Part",
    "Shape",
    "make_shape",
    "shape_seed_stream",
]

CATEGORIES: tuple[str, ...] = (
    "bed",
    "bookcase",
    "chair",
    "desk",
    "misc",
    "sofa",
    "table",
    "tool",
    "wardrobe",
)

# Base RGB in [0, 1] per material; a renderer may jitter it per object.
MATERIAL_COLORS: dict[str, tuple[float, float, float]] = {
    "wood": (0.62, 0.43, 0.25),
    "dark_wood": (0.35, 0.22, 0.13),
    "light_wood": (0.82, 0.69, 0.50),
    "fabric": (0.42, 0.50, 0.63),
    "leather": (0.45, 0.25, 0.14),
    "linen": (0.92, 0.91, 0.86),
    "metal": (0.66, 0.68, 0.71),
    "plastic": (0.80, 0.22, 0.16),
    "rubber": (0.12, 0.12, 0.13),
    "ceramic": (0.88, 0.86, 0.80),
    "paper": (0.93, 0.89, 0.78),
    "foliage": (0.24, 0.52, 0.21),
}


@dataclass
class Part:
    """One closed, outward-oriented triangle mesh of a shape.

    Attributes:
        name: what the part is (``"seat"``, ``"leg_2"``, ``"shelf_1"``...).
        verts: (V, 3) float32 vertex positions.
        faces: (F, 3) int64 vertex indices, counter-clockwise seen from outside.
        material: a key of :data:`MATERIAL_COLORS`, a colour hint for renderers.
    """

    name: str
    verts: np.ndarray
    faces: np.ndarray
    material: str = "wood"


@dataclass
class Shape:
    """A procedural object: its parts, in the normalised frame of the module docstring."""

    category: str
    parts: list[Part] = field(default_factory=list)
    variant: str = ""

    @property
    def verts(self) -> np.ndarray:
        """(V, 3) float32 vertices of all parts, concatenated in part order."""
        return np.concatenate([p.verts for p in self.parts], axis=0)

    @property
    def faces(self) -> np.ndarray:
        """(F, 3) int64 faces of all parts, indexing :attr:`verts`."""
        offsets = np.cumsum([0] + [len(p.verts) for p in self.parts[:-1]])
        return np.concatenate([p.faces + o for p, o in zip(self.parts, offsets)], axis=0)

    @property
    def part_ids(self) -> np.ndarray:
        """(F,) int64 index into :attr:`parts` of each face of :attr:`faces`."""
        return np.repeat(np.arange(len(self.parts)), [len(p.faces) for p in self.parts])

    @property
    def bounds(self) -> np.ndarray:
        """(2, 3) float64 ``[min_xyz, max_xyz]`` of all vertices."""
        v = self.verts.astype(np.float64)
        return np.stack([v.min(axis=0), v.max(axis=0)])

    def face_colors(self) -> np.ndarray:
        """(F, 3) float32 RGB per face of :attr:`faces`, from each part's material."""
        colors = np.array([MATERIAL_COLORS[p.material] for p in self.parts], dtype=np.float32)
        return colors[self.part_ids]

    def to_meshes(self) -> Meshes:
        """All parts as one mesh of a :class:`Meshes` batch of size 1."""
        return Meshes(verts=[torch.from_numpy(self.verts)], faces=[torch.from_numpy(self.faces)])

    def parts_to_meshes(self) -> Meshes:
        """One mesh per part, as a :class:`Meshes` batch of ``len(parts)``."""
        return Meshes(
            verts=[torch.from_numpy(p.verts) for p in self.parts],
            faces=[torch.from_numpy(p.faces) for p in self.parts],
        )

    def voxel_bounds(self) -> np.ndarray:
        """(2, 3) default voxel box: the cube of the longest bounding-box side, centred at 0."""
        half = float((self.bounds[1] - self.bounds[0]).max()) / 2.0
        return np.array([[-half] * 3, [half] * 3])

    def voxelize(
        self, grid_size: int, bounds: np.ndarray | None = None, align: str = "corner"
    ) -> np.ndarray:
        """Solid occupancy of the shape: each part filled by ray parity, then OR-ed.

        Parity over the concatenated parts would cancel where parts overlap, which is why every
        part is voxelized on its own (all in one batched call). A shape too thin to contain any
        voxel centre is represented by the voxels its surface crosses instead of vanishing.

        Args:
            grid_size: D, the number of voxels per axis (>= 2).
            bounds: (2, 3) ``[min_xyz, max_xyz]`` box of the grid; default
                :meth:`voxel_bounds`.
            align: how voxels sit in the box, as in :func:`meshrecon.ops.voxelize_meshes`;
                the default ``"corner"`` tiles ``bounds`` exactly with D^3 cubes.

        Returns:
            (D, D, D) bool numpy array indexed ``[z, y, x]`` (meshrecon's voxel convention).
        """
        if not isinstance(grid_size, (int, np.integer)) or grid_size < 2:
            raise ValueError(f"grid_size must be an integer >= 2, got {grid_size!r}")
        box = self.voxel_bounds() if bounds is None else np.asarray(bounds, dtype=np.float64)
        if box.shape != (2, 3):
            raise ValueError(f"bounds must have shape (2, 3), got {box.shape}")
        occ = voxelize_meshes(self.parts_to_meshes(), int(grid_size), box=box, align=align)
        occ = occ.any(dim=0)
        if not bool(occ.any()):
            # A shape whose parts are all thinner than a voxel (a thin table at 32^3) contains
            # no voxel centre; an empty grid would be useless as a target, so such a shape is
            # represented by the voxels its surface crosses.
            for part in self.parts:
                occ |= self.surface_voxels(part, int(grid_size), box, align)
        return occ.numpy()

    @staticmethod
    def surface_voxels(part: Part, grid_size: int, box: np.ndarray, align: str) -> torch.Tensor:
        """(D, D, D) bool ``[z, y, x]``: the voxels that ``part``'s surface passes through."""
        tri = part.verts.astype(np.float64)[part.faces]
        area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
        voxel = float((box[1] - box[0]).max()) / grid_size
        # About 16 samples per voxel face area, from a fixed seed: deterministic and dense
        # enough that every crossed voxel gets one.
        num = int(min(max(0.5 * area.sum() / (voxel / 4.0) ** 2, 1000), 200_000))
        rng = np.random.default_rng(grid_size)
        face = rng.choice(len(area), size=num, p=area / area.sum())
        u, v = rng.random((2, num))
        flip = u + v > 1
        u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
        t = tri[face]
        points = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])
        coords = points_to_voxel_coords(
            torch.from_numpy(points), grid_size, box=torch.from_numpy(box), align=align
        )
        ijk = coords.round().long()
        ijk = ijk[((ijk >= 0) & (ijk < grid_size)).all(dim=1)]
        grid = torch.zeros(grid_size, grid_size, grid_size, dtype=torch.bool)
        grid[ijk[:, 2], ijk[:, 1], ijk[:, 0]] = True
        return grid

    def sample_surface(self, num: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Points drawn uniformly by area over all parts' surfaces, with their face normals.

        Drawn with numpy from ``rng`` (not torch's global state) so a dataset generator can
        reproduce them per object. Parts' faces hidden inside other parts are included, as in
        a CAD model with intersecting parts.

        Args:
            num: number of points (> 0).
            rng: numpy generator.

        Returns:
            ``(points, normals)``, both (num, 3) float32; normals are unit and outward.
        """
        if not isinstance(num, (int, np.integer)) or num <= 0:
            raise ValueError(f"num must be a positive integer, got {num!r}")
        tri = self.verts.astype(np.float64)[self.faces]
        cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        area = np.linalg.norm(cross, axis=1)
        idx = rng.choice(len(area), size=num, p=area / area.sum())
        u, v = rng.random(num), rng.random(num)
        su = np.sqrt(u)
        w = np.stack([1.0 - su, su * (1.0 - v), su * v], axis=1)
        points = np.einsum("nk,nkd->nd", w, tri[idx])
        normals = cross[idx] / area[idx, None]
        return points.astype(np.float32), normals.astype(np.float32)


def shape_seed_stream(seed: int, category: str, index: int) -> np.random.Generator:
    """Independent, reproducible generator for object ``index`` of ``category`` under ``seed``.

    The category enters through a CRC32 of its name, not its position in :data:`CATEGORIES`,
    so adding a category never changes the objects of the others.
    """
    for name, value in (("seed", seed), ("index", index)):
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if not isinstance(category, str):
        raise ValueError(f"category must be a string, got {category!r}")
    key = zlib.crc32(category.encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence([int(seed), key, int(index)]))


def make_shape(category: str, rng: np.random.Generator) -> Shape:
    """A random shape of ``category``, normalised; deterministic given the state of ``rng``."""
    if category not in _BUILDERS:
        raise ValueError(f"category must be one of {CATEGORIES}, got {category!r}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy Generator, got {type(rng).__name__}")
    asm = Assembly(rng)
    variant = _BUILDERS[category](asm)
    parts = [Part(*fields) for fields in asm.normalized_parts()]
    return Shape(category=category, parts=parts, variant=variant)


_BUILDERS: dict[str, Callable[[Assembly], str]] = {
    "bed": build_bed,
    "bookcase": build_bookcase,
    "chair": build_chair,
    "desk": build_desk,
    "misc": build_misc,
    "sofa": build_sofa,
    "table": build_table,
    "tool": build_tool,
    "wardrobe": build_wardrobe,
}
