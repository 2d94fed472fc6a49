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
            ``<name>_voxels.pt`` go (those the model predicts), and ``<name>_views.png``: the
            mesh (or the points as small spheres) rendered from the input camera and turned
            by 90, 180 and 270 degrees about the object's vertical axis.
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
    views = _render_views(pred, img if cfg.INPUT.FORMAT != "BGR" else img[..., ::-1], item.get("K"))
    if views is not None:
        from meshrecon.render import save_image

        path = os.path.join(output_dir, f"{stem}_views.png")
        save_image(path, views)
        written["views"] = path
    return written


# The demo's viewpoints: the input camera, then turned about the object's vertical axis.
VIEW_ANGLES = (0.0, 90.0, 180.0, 270.0)


def _render_views(pred: dict, image, K: torch.Tensor | None):
    """The prediction rendered from :data:`VIEW_ANGLES` side by side over the (H, W, 3) uint8
    RGB ``image`` (first view), or None if the prediction is empty."""
    from meshrecon.render import BLENDER_F_NDC
    from meshrecon.utils.method_benchmark.gallery import render_views, splat_mesh

    H, W = image.shape[:2]
    if K is None:  # Blender's camera of the R2N2 renders, in pixels
        K = torch.tensor([BLENDER_F_NDC * W / 2, BLENDER_F_NDC * H / 2, W / 2, H / 2])
    if "mesh" in pred and pred["mesh"][1].shape[0] > 0:
        verts, faces = pred["mesh"][0].cpu().float(), pred["mesh"][1].cpu()
    elif "points" in pred and pred["points"].shape[0] > 0:
        pts = pred["points"].cpu().float()
        verts, faces = splat_mesh(pts, 0.012 * float((pts.max(0).values - pts.min(0).values).max()))
    else:
        return None
    center = (verts.min(0).values + verts.max(0).values) / 2
    return render_views(
        [(verts, faces, (0.55, 0.62, 0.75))],
        K.float(),
        (H, W),
        center,
        background=image[..., :3].copy(),
        angles=VIEW_ANGLES,
    )
