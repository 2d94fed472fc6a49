"""Demo of single-view reconstructors: one image in, its mesh / point cloud / voxels on disk.

``tools/demo.py`` calls :func:`run_single_view_demo` for models whose
``MODEL.META_ARCHITECTURE`` is ``SingleViewReconstructor``::

    from meshrecon.utils.demo_single_view import run_single_view_demo
    run_single_view_demo(cfg, "chair.png", "out/")                  # R2N2-style render
    run_single_view_demo(cfg, "photo.jpg", "out/", K=[fx, fy, cx, cy])

The image is first resized to the model's input size (:data:`SINGLE_VIEW_INPUT_SIZE` on its
longer side, the side of the R2N2-style renders every single-view model here is trained on), so
time, memory and the size of the pictures written do not grow with the photo's pixel count.
Files of more than :data:`meshrecon.utils.image_limits.MAX_IMAGE_PIXELS` pixels are refused.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["SINGLE_VIEW_INPUT_SIZE", "fit_image_to_input", "run_single_view_demo"]

_EXIF_ORIENTATION = 0x0112

SINGLE_VIEW_INPUT_SIZE = 137
"""Longer side (pixels) the demo resizes an image to: R2N2's render size, which Mesh R-CNN's
ShapeNet models and the synthetic single-view configs are trained on."""


def fit_image_to_input(
    img: np.ndarray, size: int, K: Sequence[float] | None = None
) -> tuple[np.ndarray, list[float] | None]:
    """Resize an (H, W, C) uint8 image so its longer side is ``size``; scale ``K`` with it.

    Args:
        img: (H, W, C) uint8.
        size: the longer side after resizing (the aspect ratio is kept).
        K: ``[fx, fy, cx, cy]`` of ``img`` in pixels, or None.

    Returns:
        The resized (h, w, C) uint8 image (``img`` itself when already of that size) and ``K``
        for it (None stays None).
    """
    from PIL import Image

    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    H, W = img.shape[:2]
    scale = size / max(H, W)
    h, w = max(1, round(H * scale)), max(1, round(W * scale))
    if K is not None:
        if len(K) != 4:
            raise ValueError(f"K must be [fx, fy, cx, cy], got {K!r}")
        sx, sy = w / W, h / H
        K = [float(K[0]) * sx, float(K[1]) * sy, float(K[2]) * sx, float(K[3]) * sy]
    if (h, w) == (H, W):
        return img, K
    squeeze = img.shape[2] == 1
    pil = Image.fromarray(img[:, :, 0] if squeeze else img)
    out = np.asarray(pil.resize((w, h), Image.BILINEAR))
    return (out[:, :, None] if squeeze else out), K


def run_single_view_demo(
    cfg,
    image_path: str,
    output_dir: str,
    K: Sequence[float] | None = None,
    model: torch.nn.Module | None = None,
    input_size: int = SINGLE_VIEW_INPUT_SIZE,
) -> dict[str, str]:
    """Reconstruct the object of one image and save the prediction.

    Args:
        cfg: a config of a ``SingleViewReconstructor`` (its ``MODEL.WEIGHTS`` are loaded).
        image_path: the image; RGBA images are composited over ``INPUT.BACKGROUND_COLOR``.
        output_dir: where ``<name>_mesh.obj``, ``<name>_points.ply`` and
            ``<name>_voxels.pt`` go (those the model predicts), and ``<name>_views.png``: the
            mesh (or the points as small spheres) rendered from the input camera and turned
            by 90, 180 and 270 degrees about the object's vertical axis, each panel of the
            model's input size.
        K: ``[fx, fy, cx, cy]`` of the image in pixels (of the file as given); None: an
            R2N2 / Blender render (Mesh R-CNN's camera, 35 mm lens on a 32 mm sensor).
        model: an already built model (weights not reloaded).
        input_size: the longer side the image is resized to before the model sees it.

    Returns:
        ``{kind: path}`` of the files written; meshes and points are in the camera frame
        (+X left, +Y up, +Z forward).
    """
    from meshrecon.checkpoint import Checkpointer
    from meshrecon.data.mapper_utils import image_tensor
    from meshrecon.data.readers import read_image
    from meshrecon.io import save_mesh, save_pointcloud_ply
    from meshrecon.modeling import build_model
    from meshrecon.utils.image_limits import open_image

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
    if K is not None and len(K) != 4:
        raise ValueError(f"K must be [fx, fy, cx, cy], got {K!r}")
    model.eval()
    # Decoded at no more than a whole factor above the input size, then resized exactly; K is
    # given for the file's own pixels, so it follows the file's size, not the draft's.
    with open_image(image_path) as header:
        W0, H0 = header.size
        if header.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
            W0, H0 = H0, W0  # read_image turns the image upright: a quarter turn swaps sides
    img = read_image(image_path, cfg.INPUT.FORMAT, cfg.INPUT.BACKGROUND_COLOR, input_size)
    if K is not None:
        sx, sy = img.shape[1] / W0, img.shape[0] / H0
        K = [float(K[0]) * sx, float(K[1]) * sy, float(K[2]) * sx, float(K[3]) * sy]
    img, K = fit_image_to_input(img, input_size, K)
    item = {"image": image_tensor(img), "height": img.shape[0], "width": img.shape[1]}
    if K is not None:
        item["K"] = torch.tensor(K)
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
