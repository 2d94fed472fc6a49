"""The mappers' shape cache: a model's files read once for all its views, outputs unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import meshrecon.data.mapper_utils as mapper_utils
from meshrecon.data.mapper_utils import ShapeCache
from meshrecon.data.mappers import MultiViewMapper, ShapeNetMapper

S = 24


@pytest.fixture
def model_views(tmp_path):
    """Three view records of one model (mesh, samples, voxel grid files shared)."""
    g = torch.Generator().manual_seed(0)
    verts = torch.rand(8, 3, generator=g) * 0.4 - 0.2
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7], [1, 5, 2], [3, 7, 0]])
    torch.save({"verts": verts, "faces": faces}, tmp_path / "mesh.pt")
    points = torch.rand(200, 3, generator=g)
    torch.save({"points_sampled": points, "normals_sampled": -points}, tmp_path / "samples.pt")
    occ = np.zeros((6, 6, 6), dtype=bool)
    occ[1:5, 2:, :3] = True
    np.savez(tmp_path / "vox.npz", occupancy=occ, bounds=np.array([[-0.2] * 3, [0.2] * 3]))
    rgba = np.zeros((S, S, 4), dtype=np.uint8)
    rgba[6:18, 4:20] = [0, 200, 0, 255]
    Image.fromarray(rgba, "RGBA").save(tmp_path / "view.png")
    views = []
    for i, angle in enumerate((0.0, 0.7, 1.9)):
        c, s = np.cos(angle), np.sin(angle)
        views.append(
            {
                "file_name": str(tmp_path / "view.png"),
                "height": S,
                "width": S,
                "image_id": f"m/{i}",
                "view_index": i,
                "K": [30.0, 30.0, S / 2, S / 2],
                "R": [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]],
                "t": [0.0, 0.0, 1.3],
                "mesh": str(tmp_path / "mesh.pt"),
                "samples": str(tmp_path / "samples.pt"),
                "voxel": str(tmp_path / "vox.npz"),
            }
        )
    return views


def _count_reads(monkeypatch) -> dict[str, int]:
    counts = {"mesh": 0, "voxel": 0, "samples": 0}
    for kind, name in (("mesh", "read_mesh"), ("voxel", "read_voxel"), ("samples", "read_samples")):
        reader = getattr(mapper_utils, name)

        def counted(*args, _reader=reader, _kind=kind):
            counts[_kind] += 1
            return _reader(*args)

        monkeypatch.setattr(mapper_utils, name, counted)
    return counts


def _map_all(mapper, records, seed=0) -> list[dict]:
    torch.manual_seed(seed)
    return [mapper(r) for r in records]


@pytest.mark.parametrize("voxel_frame", ["camera", "canonical"])
def test_shapenet_mapper_reads_each_file_once_and_maps_as_without_cache(
    model_views, monkeypatch, voxel_frame
):
    counts = _count_reads(monkeypatch)
    kwargs = {"is_train": True, "voxel_size": 6, "voxel_frame": voxel_frame, "num_samples": 50}
    records = model_views * 2  # every view twice, as epochs do
    cached = _map_all(ShapeNetMapper(**kwargs), records)
    assert counts == {"mesh": 1, "voxel": 1, "samples": 1}
    plain = _map_all(ShapeNetMapper(cache_shapes=False, **kwargs), records)
    assert counts == {"mesh": 1 + 6, "voxel": 1 + 6, "samples": 1 + 6}
    for a, b in zip(cached, plain):
        assert set(a) == set(b)
        for key in ("points", "normals", "voxels", "image", "K", "R", "t"):
            assert torch.equal(a[key], b[key]), key
        assert torch.equal(a["mesh"][0], b["mesh"][0]) and torch.equal(a["mesh"][1], b["mesh"][1])
    # Different views draw different samples from the one cached file.
    assert not torch.equal(cached[0]["points"], cached[1]["points"])


def test_outputs_do_not_alias_the_cache(model_views):
    mapper = ShapeNetMapper(is_train=True, voxel_size=6, voxel_frame="canonical")
    first = mapper(model_views[0])
    want_faces, want_voxels = first["mesh"][1].clone(), first["voxels"].clone()
    # A consumer changing its input in place must not change the next sample.
    first["mesh"][1].zero_()
    first["voxels"].zero_()
    again = mapper(model_views[0])
    assert torch.equal(again["mesh"][1], want_faces)
    assert torch.equal(again["voxels"], want_voxels)

    multi = MultiViewMapper(is_train=False, crop_size=0, voxel_size=6, num_samples=20)
    record = {"model_id": "m", "views": model_views, "voxel": model_views[0]["voxel"]}
    out = multi(record)
    out["voxels"].zero_()
    assert torch.equal(multi(record)["voxels"], want_voxels)


def test_shape_cache_bounds():
    reads = []

    def reader(path):
        reads.append(path)
        return (torch.zeros(100), torch.zeros(100))  # 800 bytes

    cache = ShapeCache(True, max_items=2, max_bytes=2000)
    for path in ("a", "b", "a", "b"):
        cache.get("mesh", path, reader)
    assert reads == ["a", "b"]
    cache.get("mesh", "c", reader)  # over max_bytes: read, not kept
    cache.get("mesh", "c", reader)
    assert reads == ["a", "b", "c", "c"]
    small = ShapeCache(True, max_items=1)
    small.get("mesh", "a", reader), small.get("mesh", "b", reader), small.get("mesh", "b", reader)
    assert reads[-3:] == ["a", "b", "b"]
    off = ShapeCache(False)
    off.get("mesh", "a", reader), off.get("mesh", "a", reader)
    assert reads[-2:] == ["a", "a"]
