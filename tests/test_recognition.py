"""The recognition baselines: the shape database (descriptors, PCA, k-means, medoids) on known
cases, and the Retrieval / Clustering / Oracle NN heads, single- and multi-view, on a database
of a few boxes whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from meshrecon.data.shape_statistics import build_shape_database
from meshrecon.io import save_mesh
from meshrecon.modeling.heads.recognition import ClusteringHead, OracleNNHead, RetrievalHead
from meshrecon.modeling.heads.recognition_multiview import (
    MultiViewClusteringHead,
    MultiViewOracleNNHead,
    MultiViewRetrievalHead,
)
from meshrecon.modeling.heads.shape_database import cluster_medoids, fit_pca, kmeans
from meshrecon.modeling.meta_arch.single_view import ViewBatch
from meshrecon.ops import descriptor_lattice, distance_field_descriptors
from meshrecon.structures import Meshes

# ----------------------------------------------------------------------------- database parts


def test_distance_field_descriptor_hand_computed():
    box = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    lattice = descriptor_lattice(box, 2)
    # 2^3 cells of side 1: centres at +-0.5, x fastest.
    assert lattice.shape == (8, 3)
    assert torch.equal(lattice[1], torch.tensor([0.5, -0.5, -0.5]))
    assert torch.equal(lattice[2], torch.tensor([-0.5, 0.5, -0.5]))
    origin = torch.zeros(1, 3)
    corner = torch.tensor([[0.5, 0.5, 0.5], [9.0, 9.0, 9.0]])
    d = distance_field_descriptors([origin, corner], lattice)
    assert d.shape == (2, 8)
    assert torch.allclose(d[0], torch.full((8,), math.sqrt(0.75)))
    # From (0.5, 0.5, 0.5): 0 at that centre, 1 from its 3 neighbours, sqrt 2, sqrt 3.
    assert sorted(d[1].tolist()) == pytest.approx([0, 1, 1, 1, 2**0.5, 2**0.5, 2**0.5, 3**0.5])
    with pytest.raises(ValueError, match="non-empty"):
        distance_field_descriptors([torch.zeros(0, 3)], lattice)
    with pytest.raises(ValueError, match="min < max"):
        descriptor_lattice(box.flip(0), 2)


def test_pca_recovers_known_axes_with_a_fixed_sign():
    g = torch.Generator().manual_seed(0)
    axis1 = torch.tensor([0.6, -0.8, 0.0, 0.0])
    axis2 = torch.tensor([0.0, 0.0, -1.0, 0.0])
    a, b = torch.randn(200, 1, generator=g) * 3.0, torch.randn(200, 1, generator=g)
    # Exactly uncorrelated samples, so the sample's principal axes are the two axes.
    a, b = a - a.mean(), b - b.mean()
    b = b - (a * b).sum() / (a * a).sum() * a
    x = 5.0 + a * axis1 + b * axis2
    mean, basis, var = fit_pca(x, 3, seed=1)
    assert basis.shape == (3, 4) and torch.allclose(mean, x.mean(0))
    # The largest entry of each component is made positive: -axis1 and -axis2.
    assert torch.allclose(basis[0], -axis1, atol=1e-4)
    assert torch.allclose(basis[1], -axis2, atol=1e-4)
    assert var[0] == pytest.approx(float(a.var()), rel=1e-3)
    assert var[1] == pytest.approx(float(b.var()), rel=1e-3)
    assert var[2] < 1e-6
    _, basis2, _ = fit_pca(x, 3, seed=2)  # another random start, the same components
    assert torch.allclose(basis[:2], basis2[:2], atol=1e-4)


def test_kmeans_and_medoids():
    g = torch.Generator().manual_seed(0)
    blobs = [
        torch.randn(20, 2, generator=g) * 0.1 + torch.tensor(c) for c in ([0.0, 0], [5, 0], [0, 5])
    ]
    x = torch.cat(blobs)
    centres, labels = kmeans(x, 3, seed=0)
    # Every blob is one cluster; its centre is the blob's mean.
    for i, blob in enumerate(blobs):
        lab = labels[20 * i : 20 * (i + 1)]
        assert (lab == lab[0]).all()
        assert torch.allclose(centres[lab[0]], blob.mean(0), atol=1e-5)
    assert len(set(labels.tolist())) == 3
    c2, l2 = kmeans(x, 3, seed=0)
    assert torch.equal(labels, l2) and torch.equal(centres, c2)
    # Medoid: the member with the least summed distance, 1 of [0, 1, 3, 10] (12 vs 14, 14, 26).
    pts = torch.tensor([[0.0], [1.0], [3.0], [10.0], [50.0]])
    assert cluster_medoids(pts, torch.tensor([0, 0, 0, 0, 1]), 2).tolist() == [1, 4]
    # More clusters than distinct points: none stays empty.
    _, labels = kmeans(torch.tensor([[0.0], [0.0], [1.0]]), 3, seed=0)
    assert sorted(labels.tolist()) == [0, 1, 2]
    with pytest.raises(ValueError, match="k-means"):
        kmeans(x, 61)


# ----------------------------------------------------------------------------- a toy database


def _box(size) -> tuple[torch.Tensor, torch.Tensor]:
    corners = torch.tensor([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)]).float()
    verts = (corners - 0.5) * torch.tensor(size)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = [[a, b, c] for a, b, c, _ in quads] + [[a, c, d] for a, _, c, d in quads]
    return verts, torch.tensor(faces)


SIZES = [(0.8, 0.2, 0.2), (0.2, 0.8, 0.2), (0.2, 0.2, 0.8), (0.6, 0.6, 0.6)]


def _rotation_z(deg: float) -> torch.Tensor:
    a = math.radians(deg)
    return torch.tensor([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])


VIEWS = [
    (_rotation_z(0), torch.tensor([0.0, 0.0, 2.0])),
    (_rotation_z(30), torch.tensor([0.1, 0.0, 2.5])),
]


def _records(tmp_path, with_voxels=False):
    records = []
    for m, size in enumerate(SIZES):
        path = tmp_path / f"m{m}.obj"
        save_mesh(path, *_box(size))
        voxel = None
        if with_voxels:
            voxel = tmp_path / f"m{m}.npz"
            grid = np.zeros((4, 4, 4), dtype=bool)
            grid[m, 0, 0] = True  # a grid that names its model
            np.savez(voxel, occupancy=grid, bounds=np.array([[-0.5] * 3, [0.5] * 3], np.float32))
        for v, (R, t) in enumerate(VIEWS):
            records.append(
                {
                    "image_id": f"c/m{m}/{v}",
                    "synset_id": "c",
                    "model_id": f"m{m}",
                    "category": "c",
                    "view_index": v,
                    "mesh": str(path),
                    "voxel": str(voxel) if voxel else None,
                    "R": R.tolist(),
                    "t": t.tolist(),
                }
            )
    return records


def _surface(m: int, n: int = 400) -> torch.Tensor:
    from meshrecon.ops import sample_points_from_meshes

    v, f = _box(SIZES[m])
    torch.manual_seed(100 + m)
    return sample_points_from_meshes(Meshes([v], [f]), n)[0]


def test_build_database_object_and_viewer_frames(tmp_path):
    records = _records(tmp_path)
    obj = build_shape_database(records, frame="object", resolution=6, num_points=300)
    assert len(obj) == 4 and obj.keys == ["c/m0", "c/m1", "c/m2", "c/m3"]
    assert torch.equal(obj.entry_R, torch.eye(3).expand(4, 3, 3))
    view = build_shape_database(records, frame="viewer", resolution=6, num_points=300)
    assert len(view) == 8 and view.keys[1] == "c/m0/1"
    assert torch.allclose(view.entry_R[3], VIEWS[1][0]) and torch.equal(
        view.entry_model[3], torch.tensor(1)
    )
    # The automatic box holds every entry: the viewer frame's lies around z = 2 .. 2.5.
    assert 1.4 < float(view.box[0, 2]) < 2.0 and 2.5 < float(view.box[1, 2]) < 3.0
    one = build_shape_database(
        records, frame="viewer", resolution=6, views_per_model=1, max_models=2
    )
    assert one.keys == ["c/m0/0", "c/m1/0"]
    assert obj.digest() != view.digest() != one.digest()
    again = build_shape_database(records, frame="object", resolution=6, num_points=300)
    assert torch.equal(again.descriptors, obj.descriptors) and again.digest() == obj.digest()
    with pytest.raises(ValueError, match="frame"):
        build_shape_database(records, frame="world")


# ----------------------------------------------------------------------------- single view


def _views(R, t, points=None):
    n = R.shape[0]
    return ViewBatch(image_size=(8, 8), K=torch.ones(n, 4), R=R, t=t, points=points)


def _db(tmp_path, frame, **kw):
    return build_shape_database(_records(tmp_path, **kw), frame=frame, resolution=8, num_points=400)


def test_retrieval_answers_the_entry_nearest_to_its_prediction(tmp_path):
    db = _db(tmp_path, "viewer")
    head = RetrievalHead(database=db, in_channels=4, embed_dim=5, hidden_dim=8).eval()
    # A predictor whose output is entry 5's coordinates whatever the image.
    last = head.predictor[-1]
    torch.nn.init.zeros_(last.weight)
    last.bias.data = head.embeddings[5] / head.pca_scale
    views = _views(torch.eye(3)[None], torch.zeros(1, 3))
    (out,) = head([torch.randn(1, 4, 2, 2)], views)
    verts, faces = out["mesh"]
    # Entry 5 is model 2 in view 1: its box moved by that view's R, t (no input pose used).
    want = _box(SIZES[2])[0] @ VIEWS[1][0].T + VIEWS[1][1]
    assert torch.allclose(verts, want, atol=1e-5) and torch.equal(faces, _box(SIZES[2])[1])


def test_retrieval_loss_regresses_the_target_coordinates(tmp_path):
    db = _db(tmp_path, "object")
    head = RetrievalHead(database=db, in_channels=4, embed_dim=3, hidden_dim=16).train()
    # Object frame: camera-frame samples of model 1 seen in view 1 go back to the model frame.
    R, t = VIEWS[1]
    cam = _surface(1) @ R.T + t
    views = _views(R[None], t[None], cam[None])
    target = head.embed(head.describe(_surface(1)[None])) / head.pca_scale
    feats = [torch.randn(1, 4, 2, 2)]
    loss = head(feats, views)["loss_retrieval"]
    pred = head.predictor(feats[0].mean(dim=(2, 3)))
    want = float(((pred - target) ** 2).sum())
    assert loss.item() == pytest.approx(want, rel=1e-4)
    # The gradient reaches the predictor: a step lowers the loss.
    opt = torch.optim.SGD(head.parameters(), lr=0.01)
    loss.backward()
    opt.step()
    assert head(feats, views)["loss_retrieval"].item() < loss.item()
    # A predictor that outputs the target exactly has zero loss...
    last = head.predictor[-1]
    torch.nn.init.zeros_(last.weight)
    last.bias.data = target[0].clone()
    assert head(feats, views)["loss_retrieval"].item() == pytest.approx(0.0, abs=1e-8)
    # ... and answers with model 1, placed with the input's pose.
    head.eval()
    (out,) = head(feats, views)
    assert torch.allclose(out["mesh"][0], _box(SIZES[1])[0] @ R.T + t, atol=1e-5)
    with pytest.raises(ValueError, match="points"):
        head.train()(feats, _views(R[None], t[None]))


def test_clustering_labels_and_answers_with_medoids(tmp_path):
    db = _db(tmp_path, "viewer")
    head = ClusteringHead(database=db, in_channels=4, embed_dim=5, num_clusters=3).eval()
    assert head.medoids.shape == (3,) and len(set(head.medoids.tolist())) == 3
    # The answer of class c is medoid c's mesh in its own training view.
    logits = torch.tensor([[0.0, 5.0, 0.0]])
    entry = int(head.select(logits)[0])
    assert entry == int(head.medoids[1])
    # The training label of an entry's own shape is its cluster (nearest centre).
    R, t = db.entry_R[entry], db.entry_t[entry]
    cam = _surface(int(db.entry_model[entry])) @ R.T + t
    assert int(head.cluster_of(head.embed(head.describe(cam[None])))[0]) == 1
    head.train()
    loss = head(
        [torch.randn(2, 4, 2, 2)], _views(R.expand(2, 3, 3), t.expand(2, 3), cam.expand(2, -1, -1))
    )
    assert set(loss) == {"loss_clustering"} and math.isfinite(float(loss["loss_clustering"]))
    with pytest.raises(ValueError, match="num_clusters"):
        ClusteringHead(database=db, in_channels=4, num_clusters=9)


def test_oracle_finds_the_ground_truths_entry(tmp_path):
    db = _db(tmp_path, "viewer")
    head = OracleNNHead(database=db).eval()
    assert head.predictor is None and not list(head.parameters())
    R, t = VIEWS[1]
    gt = (_surface(3, 1000) @ R.T + t)[None]  # model 3 seen from view 1: entry 7
    (out,) = head([torch.randn(1, 4, 2, 2)], _views(torch.eye(3)[None], torch.zeros(1, 3), gt))
    assert torch.allclose(out["mesh"][0], _box(SIZES[3])[0] @ R.T + t, atol=1e-5)
    assert int(head.nearest_to(gt)[0]) == 7
    loss = head.train()([torch.randn(1, 4, 2, 2, requires_grad=True)], None)
    assert float(loss["loss_oracle_nn"]) == 0.0


def test_checkpoint_of_another_training_set_is_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    db_a = _db(tmp_path / "a", "viewer")
    records = _records(tmp_path / "b")[:6]  # three models only
    db_b = build_shape_database(records, frame="viewer", resolution=8, num_points=400)
    a = RetrievalHead(database=db_a, in_channels=4, embed_dim=5)
    RetrievalHead(database=db_a, in_channels=4, embed_dim=5).load_state_dict(a.state_dict())
    b = RetrievalHead(database=db_b, in_channels=4, embed_dim=5)
    with pytest.raises(ValueError, match="another training set"):
        b.load_state_dict(a.state_dict(), strict=False)


# ----------------------------------------------------------------------------- multi view


class _FixedBackbone(torch.nn.Module):
    """Features that are the image itself pooled: the predictor then sees the pixels' means."""

    def forward(self, x):
        return {"res5": x}

    def output_shape(self):
        return {}


def test_multiview_retrieval_fuses_the_views_votes(tmp_path):
    db = _db(tmp_path, "object", with_voxels=True)
    head = MultiViewRetrievalHead(
        database=db, in_channels=3, embed_dim=3, hidden_dim=4, backbone=_FixedBackbone()
    ).eval()
    emb = head.embeddings / head.pca_scale
    # The first view votes for model 0, the second for 2 e_2 - e_0: together, their mean e_2.
    votes = torch.stack([emb[0], 2 * emb[2] - emb[0]])
    head._encode = lambda images: votes
    (out,) = head(torch.zeros(2, 3, 4, 4), torch.tensor([2]))
    first, both = out["by_num_views"]
    assert torch.allclose(first["mesh"][0], _box(SIZES[0])[0], atol=1e-5)
    assert torch.allclose(both["mesh"][0], _box(SIZES[2])[0], atol=1e-5)
    # The answer's voxels are its model's own grid file (model 2 marks voxel [2, 0, 0]).
    assert both["voxels"].shape == (4, 4, 4) and float(both["voxels"][2, 0, 0]) == 1.0
    assert float(both["voxels"].sum()) == 1.0
    assert out["mesh"][0] is both["mesh"][0] or torch.equal(out["mesh"][0], both["mesh"][0])


def test_multiview_clustering_and_oracle(tmp_path):
    db = _db(tmp_path, "object", with_voxels=True)
    head = MultiViewClusteringHead(
        database=db, in_channels=3, embed_dim=3, num_clusters=2, backbone=_FixedBackbone()
    ).eval()
    # View 1 prefers cluster 0 weakly, view 2 cluster 1 strongly: one view -> 0, two -> 1.
    head._encode = lambda images: torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    (out,) = head(torch.zeros(2, 3, 4, 4), torch.tensor([2]))
    medoid = [int(m) for m in head.medoids]
    models = [int(db.entry_model[medoid[c]]) for c in (0, 1)]
    got = [
        torch.allclose(o["mesh"][0], _box(SIZES[m])[0]) for o, m in zip(out["by_num_views"], models)
    ]
    assert got == [True, True]
    oracle = MultiViewOracleNNHead(database=db).eval()
    assert oracle.needs_targets_at_inference and not head.needs_targets_at_inference
    targets = [{"points": _surface(3, 1000)}, {"points": _surface(1, 1000)}]
    outs = oracle(torch.zeros(3, 3, 4, 4), torch.tensor([1, 2]), targets=targets)
    assert [len(o["by_num_views"]) for o in outs] == [1, 2]
    assert torch.allclose(outs[0]["mesh"][0], _box(SIZES[3])[0], atol=1e-5)
    assert torch.allclose(outs[1]["mesh"][0], _box(SIZES[1])[0], atol=1e-5)
    with pytest.raises(ValueError, match="points"):
        oracle(torch.zeros(1, 3, 4, 4), torch.tensor([1]), targets=None)
    with pytest.raises(ValueError, match="FRAME 'object'"):
        MultiViewOracleNNHead(database=_db(tmp_path, "viewer"))


def test_multiview_reconstructor_gives_the_oracle_its_targets(tmp_path):
    from meshrecon.modeling.meta_arch.multi_view import MultiViewReconstructor

    db = _db(tmp_path, "object", with_voxels=True)
    model = MultiViewReconstructor(
        head=MultiViewOracleNNHead(database=db), pixel_mean=[0.0] * 3, pixel_std=[1.0] * 3
    ).eval()
    inputs = [{"images": torch.zeros(2, 3, 4, 4), "points": _surface(2, 1000)}]
    (out,) = model(inputs)
    assert torch.allclose(out["mesh"][0], _box(SIZES[2])[0], atol=1e-5)
    assert len(out["by_num_views"]) == 2
