"""Demo of single-view reconstructors: one image in, its mesh / point cloud / voxels on disk.

``tools/demo.py`` calls :func:`run_single_view_demo` for models whose
``MODEL.META_ARCHITECTURE`` is ``SingleViewReconstructor``::

    from meshrecon.utils.demo_single_view import run_single_view_demo
    run_single_view_demo(cfg, "chair.png", "out/")                  # R2N2-style render
    run_single_view_demo(cfg, "photo.jpg", "out/", K=[fx, fy, cx, cy])
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

__all__ = ["run_single_view_demo"]


def run_single_view_demo(
    cfg,
    image_path: str,
    output_dir: str,
    K: Sequence[float] | None = None,
    model: torch.nn.Module | None = None,
) -> dict[str, str]:
    """Reconstruct the object of one image and save the prediction.

    Args:
        cfg: a config of a ``SingleViewReconstructor`` (its ``MODEL.WEIGHTS`` are loaded).
        image_path: the image; RGBA images are composited over ``INPUT.BACKGROUND_COLOR``.
        output_dir: where ``<name>_mesh.obj``, ``<name>_points.ply`` and
            ``<name>_voxels.pt`` go (those the model predicts).
        K: ``[fx, fy, cx, cy]`` of the image in pixels; None: an R2N2 / Blender render
            (Mesh R-CNN's camera, 35 mm lens on a 32 mm sensor).
        model: an already built model (weights not reloaded).

    Returns:
        ``{kind: path}`` of the files written; meshes and points are in the camera frame
        (+X left, +Y up, +Z forward).
    """
    from meshrecon.checkpoint import Checkpointer
    from meshrecon.data.mapper_utils import image_tensor
    from meshrecon.data.readers import read_image
    from meshrecon.io import save_mesh, save_pointcloud_ply
    from meshrecon.modeling import build_model

    if cfg.MODEL.META_ARCHITECTURE != "SingleViewReconstructor":
        raise ValueError(
            f"MODEL.META_ARCHITECTURE is {cfg.MODEL.META_ARCHITECTURE!r}, not "
            "'SingleViewReconstructor'"
        )
    if not os.path.isfile(image_path):
        raise FileNotFoundError(f"image_path {image_path!r} does not exist")
    if model is None:
        model = build_model(cfg)
        if cfg.MODEL.WEIGHTS:
            Checkpointer(model).load(cfg.MODEL.WEIGHTS)
    model.eval()
    img = read_image(image_path, cfg.INPUT.FORMAT, cfg.INPUT.BACKGROUND_COLOR)
    item = {"image": image_tensor(img), "height": img.shape[0], "width": img.shape[1]}
    if K is not None:
        if len(K) != 4:
            raise ValueError(f"K must be [fx, fy, cx, cy], got {K!r}")
        item["K"] = torch.tensor([float(k) for k in K])
    with torch.no_grad():
        pred = model([item])[0]
    os.makedirs(output_dir, exist_ok=True)
    stem = os.path.splitext(os.path.basename(image_path))[0]
    written = {}
    if "mesh" in pred:
        path = os.path.join(output_dir, f"{stem}_mesh.obj")
        save_mesh(path, pred["mesh"][0].cpu(), pred["mesh"][1].cpu())
        written["mesh"] = path
    if "points" in pred:
        path = os.path.join(output_dir, f"{stem}_points.ply")
        save_pointcloud_ply(path, pred["points"].cpu())
        written["points"] = path
    if "voxels" in pred:
        path = os.path.join(output_dir, f"{stem}_voxels.pt")
        torch.save({"voxels": pred["voxels"].cpu()}, path)
        written["voxels"] = path
    return written
