"""A "mean training shape" baseline: the same canonical shape, placed in every view.

The mean shape is the majority vote of the training models' solid occupancy in their model
frame (a voxel is kept when more than half of the models fill it), cubified into a closed mesh
(:func:`meshrecon.data.shape_statistics.compute_mean_shape`). At inference it goes into each
view's camera frame with the view's ``R``, ``t``; the image itself is ignored. Any method that
does not beat it has learned nothing from the pixels beyond the viewpoint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from meshrecon.config import configurable
from meshrecon.layers import ShapeSpec
from meshrecon.modeling.heads.build import MESH_HEAD_REGISTRY
from meshrecon.modeling.heads.train_statistics import (
    adopt_statistics,
    differs_from_checkpoint,
    has_statistic,
    register_statistic,
    training_statistics,
)
from meshrecon.structures import ViewBatch

__all__ = ["MeanShapeHead", "mean_shape_digest"]

_STATISTICS = ("mean_verts", "mean_faces", "mean_shape_digest")


def mean_shape_digest(verts: torch.Tensor, faces: torch.Tensor) -> int:
    """A 60-bit fingerprint of a mean shape's vertices (float32) and faces (int64)."""
    digest = hashlib.sha256()
    for t, dtype in ((verts, torch.float32), (faces, torch.int64)):
        t = t.detach().to("cpu", dtype).contiguous()
        digest.update(str(tuple(t.shape)).encode())
        digest.update(t.numpy().tobytes())
    return int(digest.hexdigest()[:15], 16)


@MESH_HEAD_REGISTRY.register()
class MeanShapeHead(nn.Module):
    """Predict the training set's mean shape in each view (``R``, ``t`` of the inputs).

    Args:
        mean_verts: (V, 3) vertices of the mean shape in the model frame; None (with
            ``mean_faces``): built without it, for a checkpoint to provide.
        mean_faces: (F, 3) faces of the mean shape.

    Built from a config, it takes the mean shape of ``DATASETS.TRAIN`` per ``MODEL.MEAN_SHAPE``
    (:func:`~meshrecon.modeling.heads.train_statistics.training_statistics`: computed once and
    cached on disk), or none when that split is not registered. The shape is in the
    ``state_dict`` (``mean_verts``, ``mean_faces`` and their ``mean_shape_digest``), so a
    checkpoint of this model evaluates without the training split; loading a checkpoint whose
    mean shape differs from the one the head was built with raises.
    """

    @configurable
    def __init__(
        self, *, mean_verts: torch.Tensor | None = None, mean_faces: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        if (mean_verts is None) != (mean_faces is None):
            raise ValueError("give both mean_verts and mean_faces, or neither")
        digest = None
        if mean_verts is not None and mean_faces is not None:
            if mean_verts.dim() != 2 or mean_verts.shape[1] != 3:
                raise ValueError(f"mean_verts must be (V, 3), got {tuple(mean_verts.shape)}")
            if mean_faces.dim() != 2 or mean_faces.shape[1] != 3:
                raise ValueError(f"mean_faces must be (F, 3), got {tuple(mean_faces.shape)}")
            digest = torch.tensor([mean_shape_digest(mean_verts, mean_faces)])
        register_statistic(self, "mean_verts", mean_verts, torch.float32)
        register_statistic(self, "mean_faces", mean_faces, torch.int64)
        register_statistic(self, "mean_shape_digest", digest, torch.int64)

    @classmethod
    def from_config(cls, cfg, input_shape: Mapping[str, ShapeSpec] | None = None) -> dict[str, Any]:
        return training_statistics(cfg, "mean_shape") or {}

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors
    ):
        if differs_from_checkpoint(self, state_dict, prefix, "mean_shape_digest"):
            raise ValueError(
                f"this checkpoint's mean shape ({prefix}mean_shape_digest) was computed from "
                "another training split or MODEL.MEAN_SHAPE than this config's; build the model "
                "with the config it was made with, or with DATASETS.TRAIN empty to take the "
                "checkpoint's"
            )
        adopt_statistics(self, state_dict, prefix, _STATISTICS)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing, unexpected, errors
        )

    def forward(
        self, features: Sequence[torch.Tensor], views: ViewBatch, **unused: Any
    ) -> dict[str, torch.Tensor] | list[dict]:
        if self.training:
            # Nothing to learn; keep the trainer's loss a differentiable scalar.
            return {"loss_mean_shape": features[-1].sum() * 0.0}
        if not has_statistic(self, "mean_verts"):
            raise RuntimeError(
                "MeanShapeHead has no mean shape: it was built without a registered training "
                "split (DATASETS.TRAIN) and no checkpoint holding one was loaded (MODEL.WEIGHTS)"
            )
        R, t = views.require("R", "t", for_="placing the mean shape (MeanShapeHead)")
        verts = torch.einsum("nij,vj->nvi", R, self.mean_verts) + t[:, None]
        return [{"mesh": (v, self.mean_faces)} for v in verts]
