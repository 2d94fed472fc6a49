"""``ViewBatch``: the cameras and targets of N single views, as the whole-image heads see them.

A single-view model (``SingleViewReconstructor``) stacks what its inputs carry into one
``ViewBatch`` on its device and hands it to each head next to the image features; a head reads
the fields it needs, by name, the way Detectron2's ROI heads read the fields of ``Instances``.
Which head reads which field is the contract written in :class:`ViewBatch`'s docstring; a head
that needs a field the batch lacks asks :meth:`ViewBatch.require`, whose error names the input
key to provide.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch

__all__ = ["ViewBatch"]

# The input dict key each field is stacked from, where the two names differ.
_INPUT_KEYS = {"meshes": "mesh"}


@dataclass
class ViewBatch:
    """The cameras and targets of a batch of N views, stacked on the model's device.

    All positions are in each view's camera frame (meshrecon's: +X left, +Y up, +Z forward).
    A target field is None unless every input of the batch has its key (a head cannot train on
    half a batch); ``K`` is always present (the model fills in its default camera).

    Fields (shape; the input key it is stacked from):

    * ``image_size``: (H, W) of the (equally sized) images the backbone saw.
    * ``K``: (N, 4) intrinsics ``[fx, fy, cx, cy]`` in pixels of those images (``"K"``).
    * ``R``, ``t``: (N, 3, 3), (N, 3) model -> camera transforms (``"R"``, ``"t"``): a point
      ``m`` of the object's model frame is at ``R m + t`` in the camera frame.
    * ``points``, ``normals``: (N, P, 3) surface samples of the object and their unit normals
      (``"points"``, ``"normals"``).
    * ``voxels``: (N, V, V, V) float occupancy targets, indexed [z, y, x] (``"voxels"``).
    * ``meshes``: N ``(verts (V_i, 3), faces (F_i, 3))`` ground-truth meshes (``"mesh"``).

    The contract, field by field (which head reads it, and when):

    ==============  ===========================================================================
    field           read by
    ==============  ===========================================================================
    ``image_size``  every mesh head (VoxMesh, Sphere-Init, Pixel2Mesh+, Pixel2Mesh's G-ResNet):
                    projecting vertices to sample image features; export
    ``K``           the same heads and export; VoxMesh also to cubify its frustum grid
    ``R``, ``t``    ``MeanShapeHead`` (inference: to place the mean shape); the recognition
                    heads (retrieval, clustering, oracle) in the ``"object"`` frame
    ``points``      training ``PSGNHead``, ``Pixel2MeshGResNetHead`` and the refinement heads
                    (VoxMesh, Sphere-Init, Pixel2Mesh+; these take ``meshes`` when it is
                    missing); the recognition heads in training, the oracle also in inference
    ``normals``     optional: the normal losses of the refinement heads and of Pixel2Mesh
    ``voxels``      training ``VoxelHead`` (``VoxelHead.losses``)
    ``meshes``      training the refinement heads when ``points`` is missing (they sample it)
    ==============  ===========================================================================
    """

    image_size: tuple[int, int]
    K: torch.Tensor
    R: torch.Tensor | None = None
    t: torch.Tensor | None = None
    points: torch.Tensor | None = None
    normals: torch.Tensor | None = None
    voxels: torch.Tensor | None = None
    meshes: list[tuple[torch.Tensor, torch.Tensor]] | None = field(default=None)

    def __post_init__(self) -> None:
        # Only static checks here (ranks, trailing sizes, N against K's N): under torch.export
        # N is symbolic, and a check that read its value would fix the exported batch size.
        if len(self.image_size) != 2:
            raise ValueError(f"ViewBatch: image_size must be (H, W), got {self.image_size!r}")
        if self.K.dim() != 2 or self.K.shape[1] != 4:
            raise ValueError(f"ViewBatch: K must be (N, 4), got {tuple(self.K.shape)}")
        N = self.K.shape[0]
        expected = {"R": (3, 3), "t": (3,), "points": (None, 3), "normals": (None, 3)}
        for name, tail in expected.items():
            value = getattr(self, name)
            if value is None:
                continue
            ok = value.dim() == len(tail) + 1 and value.shape[0] == N
            ok = ok and all(s is None or value.shape[1 + i] == s for i, s in enumerate(tail))
            if not ok:
                dims = ", ".join("P" if s is None else str(s) for s in tail)
                raise ValueError(
                    f"ViewBatch: {name} must be ({N}, {dims}) for the {N} views of K, "
                    f"got {tuple(value.shape)}"
                )
        if self.normals is not None and (
            self.points is None or self.normals.shape != self.points.shape
        ):
            points = None if self.points is None else tuple(self.points.shape)
            raise ValueError(
                f"ViewBatch: normals {tuple(self.normals.shape)} need points of the same shape, "
                f"got {points}"
            )
        if self.voxels is not None and (self.voxels.dim() != 4 or self.voxels.shape[0] != N):
            raise ValueError(
                f"ViewBatch: voxels must be ({N}, V, V, V) for the {N} views of K, "
                f"got {tuple(self.voxels.shape)}"
            )
        if self.meshes is not None and len(self.meshes) != N:
            raise ValueError(
                f"ViewBatch: meshes must hold one (verts, faces) per view ({N}), "
                f"got {len(self.meshes)}"
            )

    def __len__(self) -> int:
        return self.K.shape[0]

    @property
    def device(self) -> torch.device:
        """The device of the batch's tensors (that of ``K``)."""
        return self.K.device

    @classmethod
    def field_names(cls) -> list[str]:
        """The fields, in declaration order."""
        return [f.name for f in fields(cls)]

    def require(self, *names: str, for_: str) -> Any:
        """Return the named fields, or raise a ValueError naming the missing input keys.

        Args:
            names: field names (``"points"``, ``"voxels"``, ``"R"``, ...).
            for_: what needs them, as the start of the error's sentence (``"training the
                voxel head"`` gives "training the voxel head needs 'voxels' in every input").

        Returns:
            The field's value for one name, a tuple of the values for several.

        Raises:
            ValueError: a field is None (the batch's inputs lack its key), or a name is not a
                field of ``ViewBatch``.
        """
        if not names:
            raise ValueError("ViewBatch.require: name at least one field")
        known = self.field_names()
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"ViewBatch has no field {unknown[0]!r}; its fields are {known}")
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            keys = " and ".join(repr(_INPUT_KEYS.get(n, n)) for n in missing)
            raise ValueError(f"{for_} needs {keys} in every input")
        values = tuple(getattr(self, n) for n in names)
        return values[0] if len(values) == 1 else values

    def to(self, device: torch.device | str) -> ViewBatch:
        """A ViewBatch with every tensor on ``device`` (``image_size`` is kept as it is)."""
        device = torch.device(device)

        def move(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.to(device)

        meshes = None
        if self.meshes is not None:
            meshes = [(v.to(device), f.to(device)) for v, f in self.meshes]
        return ViewBatch(
            image_size=self.image_size,
            K=self.K.to(device),
            R=move(self.R),
            t=move(self.t),
            points=move(self.points),
            normals=move(self.normals),
            voxels=move(self.voxels),
            meshes=meshes,
        )
