"""``MultiViewDepthMapper``: multi-view inputs with every view's depth, rendered when missing.

OptimizeMVS's front constraint needs a depth map per view. The synthetic ShapeNet-style splits
store one; the R2N2 renders of ShapeNet do not. This mapper is :class:`MultiViewMapper` plus,
for an item whose views lack depth, the depth of the model's mesh rendered with each view's
(transformed) ``K, R, t`` at the view's (cropped) size by the z-buffer rasterizer of
:mod:`meshrecon.render` (camera Z at pixel centres, 0 on the background): the maps the
authors rendered for their data. Select it with ``INPUT.MAPPER "MultiViewDepthMapper"``.
"""

from __future__ import annotations

import torch

from meshrecon.render import rasterize, transform_points

from .readers import read_mesh
from .record_checks import check_mesh
from .shape_mappers import MultiViewMapper

__all__ = ["MultiViewDepthMapper", "render_depth_maps"]


def render_depth_maps(
    verts: torch.Tensor,
    faces: torch.Tensor,
    K: torch.Tensor,
    R: torch.Tensor,
    t: torch.Tensor,
    image_size: tuple[int, int],
) -> torch.Tensor:
    """Depth (V, H, W) of one model-frame mesh seen by V cameras (0 where no surface).

    Args:
        verts: (P, 3) model frame; faces: (F, 3).
        K: (V, 4); R: (V, 3, 3); t: (V, 3) model -> camera.
        image_size: (H, W).
    """
    V = K.shape[0]
    if R.shape != (V, 3, 3) or t.shape != (V, 3):
        raise ValueError(f"K {tuple(K.shape)}, R {tuple(R.shape)}, t {tuple(t.shape)} disagree")
    verts = verts.float()
    cam = transform_points(verts[None].expand(V, -1, -1), R.float(), t.float())
    frags = rasterize(cam, faces.long(), K.float(), image_size)
    return torch.where(frags.pix_to_face >= 0, frags.zbuf, torch.zeros_like(frags.zbuf))


class MultiViewDepthMapper(MultiViewMapper):
    """:class:`MultiViewMapper` that renders the depth of views that have none (module doc)."""

    def __call__(self, record: dict) -> dict:
        out = super().__call__(record)
        if "depth" in out:
            return out
        views = record.get("views") or [{}]
        mesh_path = record.get("mesh") or views[0].get("mesh")
        if not mesh_path:
            raise ValueError(
                f"model record {out.get('image_id')}: its views have no depth and it has no "
                "'mesh' to render depth from"
            )
        verts, faces = read_mesh(mesh_path)
        check_mesh(verts, faces, f"model {out.get('image_id')}")
        out["depth"] = render_depth_maps(
            verts, faces, out["K"], out["R"], out["t"], (int(out["height"]), int(out["width"]))
        )
        return out
