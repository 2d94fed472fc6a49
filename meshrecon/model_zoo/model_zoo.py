"""The configs that ship with meshrecon, and the weights released for them."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import torch
from torch import nn

from meshrecon.config import CfgNode, get_cfg
from meshrecon.utils.path_policy import resolve_under

__all__ = ["get_config_file", "get_config", "get_checkpoint_url", "get", "list_configs"]

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"

# Config path (relative to configs/) -> released weights. Mesh R-CNN's Pix3D S2 models were
# trained with the S1 config and the S2 split; they get their own config name here.
_CONFIG_PATH_TO_WEIGHTS: dict[str, str] = {
    # Mesh R-CNN on Pix3D (S1 and S2 splits)
    "pix3d/meshrcnn_R50_FPN.yaml": "meshrcnn://meshrcnn_R50.pth",
    "pix3d/meshrcnn_S2_R50_FPN.yaml": "meshrcnn://meshrcnn_S2_R50.pth",
    "pix3d/pixel2mesh_R50_FPN.yaml": "meshrcnn://pixel2mesh_R50.pth",
    "pix3d/pixel2mesh_S2_R50_FPN.yaml": "meshrcnn://pixel2mesh_S2_R50.pth",
    "pix3d/sphereinit_R50_FPN.yaml": "meshrcnn://sphereinit_R50.pth",
    "pix3d/sphereinit_S2_R50_FPN.yaml": "meshrcnn://sphereinit_S2_R50.pth",
    # Mesh R-CNN on ShapeNet (R2N2 renderings)
    "shapenet/voxmesh_R50.yaml": "shapenet://voxmesh_R50.pth",
    "shapenet/pixel2mesh_R50.yaml": "shapenet://pixel2mesh_R50.pth",
    "shapenet/sphereinit_R50.yaml": "shapenet://sphereinit_R50.pth",
    # Detectron2's COCO Mask R-CNN R50-FPN (Mesh R-CNN initializes its Pix3D models from it)
    "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml": (
        "detectron2://COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x/137260431/"
        "model_final_a54504.pkl"
    ),
    "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml": (
        "detectron2://COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x/137849600/"
        "model_final_f10217.pkl"
    ),
}


def list_configs() -> list[str]:
    """Return the shipped config paths, relative to the configs directory, sorted."""
    return sorted(p.relative_to(CONFIGS_DIR).as_posix() for p in CONFIGS_DIR.rglob("*.yaml"))


def get_config_file(config_path: str) -> str:
    """Return the absolute path of a shipped config, e.g. ``"synthetic/tiny_example.yaml"``.

    Raises:
        UnsafePathError: (a ``ValueError``) ``config_path`` is absolute, holds ``..`` or leads
            out of the zoo's config folder through a symlink.
        FileNotFoundError: no such config in the zoo (the message lists close names).
    """
    if not isinstance(config_path, str):
        raise TypeError(f"config_path must be a str, got {type(config_path).__name__}")
    rel = config_path.replace(os.sep, "/").removeprefix("configs/")
    path = Path(
        resolve_under(
            str(CONFIGS_DIR), rel, f"model zoo config {config_path!r}", "model zoo's config folder"
        )
    )
    if not path.is_file():
        close = difflib.get_close_matches(rel, list_configs(), n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise FileNotFoundError(
            f"Config {config_path!r} is not in meshrecon's model zoo.{hint} "
            f"Available: {', '.join(list_configs())}"
        )
    return str(path)


def get_checkpoint_url(config_path: str) -> str:
    """Return the released weights (a prefixed URL) trained with ``config_path``."""
    rel = config_path.replace(os.sep, "/").removeprefix("configs/")
    if rel not in _CONFIG_PATH_TO_WEIGHTS:
        raise KeyError(
            f"No released weights for {config_path!r}; weights exist for: "
            f"{', '.join(sorted(_CONFIG_PATH_TO_WEIGHTS))}"
        )
    return _CONFIG_PATH_TO_WEIGHTS[rel]


def get_config(config_path: str, trained: bool = False) -> CfgNode:
    """Return the full config of a shipped config file.

    Args:
        config_path: path relative to the configs directory.
        trained: set ``MODEL.WEIGHTS`` to the released weights of this config (otherwise the
            file's own ``MODEL.WEIGHTS``, usually ImageNet initialization, is kept).
    """
    cfg = get_cfg()
    cfg.merge_from_file(get_config_file(config_path))
    if trained:
        cfg.MODEL.WEIGHTS = get_checkpoint_url(config_path)
    return cfg


def get(config_path: str, trained: bool = False, device: str | None = None) -> nn.Module:
    """Build the model of a shipped config and load its weights.

    Args:
        config_path: path relative to the configs directory.
        trained: load the released weights of this config (see ``get_config``).
        device: overrides ``MODEL.DEVICE``. ``None`` keeps the config's device, except that a
            CUDA device falls back to ``"cpu"`` on a machine without CUDA.

    Returns:
        The model, in training mode (call ``.eval()`` for inference).
    """
    # Imported here: modeling and checkpoint import torch-heavy code the config helpers don't need.
    from meshrecon.checkpoint import Checkpointer
    from meshrecon.modeling import build_model

    cfg = get_config(config_path, trained=trained)
    if device is not None:
        cfg.MODEL.DEVICE = device
    elif cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    Checkpointer(model).load(cfg.MODEL.WEIGHTS)
    return model
