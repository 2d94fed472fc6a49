"""Demo of Mesh R-CNN-style detectors: per-object meshes placed in the camera, and pictures.

:func:`run_detector_demo` runs a ``GeneralizedRCNN`` model on one photo (read by
:func:`meshrecon.apps.demo.inputs.load_demo_image`, so any PIL image works) resized to the
model's input size, and :func:`detect_object_mask` gives the top-scoring detection's mask, which
the single-view demo crops around (``--detector-config``).
"""

from __future__ import annotations

import colorsys
import logging
import os

import numpy as np
import torch
from PIL import Image, ImageDraw

from meshrecon.apps.demo.colors import sample_vertex_colors
from meshrecon.apps.demo.inputs import load_demo_image
from meshrecon.apps.demo.single_view import camera_note

__all__ = [
    "detect_object_mask",
    "draw_detections",
    "place_in_camera",
    "resize_for_detector",
    "run_detector_demo",
]

logger = logging.getLogger(__name__)


def _colors(n: int) -> list[tuple[float, float, float]]:
    return [colorsys.hsv_to_rgb(i / max(n, 1), 0.75, 0.95) for i in range(n)]


def place_in_camera(
    meshes: list[tuple[torch.Tensor, torch.Tensor]],
    boxes: torch.Tensor,
    dz: torch.Tensor,
    K: torch.Tensor,
    depth: float,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Frustum-frame meshes -> camera frame: depth range ``depth * (1 -+ dz_px / (2 f))``.

    Args:
        meshes: D (verts, faces); boxes: (D, 4); dz: (D,) in box heights; K: (4,)
            ``[fx, fy, cx, cy]``; depth: depth of each object's centre.
    """
    from meshrecon.modeling.roi_heads.box_frustum import box_frustum_to_camera

    out = []
    for i, (verts, faces) in enumerate(meshes):
        dz_px = float(dz[i]) * float(boxes[i, 3] - boxes[i, 1])
        half = depth * dz_px / 2.0 / float(K[0])
        zr = torch.tensor([[depth - half, depth + half]], dtype=torch.float64)
        cam = box_frustum_to_camera(
            verts.double()[None], boxes[i : i + 1].double(), K[None].double(), zr
        )[0]
        out.append((cam.float(), faces))
    return out


def draw_detections(image_rgb: np.ndarray, inst, class_names: list[str]) -> Image.Image:
    """Boxes, translucent masks and labels over the image."""
    canvas = image_rgb.astype(np.float32)
    colors = _colors(len(inst))
    if inst.has("pred_masks"):
        for k, mask in enumerate(inst.pred_masks):
            m = mask.numpy().astype(bool)
            canvas[m] = 0.5 * canvas[m] + 0.5 * 255 * np.array(colors[k])
    img = Image.fromarray(canvas.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for k, (box, cls, score) in enumerate(
        zip(inst.pred_boxes.tensor.tolist(), inst.pred_classes.tolist(), inst.scores.tolist())
    ):
        color = tuple(int(255 * c) for c in colors[k])
        draw.rectangle(box, outline=color, width=2)
        name = class_names[cls] if cls < len(class_names) else str(cls)
        draw.text((box[0] + 2, box[1] + 1), f"{name} {score:.2f}", fill=color)
    return img


def resize_for_detector(rgb: np.ndarray, min_size: int, max_size: int) -> np.ndarray:
    """Shorter side to ``min_size``, longer at most ``max_size`` (Detectron2's test resize)."""
    H, W = rgb.shape[:2]
    if min_size <= 0:
        return rgb
    scale = min_size / min(H, W)
    if max_size > 0 and max(H, W) * scale > max_size:
        scale = max_size / max(H, W)
    h, w = int(H * scale + 0.5), int(W * scale + 0.5)
    if (h, w) == (H, W):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))


def _detect(cfg, model, rgb: np.ndarray):
    """(model-size RGB image, instances) of a photo."""
    from meshrecon.data.mapper_utils import image_tensor

    small = resize_for_detector(rgb, cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    fmt = small[:, :, ::-1] if cfg.INPUT.FORMAT == "BGR" else small
    sample = {"image": image_tensor(fmt), "height": small.shape[0], "width": small.shape[1]}
    with torch.no_grad():
        inst = model([sample])[0]["instances"]
    return small, inst.to("cpu")


def detect_object_mask(cfg, model, rgb: np.ndarray, threshold: float) -> np.ndarray | None:
    """(H, W) bool mask of the top-scoring detection of an (H, W, 3) uint8 photo (its box when
    the model has no mask head), or None when no detection scores ``threshold`` or more."""
    small, inst = _detect(cfg, model, rgb)
    inst = inst[inst.scores >= threshold]
    if len(inst) == 0:
        return None
    k = int(inst.scores.argmax())
    h, w = small.shape[:2]
    if inst.has("pred_masks") and bool(inst.pred_masks[k].any()):
        mask = inst.pred_masks[k].numpy().astype(np.uint8) * 255
    else:
        x0, y0, x1, y1 = (int(round(v)) for v in inst.pred_boxes.tensor[k].tolist())
        mask = np.zeros((h, w), np.uint8)
        mask[max(y0, 0) : max(y1, 0) + 1, max(x0, 0) : max(x1, 0) + 1] = 255
    H, W = rgb.shape[:2]
    return np.asarray(Image.fromarray(mask).resize((W, H), Image.NEAREST)) > 0


def run_detector_demo(
    cfg,
    model,
    image_path: str,
    output_dir: str,
    *,
    threshold: float,
    focal_length: float = 0.0,
    depth: float = 3.0,
    color: bool = True,
    class_names: list[str] | None = None,
    stem: str | None = None,
) -> dict:
    """Detect the objects of a photo and write their meshes and pictures.

    Args:
        cfg, model: a ``GeneralizedRCNN`` config and its model in eval mode.
        image_path: any image PIL reads.
        threshold: lowest detection score kept.
        focal_length: pixels of the file as given (0: the image's width).
        depth: camera depth of each object's centre.
        color: sample vertex colours from the image.
        class_names: names of the classes (labels and file names).
        stem: file name prefix (default: the image's name).

    Returns:
        ``{"detections": D, "meshes": [{"obj", "ply", "glb"} paths per object],
        "scene": "<stem>_scene.glb" (all objects, or None), "det": "<stem>_det.png",
        "overlay": "<stem>_meshes.png" or None, "K": [fx, fy, cx, cy], "size": (W, H)}``.
    """
    from meshrecon.io import save_mesh
    from meshrecon.render import render_meshes
    from meshrecon.structures import Meshes

    photo = load_demo_image(image_path)
    rgb, inst = _detect(cfg, model, photo.rgb)
    inst = inst[inst.scores >= threshold]
    H, W = rgb.shape[:2]
    # --focal-length is in pixels of the file as given; the camera follows the resizes.
    f = (focal_length * W / photo.original_size[0]) if focal_length else float(W)
    K = torch.tensor([f, f, W / 2.0, H / 2.0])
    names = class_names or []
    stem = stem or os.path.splitext(os.path.basename(image_path))[0]
    os.makedirs(output_dir, exist_ok=True)
    result: dict = {"detections": len(inst), "meshes": [], "scene": None, "overlay": None}
    result.update(K=K.tolist(), size=(W, H))
    det = os.path.join(output_dir, f"{stem}_det.png")
    draw_detections(rgb, inst, names).save(det)
    result["det"] = det
    if not inst.has("pred_meshes") or len(inst) == 0:
        return result
    dz = inst.pred_dz[:, 0] if inst.has("pred_dz") else torch.ones(len(inst))
    placed = place_in_camera(list(inst.pred_meshes), inst.pred_boxes.tensor, dz, K, depth)
    note = camera_note(K.tolist(), image_path, (W, H))
    palette = _colors(len(placed))
    parts = []
    for k, ((verts, faces), cls) in enumerate(zip(placed, inst.pred_classes.tolist())):
        name = names[cls] if cls < len(names) else str(cls)
        if faces.shape[0] == 0:
            # No voxel reached the cubify threshold (an undertrained voxel head).
            logger.info("%s: detection %d (%s): empty mesh, no files", image_path, k, name)
            continue
        colors = sample_vertex_colors(verts, faces, rgb, K.tolist())[0] if color else None
        files = {}
        for ext in ("obj", "ply", "glb"):
            files[ext] = os.path.join(output_dir, f"{stem}_{k}_{name}.{ext}")
            save_mesh(files[ext], verts, faces, verts_colors=colors, comment=note)
        result["meshes"].append(files)
        flat = torch.tensor(palette[k]).expand(verts.shape[0], 3)
        parts.append((verts, faces, colors, flat))
    if not parts:
        return result
    offsets = np.cumsum([0] + [v.shape[0] for v, _, _, _ in parts[:-1]])
    verts = torch.cat([v for v, _, _, _ in parts])
    faces = torch.cat([f + int(o) for (_, f, _, _), o in zip(parts, offsets)])
    scene_colors = None
    if color:
        scene_colors = torch.cat([c for _, _, c, _ in parts])
    scene = os.path.join(output_dir, f"{stem}_scene.glb")
    save_mesh(scene, verts, faces, verts_colors=scene_colors, comment=note)
    result["scene"] = scene
    # The overlay shows each object in its own colour (which mesh is which detection).
    background = torch.from_numpy(rgb.astype(np.float32) / 255.0)
    out = render_meshes(
        Meshes(verts=[verts], faces=[faces]),
        K,
        (H, W),
        vertex_colors=torch.cat([p for _, _, _, p in parts]).float(),
        background=background,
    )
    overlay = os.path.join(output_dir, f"{stem}_meshes.png")
    Image.fromarray((out["rgb"][0].clamp(0, 1) * 255).round().byte().numpy()).save(overlay)
    result["overlay"] = overlay
    return result
