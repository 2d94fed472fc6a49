"""One model of a ``render-shapes`` dataset: load, check, normalise, voxelize, sample, render.

Everything is the synthetic ShapeNet world's: the normalisation (bounding-box centre at the
origin, diagonal 1), the surface sampler (:meth:`Shape.sample_surface`), the parity voxelizer
and its surface-voxel fallback, R2N2's cameras (:func:`draw_r2n2_views`) and the writer of a
model folder (:func:`write_shapenet_model`). What differs is only what a user's mesh needs:

* colours come from the file (:func:`meshrecon.io.load_mesh_with_appearance`);
* the mesh is not made of closed parts: each connected component (vertices welded) that is
  closed (every edge shared by exactly two faces) is filled by ray parity, every other one is
  represented by the voxels its surface crosses, and cavities enclosed by the result are filled
  (so a box made of six separate walls is solid, an open cup stays a shell).

A model is written into a temporary sibling folder and renamed into place when every file,
``model.json`` last, is written: a folder named like a model is always complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
import zlib
from typing import Any

import numpy as np
import torch

from meshrecon.io import MeshIOError
from meshrecon.io.utils import NonFiniteVerticesError
from meshrecon.utils.path_policy import UnsafePathError

__all__ = [
    "CAMERA_RANGES",
    "MODEL_FILE",
    "ModelJob",
    "Recipe",
    "SkipModel",
    "process_model",
    "voxelize_mesh",
]

# Written last into a model folder: a folder holding it is complete.
MODEL_FILE = "model.json"
# Bump when the files of a model change for the same recipe: every model is then redone.
FORMAT_VERSION = 1

# (azimuth, elevation, distance ratio) ranges of each camera mode; the distance is R2N2's
# 1.75 times the ratio, so every mode sees the unit-diagonal model at R2N2's scale.
CAMERA_RANGES = {
    "r2n2": ((0.0, 360.0), (25.0, 30.0), (0.65, 0.95)),
    "random": ((0.0, 360.0), (-30.0, 60.0), (0.65, 0.95)),
}

# Rotations that bring the file's up axis to +Y (ShapeNet's frame).
_UP = {
    "y": np.eye(3),
    # +Z up (CAD, STL): (x, y, z) -> (x, z, -y); the file's -Y (front in Z-up tools) becomes +Z.
    "z": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]),
}
_UNIT_BOX = np.array([[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]])
# Closed components voxelized per call of the parity voxelizer (its memory grows with it).
_PARTS_PER_CALL = 32


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Everything that decides the files of one model (``dataset.json`` keeps it).

    Attributes:
        views: renders per model.
        image_size: side of the square renders (R2N2: 137).
        cameras: ``"r2n2"`` (elevation 25-30 degrees) or ``"random"`` (-30 to 60), see
            :data:`CAMERA_RANGES`; azimuth uniform, distance 1.75 x U[0.65, 0.95).
        num_samples: surface samples (with normals) per model.
        voxel_sizes: occupancy grid sizes; the first is ``occupancy`` in ``voxels.npz``.
        texture_size: R of the R x R per-face patch a UV texture is sampled into.
        up: the file's up axis, ``"y"`` or ``"z"``.
        seed: seed of the samples and cameras (per model, from the seed and the model key).
    """

    views: int = 24
    image_size: int = 137
    cameras: str = "r2n2"
    num_samples: int = 10000
    voxel_sizes: tuple[int, ...] = (32, 48)
    texture_size: int = 4
    up: str = "y"
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            ("views", self.views >= 1, ">= 1"),
            ("image_size", self.image_size >= 16, ">= 16"),
            ("num_samples", self.num_samples >= 1, ">= 1"),
            ("texture_size", 1 <= self.texture_size <= 64, "in 1..64"),
            ("voxel_sizes", len(self.voxel_sizes) >= 1, "non-empty"),
            ("seed", self.seed >= 0, ">= 0"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"{name} must be {rule}, got {getattr(self, name)!r}")
        if any(s < 2 for s in self.voxel_sizes) or len(set(self.voxel_sizes)) != len(
            self.voxel_sizes
        ):
            raise ValueError(f"voxel_sizes must be distinct sizes >= 2, got {self.voxel_sizes}")
        if self.cameras not in CAMERA_RANGES:
            raise ValueError(
                f"cameras must be one of {sorted(CAMERA_RANGES)}, got {self.cameras!r}"
            )
        if self.up not in _UP:
            raise ValueError(f"up must be one of {sorted(_UP)}, got {self.up!r}")

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "voxel_sizes": list(self.voxel_sizes)}

    def digest(self) -> str:
        """Hash of the recipe and the format version: a model made with another one is redone."""
        text = repr(sorted({**self.as_dict(), "format": FORMAT_VERSION}.items()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class SkipModel(Exception):
    """A mesh that is not turned into a model: ``kind`` (``"unreadable"``, ``"degenerate"``)
    and the reason."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind, self.reason = kind, reason


@dataclasses.dataclass(frozen=True)
class ModelJob:
    """What a worker needs for one model (plain values: it crosses a process boundary)."""

    path: str
    rel: str
    category: str
    category_dir: str
    model_id: str
    dataset_dir: str
    recipe: Recipe
    source_sha256: str


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _model_rng(recipe: Recipe, key: str, stream: int) -> np.random.Generator:
    """Generator of one random stream of one model: (seed, model key, stream)."""
    return np.random.default_rng(
        np.random.SeedSequence([recipe.seed, zlib.crc32(key.encode("utf-8")), stream])
    )


# ----------------------------------------------------------------------------- geometry
def _load(job: ModelJob):
    from meshrecon.io.appearance import load_mesh_with_appearance
    from meshrecon.utils.image_limits import ImageTooLargeError

    try:
        return load_mesh_with_appearance(job.path, texture_size=job.recipe.texture_size)
    except NonFiniteVerticesError:
        raise SkipModel("degenerate", "vertex coordinates are NaN or infinite") from None
    except (MeshIOError, UnsafePathError, ImageTooLargeError, OSError, ValueError) as err:
        # The summary names the file already: its path is dropped from the message.
        reason = _one_line(err).replace(f"{job.path}: ", "").replace(job.path, job.rel)
        raise SkipModel("unreadable", reason) from None


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _checked_geometry(verts: torch.Tensor, faces: torch.Tensor, appearance):
    """Drop unreferenced vertices; refuse meshes without faces, extent or area."""
    if faces.shape[0] == 0:
        raise SkipModel("degenerate", "no faces")
    used = torch.unique(faces)  # sorted: vertex order is kept
    if used.numel() < verts.shape[0]:
        remap = torch.full((verts.shape[0],), -1, dtype=torch.int64)
        remap[used] = torch.arange(used.numel())
        appearance = appearance.select(torch.ones(faces.shape[0], dtype=torch.bool), used)
        verts, faces = verts[used], remap[faces]
    v = verts.double().numpy()
    extent = v.max(axis=0) - v.min(axis=0)
    if not np.isfinite(extent).all() or float(np.linalg.norm(extent)) == 0.0:
        raise SkipModel("degenerate", "zero extent (all vertices at one point)")
    tri = v[faces.numpy()]
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    if not float(area.sum()) > 0.0:
        raise SkipModel("degenerate", "zero surface area (every face is a line or a point)")
    return v, faces.numpy(), appearance


def _components(verts: np.ndarray, faces: np.ndarray):
    """Welded ``(verts, faces)`` and per component ``(face indices, closed)``."""
    import trimesh

    mesh = trimesh.Trimesh(verts, faces, process=False)
    mesh.merge_vertices(merge_tex=True, merge_norm=True)
    welded_v, welded_f = np.asarray(mesh.vertices), np.asarray(mesh.faces, dtype=np.int64)
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(welded_f))
    edges = np.sort(welded_f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    _, inverse, counts = np.unique(edges, axis=0, return_inverse=True, return_counts=True)
    edge_label = np.repeat(labels, 3)
    # A component is closed when every one of its edges is shared by exactly two faces.
    open_edge = counts[inverse.reshape(-1)] != 2
    is_open = np.zeros(labels.max() + 1, dtype=bool)
    is_open[edge_label[open_edge]] = True
    components = [(np.flatnonzero(labels == c), not is_open[c]) for c in range(labels.max() + 1)]
    return welded_v, welded_f, components


def voxelize_mesh(verts: np.ndarray, faces: np.ndarray, sizes: list[int]) -> dict[int, np.ndarray]:
    """Solid occupancy of a normalised mesh over the unit box, for each grid size.

    Closed components are filled by ray parity (:func:`meshrecon.ops.voxelize_meshes`, as the
    synthetic shapes' parts are), open ones are the voxels their surface crosses
    (:meth:`Shape.surface_voxels`), and cavities that the union encloses are filled
    (``scipy.ndimage.binary_fill_holes``). If nothing is occupied (every closed part thinner
    than a voxel) the surface voxels of the whole mesh are used, as for the synthetic shapes.

    Args:
        verts: (V, 3) vertices inside ``[-0.5, 0.5]^3``.
        faces: (F, 3) faces.
        sizes: grid sizes S.

    Returns:
        ``{S: (S, S, S) bool}`` indexed ``[z, y, x]``, voxels tiling the box (``"corner"``).
    """
    from scipy import ndimage

    from meshrecon.ops import voxelize_meshes
    from meshrecon.structures import Meshes

    from ..synthetic.shapes import Part, Shape

    welded_v, welded_f, components = _components(verts, faces)

    def part(face_idx: np.ndarray) -> Part:
        f = welded_f[face_idx]
        used, local = np.unique(f, return_inverse=True)
        return Part("component", welded_v[used].astype(np.float32), local.reshape(-1, 3))

    closed = [part(idx) for idx, is_closed in components if is_closed]
    open_ = [part(idx) for idx, is_closed in components if not is_closed]
    whole = Part("mesh", welded_v.astype(np.float32), welded_f)
    grids = {}
    for size in sizes:
        occ = torch.zeros(size, size, size, dtype=torch.bool)
        for i in range(0, len(closed), _PARTS_PER_CALL):
            chunk = closed[i : i + _PARTS_PER_CALL]
            meshes = Meshes(
                verts=[torch.from_numpy(p.verts) for p in chunk],
                faces=[torch.from_numpy(p.faces) for p in chunk],
            )
            occ |= voxelize_meshes(meshes, size, box=_UNIT_BOX, align="corner").any(dim=0)
        for p in open_:
            occ |= Shape.surface_voxels(p, size, _UNIT_BOX, "corner")
        filled = ndimage.binary_fill_holes(occ.numpy())
        if not filled.any():
            filled = Shape.surface_voxels(whole, size, _UNIT_BOX, "corner").numpy()
        grids[size] = filled
    return grids


# ----------------------------------------------------------------------------- one model
def _prepare(job: ModelJob) -> dict[str, Any]:
    """Everything of one model in memory (no file written yet)."""
    from ..synthetic.assembly import unit_diagonal_frame
    from ..synthetic.scenes import draw_r2n2_views
    from ..synthetic.shapes import Part, Shape

    recipe = job.recipe
    verts_t, faces_t, appearance = _load(job)
    verts, faces, appearance = _checked_geometry(verts_t, faces_t, appearance)
    verts = verts @ _UP[recipe.up].T
    centre, diag = unit_diagonal_frame(verts)
    verts = ((verts - centre) / diag).astype(np.float32)
    key = f"{job.category_dir}/{job.model_id}"
    shape = Shape(job.category, parts=[Part("mesh", verts, faces)])
    points, normals = shape.sample_surface(recipe.num_samples, _model_rng(recipe, key, 1))
    grids = voxelize_mesh(verts, faces, list(recipe.voxel_sizes))
    views = draw_r2n2_views(_model_rng(recipe, key, 2), recipe.views, CAMERA_RANGES[recipe.cameras])
    colors = {
        "face": {"face_colors": appearance.face_colors},
        "vertex": {"vertex_colors": appearance.vertex_colors},
        "atlas": {"atlas": appearance.atlas},
        "none": {},
    }[appearance.kind]
    colors = {k: v.numpy() for k, v in colors.items()}
    return dict(
        verts=verts,
        faces=faces,
        points=points,
        normals=normals,
        grids=grids,
        views=views,
        colors=colors,
        info={
            "num_verts": int(len(verts)),
            "num_faces": int(len(faces)),
            "colors": appearance.source,
            "scale": 1.0 / diag,
        },
    )


def process_model(job: ModelJob) -> dict[str, Any]:
    """Write one model into ``<dataset_dir>/<category_dir>/<model_id>/``; return its summary.

    Returns:
        ``{"key", "status": "done", "records", "info"}``, or ``{"key", "status": "skipped",
        "kind", "reason"}`` for a mesh that cannot be loaded (``"unreadable"``), is degenerate
        (``"degenerate"``) or made the preparation fail (``"failed"``).
    """
    from ..synthetic.scenes import write_shapenet_model
    from ..synthetic.writers import save_json

    key = f"{job.category_dir}/{job.model_id}"
    try:
        data = _prepare(job)
    except SkipModel as skip:
        return {"key": key, "status": "skipped", "kind": skip.kind, "reason": skip.reason}
    except Exception as err:
        # A mesh this code cannot handle (a bug, or memory): reported in the summary with its
        # error, and the run goes on. Errors while writing (a full disk) stop the run instead.
        reason = f"{type(err).__name__}: {_one_line(err)}"
        return {"key": key, "status": "skipped", "kind": "failed", "reason": reason}
    parent = os.path.join(job.dataset_dir, job.category_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{job.model_id}-", dir=parent)
    os.chmod(tmp, 0o755)  # mkdtemp's folders are private; a dataset is shared like any other
    try:
        records = write_shapenet_model(
            tmp,
            key,
            verts=data["verts"],
            faces=data["faces"],
            points=data["points"],
            normals=data["normals"],
            grids=data["grids"],
            views=data["views"],
            image_size=job.recipe.image_size,
            record={
                "synset_id": job.category_dir,
                "model_id": job.model_id,
                "category": job.category,
            },
            **data["colors"],
        )
        summary = {
            "source": job.rel,
            "source_sha256": job.source_sha256,
            "recipe": job.recipe.digest(),
            "info": data["info"],
            "records": records,
        }
        save_json(os.path.join(tmp, MODEL_FILE), summary)  # last: the folder is complete
        final = os.path.join(parent, job.model_id)
        if os.path.lexists(final):
            shutil.rmtree(final)  # an outdated model (another recipe or source)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"key": key, "status": "done", "records": records, "info": data["info"]}
