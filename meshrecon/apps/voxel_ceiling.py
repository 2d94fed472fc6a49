"""The ceiling that a voxel grid puts on a cubify-then-refine model (VoxMesh).

VoxMesh (Mesh R-CNN) turns its predicted frustum voxels into cubes (``cubify``) and then moves
the cubes' vertices with its refinement stages. How far the cubes alone can get is a property of
the grid, not of any training: :class:`GroundTruthVoxelMeshes` stands in for the model, cubifies
each view's *ground-truth* voxels with the model's own mapping (same threshold rule, same
``CUBIFY_ALIGN``, same frustum-to-camera transform) and hands the cubes, unrefined, to the
config's evaluator. Its scores answer "what would a perfect voxel branch score at this grid
size", and they also check the voxel targets and the cubify mapping against each other: a half
voxel of offset between them shows as a lower score (``CUBIFY_ALIGN topleft`` on targets voxelized
at cell centres).

    python tools/voxel_ceiling.py --config-file configs/synthetic/voxmesh.yaml --sizes 24,32,48
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from meshrecon.data.datasets.synthetic import configure_synthetic
from meshrecon.engine.defaults import DefaultTrainer
from meshrecon.modeling import build_model
from meshrecon.ops.cubify import ALIGN_MODES

__all__ = ["GroundTruthVoxelMeshes", "voxel_ceiling"]


class GroundTruthVoxelMeshes(nn.Module):
    """A VoxMesh model's voxel branch replaced by the ground truth, its refinement removed.

    ``forward(batched_inputs)`` takes the test loader's dicts (which must carry ``voxels``, the
    camera-frame frustum grid, as ``INPUT.LOAD_TEST_ANNOTATIONS`` gives them) and returns
    ``[{"mesh": (verts, faces), "voxels": grid}]`` in the camera frame, as the model would.

    Args:
        model: a :class:`~meshrecon.modeling.meta_arch.SingleViewReconstructor` whose mesh head
            cubifies voxels (``initial_meshes(views, voxel_scores)``, e.g. ``VoxMeshHead``).
            Its weights are never used.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        head = getattr(model, "mesh_head", None)
        if head is None or not hasattr(head, "cubify_packed"):
            raise ValueError(
                "the voxel ceiling needs a model whose mesh head cubifies voxels "
                "(MODEL.MESH_HEAD.NAME VoxMeshHead)"
            )
        self.model = model

    @torch.no_grad()
    def forward(self, batched_inputs: Sequence[dict]) -> list[dict]:
        if not batched_inputs:
            raise ValueError("batched_inputs is empty")
        sizes = {tuple(x["image"].shape[-2:]) for x in batched_inputs}
        if len(sizes) != 1:
            raise ValueError(f"the views of one batch differ in size: {sorted(sizes)}")
        views = self.model.view_batch(batched_inputs, sizes.pop())
        voxels = views.require("voxels", for_="the voxel ceiling (INPUT.LOAD_TEST_ANNOTATIONS)")
        # Logits whose sigmoid is ~1 on occupied cells and ~0 elsewhere: every threshold in
        # (0, 1) cubifies exactly the occupied cells.
        logits = torch.where(voxels > 0.5, 20.0, -20.0).to(torch.float32)[:, None]
        meshes = self.model.mesh_head.initial_meshes(views, logits)
        return [
            {"mesh": (v, f), "voxels": g.float()}
            for v, f, g in zip(meshes.verts_list(), meshes.faces_list(), voxels)
        ]


def voxel_ceiling(
    cfg, sizes: Sequence[int], aligns: Sequence[str] = ("",), dataset: str = ""
) -> list[dict[str, Any]]:
    """Score the cubified ground-truth voxels of ``dataset`` at each grid size and alignment.

    Args:
        cfg: a VoxMesh config (``MODEL.MESH_HEAD.NAME VoxMeshHead``); it is not modified, but
            its ``DATASETS.SYNTHETIC`` becomes the process's synthetic setup, as a training's
            setup makes it.
        sizes: grid sizes (``MODEL.VOXEL_HEAD.VOXEL_SIZE`` and ``INPUT.SHAPENET.VOXEL_SIZE``).
        aligns: ``CUBIFY_ALIGN`` values; ``""`` keeps the config's.
        dataset: the split to score (default: the config's first ``DATASETS.TEST``).

    Returns:
        One dict per (size, align): ``size``, ``align`` and the evaluator's results.
    """
    if not sizes:
        raise ValueError("give at least one grid size")
    unknown = [a for a in aligns if a not in ("", *ALIGN_MODES)]
    if unknown:
        raise ValueError(f"unknown CUBIFY_ALIGN {unknown}: use one of {ALIGN_MODES}")
    configure_synthetic(cfg)  # DATASETS.SYNTHETIC.*, as the trainer's setup applies them
    rows = []
    for size in sizes:
        if int(size) < 2:
            raise ValueError(f"a grid size must be >= 2, got {size}")
        for align in aligns:
            c = cfg.clone()
            c.defrost()
            c.MODEL.VOXEL_HEAD.VOXEL_SIZE = int(size)
            c.INPUT.SHAPENET.VOXEL_SIZE = int(size)
            c.INPUT.LOAD_TEST_ANNOTATIONS = True
            if align:
                c.MODEL.VOXEL_HEAD.CUBIFY_ALIGN = align
            if dataset:
                c.DATASETS.TEST = (dataset,)
            c.freeze()
            model = GroundTruthVoxelMeshes(build_model(c).eval())
            results = DefaultTrainer.test(c, model)
            rows.append(
                {"size": int(size), "align": c.MODEL.VOXEL_HEAD.CUBIFY_ALIGN, "results": results}
            )
    return rows
