import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from meshrecon import model_zoo
from meshrecon.checkpoint import resolve_url
from meshrecon.config import get_cfg
from meshrecon.modeling import META_ARCH_REGISTRY

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_configs_ship_in_the_package():
    configs = model_zoo.list_configs()
    assert "Base-RCNN-FPN.yaml" in configs and "synthetic/meshrcnn_R18_FPN.yaml" in configs
    path = Path(model_zoo.get_config_file("synthetic/meshrcnn_R18_FPN.yaml"))
    assert path.is_file() and path.parent.parent.name == "configs"
    assert model_zoo.get_config_file("configs/Base-RCNN-FPN.yaml").endswith("Base-RCNN-FPN.yaml")


def test_every_shipped_config_merges_into_the_defaults():
    for rel in model_zoo.list_configs():
        cfg = get_cfg()
        cfg.merge_from_file(model_zoo.get_config_file(rel))


def test_unknown_config_suggests_close_names():
    with pytest.raises(FileNotFoundError, match="Did you mean synthetic/meshrcnn_R18_FPN.yaml"):
        model_zoo.get_config_file("synthetic/meshrcnn_R18_FNP.yaml")


def test_repo_configs_symlink_points_into_package():
    link = REPO_ROOT / "configs"
    if not link.exists():
        pytest.skip("not a source checkout")
    assert link.is_symlink()
    assert link.resolve() == Path(model_zoo.get_config_file("Base-RCNN-FPN.yaml")).parent


def test_synthetic_meshrcnn_values():
    cfg = model_zoo.get_config("synthetic/meshrcnn_R18_FPN.yaml")
    assert cfg.MODEL.WEIGHTS == ""
    assert cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN"  # from the bases
    assert cfg.MODEL.ROI_HEADS.NAME == "MeshRCNNROIHeads"
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 9 and cfg.MODEL.ROI_VOXEL_HEAD.NUM_DEPTH == 24
    assert cfg.INPUT.MIN_SIZE_TRAIN == (240,) and cfg.DATASETS.TRAIN == ("synthetic_pix3d_train",)


def test_checkpoint_url_table():
    assert model_zoo.get_checkpoint_url("pix3d/meshrcnn_R50_FPN.yaml") == (
        "meshrcnn://meshrcnn_R50.pth"
    )
    assert resolve_url(model_zoo.get_checkpoint_url("shapenet/voxmesh_R50.yaml")) == (
        "https://dl.fbaipublicfiles.com/meshrcnn/shapenet/voxmesh_R50.pth"
    )
    assert resolve_url(
        model_zoo.get_checkpoint_url("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml")
    ) == (
        "https://dl.fbaipublicfiles.com/detectron2/COCO-InstanceSegmentation/"
        "mask_rcnn_R_50_FPN_3x/137849600/model_final_f10217.pkl"
    )
    with pytest.raises(KeyError, match="No released weights"):
        model_zoo.get_checkpoint_url("synthetic/meshrcnn_R18_FPN.yaml")


@pytest.fixture
def tiny_meta_arch():
    """Stand in for GeneralizedRCNN until the real one is registered."""
    name = "GeneralizedRCNN"
    if name in META_ARCH_REGISTRY:
        yield None
        return

    class Tiny(nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.min_size = cfg.INPUT.MIN_SIZE_TEST
            self.fc = nn.Linear(2, 2)

    META_ARCH_REGISTRY._do_register(name, Tiny)
    yield Tiny
    META_ARCH_REGISTRY._obj_map.pop(name)


def test_get_builds_model_on_cpu(tiny_meta_arch):
    model = model_zoo.get("synthetic/meshrcnn_R18_FPN.yaml", device="cpu")
    assert isinstance(model, nn.Module)
    assert next(model.parameters()).device == torch.device("cpu")
    if tiny_meta_arch is not None:
        assert isinstance(model, tiny_meta_arch) and model.min_size == 240


@pytest.mark.slow
def test_wheel_contains_configs(tmp_path):
    # Build from a copy: setuptools writes build/ and egg-info next to the sources.
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO_ROOT / "meshrecon", src / "meshrecon", ignore=ignore)
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "wheel", str(src), "-w", str(tmp_path / "dist")]
    subprocess.run([*pip, "--no-deps", "--no-build-isolation", "-q"], check=True)
    (wheel,) = (tmp_path / "dist").glob("meshrecon-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "meshrecon/model_zoo/configs/Base-RCNN-FPN.yaml" in names
    assert "meshrecon/model_zoo/configs/synthetic/meshrcnn_R18_FPN.yaml" in names
