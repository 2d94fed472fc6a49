import h5py
import numpy as np
import pytest
from fixtures_depthdata import write_nyu_dataset, write_nyu_splits_mat
from scipy.io import loadmat

from meshrecon.data import DatasetCatalog, MetadataCatalog
from meshrecon.data.datasets import nyu
from meshrecon.data.depth_io import read_container_image, read_depth


@pytest.fixture
def nyu_data(tmp_path):
    return write_nyu_dataset(str(tmp_path))


def test_fixture_has_official_layout(nyu_data):
    # The labelled file is HDF5 behind a MATLAB header, with reversed dimensions.
    with open(nyu_data["mat"], "rb") as f:
        assert f.read(10) == b"MATLAB 7.3"
    with h5py.File(nyu_data["mat"], "r") as f:
        assert f.userblock_size == 512
        assert f["images"].shape == (6, 3, 16, 12) and f["images"].dtype == np.uint8
        assert f["depths"].shape == f["rawDepths"].shape == (6, 16, 12)
    splits = loadmat(nyu_data["splits"])
    assert splits["trainNdxs"].shape == (4, 1) and splits["trainNdxs"].dtype == np.uint16


def test_records_read_back_the_frames_written(nyu_data):
    records = nyu.load_nyu_depth_v2(nyu_data["mat"], nyu_data["splits"], "train")
    # trainNdxs (1, 3, 4, 6) are 1-based: container indices 0, 2, 3, 5.
    assert [r["image_id"] for r in records] == [1, 3, 4, 6]
    assert [r["image"]["index"] for r in records] == [0, 2, 3, 5]
    for record in records:
        i = record["image"]["index"]
        assert record["file_name"] is None
        assert (record["height"], record["width"]) == (12, 16)
        assert record["image"] == {
            "kind": "h5",
            "path": nyu_data["mat"],
            "key": "images",
            "index": i,
        }
        assert record["depth"] == {
            "kind": "h5",
            "path": nyu_data["mat"],
            "key": "depths",
            "index": i,
        }
        np.testing.assert_array_equal(read_container_image(record["image"]), nyu_data["images"][i])
        np.testing.assert_array_equal(read_depth(record["depth"]), nyu_data["depths"][i])
        assert record["protocol"] == {
            "name": "nyu_eigen",
            "crop": [45, 471, 41, 601],
            "min_depth": 1e-3,
            "max_depth": 10.0,
            "gt": "filled",
        }


def test_test_split_with_raw_ground_truth(nyu_data):
    records = nyu.load_nyu_depth_v2(nyu_data["mat"], nyu_data["splits"], "test", gt="raw")
    assert [r["image_id"] for r in records] == [2, 5]
    for record in records:
        i = record["depth"]["index"]
        assert record["depth"]["key"] == "rawDepths" and record["protocol"]["gt"] == "raw"
        depth = read_depth(record["depth"])
        np.testing.assert_array_equal(depth, nyu_data["raw"][i])
        assert (depth == 0).any()  # raw depths keep their holes


def test_intrinsics_are_kinect_scaled_to_frame_size(nyu_data):
    (record, *_) = nyu.load_nyu_depth_v2(nyu_data["mat"], nyu_data["splits"], "test")
    # The 12 x 16 fixture is 480 x 640 scaled by 1/40.
    np.testing.assert_allclose(
        record["K"], [518.858 / 40, 519.470 / 40, 325.582 / 40, 253.736 / 40]
    )
    assert nyu.NYU_KINECT_INTRINSICS == (518.858, 519.470, 325.582, 253.736)


def test_records_are_plain_python(nyu_data):
    import json

    records = nyu.load_nyu_depth_v2(nyu_data["mat"], nyu_data["splits"], "train")
    assert json.loads(json.dumps(records)) == records


def test_split_indices_are_validated(tmp_path, nyu_data):
    bad = str(tmp_path / "bad_splits.mat")
    write_nyu_splits_mat(bad, [1, 7], [2])  # frame 7 of 6
    with pytest.raises(ValueError, match="bad_splits.mat.*1-based"):
        nyu.load_nyu_depth_v2(nyu_data["mat"], bad, "train")
    write_nyu_splits_mat(bad, [0, 2], [2])  # 0 cannot be a 1-based index
    with pytest.raises(ValueError, match="bad_splits.mat"):
        nyu.load_nyu_split_indices(bad, "train", 6)
    assert nyu.load_nyu_split_indices(nyu_data["splits"], "test", 6) == [1, 4]


def test_missing_files_and_keys_name_the_fault(tmp_path, nyu_data):
    from scipy.io import savemat

    with pytest.raises(FileNotFoundError, match="nowhere.mat"):
        nyu.load_nyu_depth_v2(str(tmp_path / "nowhere.mat"), nyu_data["splits"], "train")
    no_test = str(tmp_path / "no_test.mat")
    savemat(no_test, {"trainNdxs": np.array([[1]], dtype=np.uint16)})
    with pytest.raises(KeyError, match="no_test.mat.*testNdxs"):
        nyu.load_nyu_depth_v2(nyu_data["mat"], no_test, "test")
    # A v5 .mat in place of the v7.3 labelled file.
    with pytest.raises(ValueError, match="splits.mat.*v7.3"):
        nyu.load_nyu_depth_v2(nyu_data["splits"], nyu_data["splits"], "train")
    with h5py.File(nyu_data["mat"], "r+") as f:
        del f["rawDepths"]
        f["rawDepths"] = np.zeros((6, 12, 16), dtype=np.float32)  # not transposed
    with pytest.raises(ValueError, match="rawDepths"):
        nyu.load_nyu_depth_v2(nyu_data["mat"], nyu_data["splits"], "test", gt="raw")
    with pytest.raises(ValueError, match="gt"):
        nyu.load_nyu_depth_v2(nyu_data["mat"], nyu_data["splits"], "test", gt="inpainted")


def test_eigen_crop_mask():
    mask = nyu.eigen_crop_mask()
    expected = np.zeros((480, 640), dtype=bool)
    expected[45:471, 41:601] = True
    np.testing.assert_array_equal(mask, expected)
    assert nyu.eigen_crop_mask(240, 320).sum() == (236 - 23) * (301 - 21)


_NAMES = ("nyu_v2_train", "nyu_v2_test", "nyu_v2_test_raw")


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


def test_register_all(tmp_path, clean_catalog):
    assert nyu.register_all(str(tmp_path)) == []
    assert not any(n in DatasetCatalog for n in _NAMES)
    write_nyu_dataset(str(tmp_path), train_1based=range(1, 5), test_1based=(5, 6))
    assert nyu.register_all(str(tmp_path)) == list(_NAMES)
    assert len(DatasetCatalog.get("nyu_v2_train")) == 4
    test = DatasetCatalog.get("nyu_v2_test")
    assert [r["image_id"] for r in test] == [5, 6]
    assert DatasetCatalog.get("nyu_v2_test_raw")[0]["depth"]["key"] == "rawDepths"
    assert MetadataCatalog.get("nyu_v2_test").evaluator_type == "depth"
