"""Dataset description files that are not what they claim: errors name the file and the spot."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from fixtures_depthdata import KITTI_P_RECT_02, KITTI_P_RECT_03, write_kitti_calib
from fixtures_realdata import write_meshrcnn_shapenet, write_pix3d

from meshrecon.data.datasets import kitti
from meshrecon.data.datasets.pix3d import load_pix3d_json
from meshrecon.data.datasets.shapenet import load_meshrcnn_shapenet
from meshrecon.utils.text_io import read_json, read_text

CHAIR = "03001627"


def test_read_text_and_json_name_file_byte_and_line(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"line one\nline two \xe9t\xe9\n")
    with pytest.raises(
        ValueError, match=r"a.txt is not UTF-8 text: byte b'\\xe9' at offset 18 \(line 2\)"
    ):
        read_text(path, "split file")
    path.write_text('{"a": [1, 2,]}\n')
    with pytest.raises(ValueError, match=r"a.txt is not valid JSON: .*line 1 column 13"):
        read_json(path)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        read_json(tmp_path / "nope.json")


def test_pix3d_json_in_latin1(tmp_path):
    pix3d = write_pix3d(tmp_path)
    json_file = os.path.join(pix3d["dir"], "pix3d.json")
    text = json.dumps(pix3d["entries"], ensure_ascii=False).replace("IKEA_A", "IKEA_\u00c4")
    with open(json_file, "wb") as f:
        f.write(text.encode("latin-1"))
    with pytest.raises(ValueError, match="pix3d.json is not UTF-8 text: byte b'\\\\xc4'"):
        load_pix3d_json(json_file, pix3d["dir"])


def test_meshrcnn_split_file_that_is_not_json(tmp_path):
    written = write_meshrcnn_shapenet(tmp_path, {"train": {CHAIR: {"c0": [0]}}}, num_views=2)
    with open(written["split_file"], "w") as f:
        f.write('{"train": {')
    with pytest.raises(ValueError, match="pix2mesh_splits_val05.json is not valid JSON"):
        load_meshrcnn_shapenet(written["dir"], written["split_file"], "train")
    with open(written["split_file"], "w") as f:
        f.write("[1, 2]")
    with pytest.raises(ValueError, match="pix2mesh_splits_val05.json: expected a JSON object"):
        load_meshrcnn_shapenet(written["dir"], written["split_file"], "train")


def test_kitti_split_not_utf8_and_calibration_with_nan(tmp_path):
    root = str(tmp_path / "kitti")
    split = tmp_path / "s.txt"
    split.write_bytes(b"2011_09_26/2011_09_26_drive_0002_sync 69 l\n\xff\xfe\n")
    with pytest.raises(ValueError, match=r"s.txt is not UTF-8 text: .*\(line 2\)"):
        kitti.load_kitti_eigen(root, str(split))

    P2 = KITTI_P_RECT_02.copy()
    P2[0, 0] = np.nan
    write_kitti_calib(
        os.path.join(root, "2011_09_26"), size=(69, 21), P_rect_02=P2, P_rect_03=KITTI_P_RECT_03
    )
    split.write_text("2011_09_26/2011_09_26_drive_0002_sync 69 l\n")
    with pytest.raises(ValueError, match="calib_cam_to_cam.txt.*'P_rect_02' holds non-finite"):
        kitti.load_kitti_eigen(root, str(split), check_files=False)
