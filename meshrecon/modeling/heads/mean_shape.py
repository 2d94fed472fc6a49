"""A "mean training shape" baseline: the same canonical shape, placed in every view.

The mean shape is the majority vote of the training models' solid occupancy in their model
frame (a voxel is kept when more than half of the models fill it), cubified into a closed mesh.
At inference it goes into each view's camera frame with the view's ``R``, ``t``; the image
itself is ignored. Any method that does not beat it has learned nothing from the pixels beyond
the viewpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from meshrecon.config import configurable
from meshrecon.layers import ShapeSpec
from meshrecon.modeling.heads.build import MESH_HEAD_REGISTRY
from meshrecon.ops import cubify, voxelize_meshes
from meshrecon.structures import Meshes, ViewBatch

__all__ = ["MeanShapeHead", "compute_mean_shape"]

logger = logging.getLogger(__name__)
_CACHE: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def compute_mean_shape(
    records: Sequence[dict],
    voxel_size: int = 32,
    bounds: Sequence[float] = (-0.5, 0.5),
    max_models: int = 500,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean shape of the models of ShapeNet-style view records, in the model frame.

    Args:
        records: view records (``mesh`` path, ``synset_id`` / ``model_id``); each distinct
            mesh counts once.
        voxel_size: side of the occupancy grid over the cube ``bounds``^3.
        bounds: (min, max) of that cube in model units (ShapeNet models fit in [-0.5, 0.5]).
        max_models: use at most this many models (the first ones, in record order).

    Returns:
        verts (V, 3), faces (F, 3) of the cubified majority-vote occupancy (if no voxel is
        filled by a majority, the most filled voxels, down to half of the maximum).
    """
    from meshrecon.data.readers import read_mesh

    paths = list(dict.fromkeys(r["mesh"] for r in records if r.get("mesh")))[:max_models]
    if not paths:
        raise ValueError("compute_mean_shape: no record has a 'mesh'")
    lo, hi = float(bounds[0]), float(bounds[1])
    box = torch.tensor([[lo] * 3, [hi] * 3])
    total = torch.zeros(voxel_size, voxel_size, voxel_size)
    for path in paths:
        verts, faces = read_mesh(path)
        mesh = Meshes(verts=[verts.float()], faces=[faces])
        total += voxelize_meshes(mesh, voxel_size, box=box, align="center")[0].float()
    freq = total / len(paths)
    thresh = min(0.5, 0.5 * float(freq.max()))
    grid = cubify(freq[None], max(thresh, 1e-6), align="center")
    verts = lo + (grid.verts_packed() + 1.0) * 0.5 * (hi - lo)
    logger.info(
        "Mean shape of %d models: %d voxels filled by > %.2f of them",
        len(paths),
        int((freq >= thresh).sum()),
        thresh,
    )
    return verts, grid.faces_packed()


@MESH_HEAD_REGISTRY.register()
class MeanShapeHead(nn.Module):
    """Predict the training set's mean shape in each view (``R``, ``t`` of the inputs).

    Built from a config, it computes the mean shape of ``DATASETS.TRAIN`` (cached per process);
    the shape is kept in non-persistent buffers, so checkpoints of this model hold only the
    (unused) backbone.
    """

    @configurable
    def __init__(self, *, mean_verts: torch.Tensor, mean_faces: torch.Tensor) -> None:
        super().__init__()
        if mean_verts.dim() != 2 or mean_verts.shape[1] != 3:
            raise ValueError(f"mean_verts must be (V, 3), got {tuple(mean_verts.shape)}")
        if mean_faces.dim() != 2 or mean_faces.shape[1] != 3:
            raise ValueError(f"mean_faces must be (F, 3), got {tuple(mean_faces.shape)}")
        self.register_buffer("mean_verts", mean_verts.float(), persistent=False)
        self.register_buffer("mean_faces", mean_faces.long(), persistent=False)

    @classmethod
    def from_config(cls, cfg, input_shape: Mapping[str, ShapeSpec] | None = None) -> dict[str, Any]:
        from meshrecon.data.build import get_dataset_dicts

        m = cfg.MODEL.MEAN_SHAPE
        key = (tuple(cfg.DATASETS.TRAIN), m.VOXEL_SIZE, tuple(m.BOUNDS), m.MAX_MODELS)
        if key not in _CACHE:
            records = get_dataset_dicts(cfg.DATASETS.TRAIN)
            _CACHE[key] = compute_mean_shape(records, m.VOXEL_SIZE, m.BOUNDS, m.MAX_MODELS)
        verts, faces = _CACHE[key]
        return {"mean_verts": verts, "mean_faces": faces}

    def forward(
        self, features: Sequence[torch.Tensor], views: ViewBatch, **unused: Any
    ) -> dict[str, torch.Tensor] | list[dict]:
        if self.training:
            # Nothing to learn; keep the trainer's loss a differentiable scalar.
            return {"loss_mean_shape": features[-1].sum() * 0.0}
        R, t = views.require("R", "t", for_="placing the mean shape (MeanShapeHead)")
        verts = torch.einsum("nij,vj->nvi", R, self.mean_verts) + t[:, None]
        return [{"mesh": (v, self.mean_faces)} for v in verts]
