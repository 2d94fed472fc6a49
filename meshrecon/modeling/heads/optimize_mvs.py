"""OptimizeMVS (Wei, Liu, Rao, Zhao, Lu, Zhou, CVPR 2019): a conditional single-view point
generator, and multi-view reconstruction as the intersection of the views' shape spaces.

One image leaves the back of an object open, so the generator ``f(image, r)`` maps the image and
a random vector ``r ~ N(0, I)`` (``NOISE_DIM`` = 128) to one plausible point cloud in the view's
camera frame; different r give different backs. The generator is PSGN's two-branch decoder
(:class:`~meshrecon.modeling.heads.psgn.PSGNHead`, r fed to its FC branch and tiled over its
deconv map) on backbone features.

Training (per view, ``SAMPLES_PER_IMAGE`` draws of r; losses in
:mod:`.optimize_mvs_losses`):

* front constraint: the generated points that a coarse (``ZBUFFER_SIZE``) z-buffer of the view
  sees must match the view's ground-truth depth lifted to 3D (``FRONT_DISTANCE`` "emd" in the
  authors' stage 1, "chamfer" in stage 2). ``FRONT_MODE "union"`` (the authors' stage 2)
  z-buffers the union of all views' clouds of an object (the j-th draw of every view) in each
  view instead of the view's own cloud, which constrains each cloud's back by the other views;
* diversity: shapes from different r of one image must be apart by at least ``DIVERSITY_MARGIN``
  per unit of distance between the r's;
* optional full-shape Chamfer to the ground-truth surface samples (``FULL_SHAPE_WEIGHT``).

Inference on V views of an object (world frame = the model frame of the cameras ``R, t``):
draw ``NUM_CANDIDATES`` sets of V vectors, keep the set whose per-view clouds agree best (mean
pairwise Chamfer in the world frame, :func:`consistency_loss`), then take ``REFINE_STEPS``
gradient steps on the r's (network frozen) on that loss, keeping the best iterate; the result is
the union of the views' clouds, thinned to ``OUTPUT_POINTS`` by farthest-point sampling when
that is > 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from meshrecon.config import configurable
from meshrecon.modeling.backbone import build_backbone
from meshrecon.modeling.heads.build import MULTIVIEW_HEAD_REGISTRY
from meshrecon.modeling.heads.optimize_mvs_losses import (
    consistency_loss,
    diversity_loss,
    front_constraint_loss,
    sample_farthest_points,
    set_distance,
)
from meshrecon.modeling.heads.psgn import PSGNHead
from meshrecon.render.cameras import transform_points
from meshrecon.utils.events import get_event_storage
from meshrecon.utils.stage_timer import stage

__all__ = ["OptimizeMVSHead", "camera_to_world", "refine_noise"]

_FRONT_MODES = ("view", "union")
_OPTIMIZERS = ("adam", "sgd")


def camera_to_world(points_cam: torch.Tensor, R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Inverse of ``X = R p + t``: (N, ..., 3) camera-frame points of N views -> model frame.

    ``R`` (N, 3, 3) is orthogonal (a rotation, or a reflection after a flip), so its inverse is
    ``R^T`` and the inverse transform is ``(R^T, -R^T t)``.
    """
    Rt = R.transpose(-1, -2)
    return transform_points(points_cam, Rt, -(Rt @ t.unsqueeze(-1)).squeeze(-1))


def refine_noise(
    generate, noise: torch.Tensor, steps: int, lr: float, optimizer: str = "adam"
) -> tuple[torch.Tensor, list[float]]:
    """Lower ``consistency_loss(generate(noise))`` by gradient steps on ``noise`` alone.

    Args:
        generate: ``noise (V, D) -> (V, P, 3)`` world-frame clouds, differentiable in noise.
        noise: (V, D) starting vectors.
        steps: gradient steps.
        lr: step size.
        optimizer: "adam" or "sgd" (plain gradient descent).

    Returns:
        (the iterate with the lowest loss (V, D), detached; losses [start, after step 1, ...]).
        The returned loss is never above the starting one.
    """
    if optimizer not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {_OPTIMIZERS}, got {optimizer!r}")
    with torch.enable_grad():
        r = noise.detach().clone().requires_grad_(True)
        opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)([r], lr=lr)
        best, best_loss, history = r.detach().clone(), float("inf"), []
        for step in range(steps + 1):
            loss = consistency_loss(generate(r))
            value = float(loss.detach())
            history.append(value)
            if value < best_loss:
                best, best_loss = r.detach().clone(), value
            if step == steps:
                break
            # Only r's gradient: the network's parameters stay untouched (frozen).
            (r.grad,) = torch.autograd.grad(loss, [r])
            opt.step()
    return best, history


@MULTIVIEW_HEAD_REGISTRY.register()
class OptimizeMVSHead(nn.Module):
    """Conditional point generator with multi-view consistency (see the module docstring).

    Called by :class:`~meshrecon.modeling.meta_arch.multi_view.MultiViewReconstructor` as
    ``head(images (sum V, 3, H, W), num_views (B,), targets=..., views={K, R, t})``.

    Training returns ``{"loss_front", "loss_diversity"[, "loss_full_shape"]}``; it needs the
    cameras and, per object, ``depth`` (V, H, W) (and ``points`` (P, 3) model frame for the
    full-shape term). Inference returns per object:

    * ``points`` (Q, 3): the refined union, camera frame of the object's first view;
    * ``points_world`` (Q, 3): the same in the world (model) frame;
    * ``views_world`` (V, P, 3): each view's refined cloud; ``noise`` (V, D) the refined r's;
    * ``selected_world`` (V, P, 3): the clouds of the best candidate set before refinement;
    * ``hypotheses_world`` (V, C, P, 3): every candidate's cloud (candidate 0: one random r per
      view), for the single-view and best-of-C scores;
    * ``consistency``: {"selected", "refined", "random"} losses;
    * ``by_num_views`` when ``eval_view_counts`` is set: the same from the first k views.
    """

    # Point sets, not voxels: scored by OptimizeMVSEvaluator (the engine reads this).
    evaluator_type = "optimize_mvs"

    supports_prefix_outputs = True

    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        generator: PSGNHead,
        samples_per_image: int = 5,
        zbuffer_size: int | Sequence[int] = 56,
        front_mode: str = "view",
        front_distance: str = "chamfer",
        front_weight: float = 1.0,
        emd_points: int = 256,
        diversity_weight: float = 10.0,
        diversity_margin: float = 1e-3,
        diversity_distance: str = "chamfer",
        full_shape_weight: float = 0.0,
        num_candidates: int = 5,
        refine_steps: int = 30,
        refine_lr: float = 0.05,
        refine_optimizer: str = "adam",
        output_points: int = 0,
        eval_view_counts: Sequence[int] = (),
        seed: int = 0,
    ) -> None:
        """
        Args:
            backbone: images -> dict of feature maps (finest first).
            generator: a :class:`PSGNHead` whose ``decode(features, noise)`` is f(image, r).
            samples_per_image: draws of r per view in training (>= 2 for the diversity term).
            zbuffer_size: z-buffer cells per side of the front constraint (int or (h, w)).
            front_mode: "view" (each view's own cloud) or "union" (all views' clouds).
            front_distance, diversity_distance: "chamfer" or "emd".
            emd_points: EMD resamples sets of different sizes to this many points.
            front_weight, diversity_weight, full_shape_weight: loss weights.
            diversity_margin: shape distance asked per unit of normalised r distance.
            num_candidates: candidate sets of r in inference (also the oracle's N).
            refine_steps, refine_lr, refine_optimizer: the r-refinement.
            output_points: thin the union to this many points (0: keep all).
            eval_view_counts: also predict from the first k views for these k.
            seed: seed of the inference draws (reproducible predictions).
        """
        super().__init__()
        if samples_per_image < 1 or num_candidates < 1:
            raise ValueError(
                f"samples_per_image ({samples_per_image}) and num_candidates ({num_candidates}) "
                "must be >= 1"
            )
        if front_mode not in _FRONT_MODES:
            raise ValueError(f"front_mode must be one of {_FRONT_MODES}, got {front_mode!r}")
        if refine_optimizer not in _OPTIMIZERS:
            raise ValueError(
                f"refine_optimizer must be one of {_OPTIMIZERS}, got {refine_optimizer}"
            )
        if generator.noise_dim < 1:
            raise ValueError("the generator needs a random input: noise_dim must be >= 1")
        for name, value in (("front", front_distance), ("diversity", diversity_distance)):
            if value not in ("chamfer", "emd"):
                raise ValueError(f"{name} distance must be 'chamfer' or 'emd', got {value!r}")
        self.backbone, self.generator = backbone, generator
        self.samples_per_image = int(samples_per_image)
        self.zbuffer_size = zbuffer_size
        self.front_mode, self.front_distance = front_mode, front_distance
        self.front_weight, self.emd_points = float(front_weight), int(emd_points)
        self.diversity_weight = float(diversity_weight)
        self.diversity_margin = float(diversity_margin)
        self.diversity_distance = diversity_distance
        self.full_shape_weight = float(full_shape_weight)
        self.num_candidates = int(num_candidates)
        self.refine_steps, self.refine_lr = int(refine_steps), float(refine_lr)
        self.refine_optimizer = refine_optimizer
        self.output_points = int(output_points)
        self.eval_view_counts = [int(k) for k in eval_view_counts]
        self.seed = int(seed)

    @classmethod
    def from_config(cls, cfg, input_shape: Any = None) -> dict[str, Any]:
        o = cfg.MODEL.OPTIMIZE_MVS
        backbone = build_backbone(cfg)
        generator = PSGNHead(
            feature_channels=[s.channels for s in backbone.output_shape().values()],
            num_fc_points=o.NUM_FC_POINTS,
            conv_grid=o.CONV_GRID,
            fc_dims=o.FC_DIMS,
            deconv_dim=o.DECONV_DIM,
            noise_dim=o.NOISE_DIM,
            mon_samples=1,
            center=o.CENTER,
        )
        return {
            "backbone": backbone,
            "generator": generator,
            "samples_per_image": o.SAMPLES_PER_IMAGE,
            "zbuffer_size": o.ZBUFFER_SIZE,
            "front_mode": o.FRONT_MODE,
            "front_distance": o.FRONT_DISTANCE,
            "front_weight": o.FRONT_WEIGHT,
            "emd_points": o.EMD_POINTS,
            "diversity_weight": o.DIVERSITY_WEIGHT,
            "diversity_margin": o.DIVERSITY_MARGIN,
            "diversity_distance": o.DIVERSITY_DISTANCE,
            "full_shape_weight": o.FULL_SHAPE_WEIGHT,
            "num_candidates": o.NUM_CANDIDATES,
            "refine_steps": o.REFINE_STEPS,
            "refine_lr": o.REFINE_LR,
            "refine_optimizer": o.REFINE_OPTIMIZER,
            "output_points": o.OUTPUT_POINTS,
            "eval_view_counts": cfg.TEST.OPTIMIZE_MVS.VIEW_COUNTS,
            "seed": cfg.SEED if cfg.SEED >= 0 else 0,
        }

    @property
    def noise_dim(self) -> int:
        return self.generator.noise_dim

    # ------------------------------------------------------------------ generator
    def encode(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Normalized images (N, 3, H, W) -> the backbone's maps, finest first."""
        with stage("backbone"):
            return list(self.backbone(images).values())

    def generate(self, features: Sequence[torch.Tensor], noise: torch.Tensor) -> torch.Tensor:
        """f(image, r): maps of N views and noise (N, n, D) -> camera-frame clouds (N, n, P, 3)."""
        N, n, D = noise.shape
        feats = [f.repeat_interleave(n, dim=0) for f in features]
        return self.generator.decode(feats, noise.reshape(N * n, D)).view(N, n, -1, 3)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        images: torch.Tensor,
        num_views: torch.Tensor,
        targets: Sequence[dict] | None = None,
        views: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor] | list[dict[str, Any]]:
        num_views = torch.as_tensor(num_views, dtype=torch.long, device=images.device)
        if num_views.dim() != 1 or num_views.numel() == 0 or int(num_views.min()) < 1:
            raise ValueError(f"num_views must be (B,) with every count >= 1, got {num_views}")
        if images.shape[0] != int(num_views.sum()):
            raise ValueError(
                f"images holds {images.shape[0]} views, num_views sums to {int(num_views.sum())}"
            )
        if views is None or any(k not in views for k in ("K", "R", "t")):
            raise ValueError("OptimizeMVS needs the cameras of every view: 'K', 'R', 't'")
        features = self.encode(images)
        if self.training:
            return self.losses(features, num_views, views, targets, tuple(images.shape[-2:]))
        return self.inference(features, num_views, views)

    def losses(self, features, num_views, views, targets, image_size) -> dict[str, torch.Tensor]:
        """The training losses of a batch (see the module docstring)."""
        if targets is None or len(targets) != len(num_views):
            raise ValueError("training needs targets: one dict per object")
        for i, t in enumerate(targets):
            if "depth" not in t:
                raise ValueError(
                    f"object {i} has no 'depth': the front constraint needs every view's depth "
                    "map (datasets with depth, e.g. synthetic_shapenet_*_multiview)"
                )
        depth = torch.cat([t["depth"] for t in targets]).to(features[0].dtype)
        if tuple(depth.shape[-2:]) != tuple(image_size):
            raise ValueError(f"depth maps {tuple(depth.shape[-2:])} vs images {image_size}")
        N, n = depth.shape[0], self.samples_per_image
        noise = torch.randn(N, n, self.noise_dim, device=depth.device)
        clouds = self.generate(features, noise)  # (N, n, P, 3) camera frames
        K, R, t = views["K"].float(), views["R"].float(), views["t"].float()
        losses: dict[str, torch.Tensor] = {}
        if self.front_mode == "view":
            front, valid = front_constraint_loss(
                clouds.flatten(0, 1),
                depth.repeat_interleave(n, 0),
                K.repeat_interleave(n, 0),
                self.zbuffer_size,
                self.front_distance,
                self.emd_points,
            )
        else:
            front, valid = self._union_front(clouds, depth, K, R, t, num_views)
        losses["loss_front"] = self.front_weight * front.sum() / valid.sum().clamp(min=1)
        div, spread = diversity_loss(clouds, noise, self.diversity_margin, self.diversity_distance)
        losses["loss_diversity"] = self.diversity_weight * div
        if self.full_shape_weight > 0:
            if any("points" not in tg for tg in targets):
                raise ValueError("FULL_SHAPE_WEIGHT > 0 needs ground-truth 'points' per object")
            gt = torch.cat(
                [tg["points"][None].expand(int(v), -1, -1) for tg, v in zip(targets, num_views)]
            ).to(clouds.dtype)
            world = camera_to_world(clouds, R, t).flatten(0, 1)
            full = set_distance(world, gt.repeat_interleave(n, 0))
            losses["loss_full_shape"] = self.full_shape_weight * full.mean()
        _log_scalar("optimize_mvs/hypothesis_distance", spread)
        return losses

    def _union_front(self, clouds, depth, K, R, t, num_views):
        """Front constraint of the union: for each object and draw j, all its views' j-th clouds
        (world frame) are z-buffered in each of its views."""
        n, P = clouds.shape[1], clouds.shape[2]
        world = camera_to_world(clouds, R, t)  # (N, n, P, 3)
        out, ok = [], []
        start = 0
        for v in num_views.tolist():
            sl = slice(start, start + v)
            start += v
            union = world[sl].transpose(0, 1).reshape(n, v * P, 3)  # (n, vP, 3)
            # Every view of the object sees every draw's union: (v * n, vP, 3) in its frame.
            cam = transform_points(
                union[None].expand(v, -1, -1, -1).reshape(v, n * v * P, 3), R[sl], t[sl]
            ).view(v * n, v * P, 3)
            loss, valid = front_constraint_loss(
                cam,
                depth[sl].repeat_interleave(n, 0),
                K[sl].repeat_interleave(n, 0),
                self.zbuffer_size,
                self.front_distance,
                self.emd_points,
            )
            out.append(loss)
            ok.append(valid)
        return torch.cat(out), torch.cat(ok)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def inference(self, features, num_views, views) -> list[dict[str, Any]]:
        """Multi-view reconstruction of every object (see the module docstring)."""
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        results = []
        start = 0
        for v in num_views.tolist():
            sl = slice(start, start + v)
            start += v
            feats = [f[sl] for f in features]
            cams = {k: views[k][sl].float() for k in ("K", "R", "t")}
            cand = torch.randn(v, self.num_candidates, self.noise_dim, generator=gen)
            cand = cand.to(features[0].device)
            res = self.reconstruct(feats, cams, cand)
            res["by_num_views"] = [
                self.reconstruct([f[:k] for f in feats], _first(cams, k), cand[:k])
                for k in self.eval_view_counts
                if k <= v
            ]
            if not res["by_num_views"]:
                del res["by_num_views"]
            results.append(res)
        return results

    def reconstruct(
        self, features: Sequence[torch.Tensor], cams: dict[str, torch.Tensor], cand: torch.Tensor
    ) -> dict[str, Any]:
        """One object from V views: features of its views, their cameras, candidates
        (V, C, D) -> the prediction dict of :meth:`inference`."""
        R, t = cams["R"], cams["t"]
        hyp = camera_to_world(self.generate(features, cand), R, t)  # (V, C, P, 3)
        scores = consistency_loss(hyp.transpose(0, 1))  # (C,)
        best = int(scores.argmin())

        def generate_world(r: torch.Tensor) -> torch.Tensor:
            return camera_to_world(self.generate(features, r[:, None])[:, 0], R, t)

        noise, history = refine_noise(
            generate_world, cand[:, best], self.refine_steps, self.refine_lr, self.refine_optimizer
        )
        final = generate_world(noise)
        union = final.reshape(1, -1, 3)
        if 0 < self.output_points < union.shape[1]:
            union, _ = sample_farthest_points(union, self.output_points)
        union = union[0]
        return {
            "points": transform_points(union, R[0], t[0]),
            "points_world": union,
            "views_world": final,
            "noise": noise,
            "selected_world": hyp[:, best],
            "hypotheses_world": hyp,
            "consistency": {
                "random": float(scores[0]),
                "selected": float(scores[best]),
                "refined": min(history),
            },
        }


def _first(cams: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    return {name: v[:k] for name, v in cams.items()}


def _log_scalar(name: str, value: torch.Tensor) -> None:
    try:
        get_event_storage().put_scalar(name, float(value))
    except (AssertionError, RuntimeError, ValueError):
        pass  # no training run records events (a unit test, a script)
