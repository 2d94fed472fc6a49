"""Run a Mesh R-CNN model on one image: per-object OBJ meshes, detections and a mesh overlay.

    meshrecon demo --config-file synthetic/meshrcnn_R18_FPN.yaml \\
        --input image.png --output demo_out MODEL.WEIGHTS output/.../model_final.pth

Writes to ``--output``: ``<stem>_<k>_<class>.obj`` for each detection scoring at least
``--threshold`` (vertices in the camera frame: +X left, +Y up, +Z forward), ``<stem>_det.png``
(boxes, masks and labels over the image) and ``<stem>_meshes.png`` (the meshes rendered over
the image). The image is resized to the model's input size first (INPUT.MIN_SIZE_TEST /
MAX_SIZE_TEST; single-view models: ``SINGLE_VIEW_INPUT_SIZE``) and the pictures have that
size; files above ``meshrecon.utils.image_limits.MAX_IMAGE_PIXELS`` pixels are refused.

The image's camera is unknown, so meshes are placed with ``--focal-length`` pixels of the input
file (default: the image width) and the object's centre at depth ``--depth``; as in Mesh R-CNN,
the predicted dz fixes each object's extent in depth relative to that centre.

A single-view model (MODEL.META_ARCHITECTURE SingleViewReconstructor) writes instead, to
``--output``: ``<stem>_mesh.obj``, ``<stem>_points.ply`` and ``<stem>_voxels.pt`` (those it
predicts, in the camera frame) and ``<stem>_views.png`` (the prediction over the image, then
turned by 90, 180 and 270 degrees).

Without ``MODEL.WEIGHTS`` the model would predict from random initial weights; the demo refuses
unless ``--allow-random-weights`` says that this is meant (e.g. to try the pipeline).
"""

from __future__ import annotations

import argparse
import colorsys
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

import meshrecon.data.datasets  # noqa: F401  (dataset metadata: class names)
import meshrecon.modeling  # noqa: F401
from meshrecon.checkpoint import Checkpointer
from meshrecon.cli.common import CONFIG_FILE_HELP, resolve_config_file
from meshrecon.config import get_cfg
from meshrecon.data import MeshRCNNMapper
from meshrecon.data.catalog import MetadataCatalog
from meshrecon.io.mesh_io import save_obj
from meshrecon.modeling import build_model
from meshrecon.modeling.roi_heads.box_frustum import box_frustum_to_camera
from meshrecon.render import render_meshes
from meshrecon.structures import Meshes


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2].replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", required=True, help=CONFIG_FILE_HELP)
    parser.add_argument("--input", required=True, help="an image file")
    parser.add_argument("--output", required=True, help="output directory")
    parser.add_argument("--threshold", type=float, default=0.5, help="minimum detection score")
    parser.add_argument("--focal-length", type=float, default=0.0, help="pixels (0: width)")
    parser.add_argument("--depth", type=float, default=3.0, help="depth of object centres")
    parser.add_argument(
        "--allow-random-weights",
        action="store_true",
        help="run even without MODEL.WEIGHTS (the predictions are then those of random weights)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config KEY VALUE overrides")
    args = parser.parse_args(argv)
    try:
        config_file = resolve_config_file(args.config_file)
    except FileNotFoundError as err:
        parser.error(str(err))

    cfg = get_cfg()
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(args.opts or [])
    cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    if not cfg.MODEL.WEIGHTS:
        if not args.allow_random_weights:
            parser.error(
                f"MODEL.WEIGHTS is empty in {args.config_file} and the overrides: the model would "
                "predict from random weights. Pass a trained checkpoint (MODEL.WEIGHTS "
                "path/to/model_final.pth), or --allow-random-weights to run untrained anyway."
            )
        print("warning: MODEL.WEIGHTS is empty: predicting with random weights", file=sys.stderr)
    if cfg.MODEL.META_ARCHITECTURE == "SingleViewReconstructor":
        # One object per image (ShapeNet-style models): mesh, points or voxels of that object.
        from meshrecon.utils.demo_single_view import run_single_view_demo

        for kind, path in run_single_view_demo(cfg, args.input, args.output).items():
            print(f"{kind}: {path}")
        return 0
    model = build_model(cfg)
    Checkpointer(model).load(cfg.MODEL.WEIGHTS)
    model.eval()

    # The mapper reads the image (refusing more than MAX_IMAGE_PIXELS pixels) and resizes it to
    # the model's input size (INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST). Predictions, pictures and
    # the camera all stay at that size: a huge photo costs no more than a small one.
    mapper = MeshRCNNMapper(cfg, is_train=False)
    record = {"file_name": args.input, "image_id": 0}
    sample = mapper(record)
    H, W = sample["image"].shape[-2:]
    scale = W / sample["width"]
    sample["height"], sample["width"] = H, W
    with torch.no_grad():
        inst = model([sample])[0]["instances"]
    inst = inst[inst.scores >= args.threshold]

    rgb = sample["image"].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()
    if cfg.INPUT.FORMAT == "BGR":
        rgb = rgb[:, :, ::-1]
    rgb = np.ascontiguousarray(rgb)
    # --focal-length is in pixels of the file as given; the camera follows the resize.
    f = (args.focal_length * scale) if args.focal_length else float(W)
    K = torch.tensor([f, f, W / 2.0, H / 2.0])
    names = []
    if cfg.DATASETS.TEST:
        names = list(MetadataCatalog.get(cfg.DATASETS.TEST[0]).get("thing_classes", []) or [])
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(args.input).stem
    draw_detections(rgb, inst, names).save(out_dir / f"{stem}_det.png")

    if not inst.has("pred_meshes") or len(inst) == 0:
        print(f"{len(inst)} detections; no meshes to write")
        return 0
    dz = inst.pred_dz[:, 0] if inst.has("pred_dz") else torch.ones(len(inst))
    placed = place_in_camera(list(inst.pred_meshes), inst.pred_boxes.tensor, dz, K, args.depth)
    for k, ((verts, faces), cls) in enumerate(zip(placed, inst.pred_classes.tolist())):
        name = names[cls] if cls < len(names) else str(cls)
        if faces.shape[0] == 0:
            # No voxel reached the cubify threshold (an undertrained voxel head).
            print(f"detection {k} ({name}): empty mesh, no OBJ written")
            continue
        save_obj(out_dir / f"{stem}_{k}_{name}.obj", verts, faces)
    nonempty = [(v, f) for v, f in placed if f.shape[0] > 0]
    if nonempty:
        colors = _colors(len(placed))
        face_colors = torch.cat(
            [
                torch.tensor(colors[k]).expand(f.shape[0], 3)
                for k, (_, f) in enumerate(placed)
                if f.shape[0] > 0
            ]
        )
        scene = Meshes(
            verts=[torch.cat([v for v, _ in nonempty])],
            faces=[
                torch.cat(
                    [
                        f + sum(v.shape[0] for v, _ in nonempty[:i])
                        for i, (_, f) in enumerate(nonempty)
                    ]
                )
            ],
        )
        background = torch.from_numpy(rgb.copy()).float() / 255.0
        out = render_meshes(scene, K, (H, W), face_colors=face_colors, background=background)
        overlay = (out["rgb"][0].clamp(0, 1) * 255).round().byte().numpy()
        Image.fromarray(overlay).save(out_dir / f"{stem}_meshes.png")
    print(f"{len(inst)} detections written to {out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
