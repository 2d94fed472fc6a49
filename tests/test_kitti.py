import json
import logging
import os

import numpy as np
import pytest
from fixtures_depthdata import (
    KITTI_P_RECT_02,
    KITTI_P_RECT_03,
    write_kitti_calib,
    write_kitti_frame,
)
from PIL import Image

from meshrecon.data import DatasetCatalog, MetadataCatalog
from meshrecon.data.datasets import kitti
from meshrecon.data.depth_io import read_depth

# 1242 x 375 scaled by 1/18 keeps the fixture tiny; P is scaled with it.
SIZE = (69, 21)  # (width, height), as S_rect_02 stores it
P2 = KITTI_P_RECT_02 * np.array([[1 / 18], [1 / 18], [1.0]])
P3 = KITTI_P_RECT_03 * np.array([[1 / 18], [1 / 18], [1.0]])
D1, D2 = "2011_09_26/2011_09_26_drive_0002_sync", "2011_09_28/2011_09_28_drive_0001_sync"


def _scan(seed):
    rng = np.random.default_rng(seed)
    return np.stack(
        [rng.uniform(2, 40, 500), rng.uniform(-8, 8, 500), rng.uniform(-1.5, 1, 500)], 1
    )


@pytest.fixture
def kitti_root(tmp_path):
    root = str(tmp_path / "kitti")
    for date in ("2011_09_26", "2011_09_28"):
        write_kitti_calib(os.path.join(root, date), size=SIZE, P_rect_02=P2, P_rect_03=P3)
    write_kitti_frame(root, D1, 69, SIZE, _scan(0))
    write_kitti_frame(root, D1, 54, SIZE, _scan(1))
    write_kitti_frame(root, D2, 7, SIZE, _scan(2))
    write_kitti_frame(root, D2, 8, SIZE, points=None)  # image without a scan
    return root


def _write(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def test_fixture_images_match_s_rect(kitti_root):
    path = os.path.join(kitti_root, D1, "image_02", "data", "0000000069.png")
    with Image.open(path) as img:
        assert img.size == SIZE
    assert kitti.kitti_image_size(os.path.join(kitti_root, "2011_09_26")) == (21, 69)
    scan = np.fromfile(os.path.join(kitti_root, D1, "velodyne_points/data/0000000069.bin"), "<f4")
    assert scan.size == 500 * 4


def test_parse_split_lines_of_all_three_formats():
    e = kitti.parse_split_line("2011_09_26/2011_09_26_drive_0002_sync 0000000069 l")
    assert (e.folder, e.frame, e.cam, e.gt_path) == (D1, 69, 2, None)
    assert e.date == "2011_09_26" and e.drive == "2011_09_26_drive_0002_sync"
    assert kitti.parse_split_line("2011_09_26/2011_09_26_drive_0022_sync 473 r").cam == 3
    mono1 = kitti.parse_split_line(
        f"{D1}/image_02/data/0000000069.jpg {D1}/image_03/data/0000000069.jpg"
    )
    assert (mono1.folder, mono1.frame, mono1.cam, mono1.ext) == (D1, 69, 2, "jpg")
    gt = "2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000069.png"
    bts = kitti.parse_split_line(f"{D1}/image_02/data/0000000069.png {gt} 721.5377")
    assert (bts.folder, bts.frame, bts.cam, bts.gt_path) == (D1, 69, 2, gt)
    assert kitti.parse_split_line(f"{D1}/image_02/data/0000000069.png None 721.5377") is None
    assert kitti.parse_split_line("   \n") is None
    with pytest.raises(ValueError, match="splits.txt:3"):
        kitti.parse_split_line(f"{D1} 69 x", where="splits.txt:3")
    with pytest.raises(ValueError, match="a.txt:1"):
        kitti.parse_split_line("2011_09_26/foo.png None 721.5", where="a.txt:1")


def test_read_split_file_counts_bts_lines_without_gt(tmp_path):
    gt = "2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000069.png"
    path = _write(
        str(tmp_path / "eigen_test_files_with_gt.txt"),
        [
            f"{D1}/image_02/data/0000000069.png {gt} 721.5377",
            f"{D1}/image_02/data/0000000054.png None 721.5377",
            f"{D2}/image_02/data/0000000007.png None 707.0493",
        ],
    )
    entries, skipped = kitti.read_split_file(path)
    assert [e.frame for e in entries] == [69] and skipped == 2
    with pytest.raises(FileNotFoundError, match="absent.txt"):
        kitti.read_split_file(str(tmp_path / "absent.txt"))


def test_eval_records_from_monodepth2_split(kitti_root):
    split = _write(
        os.path.join(kitti_root, "splits/eigen/test_files.txt"),
        [f"{D1} 0000000069 l", f"{D1} 0000000054 l", f"{D2} 0000000007 l"],
    )
    records = kitti.load_kitti_eigen(kitti_root, split)
    assert [r["image_id"] for r in records] == [
        "2011_09_26_drive_0002_sync/image_02/0000000069",
        "2011_09_26_drive_0002_sync/image_02/0000000054",
        "2011_09_28_drive_0001_sync/image_02/0000000007",
    ]
    first = records[0]
    assert first["file_name"] == os.path.join(kitti_root, D1, "image_02/data/0000000069.png")
    assert first["image"] is None
    assert (first["height"], first["width"]) == (21, 69)
    np.testing.assert_allclose(first["K"], [P2[0, 0], P2[1, 1], P2[0, 2], P2[1, 2]], rtol=1e-6)
    assert first["depth"] == {
        "kind": "velodyne",
        "path": os.path.join(kitti_root, D1, "velodyne_points/data/0000000069.bin"),
        "calib_dir": os.path.join(kitti_root, "2011_09_26"),
        "cam": 2,
        "vel_depth": True,
    }
    assert first["protocol"] == {
        "name": "kitti_eigen",
        "crop": [0.40810811, 0.99189189, 0.03594771, 0.96405229],
        "min_depth": 1e-3,
        "max_depth": 80.0,
        "gt": "velodyne",
    }
    assert json.loads(json.dumps(records)) == records
    depth = read_depth(first["depth"])
    assert depth.shape == (21, 69) and np.count_nonzero(depth) > 20
    # Evaluation depth is the Velodyne x: every stored value is one of the scan's x values.
    xs = np.fromfile(first["depth"]["path"], "<f4").reshape(-1, 4)[:, 0]
    assert np.isin(depth[depth > 0], xs).all()


def test_train_records_use_camera_z_and_right_camera(kitti_root):
    split = _write(
        os.path.join(kitti_root, "splits/eigen_zhou/train_files.txt"),
        [f"{D1} 69 r", f"{D2} 7 l"],
    )
    right, left = kitti.load_kitti_eigen(kitti_root, split, vel_depth=False)
    assert right["file_name"].endswith(os.path.join(D1, "image_03/data/0000000069.png"))
    assert right["depth"]["cam"] == 3 and right["depth"]["vel_depth"] is False
    np.testing.assert_allclose(right["K"], [P3[0, 0], P3[1, 1], P3[0, 2], P3[1, 2]], rtol=1e-6)
    assert left["depth"]["cam"] == 2
    depth = read_depth(right["depth"])
    xs = np.fromfile(right["depth"]["path"], "<f4").reshape(-1, 4)[:, 0]
    assert depth.any() and not np.isin(depth[depth > 0], xs).all()  # camera z, not x


def test_monodepth1_and_bts_formats_give_the_same_records(kitti_root, tmp_path):
    mono2 = _write(str(tmp_path / "m2.txt"), [f"{D1} 0000000069 l", f"{D2} 0000000007 l"])
    mono1 = _write(
        str(tmp_path / "m1.txt"),
        [
            f"{D1}/image_02/data/0000000069.jpg {D1}/image_03/data/0000000069.jpg",
            f"{D2}/image_02/data/0000000007.jpg {D2}/image_03/data/0000000007.jpg",
        ],
    )
    gt = "{}/proj_depth/groundtruth/image_02/{:010d}.png"
    bts = _write(
        str(tmp_path / "bts.txt"),
        [
            f"{D1}/image_02/data/0000000069.png {gt.format(D1[11:], 69)} 721.5377",
            f"{D1}/image_02/data/0000000054.png None 721.5377",
            f"{D2}/image_02/data/0000000007.png {gt.format(D2[11:], 7)} 707.0493",
        ],
    )
    expected = kitti.load_kitti_eigen(kitti_root, mono2)
    # monodepth's lists say .jpg; the raw download has .png, which is what exists here.
    assert kitti.load_kitti_eigen(kitti_root, mono1) == expected
    assert kitti.load_kitti_eigen(kitti_root, bts) == expected


def test_annotated_ground_truth_from_bts_paths(kitti_root, tmp_path):
    gt_root = str(tmp_path / "gt")
    rel = "2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000069.png"
    os.makedirs(os.path.dirname(os.path.join(gt_root, rel)))
    values = np.zeros((21, 69), dtype=np.uint16)
    values[10, 30] = 256 * 12
    Image.fromarray(values).save(os.path.join(gt_root, rel))
    bts = _write(str(tmp_path / "bts.txt"), [f"{D1}/image_02/data/0000000069.png {rel} 721.5"])
    (record,) = kitti.load_kitti_eigen(kitti_root, bts, gt="annotated", annotated_root=gt_root)
    assert record["depth"] == {"kind": "png16", "path": os.path.join(gt_root, rel), "scale": 256.0}
    assert record["protocol"]["gt"] == "annotated"
    assert read_depth(record["depth"])[10, 30] == 12.0


def test_missing_files_are_skipped_and_counted(kitti_root, tmp_path, caplog):
    split = _write(
        str(tmp_path / "t.txt"),
        [f"{D1} 69 l", f"{D2} 8 l", f"{D1} 70 l", "2011_10_03/2011_10_03_drive_0027_sync 1 l"],
    )
    with caplog.at_level(logging.WARNING, logger="meshrecon.data.datasets.kitti"):
        records = kitti.load_kitti_eigen(kitti_root, split)
    assert [r["image_id"][-2:] for r in records] == ["69"]
    assert "skipped 3 of 4" in caplog.text and "t.txt" in caplog.text
    # Without the check, a missing file surfaces when the depth is read, naming the file.
    records = kitti.load_kitti_eigen(kitti_root, _write(str(tmp_path / "u.txt"), [f"{D2} 8 l"]),
                                     check_files=False)  # fmt: skip
    with pytest.raises(FileNotFoundError, match="0000000008.bin"):
        read_depth(records[0]["depth"])


def test_bad_split_line_names_file_and_line(kitti_root, tmp_path):
    split = _write(str(tmp_path / "broken.txt"), [f"{D1} 69 l", "what is this"])
    with pytest.raises(ValueError, match="broken.txt:2"):
        kitti.load_kitti_eigen(kitti_root, split)


_NAMES = ("kitti_eigen_test", "kitti_eigen_train")


@pytest.fixture
def clean_catalog():
    saved = {n: DatasetCatalog.pop(n) for n in _NAMES if n in DatasetCatalog}
    saved_meta = {n: MetadataCatalog.pop(n) for n in _NAMES if n in MetadataCatalog}
    yield
    for n in _NAMES:
        DatasetCatalog.pop(n, None)
        MetadataCatalog.pop(n, None)
    DatasetCatalog.update(saved)
    MetadataCatalog.update(saved_meta)


def test_register_all(tmp_path, kitti_root, clean_catalog):
    root = os.path.dirname(kitti_root)
    empty = str(tmp_path / "empty")
    assert kitti.register_all(empty) == []
    assert not any(n in DatasetCatalog for n in _NAMES)
    _write(os.path.join(kitti_root, "splits/eigen/test_files.txt"), [f"{D1} 0000000069 l"])
    _write(os.path.join(kitti_root, "splits/eigen/train_files.txt"), [f"{D1} 54 l"])
    _write(
        os.path.join(kitti_root, "splits/eigen_zhou/train_files.txt"), [f"{D1} 54 r", f"{D2} 7 l"]
    )
    assert kitti.register_all(root) == list(_NAMES)
    (test,) = DatasetCatalog.get("kitti_eigen_test")
    assert test["depth"]["vel_depth"] is True
    train = DatasetCatalog.get("kitti_eigen_train")  # eigen_zhou is preferred
    assert len(train) == 2 and all(r["depth"]["vel_depth"] is False for r in train)
    assert MetadataCatalog.get("kitti_eigen_test").evaluator_type == "depth"
