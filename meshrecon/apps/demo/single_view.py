"""Demo of single-view reconstructors: one photo in, its object's mesh / points / voxels out.

``meshrecon demo`` calls :func:`run_single_view_demo` for models whose
``MODEL.META_ARCHITECTURE`` is ``SingleViewReconstructor``::

    from meshrecon.apps.demo.single_view import run_single_view_demo
    run_single_view_demo(cfg, "chair.png", "out/")                 # alpha channel: the mask
    run_single_view_demo(cfg, "photo.jpg", "out/", mask="mask.png")

These models are trained on square renders of one centred object seen by a fixed camera (R2N2's
Blender camera: a 35 mm lens on a 32 mm sensor; 137 x 137 pixels). So the photo is cropped the
same way (:func:`meshrecon.apps.demo.inputs.crop_object`: a square around the object's mask
with the training views' margin, the training background outside the mask, resized to
:data:`SINGLE_VIEW_INPUT_SIZE`), and the prediction is in that fixed camera's frame. Carried
back through the crop, that camera projects the mesh onto the photo, which gives the overlay
picture and the vertex colours. The photo's own focal length and the object's depth play no
part: the models predict at the training renders' scale and distance.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch

from meshrecon.apps.demo.colors import sample_vertex_colors
from meshrecon.apps.demo.inputs import crop_object, load_demo_image, load_mask
from meshrecon.render.frustum import R2N2_IMAGE_SIZE

__all__ = [
    "SINGLE_VIEW_INPUT_SIZE",
    "VIEW_ANGLES",
    "blender_K",
    "camera_note",
    "fit_image_to_input",
    "frame_views",
    "run_single_view_demo",
]

logger = logging.getLogger(__name__)

SINGLE_VIEW_INPUT_SIZE = R2N2_IMAGE_SIZE
"""Side (pixels) of the square a single-view model sees: R2N2's render size, which Mesh
R-CNN's ShapeNet models and the synthetic single-view configs are trained on (the predictor
feeds these models at the same size)."""

# The demo's viewpoints: the input camera, then turned about the object's vertical axis.
VIEW_ANGLES = (0.0, 90.0, 180.0, 270.0)
# Flat colour of meshes without vertex colours, and the overlay's share of the mesh.
MESH_COLOR = (0.55, 0.62, 0.75)
OVERLAY_ALPHA = 0.7


def blender_K(size: int) -> list[float]:
    """``[fx, fy, cx, cy]`` of the training renders' camera at ``size`` x ``size`` pixels."""
    from meshrecon.render import BLENDER_F_NDC

    return [BLENDER_F_NDC * size / 2, BLENDER_F_NDC * size / 2, size / 2, size / 2]


def camera_note(K: Sequence[float], image: str, size: tuple[int, int]) -> str:
    """The coordinate convention written into each mesh file."""
    fx, fy, cx, cy = (float(k) for k in K)
    return (
        "meshrecon demo: vertices in the camera frame (PyTorch3D's convention): camera at the "
        "origin, +X left, +Y up, +Z forward into the scene, right-handed; units of the model's "
        f"training data.\nA vertex (X, Y, Z) projects to pixel u = cx - fx X / Z, v = cy - fy Y "
        f"/ Z (x right, y down) of {os.path.basename(image)} at {size[0]} x {size[1]} pixels "
        f"with fx = {fx:.3f}, fy = {fy:.3f}, cx = {cx:.3f}, cy = {cy:.3f}.\nVertex colours "
        "(sRGB) are sampled from the image where the vertex faces the camera; grey elsewhere."
    )


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
    *,
    mask: str | np.ndarray | None = None,
    detector: Callable[[np.ndarray], np.ndarray | None] | None = None,
    color: bool = True,
    stem: str | None = None,
) -> dict[str, str]:
    """Reconstruct the object of one photo and save the prediction and its pictures.

    Args:
        cfg: a config of a ``SingleViewReconstructor`` (its ``MODEL.WEIGHTS`` are loaded).
        image_path: any image PIL reads (grayscale, RGBA, 16-bit, EXIF-rotated JPEG, large).
        output_dir: where the files go (see Returns).
        K: ``[fx, fy, cx, cy]`` of the image in pixels of the file as given: the image is then
            used whole (resized so its longer side is ``input_size``, no crop) and the model
            gets ``K``. None (the demo): the object is cropped as in the training views and the
            training camera is used.
        model: an already built model (weights not reloaded).
        input_size: the side of the model's input.
        mask: the object's mask (a file, or an (H, W) bool array at the image's working size);
            None: the image's alpha channel, else ``detector``, else the whole image (with a
            warning).
        detector: callable (H, W, 3) uint8 RGB -> (H, W) bool mask of the object, or None.
        color: sample vertex colours from the image.
        stem: file name prefix (default: the image's name without extension).

    Returns:
        ``{kind: path}`` of the files written: ``mesh`` / ``mesh_ply`` / ``mesh_glb``
        (``<stem>_mesh.obj/.ply/.glb``), ``points`` (``<stem>_points.ply``), ``voxels``
        (``<stem>_voxels.pt``), ``input`` (``<stem>_input.png``, what the model saw),
        ``overlay`` (``<stem>_overlay.png``, the mesh over the photo) and ``views``
        (``<stem>_views.png``: over the model's input, then turned by 90, 180 and 270 degrees
        and framed to the mesh). Geometry is in the camera frame (+X left, +Y up, +Z forward),
        as the files' headers say. The key ``mask`` names where the crop's mask came from.
    """
    from meshrecon.checkpoint import Checkpointer
    from meshrecon.data.mapper_utils import image_tensor
    from meshrecon.modeling import build_model
    from meshrecon.render import save_image

    if cfg.MODEL.META_ARCHITECTURE != "SingleViewReconstructor":
        raise ValueError(
            f"MODEL.META_ARCHITECTURE is {cfg.MODEL.META_ARCHITECTURE!r}, not "
            "'SingleViewReconstructor'"
        )
    if not os.path.isfile(image_path):
        raise FileNotFoundError(f"image_path {image_path!r} does not exist")
    if K is not None and len(K) != 4:
        raise ValueError(f"K must be [fx, fy, cx, cy], got {K!r}")
    photo = load_demo_image(image_path)
    if model is None:
        model = build_model(cfg)
        if cfg.MODEL.WEIGHTS:
            Checkpointer(model).load(cfg.MODEL.WEIGHTS)
    model.eval()
    H, W = photo.rgb.shape[:2]
    source = "none"
    if K is not None:
        # The caller's camera: the image whole, K following the reduction and the resize.
        s0 = W / photo.original_size[0], H / photo.original_size[1]
        K_img = [float(K[0]) * s0[0], float(K[1]) * s0[1], float(K[2]) * s0[0], float(K[3]) * s0[1]]
        model_rgb, K_in = fit_image_to_input(photo.rgb, input_size, K_img)
    else:
        if mask is not None:
            if isinstance(mask, np.ndarray):
                if mask.shape != (H, W):
                    raise ValueError(f"mask has shape {mask.shape}, the image is {(H, W)}")
                object_mask, source = mask.astype(bool), "mask given"
            else:
                object_mask, source = load_mask(os.fspath(mask), (W, H)), f"mask {mask}"
        elif photo.alpha is not None:
            object_mask, source = photo.alpha, "alpha channel"
        elif detector is not None:
            object_mask = detector(photo.rgb)
            source = "detector" if object_mask is not None else "none (nothing detected)"
        else:
            object_mask = None
        if object_mask is None:
            logger.warning(
                "%s: no object mask (no alpha channel, --mask or --detector-config): the whole "
                "image is used, centred in a square; a photo with background gives a poor crop",
                image_path,
            )
        model_rgb, crop = crop_object(
            photo.rgb, object_mask, input_size, cfg.INPUT.BACKGROUND_COLOR
        )
        K_in = blender_K(input_size)
        K_img = crop.K_to_image(K_in)
    model_input = model_rgb if cfg.INPUT.FORMAT != "BGR" else model_rgb[..., ::-1]
    item = {"image": image_tensor(np.ascontiguousarray(model_input)), "height": 0, "width": 0}
    item["height"], item["width"] = model_rgb.shape[:2]
    if K is not None:
        item["K"] = torch.tensor(K_in)
    with torch.no_grad():
        pred = model([item])[0]

    os.makedirs(output_dir, exist_ok=True)
    stem = stem or os.path.splitext(os.path.basename(image_path))[0]
    written = {"mask": source}
    note = camera_note(K_img, image_path, (W, H))

    def path(suffix: str) -> str:
        return os.path.join(output_dir, f"{stem}{suffix}")

    verts = faces = colors = None
    if "mesh" in pred:
        verts, faces = pred["mesh"][0].cpu().float(), pred["mesh"][1].cpu().long()
        if color and faces.shape[0]:
            colors = sample_vertex_colors(verts, faces, photo.rgb, K_img)[0]
        written.update(_save_mesh_files(path("_mesh"), verts, faces, colors, note))
    if "points" in pred:
        from meshrecon.io import save_pointcloud_ply

        points = pred["points"].cpu().float()
        point_colors = None
        if color and points.shape[0]:
            empty = torch.zeros(0, 3, dtype=torch.long)
            point_colors = sample_vertex_colors(points, empty, photo.rgb, K_img)[0]
        save_pointcloud_ply(path("_points.ply"), points, colors=point_colors)
        written["points"] = path("_points.ply")
    if "voxels" in pred:
        torch.save({"voxels": pred["voxels"].cpu()}, path("_voxels.pt"))
        written["voxels"] = path("_voxels.pt")
    save_image(path("_input.png"), model_rgb)
    written["input"] = path("_input.png")

    shape = _renderable(pred, verts, faces, colors)
    if shape is not None:
        save_image(path("_overlay.png"), overlay(photo.rgb, *shape, K_img))
        written["overlay"] = path("_overlay.png")
        views = frame_views(*shape, torch.tensor(K_in, dtype=torch.float32), model_rgb)
        save_image(path("_views.png"), views)
        written["views"] = path("_views.png")
    return written


def _save_mesh_files(stem: str, verts, faces, colors, note: str) -> dict[str, str]:
    from meshrecon.io import save_mesh

    if faces.shape[0] == 0:
        logger.warning("%s: the predicted mesh is empty (no faces): no mesh files", stem)
        return {}
    out = {}
    for key, ext in (("mesh", ".obj"), ("mesh_ply", ".ply"), ("mesh_glb", ".glb")):
        save_mesh(stem + ext, verts, faces, verts_colors=colors, comment=note)
        out[key] = stem + ext
    return out


def _renderable(pred, verts, faces, colors):
    """(verts, faces, vertex colours or None) to draw: the mesh, or the points as small
    icosahedra; None when the prediction is empty."""
    if verts is not None and faces.shape[0] > 0:
        return verts, faces, colors
    if "points" in pred and pred["points"].shape[0] > 0:
        from meshrecon.ops import ico_sphere

        pts = pred["points"].cpu().float().reshape(-1, 3)
        radius = 0.012 * float((pts.max(0).values - pts.min(0).values).max())
        ico = ico_sphere(0)
        sv, sf = ico.verts_packed().float(), ico.faces_packed()
        v = (pts[:, None, :] + radius * sv[None]).reshape(-1, 3)
        f = (sf[None] + sv.shape[0] * torch.arange(len(pts))[:, None, None]).reshape(-1, 3)
        return v, f, None
    return None


def _shade(verts, faces, colors, K, size, background):
    from meshrecon.render import render_meshes
    from meshrecon.structures import Meshes

    kwargs = {"vertex_colors": colors} if colors is not None else {}
    if colors is None:
        kwargs["face_colors"] = torch.tensor(MESH_COLOR).expand(faces.shape[0], 3)
    out = render_meshes(
        Meshes(verts=[verts.float()], faces=[faces]),
        torch.as_tensor(K, dtype=torch.float32),
        size,
        background=background,
        **kwargs,
    )
    return out["rgb"][0].clamp(0, 1), out["mask"][0]


def overlay(image: np.ndarray, verts, faces, colors, K: Sequence[float]) -> np.ndarray:
    """The mesh drawn over an (H, W, 3) uint8 photo through ``K`` (its pixels), blended
    :data:`OVERLAY_ALPHA` over it; (H, W, 3) uint8."""
    H, W = image.shape[:2]
    rgb, mask = _shade(verts, faces, colors, K, (H, W), (1.0, 1.0, 1.0))
    photo = torch.from_numpy(image.astype(np.float32) / 255.0)
    blend = torch.where(mask[..., None], OVERLAY_ALPHA * rgb + (1 - OVERLAY_ALPHA) * photo, photo)
    return (blend * 255).round().byte().numpy()


def _turn(verts: torch.Tensor, center: torch.Tensor, degrees: float) -> torch.Tensor:
    a = math.radians(degrees)
    rot = torch.tensor(
        [[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]]
    )
    return (verts - center) @ rot.T + center


def frame_views(
    verts: torch.Tensor,
    faces: torch.Tensor,
    colors: torch.Tensor | None,
    K: torch.Tensor,
    image: np.ndarray,
    angles: Sequence[float] = VIEW_ANGLES,
    margin: float = 1.08,
) -> np.ndarray:
    """Panels side by side, (H, len(angles) * W, 3) uint8: at angle 0 the mesh over the
    model's input ``image`` from its camera ``K``; at the others, the mesh turned about its
    bounding-box centre's vertical axis and moved along the optical axis so that its bounding
    sphere (times ``margin``) fits the panel, so nothing is cut off at the edges."""
    H, W = image.shape[:2]
    center = (verts.min(0).values + verts.max(0).values) / 2
    radius = float((verts - center).norm(dim=1).max()) * margin
    fx, fy = float(K[0]), float(K[1])
    # The half-angle the panel's narrower side subtends; the sphere's silhouette fits it.
    half = min(math.atan((W / 2) / fx), math.atan((H / 2) / fy))
    distance = max(radius / math.sin(half), 1e-6)
    K_centred = torch.tensor([fx, fy, W / 2.0, H / 2.0])
    panels = []
    for degrees in angles:
        if degrees == 0:
            bg = torch.from_numpy(image.astype(np.float32) / 255.0)
            rgb, _ = _shade(verts, faces, colors, K, (H, W), bg)
        else:
            moved = _turn(verts, center, degrees) - center + torch.tensor([0.0, 0.0, distance])
            rgb, _ = _shade(moved, faces, colors, K_centred, (H, W), (1.0, 1.0, 1.0))
        panels.append((rgb * 255).round().byte().numpy())
    return np.concatenate(panels, axis=1)
