"""Recognition baselines on several views of one object (the multi-view task).

The heads of :mod:`.recognition` as heads of
:class:`~meshrecon.modeling.meta_arch.multi_view.MultiViewReconstructor`: each view is encoded
by the backbone and the predictor as in the single-view form, and the views of an object vote:
Retrieval averages their predicted coordinates, Clustering sums their log-probabilities, the
oracle reads the ground truth. The database is in the object frame (the multi-view task is
scored there). The answer is the entry's model-frame mesh and its voxel grid (the dataset's
own file, so it lines up with the ground-truth grid), for every prefix of the views
(``by_num_views``), which :class:`~meshrecon.evaluation.voxel_evaluation.R2N2Evaluator`
scores per view count.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from meshrecon.config import configurable
from meshrecon.modeling.backbone import build_backbone
from meshrecon.modeling.heads.build import MULTIVIEW_HEAD_REGISTRY
from meshrecon.modeling.heads.recognition import RecognitionBase, _config_args
from meshrecon.utils.stage_timer import stage

__all__ = ["MultiViewClusteringHead", "MultiViewOracleNNHead", "MultiViewRetrievalHead"]


class _MultiViewRecognitionHead(RecognitionBase):
    """Views in, a training entry's mesh and voxels out, for every view count."""

    _mode = ""
    supports_prefix_outputs = True
    # A training entry's voxels (and mesh) per view count: scored by R2N2Evaluator.
    evaluator_type = "r2n2"

    @configurable
    def __init__(self, *, backbone: torch.nn.Module | None = None, **kwargs: Any) -> None:
        super().__init__(mode=self._mode, **kwargs)
        if self.frame != "object":
            raise ValueError(
                "the multi-view recognition heads need MODEL.RECOGNITION.FRAME 'object' (the "
                f"multi-view task is scored in the model frame), got {self.frame!r}"
            )
        if self.mode != "oracle" and backbone is None:
            raise ValueError(f"multi-view {self.mode} needs a backbone")
        self.backbone = backbone if self.mode != "oracle" else None
        self._voxels: dict[int, torch.Tensor] = {}

    @property
    def needs_targets_at_inference(self) -> bool:
        """The oracle reads the ground truth (``targets``) at test time too."""
        return self.mode == "oracle"

    @classmethod
    def from_config(cls, cfg, input_shape: Any = None) -> dict[str, Any]:
        if cls._mode == "oracle":
            args = _config_args(cfg, cls._mode, 0)
            args.pop("mode")
            return args
        backbone = build_backbone(cfg)
        channels = list(backbone.output_shape().values())[-1].channels
        args = _config_args(cfg, cls._mode, channels)
        args.pop("mode")
        return {**args, "backbone": backbone}

    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        with stage("backbone"):
            feats = self.backbone(images)
        return self.predictor(list(feats.values())[-1].mean(dim=(2, 3)))

    @staticmethod
    def _target_points(targets, what: str) -> torch.Tensor:
        if not targets or any(t.get("points") is None for t in targets):
            raise ValueError(
                f"multi-view {what} needs every object's ground-truth 'points' (model frame): set "
                "INPUT.SHAPENET.NUM_SAMPLES > 0 and INPUT.LOAD_TEST_ANNOTATIONS True"
            )
        n = min(int(t["points"].shape[0]) for t in targets)
        return torch.stack([torch.as_tensor(t["points"])[:n].float() for t in targets])

    def entry_voxels(self, entry: int) -> torch.Tensor | None:
        """The entry's model as the dataset's voxel grid (float, [z, y, x]), or None."""
        model = int(self.entry_model[entry])
        if model not in self._voxels:
            path = self.voxel_paths[model]
            grid = None
            if path:
                from meshrecon.data.readers import read_voxel

                grid = read_voxel(path).grid
            self._voxels[model] = None if grid is None else torch.as_tensor(grid).float()
        grid = self._voxels[model]
        return None if grid is None else grid.to(self.entry_R.device)

    def _answer(self, entry: int) -> dict[str, Any]:
        out: dict[str, Any] = {"mesh": self.entry_mesh(entry)}
        grid = self.entry_voxels(entry)
        if grid is not None:
            out["voxels"] = grid
        return out

    def forward(self, images, num_views, targets=None, views=None):
        self._check_database()
        if self.training:
            if self.mode == "oracle":
                return {"loss_oracle_nn": images.sum() * 0.0}
            pred = self._encode(images)
            target = self._target_points(targets, self.mode).to(pred.device)
            target = target.repeat_interleave(num_views.to(target.device), dim=0)
            return self.losses(pred, target)
        counts = [int(v) for v in num_views.tolist()]
        if self.mode == "oracle":
            entries = self.nearest_to(self._target_points(targets, "oracle").to(self.lattice))
            per_object = [[int(entries[b])] * counts[b] for b in range(len(counts))]
        else:
            pred = self._encode(images)
            if self.mode == "clustering":
                pred = F.log_softmax(pred, dim=1)
            per_object = []
            for chunk in pred.split(counts):
                # Prediction from the first k views, k = 1 .. V: the running mean (retrieval)
                # or sum (clustering: a product of probabilities) of the views' votes.
                running = chunk.cumsum(0)
                if self.mode == "retrieval":
                    running = (
                        running / torch.arange(1, len(chunk) + 1, device=chunk.device)[:, None]
                    )
                per_object.append(self.select(running).tolist())
        results = []
        for entries in per_object:
            by_k = [self._answer(e) for e in entries]
            results.append({**by_k[-1], "by_num_views": by_k})
        return results


@MULTIVIEW_HEAD_REGISTRY.register()
class MultiViewRetrievalHead(_MultiViewRecognitionHead):
    """Retrieval from several views: the mean of the views' predicted coordinates."""

    _mode = "retrieval"


@MULTIVIEW_HEAD_REGISTRY.register()
class MultiViewClusteringHead(_MultiViewRecognitionHead):
    """Clustering from several views: the cluster of the summed log-probabilities."""

    _mode = "clustering"


@MULTIVIEW_HEAD_REGISTRY.register()
class MultiViewOracleNNHead(_MultiViewRecognitionHead):
    """Oracle NN for the multi-view task: the entry nearest to the ground truth."""

    _mode = "oracle"
