"""``ShapeDatabase``: the training shapes a recognition baseline searches, as plain data.

Made by :func:`meshrecon.data.shape_statistics.build_shape_database` from a training split,
cached on disk as :meth:`ShapeDatabase.to_dict`, and handed to the recognition heads
(:mod:`meshrecon.modeling.heads.recognition`), which keep what they need of it in their
``state_dict``. It lives below both data and modeling because both pass it around.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["FRAMES", "ShapeDatabase"]

# "object": one entry per training model, in its model frame. "viewer": one entry per training
# view, the model moved into that view's camera frame (a shape and a viewpoint).
FRAMES = ("object", "viewer")

_TENSORS = ("entry_model", "entry_R", "entry_t", "box", "descriptors")


@dataclass
class ShapeDatabase:
    """Entries (a training model, posed in the database's frame) and their descriptors.

    Attributes:
        frame: ``"object"`` or ``"viewer"`` (see :data:`FRAMES`).
        keys: N names ``"<synset>/<model>"`` (object frame) or ``"<synset>/<model>/<view>"``
            (viewer frame), one per entry.
        mesh_paths: M mesh files, one per distinct model.
        voxel_paths: M voxel files (None where the dataset has none), one per model.
        entry_model: (N,) int64 index of each entry's model in ``mesh_paths``.
        entry_R: (N, 3, 3) float32 rotation, model -> database frame, of each entry.
        entry_t: (N, 3) float32 translation, model -> database frame, of each entry.
        box: (2, 3) float32 ``[min_xyz, max_xyz]`` of the region the descriptor lattice tiles.
        resolution: lattice side (the descriptor has ``resolution``^3 values).
        descriptors: (N, resolution^3) float32 distance-field descriptors
            (:func:`meshrecon.ops.distance_field_descriptors`).
        categories: N category names, one per entry ("" where unknown).

    Raises:
        ValueError: on construction, if the frame is unknown or the sizes disagree.
    """

    frame: str
    keys: list[str]
    mesh_paths: list[str]
    voxel_paths: list[str | None]
    entry_model: torch.Tensor
    entry_R: torch.Tensor
    entry_t: torch.Tensor
    box: torch.Tensor
    resolution: int
    descriptors: torch.Tensor
    categories: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.frame not in FRAMES:
            raise ValueError(f"frame must be one of {FRAMES}, got {self.frame!r}")
        n, m = len(self.keys), len(self.mesh_paths)
        expected = {
            "entry_model": (n,),
            "entry_R": (n, 3, 3),
            "entry_t": (n, 3),
            "box": (2, 3),
            "descriptors": (n, int(self.resolution) ** 3),
        }
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"ShapeDatabase.{name} must be {shape} for {n} entries, got {got}")
        if len(self.voxel_paths) != m:
            raise ValueError(f"{m} mesh_paths but {len(self.voxel_paths)} voxel_paths")
        if self.categories and len(self.categories) != n:
            raise ValueError(f"{n} entries but {len(self.categories)} categories")
        if n and (int(self.entry_model.min()) < 0 or int(self.entry_model.max()) >= m):
            raise ValueError(f"entry_model must index the {m} models, got {self.entry_model}")

    def __len__(self) -> int:
        """The number of entries N."""
        return len(self.keys)

    def digest(self) -> int:
        """A 60-bit fingerprint of the entries' names, the frame and the resolution.

        Checkpoints store it: a model built from another training split or descriptor setup
        has another digest. It names entries, not files, so it does not depend on where the
        dataset lies on disk.
        """
        text = "\n".join([self.frame, str(self.resolution), *self.keys])
        return int(hashlib.sha256(text.encode()).hexdigest()[:15], 16)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict of tensors, strings, ints and lists.

        ``torch.save``-able and readable with ``torch.load(weights_only=True)``;
        :meth:`from_dict` inverts it.
        """
        out: dict[str, Any] = {
            "frame": self.frame,
            "keys": list(self.keys),
            "mesh_paths": list(self.mesh_paths),
            "voxel_paths": list(self.voxel_paths),
            "resolution": int(self.resolution),
            "categories": list(self.categories),
        }
        out.update({name: getattr(self, name) for name in _TENSORS})
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShapeDatabase:
        """The database that :meth:`to_dict` wrote.

        Raises:
            ValueError: a field is missing or has the wrong size.
        """
        names = ("frame", "keys", "mesh_paths", "voxel_paths", "resolution", *_TENSORS)
        missing = [name for name in names if name not in data]
        if missing:
            raise ValueError(f"a ShapeDatabase dict needs {missing}, found {sorted(data)}")
        return cls(
            frame=str(data["frame"]),
            keys=list(data["keys"]),
            mesh_paths=list(data["mesh_paths"]),
            voxel_paths=list(data["voxel_paths"]),
            entry_model=torch.as_tensor(data["entry_model"], dtype=torch.long),
            entry_R=torch.as_tensor(data["entry_R"], dtype=torch.float32),
            entry_t=torch.as_tensor(data["entry_t"], dtype=torch.float32),
            box=torch.as_tensor(data["box"], dtype=torch.float32),
            resolution=int(data["resolution"]),
            descriptors=torch.as_tensor(data["descriptors"], dtype=torch.float32),
            categories=list(data.get("categories") or []),
        )
