"""The pretraining set: renders of procedural objects that no dataset split contains.

Objects come from the synthetic world's shape generator (:func:`make_shape`, the nine
categories), drawn from random streams of their own: ``SeedSequence([seed, 7, 0, stream,
index])``, where 7 is a kind code that no split uses (the splits use 1-3, see
``synthetic/scenes.py``), so no object of the pretraining set is an object of a ``train``,
``val`` or ``test`` split, and nothing here reads a split from disk. Each object gets a
ShapeNet-like model id ``md5("<seed>/pretrain/<category>/<index>")``, distinct from every
split's ``md5("<seed>/<kind>/<split>/<category>/<index>")``.

Each view puts the object (bounding-box diagonal 1, at the origin) before a camera at a random
azimuth, elevation and distance, lit from a random side, over one of three backgrounds: white
(as the ShapeNet-style renders), a random flat colour, or a textured floor and wall (as the
Pix3D- and NYU-style scenes). Its targets, at ``target_size``: the category, the object's
silhouette, the log depth of every surface relative to the camera's distance to the object,
and the camera-frame surface normals.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from meshrecon.data.datasets.synthetic import primitives as pr
from meshrecon.data.datasets.synthetic.rendering import (
    floor_texture,
    owned_texture_fn,
    wall_texture,
)
from meshrecon.data.datasets.synthetic.shapes import CATEGORIES, make_shape
from meshrecon.render import K_from_fov, look_at_view_transform, render_meshes
from meshrecon.structures import Meshes

__all__ = [
    "PRETRAIN_KIND_CODE",
    "PretrainSet",
    "object_rng",
    "pretrain_model_id",
    "pretrain_objects",
    "render_pretraining_set",
]

# Kind code of the pretraining streams; the dataset splits use 1 (shapenet), 2 (pix3d), 3 (nyu).
PRETRAIN_KIND_CODE = 7
_FOV_DEG = 40.0


def object_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """The generator of item ``index`` of the pretraining stream ``stream``."""
    key = [int(seed), PRETRAIN_KIND_CODE, 0, int(stream), int(index)]
    return np.random.default_rng(np.random.SeedSequence(key))


def pretrain_model_id(seed: int, category: str, index: int) -> str:
    """The 32-hex model id of pretraining object ``index`` of ``category``."""
    return hashlib.md5(f"{seed}/pretrain/{category}/{index}".encode()).hexdigest()


def pretrain_objects(seed: int, models_per_category: int) -> list[tuple[int, str, int, str]]:
    """``(category_id, category, index, model_id)`` of every object, in generation order."""
    return [
        (c, category, m, pretrain_model_id(seed, category, m))
        for c, category in enumerate(CATEGORIES)
        for m in range(models_per_category)
    ]


@dataclass
class PretrainSet:
    """Rendered images and their targets.

    Attributes:
        images: (N, 3, S, S) uint8 RGB.
        labels: (N,) int64 category ids (index into ``CATEGORIES``).
        silhouettes: (N, T, T) float32 object coverage in [0, 1].
        depth: (N, T, T) float32 ``log(z / d)``, d the camera's distance to the object centre.
        normals: (N, 3, T, T) float32 unit camera-frame normals.
        valid: (N, T, T) bool: a surface covers the cell (depth and normals defined).
        model_ids: (N,) the model id of each image's object.
        object_index: (N,) int64 the object's index within its category.
    """

    images: torch.Tensor
    labels: torch.Tensor
    silhouettes: torch.Tensor
    depth: torch.Tensor
    normals: torch.Tensor
    valid: torch.Tensor
    model_ids: list[str]
    object_index: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.numel())

    def subset(self, mask: torch.Tensor) -> PretrainSet:
        idx = mask.nonzero().squeeze(1)
        return PretrainSet(
            self.images[idx],
            self.labels[idx],
            self.silhouettes[idx],
            self.depth[idx],
            self.normals[idx],
            self.valid[idx],
            [self.model_ids[i] for i in idx.tolist()],
            self.object_index[idx],
        )


def _background_objects(rng, dist: float, azim: float, floor_y: float):
    """Floor and wall meshes (model frame) with their textures, the wall facing the camera."""
    extent = 4.0 * dist + 10.0
    floor_v, floor_f = pr.box((2 * extent, 0.02, 2 * extent), (0.0, floor_y - 0.01, 0.0))
    behind = rng.uniform(0.3, 1.5)
    wall_v, wall_f = pr.box((2 * extent, extent, 0.02), (0.0, floor_y + extent / 2, -behind))
    # Turn the wall with the camera's azimuth, so it stays behind the object as seen.
    wall_v = wall_v @ pr.rotation_y(math.radians(azim)).T
    return [(floor_v, floor_f, floor_texture(rng)), (wall_v, wall_f, wall_texture(rng))]


def _render_view(shape, colors, rng, size: int, scene_fraction: float) -> dict[str, np.ndarray]:
    """Render one view of ``shape``; return full-resolution rgb, masks, depth, normals."""
    azim, elev = rng.uniform(0.0, 360.0), rng.uniform(0.0, 45.0)
    dist = rng.uniform(1.2, 2.4)
    at = rng.normal(0.0, 0.06, size=3)
    R, t = look_at_view_transform(dist, elev, azim, at=at.tolist())
    R, t = R[0].double(), t[0].double()
    parts = [(shape.verts.astype(np.float64), shape.faces, None)]
    kind = rng.random()
    if kind < scene_fraction:
        parts += _background_objects(rng, dist, azim, float(shape.verts[:, 1].min()))
        background = (0.5, 0.5, 0.5)
    elif kind < scene_fraction + (1.0 - scene_fraction) / 2:
        background = (1.0, 1.0, 1.0)
    else:
        background = tuple(rng.uniform(0.0, 1.0, size=3))
    offsets = np.cumsum([0] + [len(v) for v, _, _ in parts[:-1]])
    verts = torch.from_numpy(np.concatenate([v for v, _, _ in parts]))
    faces = torch.from_numpy(np.concatenate([f + o for (_, f, _), o in zip(parts, offsets)]))
    owner = torch.repeat_interleave(
        torch.arange(len(parts)), torch.tensor([len(f) for _, f, _ in parts])
    )
    face_colors = torch.zeros(len(faces), 3, dtype=torch.float64)
    face_colors[: len(shape.faces)] = torch.from_numpy(colors.astype(np.float64))
    textured = [(k, tex) for k, (_, _, tex) in enumerate(parts) if tex is not None]
    texture_fn = owned_texture_fn(face_colors, owner, textured)

    light = rng.normal(0.0, 1.0, size=3)
    light[2] = -abs(light[2]) - 0.5  # from the camera's side
    with torch.no_grad():
        out = render_meshes(
            Meshes(verts=[verts @ R.T + t], faces=[faces]),
            K_from_fov(_FOV_DEG, size, size).double(),
            (size, size),
            face_colors=face_colors,
            face_instance_ids=(owner == 0).long(),
            texture_fn=texture_fn if textured else None,
            texture_verts=verts,
            light_dir=light.tolist(),
            ambient=float(rng.uniform(0.25, 0.5)),
            background=background,
        )
    return {
        "rgb": out["rgb"][0].numpy(),
        "object": (out["instance"][0] == 1).numpy(),
        "surface": out["mask"][0].numpy(),
        "depth": out["depth"][0].numpy(),
        "normals": out["normals"][0].numpy(),
        # Depth of the object's centre (the model origin): depth targets are relative to it.
        "centre": float(t[2]),
    }


def _targets(view: dict[str, np.ndarray], target_size: int) -> tuple[torch.Tensor, ...]:
    """Pool a view's full-resolution maps to ``target_size``: (sil, depth, normals, valid)."""
    obj = torch.from_numpy(view["object"]).float()[None, None]
    surface = torch.from_numpy(view["surface"]).float()[None, None]
    depth = torch.from_numpy(view["depth"]).float()
    log_rel = torch.where(
        depth > 0, torch.log(depth.clamp(min=1e-6) / view["centre"]), torch.zeros_like(depth)
    )[None, None]
    normals = torch.from_numpy(view["normals"]).float().permute(2, 0, 1)[None]
    size = (target_size, target_size)
    sil = F.adaptive_avg_pool2d(obj, size)[0, 0]
    cover = F.adaptive_avg_pool2d(surface, size)[0, 0]
    # Means over the covered pixels only, so empty background does not pull them to zero.
    d = F.adaptive_avg_pool2d(log_rel * surface, size)[0, 0] / cover.clamp(min=1e-6)
    n = F.adaptive_avg_pool2d(normals * surface, size)[0]
    n = F.normalize(n, dim=0, eps=1e-6)
    return sil, d, n, cover > 0.5


def render_pretraining_set(
    seed: int,
    models_per_category: int,
    views_per_model: int,
    image_size: int,
    target_size: int,
    scene_fraction: float = 0.5,
    progress: bool = True,
) -> PretrainSet:
    """Render ``views_per_model`` views of each pretraining object (see the module docstring)."""
    objects = pretrain_objects(seed, models_per_category)
    n = len(objects) * views_per_model
    images = torch.empty(n, 3, image_size, image_size, dtype=torch.uint8)
    sil = torch.empty(n, target_size, target_size)
    depth = torch.empty(n, target_size, target_size)
    normals = torch.empty(n, 3, target_size, target_size)
    valid = torch.empty(n, target_size, target_size, dtype=torch.bool)
    labels, ids, index = [], [], []
    bar = tqdm(total=n, desc="render pretraining set", unit="img", disable=not progress)
    k = 0
    for c, category, m, model_id in objects:
        shape = make_shape(category, object_rng(seed, c, m))
        rng = object_rng(seed, 100 + c, m)
        colors = np.clip(shape.face_colors() * rng.uniform(0.8, 1.2, size=3), 0.0, 1.0)
        for _ in range(views_per_model):
            view = _render_view(shape, colors, rng, image_size, scene_fraction)
            rgb = torch.from_numpy(view["rgb"]).permute(2, 0, 1)
            images[k] = (rgb * 255.0 + 0.5).clamp(0, 255).to(torch.uint8)
            sil[k], depth[k], normals[k], valid[k] = _targets(view, target_size)
            labels.append(c)
            ids.append(model_id)
            index.append(m)
            k += 1
            bar.update(1)
    bar.close()
    return PretrainSet(
        images,
        torch.tensor(labels, dtype=torch.int64),
        sil,
        depth,
        normals,
        valid,
        ids,
        torch.tensor(index, dtype=torch.int64),
    )
