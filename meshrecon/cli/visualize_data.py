"""Draw samples of a registered dataset as PNGs, to check what a model will be trained on.

    meshrecon visualize synthetic_pix3d_train --num 4 --output-dir vis/
    meshrecon visualize pix3d_s1_train --indices 0 10 20

Each record becomes one PNG, ``<output-dir>/<dataset>_<index>.png`` (default output-dir:
./vis); their paths are printed. A synthetic dataset is generated first if it is not cached
yet (under $MESHRECON_DATASETS, default ./datasets).

Detection records (Pix3D): the image with boxes, class names and masks; every object's mesh
projected into the image as a wireframe with its R, t and K; the first object's voxels as
three max-projections. View records (ShapeNet): the view, its mesh
wireframe, its depth in colour when there is one, and the voxel grid. Depth records (NYU,
KITTI): the image and its depth in colour.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from meshrecon.data import (  # noqa: E402
    DatasetCatalog,
    MetadataCatalog,
    read_depth,
    read_image,
    read_mask,
    read_mesh,
    read_voxel,
)
from meshrecon.render import colorize_depth, project_points, transform_points  # noqa: E402

_COLORS = plt.get_cmap("tab10").colors


def record_kind(record: dict) -> str:
    """Return "detection", "view" or "depth": the record format of docs/DATA_FORMATS.md."""
    if "annotations" in record:
        return "detection"
    if "view_index" in record:
        return "view"
    if "depth" in record and "protocol" in record:
        return "depth"
    raise ValueError(f"record {record.get('image_id', '?')} matches no known record format")


def mesh_wireframe(mesh_path: str, R, t, K) -> np.ndarray:
    """Return the mesh's edges projected into the image: (E, 2, 2) pixel segments."""
    verts, faces = read_mesh(mesh_path)
    dtype = torch.float64
    cam = transform_points(
        verts.to(dtype), torch.tensor(R, dtype=dtype), torch.tensor(t, dtype=dtype)
    )
    uv = project_points(cam, torch.tensor(K, dtype=dtype))
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).sort(dim=1).values
    edges = torch.unique(edges, dim=0)
    in_front = (cam[edges, 2] > 0).all(dim=1)
    return uv[edges[in_front]].numpy()


def voxel_projections(voxel_path: str) -> list[np.ndarray] | None:
    """Return the max-projections of the voxel grid along z, y and x, or None without a grid."""
    grid = read_voxel(voxel_path).grid
    if grid is None:
        return None
    occ = grid.bool().numpy()  # (D, H, W) indexed [z, y, x]
    # Rows run along y, flipped so that +y points up; the top view (along y) shows z against x.
    return [occ.max(0)[::-1], occ.max(1), occ.max(2).T[::-1]]


def _show_image(ax, image: np.ndarray, title: str) -> None:
    ax.imshow(image)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def _show_voxels(axes: Sequence, projections: list[np.ndarray] | None) -> None:
    names = ("voxels along z (x right, y up)", "along y (x right, z down)", "along x (z right)")
    for ax, name, proj in zip(axes, names, projections or [None] * 3):
        ax.axis("off")
        if proj is None:
            ax.set_title("no voxel grid", fontsize=9)
            continue
        ax.imshow(proj, cmap="Greys", interpolation="nearest")
        ax.set_title(name, fontsize=9)


def draw_detection(record: dict, classes: Sequence[str]) -> plt.Figure:
    image = read_image(record, format="RGB")
    fig, axes = plt.subplots(1, 5, figsize=(20, 4))
    overlay = image.astype(np.float32) / 255.0
    for i, ann in enumerate(record["annotations"]):
        color = np.array(_COLORS[i % len(_COLORS)])
        mask = read_mask(ann["segmentation"])
        overlay[mask] = 0.5 * overlay[mask] + 0.5 * color
    _show_image(axes[0], overlay, f"{os.path.basename(record['file_name'])}: boxes, masks")
    _show_image(axes[1], image, "meshes projected with R, t, K")
    for i, ann in enumerate(record["annotations"]):
        color = _COLORS[i % len(_COLORS)]
        x0, y0, x1, y1 = ann["bbox"]
        axes[0].add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color=color, lw=1.5))
        name = classes[ann["category_id"]] if classes else str(ann["category_id"])
        axes[0].text(x0, y0 - 2, name, color=color, fontsize=8, va="bottom")
        segments = mesh_wireframe(ann["mesh"], ann["R"], ann["t"], ann["K"])
        axes[1].add_collection(LineCollection(segments, colors=[color], linewidths=0.3))
    h, w = image.shape[:2]
    axes[1].set_xlim(0, w)
    axes[1].set_ylim(h, 0)
    first = record["annotations"][0] if record["annotations"] else {}
    _show_voxels(axes[2:], voxel_projections(first["voxel"]) if first.get("voxel") else None)
    return fig


def draw_view(record: dict, classes: Sequence[str]) -> plt.Figure:
    image = read_image(record, format="RGB")
    fig, axes = plt.subplots(1, 6, figsize=(22, 4))
    _show_image(axes[0], image, f"{record['image_id']} ({record['category']})")
    _show_image(axes[1], image, "mesh projected with R, t, K")
    segments = mesh_wireframe(record["mesh"], record["R"], record["t"], record["K"])
    axes[1].add_collection(LineCollection(segments, colors=["tab:red"], linewidths=0.3))
    if record.get("depth"):
        depth = read_depth(record["depth"])
        valid = depth > 0
        lo, hi = (depth[valid].min(), depth[valid].max()) if valid.any() else (0.0, 1.0)
        _show_image(axes[2], colorize_depth(depth, lo, hi), f"depth {lo:.2f}-{hi:.2f}")
    else:
        axes[2].axis("off")
        axes[2].set_title("no depth", fontsize=9)
    _show_voxels(axes[3:], voxel_projections(record["voxel"]) if record.get("voxel") else None)
    return fig


def draw_depth(record: dict, classes: Sequence[str]) -> plt.Figure:
    image = read_image(record, format="RGB")
    depth = read_depth(record["depth"])
    valid = depth > 0
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    _show_image(axes[0], image, str(record["image_id"]))
    lo, hi = (float(depth[valid].min()), float(depth[valid].max())) if valid.any() else (0, 1)
    shown = axes[1].imshow(np.where(valid, depth, np.nan), cmap="viridis", vmin=lo, vmax=hi)
    axes[1].set_title(f"depth (m), {record['protocol'].get('gt', '?')} GT", fontsize=9)
    axes[1].axis("off")
    fig.colorbar(shown, ax=axes[1], fraction=0.035)
    axes[2].imshow(valid, cmap="gray", vmin=0, vmax=1)
    axes[2].set_title(f"valid pixels (white): {valid.mean():.1%}", fontsize=9)
    axes[2].axis("off")
    return fig


_DRAW = {"detection": draw_detection, "view": draw_view, "depth": draw_depth}


def visualize(
    dataset: str, output_dir: str, indices: Sequence[int] | None = None, num: int = 4
) -> list[str]:
    """Write one PNG per selected record of ``dataset`` into ``output_dir``; return the paths."""
    records = DatasetCatalog.get(dataset)
    if not records:
        raise ValueError(f"dataset {dataset!r} has no records")
    if indices is None:
        # Spread the picks over the dataset so that several categories show up.
        indices = np.linspace(0, len(records) - 1, num=min(num, len(records))).astype(int)
    bad = [i for i in indices if not 0 <= i < len(records)]
    if bad:
        raise ValueError(f"indices {bad} out of range for {dataset!r} ({len(records)} records)")
    classes = MetadataCatalog.get(dataset).get("thing_classes", [])
    os.makedirs(output_dir, exist_ok=True)
    paths = []
    for i in indices:
        record = records[int(i)]
        fig = _DRAW[record_kind(record)](record, classes)
        fig.tight_layout()
        path = os.path.join(output_dir, f"{dataset}_{int(i):05d}.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2].replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dataset", help="a registered dataset name, e.g. synthetic_pix3d_train")
    parser.add_argument("--output-dir", default="vis", help="where the PNGs go")
    parser.add_argument("--num", type=int, default=4, help="records to draw, spread evenly")
    parser.add_argument("--indices", type=int, nargs="*", help="draw these records instead")
    args = parser.parse_args(argv)
    if args.dataset not in DatasetCatalog:
        names = ", ".join(DatasetCatalog.list())
        print(f"unknown dataset {args.dataset!r}; registered: {names}", file=sys.stderr)
        return 2
    for path in visualize(args.dataset, args.output_dir, args.indices, args.num):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
