"""The content of the synthetic splits: objects, scenes and rooms, rendered and written.

:func:`generate_split` builds one split from its spec (``generator.split_spec``) into a folder
and returns its records, with paths relative to that folder, in the formats of
``docs/DATA_FORMATS.md``:

* ``shapenet``: one procedural object per model in its normalised frame, rendered from R2N2's
  random viewpoints as 137 x 137 RGBA views (transparent background) with depth maps; the model
  folder holds ``model.obj``, ``samples.pt`` and ``voxels.npz``, and ``rendering/`` holds the
  views, ``renderings.txt`` and ``rendering_metadata.txt`` as in ShapeNetRendering.
* ``pix3d``: 1-3 objects from a per-split model library standing on a textured floor before a
  wall, seen by a Pix3D-style camera (``f = focal_mm * W / 32``); per object a visible-part mask,
  the library mesh (metric model frame), Pix3D's ``voxel.mat``, K, R, t.
* ``nyu``: a closed room (floor, four walls, ceiling) with furniture, seen from a Kinect-like
  camera at NYU's 4:3 aspect, with dense metric depth.

Every random draw comes from a numpy generator seeded by (seed, kind, split, stream, index), so a
split is reproducible and an item does not depend on how many items precede it.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from meshrecon.render import (
    R2N2_MAX_CAMERA_DISTANCE,
    camera_position_from_spherical_angles,
    look_at_view_transform,
    pix3d_K,
    r2n2_camera,
)
from meshrecon.utils.progress import progress_bar

from . import primitives as pr
from .rendering import (
    SceneObject,
    floor_texture,
    pick_color,
    render_scene,
    render_views,
    wall_texture,
)
from .shapes import CATEGORIES, Shape, make_shape
from .writers import (
    DEPTH_PNG_SCALE,
    save_depth_png16,
    save_mask_png,
    save_mesh_obj,
    save_pix3d_voxel_mat,
    save_rgb_png,
    save_rgba_png,
    save_samples_pt,
    save_voxels_npz,
    to_numpy,
)

__all__ = [
    "CATEGORY_SIZES",
    "NYU_KINECT_K",
    "R2N2_VIEW_RANGES",
    "draw_r2n2_views",
    "generate_split",
    "item_rng",
    "write_shapenet_model",
]

_KIND_CODES = {"shapenet": 1, "pix3d": 2, "nyu": 3}
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}

# Typical bounding-box diagonal in metres of each category, for scenes in metric units.
CATEGORY_SIZES = {
    "bed": 2.4,
    "bookcase": 1.9,
    "chair": 1.05,
    "desk": 1.6,
    "misc": 0.9,
    "sofa": 2.1,
    "table": 1.5,
    "tool": 0.45,
    "wardrobe": 2.3,
}

# NYU Depth v2's Kinect RGB intrinsics at 640 x 480 (toolbox camera_params.m), OpenCV style.
NYU_KINECT_K = (518.8579, 519.4696, 325.5824, 253.7362)
# The box every ShapeNet-style model fits in (bounding-box diagonal 1, centred at 0).
_UNIT_BOUNDS = [[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]]


def item_rng(spec: dict[str, Any], stream: int, index: int) -> np.random.Generator:
    """Return the generator of item ``index`` of random stream ``stream`` of a split."""
    key = [int(spec["seed"]), _KIND_CODES[spec["kind"]], _SPLIT_CODES[spec["split"]]]
    return np.random.default_rng(np.random.SeedSequence(key + [int(stream), int(index)]))


def _model_id(spec: dict[str, Any], category: str, index: int) -> str:
    """A ShapeNet-like 32-hex id, unique per (seed, split, category, index)."""
    text = f"{spec['seed']}/{spec['kind']}/{spec['split']}/{category}/{index}"
    return hashlib.md5(text.encode()).hexdigest()


def _jitter_colors(colors: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Scale each colour by one random factor per object (so two chairs differ in tone)."""
    return np.clip(colors * rng.uniform(1 - amount, 1 + amount, size=3), 0.0, 1.0)


def _progress(total: int, desc: str):
    return progress_bar(total=total, desc=desc, unit="item", dynamic_ncols=True, leave=False)


def generate_split(spec: dict[str, Any], out_dir: str) -> tuple[list[dict], dict[str, Any]]:
    """Generate one split into ``out_dir``; return (records with relative paths, info).

    ``info["metadata"]`` holds facts the loader copies into the split's ``MetadataCatalog``.
    """
    generators: dict[str, Callable] = {
        "shapenet": _generate_shapenet,
        "pix3d": _generate_pix3d,
        "nyu": _generate_nyu,
    }
    return generators[spec["kind"]](spec, out_dir)


# ------------------------------------------------------------------------------ ShapeNet
# R2N2's render script: azimuth U[0, 360), elevation U[25, 30), distance ratio U[.65, .95).
R2N2_VIEW_RANGES = ((0.0, 360.0), (25.0, 30.0), (0.65, 0.95))


def draw_r2n2_views(
    rng: np.random.Generator,
    n_views: int,
    ranges: tuple[tuple[float, float], ...] = R2N2_VIEW_RANGES,
) -> np.ndarray:
    """(n_views, 3) float64 ``[azimuth, elevation, distance ratio]`` drawn uniformly in ``ranges``.

    The columns are those of R2N2's ``rendering_metadata.txt``; the camera distance is
    ``R2N2_MAX_CAMERA_DISTANCE`` (1.75) times the ratio.
    """
    low, high = np.array(ranges, dtype=np.float64).T
    return np.array([rng.uniform(low, high) for _ in range(n_views)]).reshape(n_views, 3)


def write_shapenet_model(
    model_dir: str,
    rel: str,
    *,
    verts: np.ndarray,
    faces: np.ndarray,
    points: np.ndarray,
    normals: np.ndarray,
    grids: dict[int, np.ndarray],
    views: np.ndarray,
    image_size: int,
    record: dict[str, Any],
    face_colors: np.ndarray | None = None,
    vertex_colors: np.ndarray | None = None,
    atlas: np.ndarray | None = None,
) -> list[dict]:
    """Write one ShapeNet-style model folder and return its view records.

    Files (``docs/DATA_FORMATS.md``): ``model.obj``, ``samples.pt``, ``voxels.npz`` (grids over
    the unit box ``[-0.5, 0.5]^3``, the first size as ``occupancy``) and ``rendering/`` with
    ``NN.png`` (RGBA, transparent background), ``NN_depth.png``, ``renderings.txt`` and
    ``rendering_metadata.txt`` as in ShapeNetRendering.

    Args:
        model_dir: the folder the files go to.
        rel: how records name that folder (relative to the split folder), e.g.
            ``"chair/<model_id>"``; it may differ from ``model_dir`` when a caller writes into a
            temporary folder and renames it into place.
        verts, faces: (V, 3) and (F, 3) mesh in the normalised model frame.
        points, normals: (P, 3) surface samples and their unit normals.
        grids: size -> (S, S, S) bool occupancy indexed ``[z, y, x]`` over the unit box.
        views: (N, 3) ``[azimuth, elevation, ratio]`` of R2N2 cameras (:func:`draw_r2n2_views`).
        image_size: side of the square renders.
        record: fields copied into every view record (``category``, ``category_id``,
            ``model_id``, ``synset_id``).
        face_colors, vertex_colors, atlas: (F, 3), (V, 3) or (F, R, R, 3) base colours in
            [0, 1] (at most one; none renders a uniform grey), see :func:`render_views`.
    """
    save_mesh_obj(os.path.join(model_dir, "model.obj"), verts, faces)
    save_samples_pt(os.path.join(model_dir, "samples.pt"), points, normals)
    sizes = list(grids)
    save_voxels_npz(os.path.join(model_dir, "voxels.npz"), grids, _UNIT_BOUNDS, sizes[0])
    view = np.asarray(views, dtype=np.float64)
    dist = R2N2_MAX_CAMERA_DISTANCE * view[:, 2]
    Ks, Rs, ts = r2n2_camera(
        *torch.from_numpy(view[:, :2].T), torch.from_numpy(dist), image_size=image_size
    )
    rendered = render_views(
        verts,
        faces,
        face_colors,
        Ks,
        Rs,
        ts,
        (image_size, image_size),
        vertex_colors=vertex_colors,
        atlas=atlas,
    )
    records, lines = [], []
    for v in range(len(view)):
        az, el, ratio = view[v]
        image_rel = f"{rel}/rendering/{v:02d}.png"
        depth_rel = f"{rel}/rendering/{v:02d}_depth.png"
        save_rgba_png(
            os.path.join(model_dir, "rendering", f"{v:02d}.png"),
            rendered["rgb"][v],
            rendered["mask"][v],
        )
        save_depth_png16(
            os.path.join(model_dir, "rendering", f"{v:02d}_depth.png"), rendered["depth"][v]
        )
        lines.append(f"{az:.6f} {el:.6f} 0 {ratio:.6f} 25")
        records.append(
            {
                "file_name": image_rel,
                "height": image_size,
                "width": image_size,
                "image_id": f"{rel}/{v:02d}",
                **record,
                "view_index": v,
                "K": _floats(Ks[v]),
                "R": _floats(Rs[v]),
                "t": _floats(ts[v]),
                "azimuth": float(az),
                "elevation": float(el),
                "distance": float(dist[v]),
                "mesh": f"{rel}/model.obj",
                "samples": f"{rel}/samples.pt",
                "voxel": f"{rel}/voxels.npz",
                "depth": {"kind": "png16", "path": depth_rel, "scale": DEPTH_PNG_SCALE},
            }
        )
    _write_text(os.path.join(model_dir, "rendering", "rendering_metadata.txt"), lines)
    names = [f"{v:02d}.png" for v in range(len(view))]
    _write_text(os.path.join(model_dir, "rendering", "renderings.txt"), names)
    return records


def _generate_shapenet(spec: dict[str, Any], out: str) -> tuple[list[dict], dict]:
    n_models, n_views, size = spec["models_per_category"], spec["views"], spec["image_size"]
    records: list[dict] = []
    bar = _progress(len(CATEGORIES) * n_models, f"synthetic_shapenet_{spec['split']}")
    for c, category in enumerate(CATEGORIES):
        for m in range(n_models):
            model_id = _model_id(spec, category, m)
            rel = f"{category}/{model_id}"
            shape = make_shape(category, item_rng(spec, 10 * c, m))
            points, normals = shape.sample_surface(
                spec["num_samples"], item_rng(spec, 10 * c + 1, m)
            )
            grids = {
                s: shape.voxelize(s, bounds=np.asarray(_UNIT_BOUNDS)) for s in spec["voxel_sizes"]
            }
            rng = item_rng(spec, 10 * c + 2, m)
            colors = _jitter_colors(shape.face_colors(), rng, 0.15)
            records += write_shapenet_model(
                os.path.join(out, rel),
                rel,
                verts=shape.verts,
                faces=shape.faces,
                points=points,
                normals=normals,
                grids=grids,
                views=draw_r2n2_views(rng, n_views),
                image_size=size,
                record={
                    "synset_id": category,
                    "model_id": model_id,
                    "category": category,
                    "category_id": c,
                },
                face_colors=colors,
            )
            bar.update(1)
    bar.close()
    return records, {"metadata": {}}


# ------------------------------------------------------------------------------ Pix3D
def _scaled_shape(category: str, rng: np.random.Generator) -> tuple[Shape, float]:
    shape = make_shape(category, rng)
    return shape, CATEGORY_SIZES.get(category, 1.2) * float(rng.uniform(0.85, 1.15))


def _build_pix3d_library(spec: dict[str, Any], out: str) -> list[dict]:
    """Write the split's models (mesh and voxel.mat, metric model frame); return their info."""
    library = []
    for c, category in enumerate(CATEGORIES):
        for m in range(spec["models_per_category"]):
            shape, scale = _scaled_shape(category, item_rng(spec, 100 + c, m))
            rel = f"model/{category}/{category}_{m:03d}"
            verts = shape.verts * scale
            save_mesh_obj(os.path.join(out, rel, "model.obj"), verts, shape.faces)
            # Voxelizing the unit shape in the unit cube equals voxelizing the scaled one in the
            # scaled cube; Pix3D's grids are cubes around the object too.
            grid = shape.voxelize(spec["voxel_size"], bounds=np.asarray(_UNIT_BOUNDS))
            bounds = (np.asarray(_UNIT_BOUNDS) * scale).tolist()
            save_pix3d_voxel_mat(os.path.join(out, rel, "voxel.mat"), grid, bounds)
            library.append(
                {
                    "category": category,
                    "category_id": c,
                    "mesh": f"{rel}/model.obj",
                    "voxel": f"{rel}/voxel.mat",
                    "verts": verts.astype(np.float64),
                    "faces": shape.faces,
                    "colors": shape.face_colors(),
                }
            )
    return library


def _place_on_floor(
    rng: np.random.Generator,
    verts: list[np.ndarray],
    region: tuple[float, float, float, float],
    inside: bool = False,
) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """Model -> world (R, t) per object: upright, on the floor y = 0, footprints disjoint.

    ``region`` = (xmin, xmax, zmin, zmax) bounds the footprint centres, or with ``inside`` the
    whole footprints (walls). An object that finds no free spot in 50 tries gets None.
    """
    placed: list[tuple[float, float, float]] = []
    poses: list[tuple[np.ndarray, np.ndarray] | None] = []
    for v in verts:
        radius = float(np.sqrt((v[:, [0, 2]] ** 2).sum(axis=1)).max())
        margin = radius if inside else 0.0
        x0, x1, z0, z1 = (
            region[0] + margin,
            region[1] - margin,
            region[2] + margin,
            region[3] - margin,
        )
        pose = None
        for _ in range(50 if x0 < x1 and z0 < z1 else 0):
            x, z = rng.uniform(x0, x1), rng.uniform(z0, z1)
            if all(math.hypot(x - px, z - pz) > radius + r + 0.05 for px, pz, r in placed):
                placed.append((x, z, radius))
                # Roughly facing the camera (+Z), as most Pix3D and NYU furniture faces us.
                R = pr.rotation_y(math.radians(rng.uniform(-60, 60)))
                pose = (R, np.array([x, -float(v[:, 1].min()), z]))
                break
        poses.append(pose)
    return poses


def _compose(R_cw: np.ndarray, t_cw: np.ndarray, R_ow: np.ndarray, t_ow: np.ndarray):
    """Model -> camera (R, t) from model -> world and world -> camera."""
    return R_cw @ R_ow, R_cw @ t_ow + t_cw


def _bbox_from_mask(mask: np.ndarray) -> list[float]:
    """XYXY box in pixels around a mask: pixel (i, j) covers [j, j+1) x [i, i+1)."""
    rows, cols = np.nonzero(mask)
    return [float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1)]


def _generate_pix3d(spec: dict[str, Any], out: str) -> tuple[list[dict], dict]:
    W, H = spec["image_size"]
    min_pixels = spec["min_visible_fraction"] * W * H
    library = _build_pix3d_library(spec, out)
    records, dropped, redraws = [], 0, 0
    bar = _progress(spec["images"], f"synthetic_pix3d_{spec['split']}")
    for i in range(spec["images"]):
        rng = item_rng(spec, 1, i)
        for _attempt in range(20):
            scene = _draw_pix3d_scene(rng, library, spec, (W, H))
            if scene is None:
                redraws += 1
                continue
            rendered, annotations, n_dropped = _render_pix3d_scene(scene, (W, H), min_pixels)
            if annotations:
                break
            redraws += 1
        else:
            raise RuntimeError(f"synthetic pix3d image {i}: no visible object after 20 draws")
        dropped += n_dropped
        image_rel = f"img/{i:05d}.png"
        save_rgb_png(os.path.join(out, image_rel), rendered["rgb"])
        for k, ann in enumerate(annotations):
            mask_rel = f"mask/{i:05d}_{k}.png"
            save_mask_png(os.path.join(out, mask_rel), ann.pop("_mask"))
            ann["segmentation"] = mask_rel
        records.append(
            {
                "file_name": image_rel,
                "height": H,
                "width": W,
                "image_id": i,
                "annotations": annotations,
            }
        )
        bar.update(1)
    bar.close()
    info = {"metadata": {"num_dropped_instances": dropped, "num_redrawn_scenes": redraws}}
    return records, info


def _draw_pix3d_scene(rng, library, spec, size) -> dict | None:
    """Draw objects, their layout and a camera; None when the layout fails."""
    W, H = size
    n = int(rng.integers(1, spec["max_objects"] + 1))
    chosen = [library[j] for j in rng.choice(len(library), size=n, replace=False)]
    spread = 0.4 + 0.5 * (n - 1)
    poses = _place_on_floor(rng, [m["verts"] for m in chosen], (-spread, spread, -spread, spread))
    if any(pose is None for pose in poses):
        return None
    world = [m["verts"] @ R.T + t for m, (R, t) in zip(chosen, poses)]
    allv = np.concatenate(world)
    lo, hi = allv.min(axis=0), allv.max(axis=0)
    centre = (lo + hi) / 2
    radius = float(np.linalg.norm(hi - lo)) / 2
    focal_mm = rng.uniform(30.0, 42.0)
    K = pix3d_K(focal_mm, W, H)
    # Fit the objects' bounding sphere into the narrower half field of view, then vary it.
    half_fov = math.atan(min(W, H) / 2 / float(K[0]))
    dist = radius / math.sin(half_fov) * rng.uniform(0.85, 1.3)
    at = centre + rng.normal(0.0, 0.05 * radius, size=3)
    R_cw, t_cw = look_at_view_transform(dist, rng.uniform(8, 35), rng.uniform(-40, 40), at=at)
    R_cw, t_cw = to_numpy(R_cw[0]).astype(np.float64), to_numpy(t_cw[0]).astype(np.float64)
    wall_z = lo[2] - rng.uniform(0.2, 1.5)
    return {
        "models": chosen,
        "poses": poses,
        "K": K,
        "R_cw": R_cw,
        "t_cw": t_cw,
        "wall_z": wall_z,
        "centre": centre,
        "rng": rng,
        "dist": dist,
    }


def _render_pix3d_scene(scene: dict, size, min_pixels: float):
    W, H = size
    rng = scene["rng"]
    R_cw, t_cw = scene["R_cw"], scene["t_cw"]
    extent = 4.0 * scene["dist"] + 10.0
    cx, cz = scene["centre"][0], scene["centre"][2]
    # The floor and wall are large enough to fill the view behind the objects.
    floor_v, floor_f = pr.box((2 * extent, 0.02, 2 * extent), (cx, -0.01, cz))
    wall_v, wall_f = pr.box((2 * extent, extent, 0.02), (cx, extent / 2, scene["wall_z"] - 0.01))
    objects = [
        SceneObject(floor_v, floor_f, R_cw, t_cw, texture=floor_texture(rng), id=0),
        SceneObject(wall_v, wall_f, R_cw, t_cw, texture=wall_texture(rng), id=0),
    ]
    cams = []
    for k, (model, (R_ow, t_ow)) in enumerate(zip(scene["models"], scene["poses"])):
        R, t = _compose(R_cw, t_cw, R_ow, t_ow)
        cams.append((R, t))
        colors = _jitter_colors(model["colors"], rng, 0.2)
        objects.append(SceneObject(model["verts"], model["faces"], R, t, colors=colors, id=k + 1))
    rendered = render_scene(objects, scene["K"], (H, W), background=(0.5, 0.5, 0.5))
    instance = to_numpy(rendered["instance"])
    annotations, dropped = [], 0
    for k, (model, (R, t)) in enumerate(zip(scene["models"], cams)):
        mask = instance == k + 1
        if mask.sum() < min_pixels:
            dropped += 1
            continue
        annotations.append(
            {
                "bbox": _bbox_from_mask(mask),
                "category_id": model["category_id"],
                "mesh": model["mesh"],
                "voxel": model["voxel"],
                "K": _floats(scene["K"]),
                "R": _floats(R),
                "t": _floats(t),
                "iscrowd": 0,
                "_mask": mask,
            }
        )
    return rendered, annotations, dropped


# ------------------------------------------------------------------------------ NYU
def nyu_K(width: int, height: int) -> list[float]:
    """NYU's Kinect intrinsics resized to ``width`` x ``height`` (from 640 x 480).

    The principal point moves from OpenCV's pixel-centre origin to ours (+0.5) before scaling.
    """
    fx, fy, cx, cy = NYU_KINECT_K
    sx, sy = width / 640.0, height / 480.0
    return [fx * sx, fy * sy, (cx + 0.5) * sx, (cy + 0.5) * sy]


def _room_mesh(w: float, d: float, h: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A closed box room seen from inside: (verts, faces, surface id per face).

    Surface ids: 0 floor, 1 ceiling, 2 walls; faces point inward.
    """
    v, f = pr.box((w, h, d), (0.0, h / 2, 0.0))
    v, f = np.asarray(v, np.float64), np.asarray(f, np.int64)[:, ::-1].copy()  # inward
    tri = v[f]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    surface = np.where(normal[:, 1] > 0.5 * np.linalg.norm(normal, axis=1), 0, 2)
    surface = np.where(normal[:, 1] < -0.5 * np.linalg.norm(normal, axis=1), 1, surface)
    return v, f, surface


def _generate_nyu(spec: dict[str, Any], out: str) -> tuple[list[dict], dict]:
    W, H = spec["image_size"]
    K = nyu_K(W, H)
    furniture = [c for c in CATEGORIES if c != "tool"]
    protocol = {
        "name": "synthetic_nyu",
        "crop": None,
        "min_depth": 1e-3,
        "max_depth": 10.0,
        "gt": "rendered",
    }
    records, missing = [], 0
    bar = _progress(spec["images"], f"synthetic_nyu_{spec['split']}")
    for i in range(spec["images"]):
        rng = item_rng(spec, 1, i)
        w, d, h = rng.uniform(3.0, 5.5), rng.uniform(3.5, 6.0), rng.uniform(2.4, 3.0)
        room_v, room_f, surface = _room_mesh(w, d, h)
        # Camera near the +Z wall, at head height, looking into the room (towards -Z).
        eye = np.array(
            [rng.uniform(-w / 4, w / 4), rng.uniform(1.0, 1.6), d / 2 - rng.uniform(0.2, 0.6)]
        )
        elev, azim = rng.uniform(5, 20), rng.uniform(-25, 25)
        at = eye - to_numpy(camera_position_from_spherical_angles(1.0, elev, azim))[0]
        R_cw, t_cw = look_at_view_transform(1.0, elev, azim, at=at)
        R_cw, t_cw = to_numpy(R_cw[0]).astype(np.float64), to_numpy(t_cw[0]).astype(np.float64)
        ceiling = pick_color(rng, 1)[None].repeat((surface == 1).sum(), axis=0)
        objects = [
            SceneObject(room_v, room_f[surface == 0], R_cw, t_cw, texture=floor_texture(rng)),
            SceneObject(room_v, room_f[surface == 1], R_cw, t_cw, colors=ceiling),
            SceneObject(room_v, room_f[surface == 2], R_cw, t_cw, texture=wall_texture(rng)),
        ]
        n = int(rng.integers(2, spec["max_objects"] + 1))
        shapes = [
            _scaled_shape(furniture[int(rng.integers(len(furniture)))], rng) for _ in range(n)
        ]
        verts = [s.verts.astype(np.float64) * scale for s, scale in shapes]
        # Furniture stays inside the walls and at least 1.2 m in front of the camera.
        region = (-w / 2 + 0.05, w / 2 - 0.05, -d / 2 + 0.05, eye[2] - 1.2)
        poses = _place_on_floor(rng, verts, region, inside=True)
        for k, ((shape, _), v, pose) in enumerate(zip(shapes, verts, poses)):
            if pose is None or (v @ pose[0].T + pose[1])[:, 1].max() > h - 0.05:
                continue  # no room for it, or taller than the room
            R_ow, t_ow = pose
            R, t = _compose(R_cw, t_cw, R_ow, t_ow)
            colors = _jitter_colors(shape.face_colors(), rng, 0.2)
            objects.append(SceneObject(v, shape.faces, R, t, colors=colors, id=k + 1))
        rendered = render_scene(objects, K, (H, W), background=(0.0, 0.0, 0.0))
        depth = to_numpy(rendered["depth"])
        missing += int((~(depth > 0)).sum())
        image_rel, depth_rel = f"images/{i:05d}.png", f"depth/{i:05d}.png"
        save_rgb_png(os.path.join(out, image_rel), rendered["rgb"])
        save_depth_png16(os.path.join(out, depth_rel), depth)
        records.append(
            {
                "file_name": image_rel,
                "image": None,
                "height": H,
                "width": W,
                "image_id": i,
                "K": [float(k) for k in K],
                "depth": {"kind": "png16", "path": depth_rel, "scale": DEPTH_PNG_SCALE},
                "protocol": dict(protocol),
            }
        )
        bar.update(1)
    bar.close()
    return records, {"metadata": {"num_missing_depth_pixels": missing}}


# ------------------------------------------------------------------------------ helpers
def _floats(x: Any) -> list:
    """A tensor / array as nested lists of Python floats (records hold plain values)."""
    return np.asarray(to_numpy(x), dtype=np.float64).tolist()


def _write_text(path: str, lines: list[str]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
