"""What a pretraining run does (:class:`PretrainRecipe`) and the run itself (:func:`pretrain`)."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any

import torch
from tqdm import tqdm

from meshrecon.utils.precision import resolve_autocast

from .data import PretrainSet, render_pretraining_set
from .net import ARCHS, PretrainNet, pretrain_losses

__all__ = ["IMAGENET_PIXEL_MEAN", "IMAGENET_PIXEL_STD", "PretrainRecipe", "pretrain"]

logger = logging.getLogger(__name__)

# The encoder sees RGB in 0..255 normalized with ImageNet's statistics, as torchvision's weights
# and the synthetic single-view configs do; loaders adapt the first convolution to other input
# conventions (meshrecon.modeling.backbone.pretrained).
IMAGENET_PIXEL_MEAN = (123.675, 116.28, 103.53)
IMAGENET_PIXEL_STD = (58.395, 57.12, 57.375)


@dataclasses.dataclass(frozen=True)
class PretrainRecipe:
    """Everything that decides the pretrained weights (their cache key hashes all of it).

    Attributes:
        arch: "resnet18" or "eigen_alexnet" (see :mod:`meshrecon.pretrain.net`).
        seed: seed of the objects, views and of the training.
        models_per_category: objects per category (9 categories); the last
            ``holdout_per_category`` of each are held out to measure the result.
        holdout_per_category: objects per category rendered but not trained on.
        views_per_model: rendered views per object.
        image_size: side of the square renders the encoder sees.
        target_size: side of the dense targets' grid.
        scene_fraction: share of views on a textured floor before a wall (the rest: white or a
            flat colour behind the object).
        steps, batch_size: training length and batch.
        base_lr, weight_decay, warmup_steps: AdamW with a linear warm-up then a cosine decay.
        loss_weights: weights of the classification, silhouette, depth and normal losses.
        encoder_autocast: "auto" (bfloat16 where the CPU computes it in hardware, float32
            elsewhere; as ``MODEL.BACKBONE.AUTOCAST``), "bfloat16" or "" (float32). The cache key
            holds the dtype it resolves to, so machines with and without bfloat16 hardware keep
            separate weights.
    """

    arch: str = "resnet18"
    seed: int = 0
    models_per_category: int = 40
    holdout_per_category: int = 4
    views_per_model: int = 6
    image_size: int = 112
    target_size: int = 28
    scene_fraction: float = 0.5
    steps: int = 500
    batch_size: int = 32
    base_lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    loss_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    encoder_autocast: str = "auto"

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"PretrainRecipe.arch must be one of {ARCHS}, got {self.arch!r}")
        if not 0 <= self.holdout_per_category < self.models_per_category:
            raise ValueError(
                "PretrainRecipe: need 0 <= holdout_per_category < models_per_category, got "
                f"{self.holdout_per_category} and {self.models_per_category}"
            )
        for name in ("views_per_model", "image_size", "target_size", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"PretrainRecipe.{name} must be >= 1, got {getattr(self, name)}")
        if self.arch == "eigen_alexnet" and self.image_size < 64:
            # Its stride-4 11x11 convolution and three pools leave nothing of smaller images.
            raise ValueError(f"eigen_alexnet needs image_size >= 64, got {self.image_size}")
        self.encoder_dtype()  # an unknown encoder_autocast is named here, not at training
        if len(self.loss_weights) != 4:
            raise ValueError(
                f"PretrainRecipe.loss_weights needs 4 weights, got {self.loss_weights}"
            )
        object.__setattr__(self, "loss_weights", tuple(float(w) for w in self.loss_weights))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def encoder_dtype(self) -> torch.dtype | None:
        """The dtype the encoder trains in on this machine's CPU (``None``: float32)."""
        return resolve_autocast(self.encoder_autocast, "cpu", key="PretrainRecipe.encoder_autocast")


def _normalize(images_uint8: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_PIXEL_STD).view(1, 3, 1, 1)
    return (images_uint8.float() - mean) / std


def _augment(batch: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Random horizontal flips (normals' x negated) and brightness / contrast jitter."""
    n = batch["images"].shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    out = dict(batch)
    for key in ("images", "silhouettes", "depth", "normals", "valid"):
        x = batch[key]
        out[key] = torch.where(flip.view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)
    sign = torch.where(flip, -1.0, 1.0).view(-1, 1, 1)
    out["normals"] = torch.cat([out["normals"][:, :1] * sign[:, None], out["normals"][:, 1:]], 1)
    images = out["images"].float()
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    contrast = torch.empty(n, 1, 1, 1).uniform_(0.7, 1.3, generator=gen)
    brightness = torch.empty(n, 1, 1, 1).uniform_(-25.0, 25.0, generator=gen)
    out["images"] = ((images - mean) * contrast + mean + brightness).clamp(0.0, 255.0)
    return out


def _batch(data: PretrainSet, idx: torch.Tensor) -> dict[str, torch.Tensor]:
    return {
        "images": data.images[idx],
        "labels": data.labels[idx],
        "silhouettes": data.silhouettes[idx],
        "depth": data.depth[idx],
        "normals": data.normals[idx],
        "valid": data.valid[idx],
    }


def _lr_factor(step: int, recipe: PretrainRecipe) -> float:
    if step < recipe.warmup_steps:
        return (step + 1) / recipe.warmup_steps
    span = max(1, recipe.steps - recipe.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * (step - recipe.warmup_steps) / span))


@torch.no_grad()
def _evaluate(net: PretrainNet, data: PretrainSet, batch_size: int) -> dict[str, float]:
    """Accuracy, silhouette IoU, depth L1 and normal angle on held-out objects."""
    net.eval()
    correct, inter, union, depth_err, angle, cells = 0, 0.0, 0.0, 0.0, 0.0, 0.0
    for start in range(0, len(data), batch_size):
        b = _batch(data, torch.arange(start, min(len(data), start + batch_size)))
        logits, dense = net(_normalize(b["images"]))
        correct += int((logits.argmax(1) == b["labels"]).sum())
        pred, gt = dense[:, 0] > 0, b["silhouettes"] > 0.5
        inter += float((pred & gt).sum())
        union += float((pred | gt).sum())
        w = b["valid"]
        depth_err += float((dense[:, 1] - b["depth"]).abs()[w].sum())
        cos = torch.nn.functional.cosine_similarity(dense[:, 2:5], b["normals"], dim=1)
        angle += float(torch.rad2deg(torch.acos(cos.clamp(-1, 1)))[w].sum())
        cells += float(w.sum())
    net.train()
    return {
        "accuracy": correct / max(1, len(data)),
        "silhouette_iou": inter / max(union, 1.0),
        "depth_l1": depth_err / max(cells, 1.0),
        "normal_angle_deg": angle / max(cells, 1.0),
    }


def pretrain(recipe: PretrainRecipe, progress: bool = True) -> tuple[dict[str, torch.Tensor], dict]:
    """Render the pretraining set and train the encoder on it.

    Returns:
        ``(encoder_state_dict, info)``: the weights under the names described in
        :mod:`meshrecon.pretrain.net`, and a JSON-able record (recipe, model ids, held-out
        metrics before and after, final losses, seconds spent rendering and training).
    """
    torch.manual_seed(recipe.seed)
    gen = torch.Generator().manual_seed(recipe.seed)
    t0, c0 = time.perf_counter(), time.process_time()
    data = render_pretraining_set(
        recipe.seed,
        recipe.models_per_category,
        recipe.views_per_model,
        recipe.image_size,
        recipe.target_size,
        recipe.scene_fraction,
        progress=progress,
    )
    render_s, render_cpu = time.perf_counter() - t0, time.process_time() - c0
    cut = recipe.models_per_category - recipe.holdout_per_category
    train, held = data.subset(data.object_index < cut), data.subset(data.object_index >= cut)
    net = PretrainNet(recipe.arch, int(data.labels.max()) + 1, recipe.target_size)
    net.encoder_dtype = recipe.encoder_dtype()
    before = _evaluate(net, held, recipe.batch_size) if len(held) else {}
    opt = torch.optim.AdamW(
        net.parameters(), lr=recipe.base_lr, weight_decay=recipe.weight_decay, fused=True
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, recipe))
    weights = dict(zip(("cls", "silhouette", "depth", "normals"), recipe.loss_weights))
    smoothed: dict[str, float] = {}
    t1, c1 = time.perf_counter(), time.process_time()
    bar = tqdm(
        range(recipe.steps), desc=f"pretrain {recipe.arch}", unit="step", disable=not progress
    )
    for _ in bar:
        idx = torch.randint(len(train), (recipe.batch_size,), generator=gen)
        b = _augment(_batch(train, idx), gen)
        logits, dense = net(_normalize(b["images"]))
        losses = pretrain_losses(
            logits, dense, b["labels"], b["silhouettes"], b["depth"], b["normals"], b["valid"]
        )
        total = sum(weights[k] * v for k, v in losses.items())
        if not torch.isfinite(total):
            raise FloatingPointError(f"pretraining loss is {float(total)}: {losses}")
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        sched.step()
        for k, v in losses.items():
            v = float(v.detach())
            smoothed[k] = 0.9 * smoothed.get(k, v) + 0.1 * v
        bar.set_postfix({k: f"{v:.3f}" for k, v in smoothed.items()}, refresh=False)
    train_s, train_cpu = time.perf_counter() - t1, time.process_time() - c1
    after = _evaluate(net, held, recipe.batch_size) if len(held) else {}
    info = {
        "recipe": recipe.to_dict(),
        "encoder_dtype": str(net.encoder_dtype or torch.float32),
        "pixel_mean": list(IMAGENET_PIXEL_MEAN),
        "pixel_std": list(IMAGENET_PIXEL_STD),
        "input_format": "RGB",
        "num_train_images": len(train),
        "num_heldout_images": len(held),
        "model_ids": sorted(set(data.model_ids)),
        "heldout_before": before,
        "heldout_after": after,
        "final_losses": smoothed,
        # Wall clock, and CPU time of this process (all threads): on a shared machine the
        # second is the figure to trust.
        "render_seconds": round(render_s, 1),
        "train_seconds": round(train_s, 1),
        "render_cpu_seconds": round(render_cpu, 1),
        "train_cpu_seconds": round(train_cpu, 1),
        "threads": torch.get_num_threads(),
    }
    logger.info(
        "Pretrained %s: held-out accuracy %.3f (random init %.3f), silhouette IoU %.3f (%.3f)",
        recipe.arch,
        after.get("accuracy", math.nan),
        before.get("accuracy", math.nan),
        after.get("silhouette_iou", math.nan),
        before.get("silhouette_iou", math.nan),
    )
    return net.encoder_state_dict(), info
