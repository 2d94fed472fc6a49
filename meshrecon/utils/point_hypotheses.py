"""Several shape hypotheses for one image from a conditional point generator, side by side.

``tools/sample_hypotheses.py`` wraps these two functions::

    clouds = sample_hypotheses(model, image, K, num=4, seed=0)   # (4, P, 3) camera frame
    render_hypotheses(clouds, "hypotheses.png", image=image)

The picture has one column per hypothesis and two rows: the cloud as the input camera sees it
(all hypotheses should agree there: the front constraint) and seen from the side, rotated by
``side_angle`` about the vertical axis through the cloud's centre (where the hidden back differs
from one random input to the next). Points are matplotlib scatter dots coloured by depth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["render_hypotheses", "sample_hypotheses"]


@torch.no_grad()
def sample_hypotheses(
    model: torch.nn.Module, image: torch.Tensor, num: int = 4, seed: int = 0
) -> torch.Tensor:
    """Generate ``num`` clouds for one image with independent draws of r.

    Args:
        model: a ``MultiViewReconstructor`` whose head is an ``OptimizeMVSHead``.
        image: (3, H, W) in the model's input format, 0..255.
        num: hypotheses to draw.
        seed: seed of the draws.

    Returns:
        (num, P, 3) clouds in the camera frame of the image.
    """
    head = getattr(model, "head", None)
    if head is None or not hasattr(head, "generate"):
        raise ValueError("model must be a MultiViewReconstructor with an OptimizeMVSHead")
    model.check_image(image, "image")
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    model.eval()
    x = model.normalize_pixels(image[None])
    feats = head.encode(x)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    noise = torch.randn(1, num, head.noise_dim, generator=gen).to(x.device)
    return head.generate(feats, noise)[0].cpu()


def _rotate_y(points: torch.Tensor, angle_deg: float, center: torch.Tensor) -> torch.Tensor:
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    R = torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    return (points - center) @ R.T + center


def render_hypotheses(
    clouds: torch.Tensor | Sequence[torch.Tensor],
    path: str,
    image: torch.Tensor | None = None,
    titles: Sequence[str] | None = None,
    side_angle: float = 90.0,
    point_size: float = 2.0,
) -> str:
    """Save a PNG with the hypotheses side by side (module docstring); return ``path``.

    Args:
        clouds: (N, P, 3) or a list of (P_i, 3) camera-frame clouds (+X left, +Y up, +Z
            forward).
        path: the PNG to write.
        image: optional (3, H, W) RGB 0..255 input image, drawn first.
        titles: one per cloud (default "r #i").
        side_angle: rotation (degrees, about the vertical axis) of the second row.
        point_size: scatter dot size.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clouds = [torch.as_tensor(c).detach().float().cpu() for c in clouds]
    if not clouds or any(c.dim() != 2 or c.shape[1] != 3 for c in clouds):
        raise ValueError("clouds must be a non-empty list of (P, 3) point clouds")
    titles = list(titles) if titles is not None else [f"r #{i}" for i in range(len(clouds))]
    if len(titles) != len(clouds):
        raise ValueError(f"{len(titles)} titles for {len(clouds)} clouds")
    first = 1 if image is not None else 0
    cols = first + len(clouds)
    fig, axes = plt.subplots(2, cols, figsize=(2.6 * cols, 5.4), squeeze=False)
    center = torch.cat(clouds).mean(dim=0)
    rows = [("camera view", 0.0), (f"side ({side_angle:g} deg)", side_angle)]
    # One scale for every panel of a row, so the hypotheses are comparable.
    for row, (label, angle) in enumerate(rows):
        shown = [_rotate_y(c, angle, center) for c in clouds]
        # Image-like axes: +X is left in the camera frame, so plot -X to the right.
        xy = torch.cat([torch.stack([-p[:, 0], p[:, 1]], 1) for p in shown])
        lo, hi = xy.min(0).values, xy.max(0).values
        half = float((hi - lo).max()) / 2 * 1.05 + 1e-6
        mid = (lo + hi) / 2
        for k, p in enumerate(shown):
            ax = axes[row, first + k]
            order = torch.argsort(p[:, 2], descending=True)  # far points first, near on top
            p = p[order]
            ax.scatter(-p[:, 0], p[:, 1], c=p[:, 2], s=point_size, cmap="viridis_r", linewidths=0)
            ax.set_xlim(float(mid[0]) - half, float(mid[0]) + half)
            ax.set_ylim(float(mid[1]) - half, float(mid[1]) + half)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{titles[k]}: {label}" if row == 0 else label, fontsize=8)
    if image is not None:
        img = torch.as_tensor(image).detach().float().cpu().clamp(0, 255) / 255.0
        axes[0, 0].imshow(img.permute(1, 2, 0).numpy())
        axes[0, 0].set_title("input", fontsize=8)
        for ax in axes[:, 0]:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
