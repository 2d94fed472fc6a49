"""Eigen et al.'s depth networks: loss, target downsampling, phases, LR groups, weights."""

from __future__ import annotations

import math
import os

import pytest
import torch

import meshrecon.checkpoint.catalog as catalog
from meshrecon.checkpoint import Checkpointer, WeightsDownloadError
from meshrecon.config import get_cfg
from meshrecon.modeling import build_model
from meshrecon.modeling.heads.depth_eigen import (
    EigenCoarseNet,
    EigenFineNet,
    EigenMultiScaleHead,
    build_coarse_features,
    downsample_depth,
    scale_invariant_log_loss,
)
from meshrecon.modeling.meta_arch.depth import (
    DepthEstimator,
    depth_param_groups,
)
from meshrecon.solver import build_optimizer

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "configs")
SMALL_IN, SMALL_OUT = (60, 80), (14, 19)


def _small_model(phase: str = "coarse", seed: int = 0) -> DepthEstimator:
    torch.manual_seed(seed)
    coarse = EigenCoarseNet(build_coarse_features("alexnet"), SMALL_IN, SMALL_OUT, fc_dim=64)
    fine = EigenFineNet() if phase != "coarse" else None
    head = EigenMultiScaleHead(coarse=coarse, fine=fine, phase=phase, lr_factors={"fine2": 10.0})
    return DepthEstimator(
        head=head, pixel_mean=[128.0] * 3, pixel_std=[64.0] * 3, input_size=SMALL_IN
    )


def _batch(n: int = 4, seed: int = 1) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    items = []
    for _ in range(n):
        image = torch.rand(3, *SMALL_IN, generator=g) * 255
        # Depth tied to the image (brighter = nearer) so there is something to learn.
        depth = 1.0 + 4.0 * (1.0 - image.mean(0) / 255.0)
        depth[:5, :7] = 0.0  # a hole
        items.append({"image": image, "depth": depth, "height": SMALL_IN[0], "width": 80})
    return items


# ---------------------------------------------------------------------------------- loss
def test_loss_matches_formula_on_hand_made_maps():
    a = math.log(2.0)
    gt = torch.tensor([[[1.0, 2.0], [4.0, 0.0]]])
    pred = torch.log(torch.tensor([[[2.0, 2.0], [8.0, 5.0]]]))  # d = a, 0, a; last invalid
    for lam, expected in [(0.0, 2 * a * a / 3), (0.5, 4 * a * a / 9), (1.0, 2 * a * a / 9)]:
        got = scale_invariant_log_loss(pred, gt, lam)
        assert got.item() == pytest.approx(expected, rel=1e-6)
    # A batch averages the per-image losses (not the pixels): image 2 has d = (1, 1, 1, 1).
    gt2 = torch.cat([gt, torch.ones(1, 2, 2)])
    pred2 = torch.cat([pred, torch.ones(1, 2, 2)])
    got = scale_invariant_log_loss(pred2, gt2, 0.5)
    assert got.item() == pytest.approx((4 * a * a / 9 + (1.0 - 0.5)) / 2, rel=1e-6)


def test_loss_scale_invariant_only_at_lambda_one():
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 8, 9, generator=g) * 5 + 0.5
    pred = torch.randn(2, 8, 9, generator=g)
    shift = math.log(3.7)  # every depth times 3.7
    one = scale_invariant_log_loss(pred, gt, 1.0)
    assert scale_invariant_log_loss(pred + shift, gt, 1.0).item() == pytest.approx(one.item())
    half = scale_invariant_log_loss(pred, gt, 0.5).item()
    assert abs(scale_invariant_log_loss(pred + shift, gt, 0.5).item() - half) > 0.1


def test_loss_ignores_invalid_pixels():
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(1, 6, 6, generator=g) + 0.5
    gt[0, :2] = 0.0
    gt[0, 3, 3] = float("nan")
    pred = torch.randn(1, 6, 6, generator=g, requires_grad=True)
    loss = scale_invariant_log_loss(pred, gt, 0.5)
    loss.backward()
    invalid = ~(gt > 0)
    assert torch.all(pred.grad[invalid] == 0) and torch.all(pred.grad[~invalid] != 0)
    other = pred.detach().clone()
    other[invalid] = 123.0
    assert scale_invariant_log_loss(other, gt, 0.5).item() == pytest.approx(loss.item())
    # An extra mask restricts further; no valid pixel at all gives a zero that backpropagates.
    mask = torch.zeros_like(gt, dtype=torch.bool)
    mask[0, 4, 4] = True
    single = scale_invariant_log_loss(pred, gt, 0.0, valid=mask)
    assert single.item() == pytest.approx((pred[0, 4, 4] - gt[0, 4, 4].log()).item() ** 2)
    zero = scale_invariant_log_loss(pred, torch.zeros_like(gt), 0.5)
    assert zero.item() == 0.0 and zero.requires_grad
    with pytest.raises(ValueError, match="lam"):
        scale_invariant_log_loss(pred, gt, 1.5)


def test_downsample_depth_averages_valid_pixels_only():
    depth = torch.tensor(
        [[1.0, 3.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [5.0, 5.0, 7.0, 0.0], [5.0, 5.0, 0.0, 9.0]]
    )
    out = downsample_depth(depth[None], (2, 2))[0]
    assert torch.allclose(out, torch.tensor([[2.0, 0.0], [5.0, 8.0]]))


# ------------------------------------------------------------------------------ networks
def test_training_lowers_the_loss_on_a_fixed_batch():
    torch.set_num_threads(1)
    model = _small_model("coarse")
    model.train()
    batch = _batch()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(25):
        loss = model(batch)["loss_depth_coarse"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_fine_phase_updates_only_fine_parameters():
    model = _small_model("fine")
    model.train()
    assert not model.head.coarse.training and model.head.fine.training
    coarse_before = {k: v.clone() for k, v in model.head.coarse.state_dict().items()}
    fine_before = {k: v.clone() for k, v in model.head.fine.state_dict().items()}
    groups = depth_param_groups(model, 1e-2, 0.0, model.head.lr_factors)
    names = {g["name"] for g in groups}
    assert names == {"fine1", "fine2", "fine3"}
    assert [g["lr"] for g in groups if g["name"] == "fine2"] == pytest.approx([0.1, 0.1])
    opt = torch.optim.SGD(groups, lr=1e-2, momentum=0.9)
    for _ in range(2):
        losses = model(_batch())
        assert set(losses) == {"loss_depth_fine"}
        opt.zero_grad()
        losses["loss_depth_fine"].backward()
        opt.step()
    for k, v in model.head.coarse.state_dict().items():
        assert torch.equal(v, coarse_before[k]), k
    assert all(not torch.equal(v, fine_before[k]) for k, v in model.head.fine.state_dict().items())


def test_joint_phase_trains_both_and_inference_returns_both_maps():
    model = _small_model("joint")
    model.train()
    losses = model(_batch(2))
    assert set(losses) == {"loss_depth_coarse", "loss_depth_fine"}
    sum(losses.values()).backward()
    assert model.head.coarse.fc1.weight.grad is not None
    model.eval()
    with torch.no_grad():
        out = model([{"image": torch.rand(3, 30, 40) * 255, "height": 30, "width": 40}])
    assert out[0]["depth"].shape == (30, 40) and out[0]["depth_coarse"].shape == (30, 40)
    assert torch.all(out[0]["depth"] > 0)


def test_bad_phase_and_input_size_raise():
    coarse = EigenCoarseNet(build_coarse_features("alexnet"), SMALL_IN, SMALL_OUT, fc_dim=8)
    with pytest.raises(ValueError, match="MODEL.DEPTH.PHASE"):
        EigenMultiScaleHead(coarse=coarse, phase="refine")
    with pytest.raises(ValueError, match="needs a fine network"):
        EigenMultiScaleHead(coarse=coarse, phase="fine")
    with pytest.raises(ValueError, match="EigenCoarseNet takes"):
        coarse(torch.zeros(1, 3, 61, 80))


# -------------------------------------------------------------------------------- config
def _synthetic_cfg(phase: str):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(CONFIG_DIR, "synthetic", f"eigen_{phase}.yaml"))
    cfg.MODEL.WEIGHTS = ""
    return cfg


def test_two_phase_flow_loads_coarse_checkpoint_into_fine_model(tmp_path):
    coarse_model = build_model(_synthetic_cfg("coarse"))
    Checkpointer(coarse_model, str(tmp_path), save_to_disk=True).save("coarse")
    fine_model = build_model(_synthetic_cfg("fine"))
    assert fine_model.head.phase == "fine"
    checkpointer = Checkpointer(fine_model)
    checkpointer.load(str(tmp_path / "coarse.pth"))
    for k, v in coarse_model.head.coarse.state_dict().items():
        assert torch.equal(fine_model.head.coarse.state_dict()[k], v), k
    missing = checkpointer.last_incompatible.missing_keys
    assert missing and all(k.startswith("head.fine.") for k in missing)
    opt = build_optimizer(_synthetic_cfg("fine"), fine_model)
    assert all(g["name"].startswith("fine") for g in opt.param_groups)


def test_configs_parse_and_grids_match():
    for dataset in ("nyu", "kitti", "synthetic"):
        for phase in ("coarse", "fine"):
            cfg = get_cfg()
            cfg.merge_from_file(os.path.join(CONFIG_DIR, dataset, f"eigen_{phase}.yaml"))
            d = cfg.MODEL.DEPTH
            assert d.PHASE == phase and cfg.MODEL.META_ARCHITECTURE == "DepthEstimator"
            assert d.PRETRAINED == ""  # default configs never download
            assert list(cfg.INPUT.DEPTH.CROP_SIZE) == list(d.INPUT_SIZE)
    # The paper's NYU sizes: the fine branch lands on the coarse 55 x 74 grid by itself.
    fine = EigenFineNet()
    x = fine.pool(fine.conv1(torch.zeros(1, 3, 228, 304)))
    assert tuple(x.shape[-2:]) == (55, 74)


def test_default_config_builds_offline_and_pretrained_fails_clearly(tmp_path, monkeypatch):
    def no_network(url, dst, timeout=0):
        raise OSError("network unreachable")

    monkeypatch.setattr(catalog, "_download", no_network)
    monkeypatch.setenv(catalog.CACHE_ENV_VAR, str(tmp_path))
    model = build_model(_synthetic_cfg("coarse"))  # no download needed
    assert isinstance(model, DepthEstimator)
    with pytest.raises(WeightsDownloadError, match="torchvision://resnet18"):
        build_coarse_features("resnet18", "torchvision://resnet18")
    with pytest.raises(ValueError, match="MODEL.DEPTH.PRETRAINED"):
        build_coarse_features("alexnet", "torchvision://alexnet")
    with pytest.raises(ValueError, match="MODEL.DEPTH.BACKBONE"):
        build_coarse_features("inception_v3")


def test_torchvision_backbone_loads_a_torchvision_state_dict(tmp_path):
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    features = build_coarse_features("resnet18", str(path))
    assert torch.equal(features.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)
    coarse = EigenCoarseNet(features, (64, 96), (16, 24), fc_dim=8)
    assert coarse.feature_shape == (512, 2, 3)


def test_fine_identity_init_reproduces_coarse_and_still_learns():
    # The "identity" init: the paper's fine layers output their coarse input exactly (for any
    # image), and every layer still receives gradients, so training starts at the coarse result.
    torch.manual_seed(0)
    fine = EigenFineNet(init="identity")
    images = torch.randn(2, 3, 114, 152)
    coarse = torch.randn(2, 26, 36) * 0.5 + 0.9
    out = fine(images, coarse)
    torch.testing.assert_close(out, coarse, rtol=0, atol=1e-5)
    target = coarse + torch.randn_like(coarse) * 0.1
    opt = torch.optim.SGD(fine.parameters(), lr=1e-4)
    for _ in range(2):  # step 1 moves conv3; from step 2 on every layer has gradients
        opt.zero_grad()
        ((fine(images, coarse) - target) ** 2).mean().backward()
        opt.step()
    for name, p in fine.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    random_init = EigenFineNet(init="random", init_log_depth=0.9)
    assert (random_init(images, coarse) - coarse).abs().mean() > 0.1
    with pytest.raises(ValueError, match="init"):
        EigenFineNet(init="zeros")
