"""`meshrecon visualize` (tools/visualize_data.py) draws every record format of the synthetic
world into PNGs."""

import numpy as np
import pytest
from PIL import Image

from meshrecon.data.datasets.synthetic import SyntheticConfig, set_synthetic_config


@pytest.fixture(scope="module")
def tool():
    import meshrecon.cli.visualize_data as module

    return module


@pytest.fixture
def tiny_world(tmp_path):
    config = SyntheticConfig(
        root=str(tmp_path / "datasets"),
        scale=0.02,
        shapenet_views=2,
        pix3d_image_size=(96, 72),
        nyu_image_size=(64, 48),
    )
    previous = set_synthetic_config(config)
    yield tmp_path
    set_synthetic_config(previous)


@pytest.mark.parametrize(
    "dataset", ["synthetic_pix3d_test", "synthetic_shapenet_test", "synthetic_nyu_test"]
)
def test_writes_one_readable_png_per_record(tool, tiny_world, dataset):
    from meshrecon.data import DatasetCatalog

    out = tiny_world / "vis"
    paths = tool.visualize(dataset, str(out), num=2)
    expected = min(2, len(DatasetCatalog.get(dataset)))
    assert len(paths) == expected and len(set(paths)) == expected
    for path in paths:
        image = np.asarray(Image.open(path).convert("RGB"))
        assert image.shape[0] > 100 and image.shape[1] > 300
        # Not a blank canvas: the panels drew something.
        assert image.std() > 10


def test_projected_wireframe_lies_on_the_mask(tool, tiny_world):
    from meshrecon.data import DatasetCatalog, read_mask

    record = DatasetCatalog.get("synthetic_pix3d_test")[0]
    ann = record["annotations"][0]
    segments = tool.mesh_wireframe(ann["mesh"], ann["R"], ann["t"], ann["K"])
    mask = read_mask(ann["segmentation"])
    ends = segments.reshape(-1, 2)
    cols = np.clip(ends[:, 0].astype(int), 0, mask.shape[1] - 1)
    rows = np.clip(ends[:, 1].astype(int), 0, mask.shape[0] - 1)
    # Vertices of the visible object project into its mask or right next to it (occluded parts
    # of other objects' meshes aside, most land inside).
    near = np.zeros_like(mask)
    near[:-1] |= mask[1:]
    near[1:] |= mask[:-1]
    near[:, :-1] |= mask[:, 1:]
    near[:, 1:] |= mask[:, :-1]
    assert (near | mask)[rows, cols].mean() > 0.6


def test_unknown_dataset_and_bad_indices(tool, tiny_world, capsys):
    assert tool.main(["no_such_dataset"]) == 2
    assert "registered" in capsys.readouterr().err
    with pytest.raises(ValueError, match="out of range"):
        tool.visualize("synthetic_nyu_test", str(tiny_world / "vis"), indices=[10_000])
