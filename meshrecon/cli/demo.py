"""Run a trained model on photos: Mesh R-CNN, or a single-view model (VoxMesh, Pixel2Mesh,
Sphere-Init, PSGN); meshes (OBJ, PLY, GLB, with colours from the photo), pictures, index.html.

    meshrecon demo --config-file synthetic/voxmesh.yaml --input photos/ --output demo_out \\
        MODEL.WEIGHTS output/synthetic_voxmesh/model_final.pth
    meshrecon demo --config-file synthetic/meshrcnn_R18_FPN.yaml --input a.jpg b.png \\
        --output demo_out MODEL.WEIGHTS output/.../model_final.pth

--input takes image files and folders (a folder's files, not its subfolders, in name order);
any PIL image works (grayscale, RGBA, 16-bit, EXIF-rotated JPEG; larger ones are reduced
first, files above meshrecon.utils.image_limits.MAX_IMAGE_PIXELS pixels are refused). A file
that is not an image is skipped with a one-line error; the run goes on and ends with how many
images were done and skipped (exit status 1 if none was done).

Writes to --output, per image <stem> (meshes in the camera frame: +X left, +Y up, +Z forward,
as each file's header says; vertex colours sampled from the photo where the surface faces the
camera, grey elsewhere, unless --no-color):
  Mesh R-CNN: <stem>_<k>_<class>.obj/.ply/.glb per detection scoring --threshold or more
    (placed with --focal-length and --depth: the photo's camera is unknown), <stem>_scene.glb
    (all of them), <stem>_det.png (boxes, masks, labels) and <stem>_meshes.png (the meshes
    over the photo).
  Single-view models: <stem>_mesh.obj/.ply/.glb (or <stem>_points.ply, <stem>_voxels.pt),
    <stem>_input.png (the square crop the model saw), <stem>_overlay.png (the mesh over the
    photo) and <stem>_views.png (over the crop, then turned by 90, 180, 270 degrees).
  index.html: every image with its pictures, downloads and an interactive 3D viewer (works
    offline: three.js is copied into viewer/ beside it).

Single-view models were trained on square renders of one centred object, so the photo is
cropped like them around the object's mask: the image's alpha channel, else --mask, else the
top detection of --detector-config (a Mesh R-CNN config), else the whole image (warned). They
predict in the fixed camera of those renders, so --focal-length and --depth do not apply.

Without MODEL.WEIGHTS the model would predict from random initial weights; the demo refuses
unless --allow-random-weights says that this is meant (e.g. to try the pipeline).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys

from meshrecon.cli.common import CONFIG_FILE_HELP, resolve_config_file

DEFAULT_THRESHOLD = 0.5
_CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")

logger = logging.getLogger("meshrecon.demo")


def build_parser() -> argparse.ArgumentParser:
    doc = __doc__.split("\n\n")
    parser = argparse.ArgumentParser(
        prog="meshrecon demo",
        description=doc[0].replace("\n", " "),
        epilog="\n\n".join(doc[1:]).replace("\\\\\n", "\\\n"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", required=True, help=CONFIG_FILE_HELP)
    parser.add_argument(
        "--input", required=True, nargs="+", help="image files and/or folders of images"
    )
    parser.add_argument("--output", required=True, help="output folder (created)")
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help=f"lowest detection score kept (default {DEFAULT_THRESHOLD}); below the config's "
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST, that is lowered to it. Mesh R-CNN and "
        "--detector-config only",
    )
    parser.add_argument(
        "--focal-length",
        type=float,
        default=None,
        help="Mesh R-CNN only: focal length in pixels of the input file (default: its width)",
    )
    parser.add_argument(
        "--depth",
        type=float,
        default=None,
        help="Mesh R-CNN only: camera depth of each object's centre (default 3)",
    )
    parser.add_argument(
        "--mask",
        help="single-view models: the object's mask (non-zero = object) for one image, or a "
        "folder of masks named like the images (any image extension)",
    )
    parser.add_argument(
        "--detector-config",
        help="single-view models: a Mesh R-CNN config whose top detection gives the mask of "
        "images without alpha channel or --mask",
    )
    parser.add_argument(
        "--detector-weights",
        help="weights of --detector-config (default: its MODEL.WEIGHTS)",
    )
    parser.add_argument(
        "--no-color", action="store_true", help="write meshes without vertex colours"
    )
    parser.add_argument(
        "--allow-random-weights",
        action="store_true",
        help="run even without MODEL.WEIGHTS (the predictions are then those of random weights)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config KEY VALUE overrides")
    return parser


def _split_inputs(args) -> None:
    """``--input a.png MODEL.WEIGHTS w.pth``: the config overrides that ``--input``'s list
    swallowed go back to ``opts``."""
    for i, item in enumerate(args.input):
        if _CONFIG_KEY.match(item) and not os.path.exists(item):
            args.opts = args.input[i:] + list(args.opts or [])
            args.input = args.input[:i]
            return


def _load_cfg(parser, config_file: str, opts, what: str, allow_random: bool):
    from meshrecon.config import get_cfg

    try:
        path = resolve_config_file(config_file)
    except FileNotFoundError as err:
        parser.error(str(err))
    cfg = get_cfg()
    cfg.merge_from_file(path)
    cfg.merge_from_list(opts or [])
    cfg.MODEL.DEVICE = "cpu"
    if not cfg.MODEL.WEIGHTS:
        if not allow_random:
            parser.error(
                f"MODEL.WEIGHTS is empty in {what} {config_file} and the overrides: the model "
                "would predict from random weights. Pass a trained checkpoint (MODEL.WEIGHTS "
                "path/to/model_final.pth), or --allow-random-weights to run untrained anyway."
            )
        print(f"warning: {what}: MODEL.WEIGHTS is empty: random weights", file=sys.stderr)
    return cfg


def _build(cfg):
    import meshrecon.modeling  # noqa: F401  (registers the architectures)
    from meshrecon.checkpoint import Checkpointer
    from meshrecon.modeling import build_model

    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        Checkpointer(model).load(cfg.MODEL.WEIGHTS)
    return model.eval()


def _lower_threshold(cfg, threshold: float, what: str) -> None:
    current = cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST
    if threshold < current:
        print(
            f"{what}: --threshold {threshold} is below MODEL.ROI_HEADS.SCORE_THRESH_TEST "
            f"({current}), which drops detections inside the model: lowered to {threshold}",
            file=sys.stderr,
        )
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = threshold


def _mask_for(mask_arg: str | None, image: str, single: bool) -> str | None:
    if mask_arg is None:
        return None
    if os.path.isfile(mask_arg):
        return mask_arg
    stem = os.path.splitext(os.path.basename(image))[0]
    for name in sorted(os.listdir(mask_arg)):
        if os.path.splitext(name)[0] == stem and os.path.isfile(os.path.join(mask_arg, name)):
            if os.path.abspath(os.path.join(mask_arg, name)) != os.path.abspath(image):
                return os.path.join(mask_arg, name)
    return None


def _unique_stem(path: str, used: set[str]) -> str:
    stem = os.path.splitext(os.path.basename(path))[0] or "image"
    if stem in used:  # photo.jpg and photo.png in one run
        stem = f"{stem}_{os.path.splitext(path)[1].lstrip('.') or 'file'}"
    while stem in used:
        stem += "_"
    used.add(stem)
    return stem


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _split_inputs(args)
    if not args.input:
        parser.error("--input: no image or folder given")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from meshrecon.apps.demo.inputs import collect_inputs

    cfg = _load_cfg(parser, args.config_file, args.opts, "--config-file", args.allow_random_weights)
    single_view = cfg.MODEL.META_ARCHITECTURE == "SingleViewReconstructor"
    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    detector = None
    if single_view:
        # These models predict in the fixed camera of their training renders (R2N2's Blender
        # camera): a focal length or depth of the photo has nothing to act on.
        for flag, value in (("--focal-length", args.focal_length), ("--depth", args.depth)):
            if value is not None:
                parser.error(
                    f"{flag} applies to Mesh R-CNN models only: {cfg.MODEL.META_ARCHITECTURE} "
                    "models predict in the fixed camera of their training renders (R2N2's: a "
                    "35 mm lens on a 32 mm sensor, the object centred in a square crop), and "
                    "the demo carries that camera back to the photo through the crop"
                )
        if args.threshold is not None and not args.detector_config:
            parser.error("--threshold applies to detections: give --detector-config with it")
        if args.mask and not os.path.exists(args.mask):
            parser.error(f"--mask {args.mask}: no such file or folder")
        if args.detector_config:
            dcfg = _load_cfg(
                parser,
                args.detector_config,
                ["MODEL.WEIGHTS", args.detector_weights] if args.detector_weights else [],
                "--detector-config",
                args.allow_random_weights,
            )
            if dcfg.MODEL.META_ARCHITECTURE == "SingleViewReconstructor":
                parser.error("--detector-config must be a detector (Mesh R-CNN) config")
            _lower_threshold(dcfg, threshold, "--detector-config")
            dcfg.freeze()
            detector = (dcfg, _build(dcfg))
    else:
        for flag in ("mask", "detector_config", "detector_weights"):
            if getattr(args, flag) is not None:
                parser.error(
                    f"--{flag.replace('_', '-')} applies to single-view models only; "
                    f"{cfg.MODEL.META_ARCHITECTURE} detects its objects itself"
                )
        _lower_threshold(cfg, threshold, "--config-file")
    cfg.freeze()
    try:
        files = collect_inputs(args.input)
    except FileNotFoundError as err:
        parser.error(str(err))
    if args.mask and os.path.isfile(args.mask) and len(files) != 1:
        parser.error(f"--mask {args.mask} is one file for {len(files)} images: give a folder")
    model = _build(cfg)
    names: list[str] = []
    if cfg.DATASETS.TEST:
        import meshrecon.data.datasets  # noqa: F401  (dataset metadata: class names)
        from meshrecon.data.catalog import MetadataCatalog

        names = list(MetadataCatalog.get(cfg.DATASETS.TEST[0]).get("thing_classes", []) or [])

    from meshrecon.apps.demo.index import write_demo_index
    from meshrecon.apps.demo.inputs import DemoInputError, NotAnImageError
    from meshrecon.utils.image_limits import ImageTooLargeError

    out = args.output
    entries, skipped, used = [], [], set()
    for path in files:
        stem = _unique_stem(path, used)
        try:
            if single_view:
                entry = _single_view(cfg, model, path, out, stem, args, detector, threshold)
            else:
                entry = _detector(cfg, model, path, out, stem, args, threshold, names)
        except (DemoInputError, ImageTooLargeError) as err:
            print(f"skipped: {err}", file=sys.stderr)
            why = "not an image" if isinstance(err, NotAnImageError) else "too large"
            if not isinstance(err, NotAnImageError | ImageTooLargeError):
                why = "unusable mask"
            skipped.append((path, why, str(err)))
            used.discard(stem)
            continue
        entries.append(entry)
        print(f"{path}: " + ", ".join(entry.notes[:1] + [f"{len(entry.links)} mesh files"]))
    if entries:
        header = f"model: {args.config_file} ({cfg.MODEL.META_ARCHITECTURE})"
        page = write_demo_index(out, entries, [(p, e) for p, _, e in skipped], header=header)
        print(f"index: {page}")
    summary = f"{len(entries)} image(s) done, {len(skipped)} skipped"
    if skipped:
        summary += ": " + "; ".join(f"{os.path.basename(p)} ({why})" for p, why, _ in skipped)
    print(summary)
    return 0 if entries else 1


def _rel(path: str, out: str) -> str:
    return os.path.relpath(path, out).replace(os.sep, "/")


def _single_view(cfg, model, path, out, stem, args, detector, threshold):
    from meshrecon.apps.demo.detector import detect_object_mask
    from meshrecon.apps.demo.index import DemoEntry, fov_of
    from meshrecon.apps.demo.single_view import (
        SINGLE_VIEW_INPUT_SIZE,
        blender_K,
        run_single_view_demo,
    )

    def detect(rgb):
        return detect_object_mask(detector[0], detector[1], rgb, threshold)

    written = run_single_view_demo(
        cfg,
        path,
        out,
        model=model,
        mask=_mask_for(args.mask, path, single=True),
        detector=detect if detector else None,
        color=not args.no_color,
        stem=stem,
    )
    pictures = [
        (label, _rel(written[key], out))
        for key, label in (
            ("overlay", "mesh over the photo"),
            ("views", "views"),
            ("input", "model input"),
        )
        if key in written
    ]
    links = {
        fmt: _rel(written[key], out)
        for key, fmt in (
            ("mesh", "OBJ"),
            ("mesh_ply", "PLY"),
            ("mesh_glb", "GLB"),
            ("points", "points PLY"),
        )
        if key in written
    }
    model_file = written.get("mesh_glb") or written.get("points") or ""

    return DemoEntry(
        image=path,
        pictures=pictures,
        model=_rel(model_file, out) if model_file else "",
        links=links,
        notes=[f"object mask: {written['mask']}"],
        fov=fov_of(blender_K(SINGLE_VIEW_INPUT_SIZE), SINGLE_VIEW_INPUT_SIZE),
    )


def _detector(cfg, model, path, out, stem, args, threshold, names):
    from meshrecon.apps.demo.detector import run_detector_demo
    from meshrecon.apps.demo.index import DemoEntry, fov_of

    result = run_detector_demo(
        cfg,
        model,
        path,
        out,
        threshold=threshold,
        focal_length=args.focal_length or 0.0,
        depth=3.0 if args.depth is None else args.depth,
        color=not args.no_color,
        class_names=names,
        stem=stem,
    )
    pictures = [("detections", _rel(result["det"], out))]
    if result["overlay"]:
        pictures.insert(0, ("meshes over the photo", _rel(result["overlay"], out)))
    links = {}
    for k, files in enumerate(result["meshes"]):
        for fmt, p in files.items():
            links[f"{k} {fmt.upper()}"] = _rel(p, out)
    W, H = result["size"]
    return DemoEntry(
        image=path,
        pictures=pictures,
        model=_rel(result["scene"], out) if result["scene"] else "",
        links=links,
        notes=[f"{result['detections']} detection(s) scoring {threshold} or more"],
        fov=fov_of(result["K"], H),
        aspect=W / H,
    )


if __name__ == "__main__":
    raise SystemExit(main())
