"""Gallery of the benchmark: input, ground truth and every method's output, same viewpoints.

For a few fixed test samples per task, each trained model predicts through the task's test
mapper (as the evaluator sees it); the prediction becomes a camera-frame mesh (point clouds as
small spheres, voxels cubified with the R2N2 evaluator's ``occupancy_to_mesh``, detections
placed with the Pix3D evaluator's ``place_meshes_in_camera``, depth maps as a triangulated
grid) and is rendered with :func:`meshrecon.render.render_meshes`
from the input camera and from the camera turned about the object. The meshes are saved as OBJ,
PLY and GLB (point clouds as PLY) for download; :func:`viewer_groups` hands the GLB / PLY files
to the report's interactive 3D viewer (:mod:`meshrecon.apps.viewer3d`).
"""

from __future__ import annotations

import colorsys
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from meshrecon.apps.viewer3d import ViewerGroup, ViewerItem

__all__ = [
    "GalleryCell",
    "GalleryRow",
    "build_gallery",
    "pick_samples",
    "viewer_groups",
    "TURN_DEGREES",
]

# The second viewpoint: the camera turned this much about the vertical axis through the object.
TURN_DEGREES = 60.0
GT_COLOR = (0.55, 0.62, 0.72)
RENDER_SIZE = 160


@dataclass
class GalleryCell:
    """One picture of the gallery (several viewpoints side by side) and its downloads."""

    label: str
    image: str = ""  # path relative to the report folder
    downloads: dict[str, str] = field(default_factory=dict)  # format -> relative path
    note: str = ""
    model: str = ""  # the GLB (mesh) or PLY (points) the 3D viewer shows, relative path
    color: tuple[float, float, float] | None = None  # sRGB 0..1 of the model in the viewer


@dataclass
class GalleryRow:
    """One test sample: its input (first cell), the ground truth, then one cell per method."""

    sample: str
    cells: list[GalleryCell] = field(default_factory=list)
    # The input camera for the 3D viewer (all geometry is in its frame, camera at the origin):
    # "fov" (vertical, degrees), "aspect" (width / height), "target" (orbit centre).
    camera: dict[str, Any] = field(default_factory=dict)


def method_color(index: int) -> tuple[float, float, float]:
    """A distinct colour per method (golden-ratio hues)."""
    return colorsys.hsv_to_rgb((0.08 + 0.618 * index) % 1.0, 0.6, 0.92)


def pick_samples(records: Sequence[dict], count: int) -> list[int]:
    """Indices of ``count`` fixed records, of different categories where possible."""
    chosen: list[int] = []
    seen: set[Any] = set()
    for i, r in enumerate(records):
        cat = r.get("category_id", r.get("category"))
        if cat is None or cat not in seen:
            chosen.append(i)
            seen.add(cat)
        if len(chosen) == count:
            return chosen
    for i in range(len(records)):
        if len(chosen) == count:
            break
        if i not in chosen:
            chosen.append(i)
    return chosen


# ----------------------------------------------------------------------------- geometry


def _turn(verts: torch.Tensor, center: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate camera-frame vertices about the vertical (Y) axis through ``center``."""
    a = math.radians(degrees)
    rot = torch.tensor(
        [[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]],
        dtype=verts.dtype,
    )
    return (verts - center) @ rot.T + center


def splat_mesh(points: torch.Tensor, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Small icosahedra at each point (a renderable stand-in for a point cloud)."""
    from meshrecon.ops import ico_sphere

    ico = ico_sphere(0)
    sv, sf = ico.verts_packed().float(), ico.faces_packed()
    pts = points.reshape(-1, 3).float()
    verts = (pts[:, None, :] + radius * sv[None]).reshape(-1, 3)
    faces = (sf[None] + sv.shape[0] * torch.arange(len(pts))[:, None, None]).reshape(-1, 3)
    return verts, faces


def depth_grid_mesh(
    depth: torch.Tensor, K: Sequence[float], step: int = 2, max_jump: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triangulate a depth map: one vertex per ``step`` pixels, no faces across depth jumps.

    Args:
        depth: (H, W) camera Z; ``<= 0`` marks pixels without depth.
        K: ``[fx, fy, cx, cy]`` at the depth map's size.
        max_jump: relative depth change above which neighbours are not connected.
    """
    from meshrecon.render import unproject_depth

    d = torch.as_tensor(depth, dtype=torch.float64)[::step, ::step]
    k = torch.as_tensor(K, dtype=torch.float64).flatten().clone()
    k = torch.stack(
        [k[0] / step, k[1] / step, (k[2] + 0.5) / step - 0.5, (k[3] + 0.5) / step - 0.5]
    )
    points, valid = unproject_depth(d, k)
    H, W = d.shape
    idx = torch.arange(H * W).reshape(H, W)
    a, b, c, e = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    faces = torch.cat([torch.stack([a, c, b], -1), torch.stack([b, c, e], -1)]).reshape(-1, 3)
    flat_d, flat_v = d.reshape(-1), valid.reshape(-1)
    fd = flat_d[faces]
    ok = flat_v[faces].all(1) & (
        (fd.max(1).values / fd.min(1).values.clamp_min(1e-6)) < 1 + max_jump
    )
    return points.reshape(-1, 3).float(), faces[ok]


def _mesh_center(verts: torch.Tensor) -> torch.Tensor:
    return (verts.min(0).values + verts.max(0).values) / 2.0


# ----------------------------------------------------------------------------- rendering


def render_views(
    parts: Sequence[tuple[torch.Tensor, torch.Tensor, tuple[float, float, float]]],
    K: torch.Tensor,
    size: tuple[int, int],
    center: torch.Tensor,
    background: np.ndarray | None = None,
    vertex_colors: torch.Tensor | None = None,
    angles: Sequence[float] = (0.0, TURN_DEGREES),
) -> np.ndarray:
    """Render camera-frame meshes from the input camera and turned about ``center`` by each of
    ``angles`` (degrees about the vertical axis; 0 is the input view, over ``background``);
    (H, len(angles) * W, 3) uint8."""
    from meshrecon.render import render_meshes
    from meshrecon.structures import Meshes

    H, W = size
    parts = [(v, f, c) for v, f, c in parts if f.shape[0] > 0]
    panels = []
    for degrees in angles:
        if not parts:
            panels.append(np.full((H, W, 3), 255, np.uint8))
            continue
        verts, faces, colors, offset = [], [], [], 0
        for v, f, c in parts:
            verts.append(_turn(v.float(), center.float(), degrees) if degrees else v.float())
            faces.append(f + offset)
            colors.append(torch.tensor(c, dtype=torch.float32).expand(f.shape[0], 3))
            offset += v.shape[0]
        mesh = Meshes(verts=[torch.cat(verts)], faces=[torch.cat(faces)])
        bg: Any = (1.0, 1.0, 1.0)
        if degrees == 0 and background is not None:
            bg = torch.from_numpy(background.astype(np.float32) / 255.0)
        kwargs: dict[str, Any] = {"face_colors": torch.cat(colors)}
        if vertex_colors is not None:
            kwargs = {"vertex_colors": vertex_colors}
        out = render_meshes(mesh, K, (H, W), background=bg, **kwargs)
        panels.append((out["rgb"][0].clamp(0, 1) * 255).round().byte().numpy())
    return np.concatenate(panels, axis=1)


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))


def _save_png(path: str, image: np.ndarray) -> None:
    from meshrecon.render import save_image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_image(path, image)


def _save_mesh_files(
    stem: str, verts: torch.Tensor, faces: torch.Tensor, points: bool = False
) -> dict[str, str]:
    """Write ``stem.obj/.ply/.glb`` (a point cloud: ``stem.ply``); return format -> path."""
    from meshrecon.io import save_mesh, save_pointcloud_ply

    os.makedirs(os.path.dirname(stem), exist_ok=True)
    if points:
        save_pointcloud_ply(stem + ".ply", verts.float())
        return {"PLY": stem + ".ply"}
    if faces.shape[0] == 0:
        return {}
    out = {}
    for ext in ("obj", "ply", "glb"):
        save_mesh(f"{stem}.{ext}", verts.float(), faces)
        out[ext.upper()] = f"{stem}.{ext}"
    return out


# ----------------------------------------------------------------------------- per task


def _scaled_K(K: torch.Tensor, src: tuple[int, int], dst: tuple[int, int]) -> torch.Tensor:
    sy, sx = dst[0] / src[0], dst[1] / src[1]
    K = torch.as_tensor(K, dtype=torch.float32).flatten()
    return torch.stack([K[0] * sx, K[1] * sy, (K[2] + 0.5) * sx - 0.5, (K[3] + 0.5) * sy - 0.5])


def _input_rgb(item: dict, cfg) -> np.ndarray:
    img = item["images"][0] if "images" in item else item["image"]
    arr = img.permute(1, 2, 0).numpy().clip(0, 255).astype(np.uint8)
    return arr if cfg.INPUT.FORMAT == "RGB" else arr[:, :, ::-1].copy()


def _object_geometry(spec, item, pred, record, cfg) -> tuple[str, Any]:
    """Camera-frame geometry of a single- or multi-view prediction: (kind, data)."""
    if spec.task == "multi_view":
        from meshrecon.evaluation.voxel_evaluation import occupancy_to_mesh, read_voxel_box

        R, t = item["R"][0].float(), item["t"][0].float()
        if "mesh" in pred:  # a model-frame mesh (the recognition baselines) over its voxels
            v, f = pred["mesh"]
            return "mesh", (v.detach().float().cpu() @ R.T + t, f.cpu())
        if "voxels" in pred:
            view = record["views"][0] if record.get("views") else record
            box, align = read_voxel_box(view.get("voxel") or record["voxel"])
            thresh = float(cfg.TEST.R2N2.IOU_THRESH)
            occupied = (pred["voxels"].detach().float().cpu() >= thresh).float()
            mesh = occupancy_to_mesh(occupied, 0.5, box, align)
            v, f = mesh.verts_list()[0], mesh.faces_list()[0]
            return "mesh", (v @ R.T + t, f)
        for key in ("points_world", "points"):  # world-frame clouds (OptimizeMVS: the union)
            if key in pred:
                return "points", pred[key].detach().float().cpu().reshape(-1, 3) @ R.T + t
        return "none", None
    if "mesh" in pred:
        v, f = pred["mesh"]
        return "mesh", (v.detach().float().cpu(), f.cpu())
    if "points" in pred:
        return "points", pred["points"].detach().float().cpu()
    return "none", None


def _gt_object(task_key: str, item, record) -> tuple[torch.Tensor, torch.Tensor]:
    from meshrecon.data.readers import read_mesh

    if task_key == "multi_view":
        v, f = read_mesh(record["mesh"])
        R, t = item["R"][0].float(), item["t"][0].float()
        return v.float() @ R.T + t, f
    v, f = item["mesh"]
    return torch.as_tensor(v).float(), torch.as_tensor(f)


def _gt_scene(record) -> list[tuple[torch.Tensor, torch.Tensor]]:
    from meshrecon.data.readers import read_mesh

    out = []
    for a in record.get("annotations", []):
        if a.get("mesh"):
            v, f = read_mesh(a["mesh"])
            R = torch.tensor(a["R"], dtype=torch.float32)
            t = torch.tensor(a["t"], dtype=torch.float32)
            out.append((v.float() @ R.T + t, f))
    return out


def _detections(pred, gt_meshes, K, size, max_dets: int, min_score: float):
    """Camera-frame meshes of the top detections (Mesh R-CNN's evaluation placement)."""
    from meshrecon.evaluation.pix3d_evaluation import place_meshes_in_camera
    from meshrecon.ops import cubify
    from meshrecon.structures import pairwise_iou

    inst = pred["instances"].to("cpu")
    inst = inst[inst.scores >= min_score][:max_dets]
    if len(inst) == 0:
        return []
    if inst.has("pred_meshes"):
        meshes = list(inst.pred_meshes)
    elif inst.has("pred_voxels"):
        cub = cubify(inst.pred_voxels.float(), 0.2)
        meshes = list(zip(cub.verts_list(), cub.faces_list()))
    else:
        return []
    boxes = inst.pred_boxes.tensor
    dz = inst.pred_dz[:, 0] if inst.has("pred_dz") else torch.ones(len(inst))
    heights = boxes[:, 3] - boxes[:, 1]
    gt_boxes = []
    for gv, _ in gt_meshes:
        uv = gv[:, :2] / gv[:, 2:].clamp_min(1e-6)
        u = K[2] - K[0] * uv[:, 0]
        v = K[3] - K[1] * uv[:, 1]
        gt_boxes.append(torch.stack([u.min(), v.min(), u.max(), v.max()]))
    out = []
    for i in range(len(inst)):
        zc = torch.tensor(3.0, dtype=torch.float64)
        if gt_meshes:
            from meshrecon.structures import Boxes

            ious = pairwise_iou(Boxes(boxes[i : i + 1]), Boxes(torch.stack(gt_boxes)))[0]
            gv = gt_meshes[int(ious.argmax())][0]
            zc = ((gv[:, 2].min() + gv[:, 2].max()) / 2.0).double()
        dz_px = (dz[i : i + 1] * heights[i : i + 1]).double()
        placed = place_meshes_in_camera([meshes[i]], boxes[i : i + 1], dz_px, zc, K, size)
        out.append((placed.verts_list()[0], placed.faces_list()[0]))
    return out


@dataclass
class _Sample:
    record: dict
    item: dict
    name: str


def build_gallery(
    task,
    runs: Sequence[tuple[Any, Any, str]],
    report_dir: str,
    num_samples: int = 3,
    device: str = "cpu",
) -> list[GalleryRow]:
    """Render the gallery of one task.

    Args:
        task: the :class:`~meshrecon.apps.method_benchmark.methods.Task`.
        runs: ``(spec, cfg, weights)`` of each method to show (weights "" for none).
        report_dir: the report folder; pictures go to ``gallery/<task>/``, meshes to
            ``meshes/<task>/``.
        num_samples: test samples shown.

    Returns:
        One :class:`GalleryRow` per sample, paths relative to ``report_dir``.
    """
    from meshrecon.checkpoint import Checkpointer
    from meshrecon.data import DatasetCatalog, build_mapper
    from meshrecon.data.datasets import configure_synthetic
    from meshrecon.modeling import build_model

    if not runs:
        return []
    first_cfg = runs[0][1]
    configure_synthetic(first_cfg)
    records = DatasetCatalog.get(task.dataset)
    indices = pick_samples(records, num_samples)
    img_dir = os.path.join(report_dir, "gallery", task.key)
    mesh_dir = os.path.join(report_dir, "meshes", task.key)
    rel = lambda p: os.path.relpath(p, report_dir)  # noqa: E731

    rows: list[GalleryRow] = []
    samples: list[_Sample] = []
    mapper0 = build_mapper(first_cfg, is_train=False, dataset_names=task.dataset)
    for n, idx in enumerate(indices):
        record = records[idx]
        item = mapper0(dict(record))
        name = f"sample{n}"
        samples.append(_Sample(record, item, name))
        rows.append(GalleryRow(str(record.get("image_id") or record.get("model_id") or idx)))

    # Input and ground truth.
    for row, s in zip(rows, samples):
        rgb = _input_rgb(s.item, first_cfg)
        cell_in = GalleryCell("input")
        path = os.path.join(img_dir, f"{s.name}_input.png")
        _save_png(path, rgb)
        cell_in.image = rel(path)
        row.cells.append(cell_in)
        gt = GalleryCell("ground truth")
        stem = os.path.join(mesh_dir, s.name, "ground_truth")
        picture, downloads, row.camera = _render_gt(task, s, rgb, first_cfg, stem)
        path = os.path.join(img_dir, f"{s.name}_gt.png")
        _save_png(path, picture)
        gt.image = rel(path)
        gt.downloads = {k: rel(v) for k, v in downloads.items()}
        gt.model, gt.color = _model_file(gt.downloads), GT_COLOR
        row.cells.append(gt)

    for m_index, (spec, cfg, weights) in enumerate(runs):
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.DEVICE = device
        configure_synthetic(cfg)
        model = build_model(cfg)
        if weights:
            Checkpointer(model).load(weights)
        model.eval()
        mapper = build_mapper(cfg, is_train=False, dataset_names=task.dataset)
        color = method_color(m_index)
        for row, s in zip(rows, samples):
            item = mapper(dict(s.record))
            with torch.no_grad():
                pred = model([item])[0]
            rgb = _input_rgb(item, cfg)
            stem = os.path.join(mesh_dir, s.name, spec.name)
            picture, downloads, note = _render_prediction(
                task, spec, s, item, pred, rgb, cfg, color, stem
            )
            path = os.path.join(img_dir, f"{s.name}_{spec.name}.png")
            _save_png(path, picture)
            files = {k: rel(v) for k, v in downloads.items()}
            row.cells.append(
                GalleryCell(spec.title, rel(path), files, note, _model_file(files), color)
            )
        del model
    return rows


def _view_setup(item, cfg, task_key) -> tuple[torch.Tensor, tuple[int, int]]:
    H, W = int(item["height"]), int(item["width"])
    K = item["K"][0] if task_key == "multi_view" else item["K"]
    if task_key in ("single_view", "multi_view"):
        size = (RENDER_SIZE, RENDER_SIZE)
        return _scaled_K(K, (H, W), size), size
    return torch.as_tensor(K, dtype=torch.float32).flatten(), (H, W)


def _model_file(downloads: dict[str, str]) -> str:
    """The file the 3D viewer loads: the GLB of a mesh, else the PLY (a point cloud)."""
    return downloads.get("GLB") or downloads.get("PLY", "")


def _viewer_camera(K, size: tuple[int, int], center: torch.Tensor) -> dict[str, Any]:
    """The input camera as the viewer takes it. The orbit centre is on the optical axis at the
    object's depth, so the first view is the input view and turning keeps the object near the
    middle."""
    fy = float(torch.as_tensor(K, dtype=torch.float64).flatten()[1])
    H, W = size
    return {
        "fov": math.degrees(2.0 * math.atan(H / (2.0 * fy))),
        "aspect": W / H,
        "target": [0.0, 0.0, float(center[2])],
    }


def _render_gt(
    task, s: _Sample, rgb, cfg, stem
) -> tuple[np.ndarray, dict[str, str], dict[str, Any]]:
    """(picture, downloads, viewer camera) of the ground truth of one sample."""
    if task.key == "depth":
        depth = torch.as_tensor(s.item["depth"]).float()
        picture, downloads, center = _depth_picture(depth, s.item["K"], rgb, stem)
        return picture, downloads, _viewer_camera(s.item["K"], tuple(depth.shape), center)
    if task.key == "detection":
        gt = _gt_scene(s.record)
        K = torch.tensor(s.record["annotations"][0]["K"], dtype=torch.float32)
        size = (int(s.record["height"]), int(s.record["width"]))
        center = _mesh_center(torch.cat([v for v, _ in gt])) if gt else torch.zeros(3)
        parts = [(v, f, GT_COLOR) for v, f in gt]
        picture = render_views(parts, K, size, center, background=rgb)
        camera = _viewer_camera(K, size, center)
        if gt:
            verts = torch.cat([v for v, _ in gt])
            offsets = np.cumsum([0] + [v.shape[0] for v, _ in gt])[:-1]
            faces = torch.cat([f + int(o) for (_, f), o in zip(gt, offsets)])
            return picture, _save_mesh_files(stem, verts, faces), camera
        return picture, {}, camera
    v, f = _gt_object(task.key, s.item, s.record)
    K, size = _view_setup(s.item, cfg, task.key)
    picture = render_views([(v, f, GT_COLOR)], K, size, _mesh_center(v))
    return picture, _save_mesh_files(stem, v, f), _viewer_camera(K, size, _mesh_center(v))


def _depth_picture(depth, K, rgb, stem, vmax: float | None = None):
    from meshrecon.render import colorize_depth

    d = torch.as_tensor(depth).float()
    H, W = d.shape
    K = torch.as_tensor(K, dtype=torch.float32).flatten()
    if rgb.shape[:2] != (H, W):
        rgb = _resize(rgb, (H, W))
    hi = vmax if vmax is not None else float(d[d > 0].max()) if (d > 0).any() else 1.0
    colored = colorize_depth(d.numpy(), vmin=0.0, vmax=hi)
    verts, faces = depth_grid_mesh(d, K)
    # Vertex colours of the grid (one vertex per 2 pixels, as depth_grid_mesh samples).
    grid_rgb = torch.from_numpy(rgb[::2, ::2].reshape(-1, 3).astype(np.float32) / 255.0)
    center = _mesh_center(verts[faces.unique()]) if faces.numel() else torch.zeros(3)
    turned = render_views([(verts, faces, GT_COLOR)], K, (H, W), center, vertex_colors=grid_rgb)
    picture = np.concatenate([np.asarray(colored, dtype=np.uint8), turned[:, W:]], axis=1)
    return picture, _save_mesh_files(stem, verts, faces), center


def _render_prediction(task, spec, s, item, pred, rgb, cfg, color, stem):
    """(picture, downloads, note) of one method on one sample."""
    if task.key == "depth":
        depth = pred["depth"].detach().float().cpu()
        gt = torch.as_tensor(s.item["depth"]).float()
        if depth.shape != gt.shape:
            depth = torch.nn.functional.interpolate(
                depth[None, None], size=gt.shape, mode="bilinear", align_corners=False
            )[0, 0]
        vmax = float(gt[gt > 0].max()) if (gt > 0).any() else None
        picture, downloads, _ = _depth_picture(depth, s.item["K"], rgb, stem, vmax)
        return picture, downloads, ""
    if task.key == "detection":
        gt = _gt_scene(s.record)
        K = torch.tensor(s.record["annotations"][0]["K"], dtype=torch.float32)
        size = (int(s.record["height"]), int(s.record["width"]))
        dets = _detections(pred, gt, K, size, max_dets=max(len(gt), 1) + 2, min_score=0.3)
        center = _mesh_center(torch.cat([v for v, _ in gt])) if gt else torch.zeros(3)
        picture = render_views([(v, f, color) for v, f in dets], K, size, center, background=rgb)
        note = "" if dets else "no detection scored ≥ 0.3"
        dets = [(v, f) for v, f in dets if f.shape[0] > 0]
        if not dets:
            return picture, {}, note
        offsets = np.cumsum([0] + [v.shape[0] for v, _ in dets])[:-1]
        verts = torch.cat([v for v, _ in dets])
        faces = torch.cat([f + int(o) for (_, f), o in zip(dets, offsets)])
        return picture, _save_mesh_files(stem, verts, faces), note
    gv, _ = _gt_object(task.key, s.item, s.record)
    center = _mesh_center(gv)
    K, size = _view_setup(item, cfg, task.key)
    kind, data = _object_geometry(spec, item, pred, s.record, cfg)
    if kind == "points":
        extent = float((gv.max(0).values - gv.min(0).values).max())
        v, f = splat_mesh(data, radius=0.012 * extent)
        picture = render_views([(v, f, color)], K, size, center)
        return picture, _save_mesh_files(stem, data, torch.zeros(0, 3), points=True), ""
    if kind == "mesh":
        v, f = data
        picture = render_views([(v, f, color)], K, size, center)
        note = "" if f.shape[0] else "empty prediction"
        return picture, _save_mesh_files(stem, v, f), note
    picture = render_views([], K, size, center)
    return picture, {}, "no mesh, points or voxels predicted"


def viewer_groups(rows: Sequence[GalleryRow]) -> list[ViewerGroup]:
    """The gallery as rows of the 3D viewer: the input picture, the ground truth and each
    method's GLB mesh or PLY point cloud, with the input camera; cells without a model keep
    their note."""
    groups = []
    for row in rows:
        items = []
        for k, c in enumerate(row.cells):
            path = c.model or (c.image if k == 0 else "")  # the first cell is the input
            note = c.note or ("" if path else "nothing to show in 3D")
            items.append(ViewerItem(c.label, path, c.color, note, dict(c.downloads)))
        cam = row.camera
        groups.append(
            ViewerGroup(
                row.sample,
                items,
                target=tuple(cam["target"]) if cam.get("target") else None,
                fov=float(cam.get("fov", 40.0)),
                aspect=float(cam.get("aspect", 1.0)),
            )
        )
    return groups
