"""Training statistics as data: the mean shape and the recognition baselines' shape database are
computed by the data layer once per content and parameters (disk cache), handed to the heads,
and kept in their state_dict, so that a checkpoint predicts without the training split."""

from __future__ import annotations

import json
import math
import os
import threading
import time
import uuid

import numpy as np
import pytest
import torch

import meshrecon.data.shape_statistics as stats
from meshrecon.checkpoint import Checkpointer
from meshrecon.config import get_cfg
from meshrecon.data import DatasetCatalog
from meshrecon.data.datasets.synthetic.generator import _file_lock
from meshrecon.data.shape_statistics import (
    build_shape_database,
    cached_mean_shape,
    cached_shape_database,
    compute_mean_shape,
    training_statistics,
)
from meshrecon.io import save_mesh
from meshrecon.model_zoo import get_config_file
from meshrecon.modeling import build_model
from meshrecon.modeling.heads.mean_shape import MeanShapeHead
from meshrecon.modeling.heads.recognition import RetrievalHead, _decode_files
from meshrecon.modeling.heads.train_statistics import has_statistic
from meshrecon.ops import sample_points_from_meshes
from meshrecon.structures import Meshes, ShapeDatabase

SIZES = [(0.8, 0.2, 0.2), (0.2, 0.8, 0.2), (0.2, 0.2, 0.8), (0.6, 0.6, 0.6)]
SIZE = 64
K64 = [2.1875 * SIZE / 2, 2.1875 * SIZE / 2, SIZE / 2, SIZE / 2]
# Small enough to build in a second, big enough to exercise every statistic.
TOY_OPTS = [
    "MODEL.DEVICE",
    "cpu",
    "MODEL.BACKBONE.PRETRAINED",
    "",
    "MODEL.MEAN_SHAPE.VOXEL_SIZE",
    "12",
    "MODEL.RECOGNITION.DESCRIPTOR_SIZE",
    "6",
    "MODEL.RECOGNITION.DESCRIPTOR_POINTS",
    "200",
    "MODEL.RECOGNITION.EMBED_DIM",
    "3",
    "MODEL.RECOGNITION.NUM_CLUSTERS",
    "2",
    "MODEL.RECOGNITION.HIDDEN_DIM",
    "8",
]


def _box(size) -> tuple[torch.Tensor, torch.Tensor]:
    corners = torch.tensor([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)]).float()
    verts = (corners - 0.5) * torch.tensor(size)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = [[a, b, c] for a, b, c, _ in quads] + [[a, c, d] for a, _, c, d in quads]
    return verts, torch.tensor(faces)


def _rotation_z(deg: float) -> list[list[float]]:
    a = math.radians(deg)
    return [[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]]


VIEWS = [(_rotation_z(0), [0.0, 0.0, 2.0]), (_rotation_z(30), [0.1, 0.0, 2.5])]


def _records(folder, sizes=SIZES) -> list[dict]:
    """Boxes, two views each, with a mesh and a voxel file per model."""
    os.makedirs(folder, exist_ok=True)
    records = []
    for m, size in enumerate(sizes):
        mesh = os.path.join(folder, f"m{m}.obj")
        save_mesh(mesh, *_box(size))
        voxel = os.path.join(folder, f"m{m}.npz")
        grid = np.zeros((4, 4, 4), dtype=bool)
        grid[m % 4, 0, 0] = True
        np.savez(voxel, occupancy=grid, bounds=np.array([[-0.5] * 3, [0.5] * 3], np.float32))
        for v, (R, t) in enumerate(VIEWS):
            records.append(
                {
                    "image_id": f"c/m{m}/{v}",
                    "synset_id": "c",
                    "model_id": f"m{m}",
                    "category": "c",
                    "view_index": v,
                    "mesh": mesh,
                    "voxel": voxel,
                    "R": R,
                    "t": t,
                }
            )
    return records


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("MESHRECON_CACHE", str(folder))
    return folder


@pytest.fixture
def toy(tmp_path, cache):
    """A registered toy training split: (name, records)."""
    records = _records(str(tmp_path / "toy"))
    name = f"toy_statistics_train_{uuid.uuid4().hex[:8]}"
    DatasetCatalog.register(name, lambda: [dict(r) for r in records])
    yield name, records
    DatasetCatalog.remove(name)


def _cfg(config: str, train: tuple[str, ...]):
    cfg = get_cfg()
    cfg.merge_from_file(get_config_file(config))
    cfg.merge_from_list(TOY_OPTS)
    cfg.DATASETS.TRAIN = train
    return cfg


def _single_view_inputs(records, n: int = 3) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    items = []
    for i, r in enumerate(records[:n]):
        R, t = torch.tensor(r["R"]), torch.tensor(r["t"])
        verts, faces = _box(SIZES[i // 2])
        torch.manual_seed(i)
        points = sample_points_from_meshes(Meshes([verts @ R.T + t], [faces]), 300)[0]
        image = torch.rand(3, SIZE, SIZE, generator=g) * 255
        items.append({"image": image, "K": torch.tensor(K64), "R": R, "t": t, "points": points})
    return items


def _multi_view_inputs(n: int = 2) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    items = []
    for i in range(n):
        verts, faces = _box(SIZES[i + 1])
        torch.manual_seed(i)
        points = sample_points_from_meshes(Meshes([verts], [faces]), 300)[0]
        items.append({"images": torch.rand(2, 3, SIZE, SIZE, generator=g) * 255, "points": points})
    return items


def _assert_same(a, b) -> None:
    """Equal, bit for bit, down to the tensors of nested dicts, lists and tuples."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert sorted(a) == sorted(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a == b


def _head(model):
    return model.mesh_head if hasattr(model, "mesh_head") else model.head


# ----------------------------------------------------------------------------- checkpoints

CONFIGS = [
    ("synthetic/mean_shape.yaml", "single"),
    ("synthetic/retrieval.yaml", "single"),
    ("synthetic/clustering.yaml", "single"),
    ("synthetic/oracle_nn.yaml", "single"),
    ("synthetic/retrieval_multiview.yaml", "multi"),
    ("synthetic/clustering_multiview.yaml", "multi"),
    ("synthetic/oracle_nn_multiview.yaml", "multi"),
]


@pytest.mark.parametrize("config,task", CONFIGS, ids=[c.split("/")[1][:-5] for c, _ in CONFIGS])
def test_checkpoint_predicts_without_the_training_split(toy, tmp_path, config, task):
    name, records = toy
    inputs = _single_view_inputs(records) if task == "single" else _multi_view_inputs()
    torch.manual_seed(0)
    model = build_model(_cfg(config, (name,))).eval()
    with torch.no_grad():
        want = model(inputs)
    Checkpointer(model, save_dir=str(tmp_path / "run")).save("model_final")

    # The same config, its training split not registered (say, on another machine).
    torch.manual_seed(1)
    fresh = build_model(_cfg(config, ("toy_statistics_train_not_registered",))).eval()
    head = _head(fresh)
    assert not (has_statistic(head, "mean_verts") or getattr(head, "has_database", False))
    with pytest.raises(RuntimeError, match="DATASETS.TRAIN"), torch.no_grad():
        fresh(inputs)
    checkpointer = Checkpointer(fresh)
    checkpointer.load(str(tmp_path / "run" / "model_final.pth"))
    incompatible = checkpointer.last_incompatible
    assert not incompatible.missing_keys and not incompatible.unexpected_keys
    assert not incompatible.incorrect_shapes
    with torch.no_grad():
        got = fresh(inputs)
    _assert_same(want, got)
    # And once more from the loaded model's own checkpoint: nothing was lost on the way.
    _assert_same(model.state_dict(), fresh.state_dict())


def test_heads_equal_the_ones_built_from_the_records(toy):
    """What the heads were built with before (the pure functions on the training records, as
    their from_config called them) is what the data layer hands them now, bit for bit."""
    name, records = toy
    model = build_model(_cfg("synthetic/mean_shape.yaml", (name,))).eval()
    verts, faces = compute_mean_shape(records, voxel_size=12)
    old = MeanShapeHead(mean_verts=verts, mean_faces=faces).eval()
    _assert_same(old.state_dict(), model.mesh_head.state_dict())
    inputs = _single_view_inputs(records)
    with torch.no_grad():
        feats = model.extract_features(model.preprocess_image(inputs))
        views = model.view_batch(inputs, (SIZE, SIZE))
        _assert_same(old(feats, views), model.mesh_head(feats, views))

    torch.manual_seed(0)
    model = build_model(_cfg("synthetic/retrieval.yaml", (name,))).eval()
    db = build_shape_database(records, frame="viewer", resolution=6, num_points=200)
    old = RetrievalHead(database=db, in_channels=512, embed_dim=3, hidden_dim=8).eval()
    old.predictor.load_state_dict(model.mesh_head.predictor.state_dict())
    _assert_same(old.state_dict(), model.mesh_head.state_dict())
    with torch.no_grad():
        feats = model.extract_features(model.preprocess_image(inputs))
        views = model.view_batch(inputs, (SIZE, SIZE))
        _assert_same(old(feats, views), model.mesh_head(feats, views))


def test_mean_shape_checkpoint_of_another_split_is_refused(toy, tmp_path):
    name, records = toy
    model = build_model(_cfg("synthetic/mean_shape.yaml", (name,)))
    Checkpointer(model, save_dir=str(tmp_path / "a")).save("model")
    other = _records(str(tmp_path / "other"), sizes=SIZES[:1])
    DatasetCatalog.register("toy_statistics_other", lambda: other)
    try:
        b = build_model(_cfg("synthetic/mean_shape.yaml", ("toy_statistics_other",)))
    finally:
        DatasetCatalog.remove("toy_statistics_other")
    with pytest.raises(ValueError, match="mean_shape_digest"):
        Checkpointer(b).load(str(tmp_path / "a" / "model.pth"))
    # Built with the same split, it loads.
    Checkpointer(build_model(_cfg("synthetic/mean_shape.yaml", (name,)))).load(
        str(tmp_path / "a" / "model.pth")
    )


def test_recognition_checkpoint_keeps_this_machines_files(toy):
    """Built with its database, a head keeps its own model files when it loads a checkpoint
    of the same entries made where the dataset lay elsewhere."""
    name, _ = toy
    torch.manual_seed(0)
    model = build_model(_cfg("synthetic/retrieval.yaml", (name,)))
    head = model.mesh_head
    own = list(head.mesh_paths)
    files = _decode_files(head.db_files)
    files["mesh_paths"] = ["/elsewhere/" + os.path.basename(p) for p in own]
    state = model.state_dict()
    data = bytearray(json.dumps(files).encode())
    state["mesh_head.db_files"] = torch.frombuffer(data, dtype=torch.uint8).clone()
    model.load_state_dict(state)
    assert head.mesh_paths == own and _decode_files(head.db_files)["mesh_paths"] == own


# ----------------------------------------------------------------------------- the disk cache


def _count_calls(monkeypatch, name: str) -> list[int]:
    calls: list[int] = []
    real = getattr(stats, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(stats, name, counted)
    return calls


def test_mean_shape_is_computed_once_per_content_and_parameters(toy, cache, monkeypatch):
    name, records = toy
    calls = _count_calls(monkeypatch, "compute_mean_shape")
    first = cached_mean_shape(records, voxel_size=12)
    again = cached_mean_shape(records, voxel_size=12)
    assert len(calls) == 1
    _assert_same(first, again)
    _assert_same(first, compute_mean_shape(records, voxel_size=12))
    entries = sorted(os.listdir(cache / "statistics" / "mean_shape"))
    assert [e for e in entries if e.endswith(".pt")] == [entries[0]]
    assert not [e for e in entries if e.startswith(".tmp")]
    # Building models goes through the same cache.
    build_model(_cfg("synthetic/mean_shape.yaml", (name,)))
    build_model(_cfg("synthetic/mean_shape.yaml", (name,)))
    assert len(calls) == 1
    # Another parameter, another entry.
    cached_mean_shape(records, voxel_size=10)
    assert len(calls) == 2
    # A model file that changes (its size and time) makes a new entry too.
    time.sleep(0.01)
    save_mesh(records[0]["mesh"], *_box((0.7, 0.7, 0.7)))
    changed = cached_mean_shape(records, voxel_size=12)
    assert len(calls) == 3
    assert not torch.equal(changed[0], first[0]) or changed[0].shape != first[0].shape


def test_shape_database_is_computed_once(toy, cache, monkeypatch):
    _, records = toy
    calls = _count_calls(monkeypatch, "build_shape_database")
    kw = dict(frame="viewer", resolution=6, num_points=200, seed=3)
    first = cached_shape_database(records, **kw)
    again = cached_shape_database(records, **kw)
    assert len(calls) == 1
    direct = build_shape_database(records, **kw)
    for db in (first, again):
        _assert_same(db.to_dict(), direct.to_dict())
    cached_shape_database(records, **{**kw, "seed": 4})
    cached_shape_database(records, **{**kw, "views_per_model": 1})
    assert len(calls) == 3
    # A field the database reads (a pose) is part of the key; one it does not read is not.
    moved = [dict(r) for r in records]
    moved[1]["t"] = [0.2, 0.0, 2.0]
    cached_shape_database(moved, **kw)
    assert len(calls) == 4
    renamed = [dict(r, image_id=f"x{i}", file_name="y.png") for i, r in enumerate(records)]
    cached_shape_database(renamed, **kw)
    assert len(calls) == 4


def test_a_damaged_cache_entry_is_computed_again(toy, cache, monkeypatch, caplog):
    _, records = toy
    first = cached_mean_shape(records, voxel_size=12)
    (entry,) = (cache / "statistics" / "mean_shape").glob("*.pt")
    entry.write_bytes(b"not a checkpoint")
    calls = _count_calls(monkeypatch, "compute_mean_shape")
    with caplog.at_level("WARNING"):
        again = cached_mean_shape(records, voxel_size=12)
    assert len(calls) == 1 and "unreadable" in caplog.text
    _assert_same(first, again)
    assert torch.load(entry, weights_only=True)["kind"] == "mean_shape"


def test_a_process_waiting_for_the_lock_reads_what_the_other_computed(toy, cache, monkeypatch):
    _, records = toy

    def fail(*args, **kwargs):
        raise AssertionError("computed although another process had written the entry")

    # Learn the entry's path, then start from an empty cache.
    want = cached_mean_shape(records, voxel_size=12)
    (entry,) = (cache / "statistics" / "mean_shape").glob("*.pt")
    saved = entry.read_bytes()
    entry.unlink()
    monkeypatch.setattr(stats, "compute_mean_shape", fail)
    result = {}
    with _file_lock(str(entry) + ".lock"):  # "another process" computing it
        waiter = threading.Thread(
            target=lambda: result.setdefault("got", cached_mean_shape(records, voxel_size=12))
        )
        waiter.start()
        time.sleep(0.3)
        assert waiter.is_alive()  # waiting for the lock
        tmp = entry.with_name(".tmp-other.pt")
        tmp.write_bytes(saved)
        os.replace(tmp, entry)
    waiter.join(timeout=30)
    _assert_same(result["got"], want)


# ----------------------------------------------------------------------------- the entry point


def test_training_statistics_needs_a_registered_split(toy):
    name, records = toy
    cfg = _cfg("synthetic/mean_shape.yaml", (name,))
    got = training_statistics(cfg, "mean_shape")
    _assert_same((got["mean_verts"], got["mean_faces"]), compute_mean_shape(records, 12))
    db = training_statistics(_cfg("synthetic/oracle_nn.yaml", (name,)), "shape_database")
    assert isinstance(db["database"], ShapeDatabase) and db["database"].frame == "viewer"
    assert training_statistics(_cfg("synthetic/mean_shape.yaml", ()), "mean_shape") is None
    unknown = _cfg("synthetic/mean_shape.yaml", ("toy_statistics_nowhere",))
    assert training_statistics(unknown, "mean_shape") is None
    with pytest.raises(KeyError, match="toy_statistics_nowhere"):
        training_statistics(
            _cfg("synthetic/mean_shape.yaml", (name, "toy_statistics_nowhere")), "mean_shape"
        )
    with pytest.raises(ValueError, match="kind"):
        training_statistics(cfg, "mean_voxels")


def test_shape_database_dict_round_trip_and_checks(toy):
    _, records = toy
    db = build_shape_database(records, frame="object", resolution=4, num_points=100)
    back = ShapeDatabase.from_dict(db.to_dict())
    _assert_same(back.to_dict(), db.to_dict())
    assert back.digest() == db.digest() and len(back) == 4
    with pytest.raises(ValueError, match="descriptors"):
        ShapeDatabase.from_dict({**db.to_dict(), "resolution": 5})
    with pytest.raises(ValueError, match="frame"):
        ShapeDatabase.from_dict({**db.to_dict(), "frame": "world"})
    with pytest.raises(ValueError, match="needs"):
        ShapeDatabase.from_dict({"frame": "object"})
    with pytest.raises(ValueError, match="entry_model"):
        ShapeDatabase.from_dict({**db.to_dict(), "entry_model": torch.tensor([0, 1, 2, 9])})
