import struct

import pytest
import torch

from meshrecon.io import (
    MeshIOError,
    load_pointcloud_ply,
    load_pointclouds,
    save_pointcloud_ply,
    save_pointclouds,
)
from meshrecon.structures import Pointclouds


def _cloud(seed=0, num=50):
    g = torch.Generator().manual_seed(seed)
    points = torch.randn(num, 3, generator=g)
    normals = torch.nn.functional.normalize(torch.randn(num, 3, generator=g), dim=1)
    colors = torch.randint(0, 256, (num, 3), generator=g, dtype=torch.uint8)
    return points, normals, colors


def test_round_trip_points_normals_uint8_colors(tmp_path):
    points, normals, colors = _cloud(0)
    path = tmp_path / "cloud.ply"
    save_pointcloud_ply(path, points, normals=normals, colors=colors)
    assert path.read_bytes().startswith(b"ply\nformat binary_little_endian")
    loaded = load_pointcloud_ply(path)
    assert loaded.points.dtype == torch.float32
    assert torch.equal(loaded.points, points)  # float32 stored exactly
    assert torch.equal(loaded.normals, normals)
    assert torch.equal(loaded.colors, colors.float() / 255)


def test_round_trip_float_colors_and_points_only(tmp_path):
    points, _, _ = _cloud(1)
    g = torch.Generator().manual_seed(2)
    colors = torch.rand(points.shape[0], 3, generator=g)
    save_pointcloud_ply(tmp_path / "c.ply", points.double(), colors=colors)
    loaded = load_pointcloud_ply(tmp_path / "c.ply")
    assert loaded.normals is None
    assert torch.allclose(loaded.colors, colors, atol=0.5 / 255 + 1e-6)
    assert torch.allclose(loaded.points, points)

    save_pointcloud_ply(tmp_path / "p.ply", points)
    bare = load_pointcloud_ply(tmp_path / "p.ply")
    assert bare.normals is None and bare.colors is None
    assert torch.equal(bare.points, points)


def test_ascii_known_answer(tmp_path):
    path = tmp_path / "ascii.ply"
    path.write_text(
        "ply\nformat ascii 1.0\ncomment hand written\nelement vertex 2\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property float nx\nproperty float ny\nproperty float nz\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
        "1.5 -2 3 0 0 1 255 0 51\n-0.25 0 4 1 0 0 0 102 255\n"
    )
    cloud = load_pointcloud_ply(path)
    assert torch.equal(cloud.points, torch.tensor([[1.5, -2.0, 3.0], [-0.25, 0.0, 4.0]]))
    assert torch.equal(cloud.normals, torch.tensor([[0.0, 0, 1], [1, 0, 0]]))
    assert torch.allclose(cloud.colors, torch.tensor([[1.0, 0.0, 0.2], [0.0, 0.4, 1.0]]))


def _binary_ply(rows, declared=None):
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {declared if declared is not None else len(rows)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property float red\nproperty float green\nproperty float blue\nend_header\n"
    )
    return header.encode() + b"".join(struct.pack("<6f", *row) for row in rows)


def test_binary_known_answer_with_float_colors(tmp_path):
    path = tmp_path / "bin.ply"
    path.write_bytes(_binary_ply([(1, 2, 3, 0.5, 0.25, 1.0), (-1, 0, 0.5, 0, 1, 0)]))
    cloud = load_pointcloud_ply(path)
    assert torch.equal(cloud.points, torch.tensor([[1.0, 2, 3], [-1, 0, 0.5]]))
    assert cloud.normals is None
    assert torch.equal(cloud.colors, torch.tensor([[0.5, 0.25, 1.0], [0.0, 1.0, 0.0]]))


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="gone.ply"):
        load_pointcloud_ply(tmp_path / "gone.ply")
    with pytest.raises(ValueError, match=r"\.ply"):
        load_pointcloud_ply(tmp_path / "cloud.xyz")
    truncated = tmp_path / "truncated.ply"
    truncated.write_bytes(_binary_ply([(1, 2, 3, 0, 0, 0)], declared=5))
    with pytest.raises(MeshIOError, match="truncated.ply"):
        load_pointcloud_ply(truncated)
    garbage = tmp_path / "garbage.ply"
    garbage.write_bytes(b"not a ply at all\n\x00\x01")
    with pytest.raises(MeshIOError, match="garbage.ply"):
        load_pointcloud_ply(garbage)
    empty = tmp_path / "empty.ply"
    empty.write_bytes(_binary_ply([]))
    with pytest.raises(MeshIOError, match="empty.ply"):
        load_pointcloud_ply(empty)


def test_save_argument_errors(tmp_path):
    points, normals, colors = _cloud(3, 4)
    out = tmp_path / "o.ply"
    with pytest.raises(ValueError, match="points"):
        save_pointcloud_ply(out, points[:, :2])
    with pytest.raises(ValueError, match="points"):
        save_pointcloud_ply(out, points.long())
    with pytest.raises(ValueError, match="normals"):
        save_pointcloud_ply(out, points, normals=normals[:3])
    with pytest.raises(ValueError, match="colors"):
        save_pointcloud_ply(out, points, colors=colors[:, :2])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        save_pointcloud_ply(out, points, colors=colors.float())
    with pytest.raises(ValueError, match=r"\.ply"):
        save_pointcloud_ply(tmp_path / "o.obj", points)
    assert not out.exists()


def test_pointclouds_batch_round_trip(tmp_path):
    p0, n0, c0 = _cloud(4, 30)
    p1, n1, c1 = _cloud(5, 17)
    clouds = Pointclouds(points=[p0, p1], normals=[n0, n1], features=[c0 / 255.0, c1 / 255.0])
    written = save_pointclouds(clouds, str(tmp_path / "pc_{}.ply"))
    assert len(written) == 2
    loaded = load_pointclouds(written)
    assert len(loaded) == 2
    for a, b in zip(loaded.points_list(), [p0, p1]):
        assert torch.equal(a, b)
    for a, b in zip(loaded.normals_list(), [n0, n1]):
        assert torch.equal(a, b)
    for a, b in zip(loaded.features_list(), [c0, c1]):
        assert torch.allclose(a, b.float() / 255, atol=1e-6)

    save_pointcloud_ply(tmp_path / "bare.ply", p1)
    mixed = load_pointclouds([written[0], tmp_path / "bare.ply"])
    assert mixed.normals_list() is None and mixed.features_list() is None
    with pytest.raises(ValueError, match="1 paths for 2"):
        save_pointclouds(clouds, [tmp_path / "one.ply"])
