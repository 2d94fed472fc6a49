"""Recognition baselines: answer with a training shape instead of reconstructing one.

Tatarchenko et al. ("What Do Single-view 3D Reconstruction Networks Learn?", CVPR 2019)
showed that single-view networks were matched by two recognition baselines, and bounded them
with an oracle. Here all three are heads over a :class:`~.shape_database.ShapeDatabase` of the
training set (distance-field descriptors, their PCA, k-means in that space):

* **Retrieval** (:class:`RetrievalHead`): an image embedding trained to regress the PCA
  coordinates of the shape it shows, so that nearest neighbours share shape; the answer is the
  database entry nearest to the predicted coordinates.
* **Clustering** (:class:`ClusteringHead`): k-means of the entries; an image classifier trained
  to predict the cluster of the shape it shows; the answer is the predicted cluster's medoid.
* **Oracle NN** (:class:`OracleNNHead`): the entry whose full descriptor is nearest to the
  ground truth's: the best any retrieval in this descriptor space can do. It reads the ground
  truth at test time, so it is an upper bound, not a method.

Frames: with ``frame="viewer"`` an entry is a training model *in one training view's camera*,
so the answer comes with that view's pose and lands in the camera frame the evaluator expects
without any pose from the test input (the viewer-centred setting of the paper). With
``frame="object"`` entries are model-frame shapes and the answer is placed with the input
view's ``R``, ``t`` (as the mean-shape baseline is), or stays in the model frame for the
multi-view task, which is scored there.

The database depends only on the training set and the config and is rebuilt identically when
a model is built; its checkpoint keeps what the weights depend on (PCA basis, entries'
coordinates, cluster centres and medoids) and a fingerprint of the entries, and loading a
checkpoint of another training set raises.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from meshrecon.config import configurable
from meshrecon.layers import ShapeSpec
from meshrecon.modeling.heads.build import MESH_HEAD_REGISTRY
from meshrecon.modeling.heads.shape_database import (
    ShapeDatabase,
    build_shape_database,
    cluster_medoids,
    distance_field_descriptors,
    fit_pca,
    kmeans,
)
from meshrecon.structures import ViewBatch
from meshrecon.utils.stage_timer import stage

__all__ = [
    "ClusteringHead",
    "OracleNNHead",
    "RecognitionBase",
    "RetrievalHead",
    "database_from_config",
]

logger = logging.getLogger(__name__)
MODES = ("retrieval", "clustering", "oracle")
_DB_CACHE: dict[tuple, ShapeDatabase] = {}


def database_from_config(cfg) -> ShapeDatabase:
    """The :class:`ShapeDatabase` of ``cfg.DATASETS.TRAIN`` per ``cfg.MODEL.RECOGNITION``
    (built once per process and training set)."""
    from meshrecon.data.build import get_dataset_dicts

    r = cfg.MODEL.RECOGNITION
    records = get_dataset_dicts(cfg.DATASETS.TRAIN)
    first = records[0] if records else {}
    key = (
        tuple(cfg.DATASETS.TRAIN),
        len(records),
        str(first.get("mesh") or (first.get("views") or [{}])[0].get("mesh")),
        r.FRAME,
        r.DESCRIPTOR_SIZE,
        r.DESCRIPTOR_POINTS,
        r.VIEWS_PER_MODEL,
        r.MAX_MODELS,
        tuple(r.BOUNDS),
        r.SEED,
    )
    if key not in _DB_CACHE:
        _DB_CACHE[key] = build_shape_database(
            records,
            frame=r.FRAME,
            resolution=r.DESCRIPTOR_SIZE,
            num_points=r.DESCRIPTOR_POINTS,
            views_per_model=r.VIEWS_PER_MODEL,
            max_models=r.MAX_MODELS,
            box=list(r.BOUNDS) or None,
            seed=r.SEED,
        )
    return _DB_CACHE[key]


class RecognitionBase(nn.Module):
    """The database, the search and the answer's mesh; what the single- and multi-view
    recognition heads share.

    Args:
        database: the training shapes.
        mode: ``"retrieval"``, ``"clustering"`` or ``"oracle"``.
        in_channels: channels of the image features the predictor reads (0 for the oracle).
        embed_dim: PCA dimensions of the retrieval / clustering space.
        num_clusters: k of k-means (clustering).
        hidden_dim: width of the predictor's hidden layer.
        loss_weight: weight of the training loss.
        seed: seed of the PCA and k-means.
        kmeans_iters: at most this many Lloyd iterations.
        num_points: surface samples per target descriptor (as the database's).
    """

    def __init__(
        self,
        *,
        database: ShapeDatabase,
        mode: str,
        in_channels: int = 0,
        embed_dim: int = 64,
        num_clusters: int = 0,
        hidden_dim: int = 256,
        loss_weight: float = 1.0,
        seed: int = 0,
        kmeans_iters: int = 100,
        num_points: int = 1000,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if len(database) < 2:
            raise ValueError(f"the shape database needs at least 2 entries, got {len(database)}")
        self.mode, self.frame = mode, database.frame
        self.loss_weight, self.num_points = float(loss_weight), int(num_points)
        self.resolution = database.resolution
        self.mesh_paths = list(database.mesh_paths)
        self.voxel_paths = list(database.voxel_paths)
        self.entry_keys = list(database.keys)
        self._meshes: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.register_buffer("db_digest", torch.tensor([database.digest()], dtype=torch.long))
        self.register_buffer("db_box", database.box.float().clone())
        self.register_buffer("entry_model", database.entry_model.clone())
        self.register_buffer("entry_R", database.entry_R.float().clone())
        self.register_buffer("entry_t", database.entry_t.float().clone())
        self.register_buffer("lattice", database.lattice(), persistent=False)
        if mode == "oracle":
            self.register_buffer("descriptors", database.descriptors.float(), persistent=False)
            self.predictor = None
            return
        if in_channels < 1:
            raise ValueError(f"{mode} needs the image features' in_channels, got {in_channels}")
        mean, basis, variance = fit_pca(database.descriptors, embed_dim, seed)
        embeddings = (database.descriptors.float() - mean) @ basis.T
        self.register_buffer("pca_mean", mean)
        self.register_buffer("pca_basis", basis)
        # Regression targets are divided by the root of the total variance: loss ~1 at start.
        self.register_buffer("pca_scale", variance.sum().sqrt().clamp(min=1e-8).reshape(1))
        self.register_buffer("embeddings", embeddings)
        out_dim = basis.shape[0]
        if mode == "clustering":
            if not 1 <= num_clusters <= len(database):
                raise ValueError(
                    f"num_clusters must be in 1..{len(database)} (the entries), got {num_clusters}"
                )
            centres, labels = kmeans(embeddings, num_clusters, seed, kmeans_iters)
            self.register_buffer("centres", centres)
            self.register_buffer("medoids", cluster_medoids(embeddings, labels, num_clusters))
            sizes = torch.bincount(labels, minlength=num_clusters)
            logger.info(
                "Clustering: %d clusters of %d entries (sizes %d..%d, median %d)",
                num_clusters,
                len(database),
                int(sizes.min()),
                int(sizes.max()),
                int(sizes.median()),
            )
            out_dim = num_clusters
        logger.info(
            "Recognition (%s): %d PCA dimensions keep %.1f%% of the descriptors' variance",
            mode,
            basis.shape[0],
            100.0 * float(variance.sum() / database.descriptors.var(0).sum().clamp(min=1e-12)),
        )
        self.predictor = nn.Sequential(
            nn.Linear(in_channels, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    # ------------------------------------------------------------------ checkpoints
    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors
    ):
        saved = state_dict.get(prefix + "db_digest")
        if saved is not None and not torch.equal(saved.to(self.db_digest), self.db_digest):
            raise ValueError(
                f"this checkpoint's {self.mode} database ({prefix}db_digest) was built from "
                "another training set or descriptor setup than this config's "
                "(DATASETS.TRAIN, MODEL.RECOGNITION)"
            )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing, unexpected, errors
        )

    # ------------------------------------------------------------------ descriptors
    def describe(self, points: torch.Tensor) -> torch.Tensor:
        """(N, L) descriptors of (N, P, 3) surface samples in the database's frame."""
        if points.dim() != 3 or points.shape[-1] != 3:
            raise ValueError(f"points must be (N, P, 3), got {tuple(points.shape)}")
        pts = points[:, : self.num_points].to(self.lattice)
        return distance_field_descriptors(pts, self.lattice)

    def embed(self, descriptors: torch.Tensor) -> torch.Tensor:
        """PCA coordinates (N, D) of descriptors (N, L)."""
        return (descriptors - self.pca_mean) @ self.pca_basis.T

    def cluster_of(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(N,) nearest cluster centre of each embedding."""
        return torch.cdist(embeddings, self.centres).argmin(dim=1)

    # ------------------------------------------------------------------ prediction
    def losses(self, predictions: torch.Tensor, target_points: torch.Tensor) -> dict:
        """Training loss of ``predictions`` (N, D or k) against (N, P, 3) target samples."""
        with stage("losses"):
            target = self.embed(self.describe(target_points))
            if self.mode == "retrieval":
                diff = (predictions - target / self.pca_scale) ** 2
                return {"loss_retrieval": self.loss_weight * diff.sum(dim=1).mean()}
            labels = self.cluster_of(target)
            return {"loss_clustering": self.loss_weight * F.cross_entropy(predictions, labels)}

    def select(self, predictions: torch.Tensor) -> torch.Tensor:
        """(N,) database entry answering each prediction: retrieval, the entry nearest to the
        predicted coordinates (N, D); clustering, the medoid of the top cluster of (N, k)
        log-probabilities."""
        if self.mode == "retrieval":
            return torch.cdist(predictions * self.pca_scale, self.embeddings).argmin(dim=1)
        return self.medoids[predictions.argmax(dim=1)]

    def nearest_to(self, gt_points: torch.Tensor) -> torch.Tensor:
        """(N,) entry whose full descriptor is nearest to that of (N, P, 3) GT samples."""
        return torch.cdist(self.describe(gt_points), self.descriptors).argmin(dim=1)

    def entry_mesh(self, entry: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(verts (V, 3), faces (F, 3)) of an entry, in the database's frame."""
        model = int(self.entry_model[entry])
        if model not in self._meshes:
            from meshrecon.data.readers import read_mesh

            path = self.mesh_paths[model]
            if not path:
                raise ValueError(f"entry {self.entry_keys[entry]!r} has no mesh file")
            verts, faces = read_mesh(path)
            self._meshes[model] = (verts.float(), faces.long())
        verts, faces = self._meshes[model]
        verts = verts.to(self.entry_R) @ self.entry_R[entry].T + self.entry_t[entry]
        return verts, faces.to(self.entry_R.device)


def _config_args(cfg, mode: str, in_channels: int) -> dict[str, Any]:
    r = cfg.MODEL.RECOGNITION
    return {
        "database": database_from_config(cfg),
        "mode": mode,
        "in_channels": in_channels,
        "embed_dim": r.EMBED_DIM,
        "num_clusters": r.NUM_CLUSTERS,
        "hidden_dim": r.HIDDEN_DIM,
        "loss_weight": r.LOSS_WEIGHT,
        "seed": r.SEED,
        "kmeans_iters": r.KMEANS_ITERS,
        "num_points": r.DESCRIPTOR_POINTS,
    }


class _SingleViewRecognitionHead(RecognitionBase):
    """The single-view form: pooled last backbone features in, a posed mesh out."""

    _mode = ""

    @configurable
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(mode=self._mode, **kwargs)

    @classmethod
    def from_config(cls, cfg, input_shape: Mapping[str, ShapeSpec] | None = None):
        channels = list(input_shape.values())[-1].channels if input_shape else 0
        args = _config_args(cfg, cls._mode, channels if cls._mode != "oracle" else 0)
        args.pop("mode")
        return args

    def _target_points(self, views: ViewBatch) -> torch.Tensor:
        if views.points is None:
            raise ValueError(
                f"{type(self).__name__} needs the ground-truth surface samples ('points'): set "
                "INPUT.SHAPENET.NUM_SAMPLES > 0 (and INPUT.LOAD_TEST_ANNOTATIONS for the oracle)"
            )
        if self.frame == "viewer":
            return views.points
        self._check_pose(views)
        # Camera -> model frame: m = R^T (p - t), also for a flipped view (R orthogonal).
        return torch.einsum("npi,nij->npj", views.points - views.t[:, None], views.R)

    def _check_pose(self, views: ViewBatch) -> None:
        views.require("R", "t", for_=f"{type(self).__name__} with frame 'object'")

    def forward(self, features: Sequence[torch.Tensor], views: ViewBatch, **unused: Any):
        pooled = features[-1].mean(dim=(2, 3))
        if self.training:
            if self.predictor is None:  # the oracle learns nothing
                return {"loss_oracle_nn": features[-1].sum() * 0.0}
            return self.losses(self.predictor(pooled), self._target_points(views))
        if self.predictor is None:
            entries = self.nearest_to(self._target_points(views))
        else:
            entries = self.select(self.predictor(pooled))
        outputs = []
        for i, entry in enumerate(entries.tolist()):
            verts, faces = self.entry_mesh(entry)
            if self.frame == "object":
                self._check_pose(views)
                verts = verts @ views.R[i].T + views.t[i]
            outputs.append({"mesh": (verts, faces)})
        return outputs


@MESH_HEAD_REGISTRY.register()
class RetrievalHead(_SingleViewRecognitionHead):
    """Retrieval (Tatarchenko et al.): regress the shape's PCA coordinates from the image and
    answer with the nearest training entry. See the module docstring."""

    _mode = "retrieval"


@MESH_HEAD_REGISTRY.register()
class ClusteringHead(_SingleViewRecognitionHead):
    """Clustering (Tatarchenko et al.): classify the image into one of k clusters of training
    shapes and answer with the cluster's medoid. See the module docstring."""

    _mode = "clustering"


@MESH_HEAD_REGISTRY.register()
class OracleNNHead(_SingleViewRecognitionHead):
    """Oracle NN: the training entry nearest to the ground truth (an upper bound that reads the
    answer; nothing is trained). See the module docstring."""

    _mode = "oracle"
