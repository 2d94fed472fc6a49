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

The database is data: :func:`meshrecon.data.shape_statistics.build_shape_database` computes it
from the training split, once per content and parameters (cached on disk), and a head built
from a config gets it through
:func:`~meshrecon.modeling.heads.train_statistics.training_statistics`. The head keeps all of
it that it uses in its ``state_dict``: the entries (names, poses, the files of their models),
the PCA basis, the entries' coordinates, the cluster centres and medoids, the oracle's
descriptors, and a fingerprint of the entries. A checkpoint therefore evaluates without the
training split (built from a config whose ``DATASETS.TRAIN`` is not registered, the head takes
everything from the checkpoint; its answers are read from the model files the checkpoint
names); built with a database, loading a checkpoint of another training split raises.
"""

from __future__ import annotations

import json
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
    cluster_medoids,
    fit_pca,
    kmeans,
)
from meshrecon.modeling.heads.train_statistics import (
    adopt_statistics,
    differs_from_checkpoint,
    has_statistic,
    register_statistic,
    training_statistics,
)
from meshrecon.ops import descriptor_lattice, distance_field_descriptors
from meshrecon.structures import ViewBatch
from meshrecon.structures.shape_database import FRAMES, ShapeDatabase
from meshrecon.utils.stage_timer import stage

__all__ = [
    "ClusteringHead",
    "OracleNNHead",
    "RecognitionBase",
    "RetrievalHead",
]

logger = logging.getLogger(__name__)
MODES = ("retrieval", "clustering", "oracle")
# The statistic buffers (meshrecon.modeling.heads.train_statistics) of each mode, and dtypes.
_DATABASE = {
    "db_digest": torch.int64,
    "db_files": torch.uint8,
    "db_box": torch.float32,
    "entry_model": torch.int64,
    "entry_R": torch.float32,
    "entry_t": torch.float32,
}
_PCA = {
    "pca_mean": torch.float32,
    "pca_basis": torch.float32,
    "pca_scale": torch.float32,
    "embeddings": torch.float32,
}
_STATISTICS = {
    "oracle": {**_DATABASE, "descriptors": torch.float32},
    "retrieval": {**_DATABASE, **_PCA},
    "clustering": {**_DATABASE, **_PCA, "centres": torch.float32, "medoids": torch.int64},
}


def _encode_files(database: ShapeDatabase) -> torch.Tensor:
    """The entries' names, their models' files and the lattice size as UTF-8 JSON bytes (a
    uint8 tensor, so that a ``state_dict`` of tensors can carry them)."""
    text = json.dumps(
        {
            "frame": database.frame,
            "resolution": int(database.resolution),
            "keys": list(database.keys),
            "mesh_paths": list(database.mesh_paths),
            "voxel_paths": list(database.voxel_paths),
        }
    )
    return torch.frombuffer(bytearray(text.encode()), dtype=torch.uint8).clone()


def _decode_files(data: torch.Tensor) -> dict[str, Any]:
    return json.loads(bytes(data.cpu().numpy()).decode())


class RecognitionBase(nn.Module):
    """The database, the search and the answer's mesh; what the single- and multi-view
    recognition heads share.

    Args:
        database: the training shapes; None: built without them (with ``frame``), for a
            checkpoint to provide them (see the module docstring).
        mode: ``"retrieval"``, ``"clustering"`` or ``"oracle"``.
        frame: the database's frame (``"object"`` or ``"viewer"``); needed without a
            database, and if given with one, must be its frame.
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
        database: ShapeDatabase | None = None,
        mode: str,
        frame: str | None = None,
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
        if database is None and frame is None:
            raise ValueError("give the database, or its frame to build without one")
        if database is not None and frame is not None and frame != database.frame:
            raise ValueError(f"frame {frame!r} is not the database's ({database.frame!r})")
        if database is not None and len(database) < 2:
            raise ValueError(f"the shape database needs at least 2 entries, got {len(database)}")
        self.mode = mode
        self.frame = database.frame if database is not None else str(frame)
        if self.frame not in FRAMES:
            raise ValueError(f"frame must be one of {FRAMES}, got {self.frame!r}")
        if mode != "oracle" and in_channels < 1:
            raise ValueError(f"{mode} needs the image features' in_channels, got {in_channels}")
        self.loss_weight, self.num_points = float(loss_weight), int(num_points)
        self.in_channels, self.hidden_dim = int(in_channels), int(hidden_dim)
        self._meshes: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.predictor: nn.Sequential | None = None
        if database is None:
            for name, dtype in _STATISTICS[mode].items():
                register_statistic(self, name, None, dtype)
            self.register_buffer("lattice", torch.empty(0, 3), persistent=False)
            self._set_files({"resolution": 0, "keys": [], "mesh_paths": [], "voxel_paths": []})
            return
        files = _encode_files(database)
        self._set_files(_decode_files(files))
        register_statistic(self, "db_digest", torch.tensor([database.digest()]), torch.int64)
        register_statistic(self, "db_files", files, torch.uint8)
        register_statistic(self, "db_box", database.box.clone(), torch.float32)
        register_statistic(self, "entry_model", database.entry_model.clone(), torch.int64)
        register_statistic(self, "entry_R", database.entry_R.clone(), torch.float32)
        register_statistic(self, "entry_t", database.entry_t.clone(), torch.float32)
        self.register_buffer(
            "lattice", descriptor_lattice(database.box, database.resolution), persistent=False
        )
        if mode == "oracle":
            register_statistic(self, "descriptors", database.descriptors, torch.float32)
            return
        mean, basis, variance = fit_pca(database.descriptors, embed_dim, seed)
        embeddings = (database.descriptors.float() - mean) @ basis.T
        register_statistic(self, "pca_mean", mean, torch.float32)
        register_statistic(self, "pca_basis", basis, torch.float32)
        # Regression targets are divided by the root of the total variance: loss ~1 at start.
        scale = variance.sum().sqrt().clamp(min=1e-8).reshape(1)
        register_statistic(self, "pca_scale", scale, torch.float32)
        register_statistic(self, "embeddings", embeddings, torch.float32)
        out_dim = basis.shape[0]
        if mode == "clustering":
            if not 1 <= num_clusters <= len(database):
                raise ValueError(
                    f"num_clusters must be in 1..{len(database)} (the entries), got {num_clusters}"
                )
            centres, labels = kmeans(embeddings, num_clusters, seed, kmeans_iters)
            register_statistic(self, "centres", centres, torch.float32)
            medoids = cluster_medoids(embeddings, labels, num_clusters)
            register_statistic(self, "medoids", medoids, torch.int64)
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
        self.predictor = self._make_predictor(out_dim)

    def _make_predictor(self, out_dim: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Linear(self.in_channels, self.hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(self.hidden_dim, out_dim),
        )

    def _set_files(self, files: dict[str, Any]) -> None:
        self.resolution = int(files["resolution"])
        self.entry_keys = list(files["keys"])
        self.mesh_paths = list(files["mesh_paths"])
        self.voxel_paths = list(files["voxel_paths"])

    @property
    def has_database(self) -> bool:
        """Whether the head holds its database (built with it, or loaded from a checkpoint)."""
        return all(has_statistic(self, name) for name in _STATISTICS[self.mode])

    def _check_database(self) -> None:
        """Raise unless the head holds its database (and, but for the oracle, its predictor)."""
        if not self.has_database:
            raise RuntimeError(
                f"{type(self).__name__} has no shape database: it was built without a "
                "registered training split (DATASETS.TRAIN) and no checkpoint holding one was "
                "loaded (MODEL.WEIGHTS)"
            )
        if self.mode != "oracle" and self.predictor is None:
            raise RuntimeError(
                f"{type(self).__name__} was built without a database and the checkpoint it "
                "loaded holds no predictor weights (predictor.*) to go with its database"
            )

    # ------------------------------------------------------------------ checkpoints
    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors
    ):
        if differs_from_checkpoint(self, state_dict, prefix, "db_digest"):
            raise ValueError(
                f"this checkpoint's {self.mode} database ({prefix}db_digest) was built from "
                "another training set or descriptor setup than this config's "
                "(DATASETS.TRAIN, MODEL.RECOGNITION)"
            )
        if has_statistic(self, "db_digest") and prefix + "db_files" in state_dict:
            # The same entries (same digest): keep the files as this machine's split names
            # them, not as they were where the checkpoint was made.
            state_dict[prefix + "db_files"] = self.db_files
        adopted = adopt_statistics(self, state_dict, prefix, _STATISTICS[self.mode])
        weight = state_dict.get(prefix + "predictor.2.weight")
        if self.predictor is None and self.mode != "oracle" and weight is not None:
            # Sized by the checkpoint: the PCA keeps min(EMBED_DIM, entries - 1) dimensions.
            self.predictor = self._make_predictor(int(weight.shape[0])).to(self.db_box.device)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing, unexpected, errors
        )
        if "db_files" in adopted:
            files = _decode_files(self.db_files)
            if files["frame"] != self.frame:
                raise ValueError(
                    f"this checkpoint's {self.mode} database is in the {files['frame']!r} frame, "
                    f"this config's MODEL.RECOGNITION.FRAME is {self.frame!r}"
                )
            self._set_files(files)
            self._meshes.clear()
            box = self.db_box.detach().cpu()
            self.lattice = descriptor_lattice(box, self.resolution).to(self.db_box.device)

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
        **(training_statistics(cfg, "shape_database") or {}),
        "frame": r.FRAME,
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
        self._check_database()
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
