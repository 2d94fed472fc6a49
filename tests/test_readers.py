"""Readers: images (RGBA, BGR, containers, corrupt files), masks, meshes, voxels, depth."""

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from meshrecon.data.readers import read_depth, read_image, read_mask, read_mesh, read_voxel
from meshrecon.io import save_obj, write_binvox


def test_rgba_is_composited_over_the_background(tmp_path):
    rgba = np.zeros((4, 5, 4), dtype=np.uint8)
    rgba[..., 0] = 200  # red everywhere, opaque only in the top row, half in the second
    rgba[0, :, 3] = 255
    rgba[1, :, 3] = 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    rgb = read_image(str(tmp_path / "a.png"), format="RGB")
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [200, 0, 0]
    assert rgb[3, 0].tolist() == [255, 255, 255]  # white by default
    a = 128 / 255
    assert np.allclose(rgb[1, 0], np.round([200 * a + 255 * (1 - a), 255 * (1 - a), 255 * (1 - a)]))
    blue = read_image({"file_name": str(tmp_path / "a.png")}, "RGB", background=(0, 0, 255))
    assert blue[3, 0].tolist() == [0, 0, 255]


def test_bgr_order_and_jpg(tmp_path):
    rgb = np.zeros((6, 8, 3), dtype=np.uint8)
    rgb[..., 0] = 250
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=100)
    bgr = read_image({"file_name": str(tmp_path / "a.jpg")})
    assert bgr.shape == (6, 8, 3) and bgr[0, 0, 2] > 240 and bgr[0, 0, 0] < 10
    assert read_image(str(tmp_path / "a.jpg"), "L").shape == (6, 8, 1)


def test_corrupt_and_missing_images_name_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    with pytest.raises(ValueError, match="broken.png"):
        read_image({"file_name": str(bad)})
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_image(str(tmp_path / "nope.png"))
    with pytest.raises(ValueError, match="neither"):
        read_image({"image_id": 3})


def test_container_image(tmp_path):
    h5py = pytest.importorskip("h5py")
    rgb = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    with h5py.File(tmp_path / "nyu.mat", "w") as f:
        f["images"] = rgb.transpose(0, 3, 2, 1)  # (N, 3, W, H) as MATLAB stores it
    src = {"kind": "h5", "path": str(tmp_path / "nyu.mat"), "key": "images", "index": 1}
    out = read_image({"file_name": None, "image": src}, "RGB")
    np.testing.assert_array_equal(out, rgb[1])
    np.testing.assert_array_equal(read_image({"file_name": None, "image": src}), rgb[1][..., ::-1])


def test_read_mask(tmp_path):
    m = np.zeros((5, 6), dtype=np.uint8)
    m[1:3, 2:5] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    mask = read_mask(str(tmp_path / "m.png"))
    assert mask.dtype == bool and mask.sum() == 6 and mask[1, 2]
    Image.fromarray(np.stack([m] * 3, -1)).save(tmp_path / "rgb.png")
    assert np.array_equal(read_mask(str(tmp_path / "rgb.png")), mask)


def test_read_mesh_pt_and_obj(tmp_path):
    verts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    faces = torch.tensor([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    torch.save({"verts": verts, "faces": faces}, tmp_path / "m.pt")
    v, f = read_mesh(str(tmp_path / "m.pt"))
    assert v.dtype == torch.float32 and f.dtype == torch.int64 and torch.equal(f, faces)
    save_obj(str(tmp_path / "m.obj"), verts, faces)
    v2, f2 = read_mesh(str(tmp_path / "m.obj"))
    assert torch.allclose(v2, verts) and torch.equal(f2, faces)
    torch.save({"verts": verts}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="bad.pt"):
        read_mesh(str(tmp_path / "bad.pt"))
    torch.save({"verts": verts, "faces": faces + 10}, tmp_path / "range.pt")
    with pytest.raises(ValueError, match="out of range"):
        read_mesh(str(tmp_path / "range.pt"))


def test_read_voxel_mat_like_meshrcnn(tmp_path):
    vox = np.zeros((8, 8, 8), dtype=np.uint8)
    vox[1:4, 2:6, 3] = 1  # Pix3D voxel frame: +x left, +y outward, +z up
    scipy.io.savemat(tmp_path / "voxel.mat", {"voxel": vox})
    vd = read_voxel(str(tmp_path / "voxel.mat"))
    # Reference: rot90(k=3, axes=(1, 2)), argwhere, centre on the bbox, unit diameter.
    ref = np.argwhere(np.rot90(vox, k=3, axes=(1, 2)) > 0).astype(np.float32)
    ref -= (ref.min(0) + ref.max(0)) / 2
    ref /= 2 * np.sqrt((ref**2).sum(1).max())
    np.testing.assert_allclose(vd.points.numpy(), ref, atol=1e-6)
    assert vd.grid.shape == (8, 8, 8) and vd.grid.sum() == 12
    # grid[z, y, x] holds the model-frame (x, y, z) voxels.
    np.testing.assert_array_equal(
        vd.grid.numpy().transpose(2, 1, 0), np.rot90(vox, k=3, axes=(1, 2)) > 0
    )
    scipy.io.savemat(tmp_path / "other.mat", {"vox": vox})
    with pytest.raises(ValueError, match="no key 'voxel'"):
        read_voxel(str(tmp_path / "other.mat"))


def test_read_voxel_binvox_pt_npz(tmp_path):
    occ = np.zeros((4, 4, 4), dtype=bool)
    occ[0, 1, 3] = True  # [x, y, z]
    write_binvox(
        str(tmp_path / "m.binvox"), torch.from_numpy(occ), translate=[-1, -1, -1], scale=2.0
    )
    vd = read_voxel(str(tmp_path / "m.binvox"))
    # Centre of voxel (0, 1, 3) of a 4^3 grid over [-1, 1]^3.
    np.testing.assert_allclose(vd.points.numpy(), [[-0.75, -0.25, 0.75]], atol=1e-6)
    assert vd.grid[3, 1, 0] and vd.grid.sum() == 1

    pts = torch.rand(10, 3)
    torch.save({"voxel_coords": pts}, tmp_path / "v.pt")
    vd = read_voxel(str(tmp_path / "v.pt"))
    assert torch.equal(vd.points, pts) and vd.grid is None

    grid = np.zeros((2, 3, 4), dtype=bool)  # (D, H, W) = [z, y, x]
    grid[1, 2, 3] = True
    np.savez(tmp_path / "v.npz", occupancy=grid, bounds=np.array([[0, 0, 0], [4, 3, 2.0]]))
    vd = read_voxel(str(tmp_path / "v.npz"))
    np.testing.assert_allclose(vd.points.numpy(), [[3.5, 2.5, 1.5]])
    with pytest.raises(ValueError, match="unsupported voxel format"):
        read_voxel(str(tmp_path / "v.txt"))


def test_read_depth_npy(tmp_path):
    d = np.random.default_rng(0).random((3, 4)).astype(np.float32)
    np.save(tmp_path / "d.npy", d)
    np.testing.assert_array_equal(read_depth({"kind": "npy", "path": str(tmp_path / "d.npy")}), d)


def _png_claiming(path, width, height, mode=2):
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb: the
    few bytes of data would never fill it, but a reader that trusts the header allocates)."""
    import struct
    import zlib

    def chunk(kind, data):
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    depth = 16 if mode == 0 else 8
    ihdr = struct.pack(">IIBBBBB", width, height, depth, mode, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))  # fmt: skip
    return str(path)


@pytest.mark.parametrize("size", [(100_000, 100_000), (9000, 9000), (70_000, 1000)])
def test_decompression_bomb_is_refused_from_the_header(tmp_path, size):
    from meshrecon.data.depth_io import read_depth as read_depth_source
    from meshrecon.utils.image_limits import MAX_IMAGE_PIXELS, ImageTooLargeError

    w, h = size
    assert w * h > MAX_IMAGE_PIXELS
    bomb = _png_claiming(tmp_path / "bomb.png", w, h)
    for read in (read_image, read_mask):
        with pytest.raises(ImageTooLargeError) as err:
            read(bomb)
        msg = str(err.value)
        assert bomb in msg and ("MAX_IMAGE_PIXELS" in msg)
    depth = _png_claiming(tmp_path / "depth.png", w, h, mode=0)
    with pytest.raises(ImageTooLargeError, match="depth.png"):
        read_depth_source({"kind": "png16", "path": depth, "scale": 256.0})


def test_pil_bomb_limit_becomes_our_error(tmp_path, monkeypatch):
    # PIL's own threshold, when lower than ours, warns (or errors at twice it): both become an
    # ImageTooLargeError naming the file rather than a warning or a bare PIL exception.
    from meshrecon.utils.image_limits import ImageTooLargeError

    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((40, 50, 3), dtype=np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)
    with pytest.raises(ImageTooLargeError, match="decompression bomb") as err:
        read_image(str(path))
    assert str(path) in str(err.value)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    with pytest.raises(ImageTooLargeError, match=str(path)):
        read_image(str(path))


def test_image_at_the_maximum_is_read(tmp_path, monkeypatch):
    from meshrecon.utils import image_limits

    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((40, 50, 3), dtype=np.uint8)).save(path)
    monkeypatch.setattr(image_limits, "MAX_IMAGE_PIXELS", 2000)
    assert read_image(str(path)).shape == (40, 50, 3)
    monkeypatch.setattr(image_limits, "MAX_IMAGE_PIXELS", 1999)
    with pytest.raises(image_limits.ImageTooLargeError, match="50 x 40 = 2000 pixels"):
        read_image(str(path))


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_draft_side_shrinks_by_a_whole_factor_keeping_the_side(tmp_path, ext):
    y, x = np.mgrid[0:2000, 0:3000]
    rgb = np.stack([x * 255 // 3000, y * 255 // 2000, np.full_like(x, 90)], -1).astype(np.uint8)
    path = tmp_path / f"big.{ext}"
    Image.fromarray(rgb).save(path)
    small = read_image(str(path), "RGB", draft_side=137)
    h, w = small.shape[:2]
    assert 137 <= min(h, w) < 2 * 137  # shrunk, never below the side
    assert abs(w / h - 1.5) < 0.02  # aspect ratio kept
    # Same picture, coarser: a pixel's colour matches the full-size image's around it.
    full = read_image(str(path), "RGB")
    assert full.shape == (2000, 3000, 3)
    cy, cx = h // 2, w // 3
    ref = full[round(cy * 2000 / h), round(cx * 3000 / w)].astype(int)
    assert np.abs(small[cy, cx].astype(int) - ref).max() <= 6
    # Without a large enough image, nothing changes.
    assert read_image(str(path), "RGB", draft_side=5000).shape == (2000, 3000, 3)


def test_obj_texture_bomb_is_refused_from_the_header(tmp_path):
    from meshrecon.io import load_obj
    from meshrecon.utils.image_limits import ImageTooLargeError

    _png_claiming(tmp_path / "tex.png", 100_000, 100_000)
    (tmp_path / "m.mtl").write_text("newmtl skin\nKd 1 1 1\nmap_Kd tex.png\n")
    (tmp_path / "m.obj").write_text(
        "mtllib m.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\nusemtl skin\n"
        "f 1/1 2/2 3/3\n"
    )
    with pytest.raises(ImageTooLargeError, match="tex.png.*MAX_IMAGE_PIXELS"):
        load_obj(tmp_path / "m.obj", load_textures=True)
    verts, faces, _ = load_obj(tmp_path / "m.obj", load_textures=False)
    assert verts.shape == (3, 3)
