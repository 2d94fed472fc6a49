"""Writers of tiny datasets in the exact on-disk formats of the real ones (Pix3D, R2N2, Mesh R-CNN).

Each ``write_*`` function fills a dataset root (the folder ``$MESHRECON_DATASETS`` points to)
with a few samples laid out as the official releases are, and returns what it wrote so tests
can compute the expected records by hand. Other test modules reuse these writers.

This module also holds an independent reference of Mesh R-CNN's ShapeNet camera pipeline
(``compute_extrinsic_matrix``, Blender's intrinsic, ``project_verts`` then NDC to pixels),
written from its documented semantics, to check the library's conversions against.
"""

from __future__ import annotations

import io
import json
import math
import os
import random
from pathlib import Path

import numpy as np
import scipy.io
import torch
from PIL import Image

from meshrecon.io import write_binvox

__all__ = [
    "PIX3D_CLASSES",
    "R2N2_IMAGE_SIZE",
    "BLENDER_INTRINSIC",
    "meshrcnn_extrinsic",
    "meshrcnn_project_pixels",
    "write_pix3d",
    "write_r2n2",
    "write_meshrcnn_shapenet",
]

PIX3D_CLASSES = ("bed", "bookcase", "chair", "desk", "misc", "sofa", "table", "tool", "wardrobe")
R2N2_IMAGE_SIZE = 137

BLENDER_INTRINSIC = torch.tensor(
    [
        [2.1875, 0.0, 0.0, 0.0],
        [0.0, 2.1875, 0.0, 0.0],
        [0.0, 0.0, -1.002002, -0.2002002],
        [0.0, 0.0, -1.0, 0.0],
    ],
    dtype=torch.float64,
)
"""Blender's default camera -> NDC matrix, as stored in Mesh R-CNN's ``metadata.pt``."""

TETRA_OBJ = """# tiny tetrahedron
v 0.0 0.0 0.0
v 0.2 0.0 0.0
v 0.0 0.3 0.0
v 0.0 0.0 0.4
f 1 3 2
f 1 2 4
f 1 4 3
f 2 3 4
"""


# ---------------------------------------------------------------------------------------------
# Reference: Mesh R-CNN's ShapeNet camera
# ---------------------------------------------------------------------------------------------


def meshrcnn_extrinsic(azimuth: float, elevation: float, distance: float) -> torch.Tensor:
    """World (model) -> OpenGL camera 4x4 matrix of an R2N2 view, as Mesh R-CNN builds it.

    The angles are negated; a world->"object" rotation is built from them, permuted so that the
    object's (x, y, z) become the camera's (z, x, y), the camera sits at (d, 0, 0) of that
    frame, and the result is multiplied on the right by the (x, y, z) -> (x, -z, y) quarter
    turn that Blender applies when importing an OBJ.
    """
    a = -math.radians(azimuth)
    e = -math.radians(elevation)
    world_to_obj = torch.tensor(
        [
            [math.cos(a) * math.cos(e), math.sin(a) * math.cos(e), -math.sin(e)],
            [-math.sin(a), math.cos(a), 0.0],
            [math.cos(a) * math.sin(e), math.sin(a) * math.sin(e), math.cos(e)],
        ],
        dtype=torch.float64,
    )
    obj_to_cam = torch.tensor([[0.0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=torch.float64)
    rt = torch.eye(4, dtype=torch.float64)
    rt[:3, :3] = obj_to_cam @ world_to_obj
    rt[:3, 3] = -(obj_to_cam @ torch.tensor([distance, 0.0, 0.0], dtype=torch.float64))
    blender_import = torch.tensor(
        [[1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=torch.float64
    )
    return rt @ blender_import


def meshrcnn_project_pixels(
    points: torch.Tensor, intrinsic: torch.Tensor, extrinsic: torch.Tensor, image_size: int
) -> torch.Tensor:
    """Project (N, 3) model points to (N, 2) pixels the Mesh R-CNN way: ``P = K @ RT``, divide
    by w to get NDC, then map NDC [-1, 1] to [0, size] with y pointing down."""
    hom = torch.cat([points.to(torch.float64), torch.ones(len(points), 1, dtype=torch.float64)], 1)
    clip = hom @ (intrinsic.to(torch.float64) @ extrinsic.to(torch.float64)).T
    ndc = clip[:, :3] / clip[:, 3:]
    u = (ndc[:, 0] + 1.0) * 0.5 * image_size
    v = (1.0 - ndc[:, 1]) * 0.5 * image_size
    return torch.stack([u, v], dim=1)


# ---------------------------------------------------------------------------------------------
# Pix3D
# ---------------------------------------------------------------------------------------------


def _rot_y(degrees: float) -> list[list[float]]:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]


# (img, category, (W, H), bbox xyxy, focal_length mm, model folder, rotation about y, trans)
_PIX3D_SAMPLES = [
    ("img/chair/0001.png", "chair", (40, 30), [5, 4, 30, 25], 35.0, "IKEA_A", 30.0, [0, 0, 2.5]),
    ("img/table/0002.jpg", "table", (32, 48), [2, 10, 28, 40], 50.0, "T_B", -45.0, [0.1, 0, 3]),
    ("img/sofa/0003.png", "sofa", (36, 36), [0, 0, 36, 20], 28.0, "S_C", 90.0, [0, -0.2, 4]),
    ("img/bed/0004.png", "bed", (24, 20), [3, 3, 20, 18], 40.0, "B_D", 0.0, [0, 0, 1.5]),
    ("img/table/1749.jpg", "table", (30, 30), [1, 1, 20, 20], 35.0, "T_B", 10.0, [0, 0, 3]),
    ("img/table/0045.png", "table", (30, 30), [1, 1, 20, 20], 35.0, "T_B", 20.0, [0, 0, 3]),
]

# Mesh R-CNN split files: split name -> indices into _PIX3D_SAMPLES.
PIX3D_SPLIT_MEMBERS = {
    "pix3d_s1_train.json": [0, 1, 4],
    "pix3d_s1_test.json": [2, 3, 5],
    "pix3d_s2_train.json": [0, 2],
    "pix3d_s2_test.json": [1, 3, 4, 5],
}


def _write_image(path: Path, size: tuple[int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(path, "JPEG" if path.suffix == ".jpg" else "PNG")


def _write_mask(path: Path, size: tuple[int, int], bbox: list[int]) -> None:
    mask = np.zeros((size[1], size[0]), dtype=np.uint8)
    x0, y0, x1, y1 = bbox
    mask[y0:y1, x0:x1] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask, "L").save(path)


def _write_pix3d_model(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.obj").write_text(TETRA_OBJ)
    voxel = np.zeros((4, 4, 4), dtype=np.uint8)
    voxel[1:3, 0:2, 1:4] = 1
    # scipy writes MATLAB v5 by default, the format of Pix3D's voxel.mat.
    scipy.io.savemat(folder / "voxel.mat", {"voxel": voxel})
    (folder / "3d_keypoints.txt").write_text("0.0 0.0 0.0\n0.2 0.0 0.0\n")


def write_pix3d(root: str | os.PathLike) -> dict:
    """Write ``<root>/pix3d`` with ``pix3d.json``, Mesh R-CNN's four split files, images,
    one-channel masks, OBJ models and v5 ``voxel.mat`` files.

    Six images: four good ones and Pix3D's two known-bad ones (``img/table/1749.jpg``,
    ``img/table/0045.png``).

    Returns:
        ``{"dir": pix3d folder, "entries": the pix3d.json list, "splits": {file: COCO dict}}``.
    """
    folder = Path(root) / "pix3d"
    entries = []
    for i, (img, cat, size, bbox, focal, model, angle, trans) in enumerate(_PIX3D_SAMPLES):
        stem = Path(img).stem
        mask = f"mask/{cat}/{stem}.png"
        model_dir = f"model/{cat}/{model}"
        _write_image(folder / img, size, seed=i)
        _write_mask(folder / mask, size, bbox)
        if not (folder / model_dir / "model.obj").exists():
            _write_pix3d_model(folder / model_dir)
        entries.append(
            {
                "img": img,
                "category": cat,
                "img_size": list(size),
                "2d_keypoints": [[[-1.0, -1.0], [float(bbox[0]), float(bbox[1])]]],
                "mask": mask,
                "img_source": "ikea",
                "model": f"{model_dir}/model.obj",
                "model_raw": f"{model_dir}/model.obj",
                "model_source": "ikea",
                "3d_keypoints": f"{model_dir}/3d_keypoints.txt",
                "voxel": f"{model_dir}/voxel.mat",
                "rot_mat": _rot_y(angle),
                "trans_mat": [float(v) for v in trans],
                "focal_length": focal,
                "cam_position": [0.5, 0.3, -2.0],
                "inplane_rotation": 0.1 * i,
                "truncated": False,
                "occluded": i == 1,
                "slightly_occluded": False,
                "bbox": bbox,
            }
        )
    (folder / "pix3d.json").write_text(json.dumps(entries))

    categories = [{"id": k + 1, "name": name} for k, name in enumerate(PIX3D_CLASSES)]
    splits = {}
    for file, members in PIX3D_SPLIT_MEMBERS.items():
        images, annotations = [], []
        for n, idx in enumerate(members):
            e = entries[idx]
            (w, h), (x0, y0, x1, y1) = e["img_size"], e["bbox"]
            image_id = 100 + idx
            images.append({"id": image_id, "file_name": e["img"], "height": h, "width": w})
            annotations.append(
                {
                    "id": n + 1,
                    "image_id": image_id,
                    "category_id": PIX3D_CLASSES.index(e["category"]) + 1,
                    "iscrowd": 0,
                    "area": (x1 - x0) * (y1 - y0),
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "segmentation": e["mask"],
                    "model": e["model"],
                    "voxel": e["voxel"],
                    "K": [e["focal_length"] * w / 32.0, w / 2.0, h / 2.0],
                    "rot_mat": e["rot_mat"],
                    "trans_mat": e["trans_mat"],
                }
            )
        # Mesh R-CNN's files list images in no particular order; the loader sorts by id.
        images.reverse()
        data = {"images": images, "categories": categories, "annotations": annotations}
        (folder / file).write_text(json.dumps(data))
        splits[file] = data
    return {"dir": str(folder), "entries": entries, "splits": splits}


# ---------------------------------------------------------------------------------------------
# ShapeNet: R2N2 renderings and Mesh R-CNN's preprocessing
# ---------------------------------------------------------------------------------------------


def _rgba_png_bytes(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    size = R2N2_IMAGE_SIZE
    rgba = np.zeros((size, size, 4), dtype=np.uint8)
    # A smooth gradient plus a random tint: distinct per seed yet small once compressed.
    ramp = np.linspace(0, 255, size, dtype=np.float64)
    tint = rng.integers(0, 256, 3)
    rgba[..., 0] = ramp[None, :].astype(np.uint8)
    rgba[..., 1] = ramp[:, None].astype(np.uint8)
    rgba[..., 2] = tint[2]
    rgba[..., 0] ^= np.uint8(tint[0])
    rgba[30:100, 40:90, 3] = 255  # the object; the rest is transparent background
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    return buf.getvalue()


def _random_viewpoints(rng: random.Random, num_views: int) -> list[tuple[float, ...]]:
    # The ranges of R2N2's render script; in-plane rotation is 0 and the fov 25.
    return [
        (rng.uniform(0, 360), rng.uniform(25, 30), 0.0, rng.uniform(0.65, 0.95), 25.0)
        for _ in range(num_views)
    ]


def _metadata_line(view: tuple[float, ...]) -> str:
    az, el, inplane, ratio, fov = view
    return f"{az!r} {el!r} {int(inplane)} {ratio!r} {int(fov)}"


def write_r2n2(
    root: str | os.PathLike,
    models: dict[str, list[str]],
    *,
    num_views: int = 24,
    with_meshes: bool = True,
    without_voxels: tuple[str, ...] = (),
    seed: int = 0,
) -> dict:
    """Write R2N2's release under ``<root>/shapenet``: ``ShapeNetRendering`` (RGBA 137x137
    PNGs, ``renderings.txt``, 5-float ``rendering_metadata.txt`` lines), ``ShapeNetVox32``
    (32^3 binvox) and, with ``with_meshes``, ``ShapeNetCore.v1`` OBJs.

    Args:
        models: synset -> model ids.
        without_voxels: model ids to leave without a ``model.binvox`` (but listed in Vox32).

    Returns:
        ``{"dir": shapenet folder, "views": {(synset, model): [(az, el, 0, ratio, 25), ...]}}``.
    """
    folder = Path(root) / "shapenet"
    rng = random.Random(seed)
    png = _rgba_png_bytes(seed)
    occupancy = np.zeros((32, 32, 32), dtype=bool)
    occupancy[8:24, 4:28, 10:20] = True
    views = {}
    for synset, model_ids in models.items():
        for model in model_ids:
            rendering = folder / "ShapeNetRendering" / synset / model / "rendering"
            rendering.mkdir(parents=True)
            names = [f"{i:02d}.png" for i in range(num_views)]
            for name in names:
                (rendering / name).write_bytes(png)
            (rendering / "renderings.txt").write_text("\n".join(names) + "\n")
            params = _random_viewpoints(rng, num_views)
            (rendering / "rendering_metadata.txt").write_text(
                "\n".join(_metadata_line(v) for v in params) + "\n"
            )
            views[(synset, model)] = params
            vox_dir = folder / "ShapeNetVox32" / synset / model
            vox_dir.mkdir(parents=True)
            if model not in without_voxels:
                write_binvox(vox_dir / "model.binvox", occupancy, (-0.5, -0.5, -0.5), 1.0)
            if with_meshes:
                mesh_dir = folder / "ShapeNetCore.v1" / synset / model
                mesh_dir.mkdir(parents=True)
                (mesh_dir / "model.obj").write_text(TETRA_OBJ)
    return {"dir": str(folder), "views": views}


def write_meshrcnn_shapenet(
    root: str | os.PathLike,
    splits: dict[str, dict[str, dict[str, list[int]]]],
    *,
    num_views: int = 24,
    seed: int = 0,
) -> dict:
    """Write Mesh R-CNN's preprocessed ShapeNet under ``<root>/shapenet``.

    ``ShapeNetV1processed/<sid>/<mid>/`` gets ``metadata.pt`` (``image_list``, Blender
    ``intrinsic`` 4x4, ``extrinsics`` (N, 4, 4) from :func:`meshrcnn_extrinsic`), ``mesh.pt``,
    ``voxels.pt``, ``samples.pt`` and ``images/NN.png``; plus ``summary.json`` and
    ``pix2mesh_splits_val05.json`` (``splits`` as given).

    Returns:
        ``{"dir": processed folder, "split_file": path, "views": {(sid, mid): [(az, el,
        0, ratio, 25), ...]}}``.
    """
    folder = Path(root) / "shapenet"
    data_dir = folder / "ShapeNetV1processed"
    rng = random.Random(seed)
    png = _rgba_png_bytes(seed)
    torch_gen = torch.Generator().manual_seed(seed)
    models = sorted({(s, m) for split in splits.values() for s in split for m in split[s]})
    summary: dict[str, dict[str, int]] = {}
    views = {}
    for synset, model in models:
        out = data_dir / synset / model
        (out / "images").mkdir(parents=True)
        image_list = [f"{i:02d}.png" for i in range(num_views)]
        for name in image_list:
            (out / "images" / name).write_bytes(png)
        params = _random_viewpoints(rng, num_views)
        extrinsics = torch.stack([meshrcnn_extrinsic(v[0], v[1], 1.75 * v[3]) for v in params])
        metadata = {
            "image_list": image_list,
            "intrinsic": BLENDER_INTRINSIC.to(torch.float32),
            "extrinsics": extrinsics.to(torch.float32),
        }
        torch.save(metadata, out / "metadata.pt")
        verts = torch.rand(6, 3, generator=torch_gen) - 0.5
        faces = torch.tensor([[0, 1, 2], [2, 3, 4], [3, 4, 5]])
        torch.save({"verts": verts, "faces": faces}, out / "mesh.pt")
        torch.save(
            {"voxel_coords": torch.rand(10, 3, generator=torch_gen) - 0.5}, out / "voxels.pt"
        )
        points = torch.rand(20, 3, generator=torch_gen)
        normals = torch.nn.functional.normalize(torch.randn(20, 3, generator=torch_gen), dim=1)
        torch.save({"points_sampled": points, "normals_sampled": normals}, out / "samples.pt")
        summary.setdefault(synset, {})[model] = num_views
        views[(synset, model)] = params
    (data_dir / "summary.json").write_text(json.dumps(summary))
    split_file = folder / "pix2mesh_splits_val05.json"
    split_file.write_text(json.dumps(splits))
    return {"dir": str(data_dir), "split_file": str(split_file), "views": views}
