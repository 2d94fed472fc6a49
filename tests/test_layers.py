import math
import pickle

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from meshrecon.layers import (
    Conv2d,
    ConvTranspose2d,
    FrozenBatchNorm2d,
    LayerNorm,
    ROIAlign,
    ShapeSpec,
    cat,
    get_norm,
    nonzero_tuple,
    shapes_to_tensor,
)


def _random_bn(c, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(c, eps=1e-3).to(dtype)
    with torch.no_grad():
        bn.weight.copy_(torch.randn(c, generator=g))
        bn.bias.copy_(torch.randn(c, generator=g))
        bn.running_mean.copy_(torch.randn(c, generator=g))
        bn.running_var.copy_(torch.rand(c, generator=g) + 0.1)
    return bn.eval()


# ------------------------------------------------------------------ FrozenBatchNorm2d


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_frozen_bn_equals_eval_batchnorm(dtype):
    bn = _random_bn(6, dtype=dtype)
    frozen = FrozenBatchNorm2d(6, eps=bn.eps).to(dtype)
    frozen.weight.copy_(bn.weight.detach())
    frozen.bias.copy_(bn.bias.detach())
    frozen.running_mean.copy_(bn.running_mean)
    frozen.running_var.copy_(bn.running_var)
    x = torch.randn(3, 6, 5, 7, dtype=dtype, generator=torch.Generator().manual_seed(1))
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    out = frozen(x)
    assert out.dtype == dtype
    torch.testing.assert_close(out, bn(x), rtol=tol, atol=tol)
    # The formula itself, written out.
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    ref = (x - bn.running_mean[:, None, None]) * scale[:, None, None] + bn.bias[:, None, None]
    torch.testing.assert_close(out, ref.detach(), rtol=tol, atol=tol)
    # With a gradient-requiring input the result is the same.
    torch.testing.assert_close(frozen(x.clone().requires_grad_()).detach(), out)


def test_frozen_bn_gradcheck_double():
    frozen = FrozenBatchNorm2d(3).double()
    bn = _random_bn(3, seed=2, dtype=torch.float64)
    frozen.load_state_dict(bn.state_dict())
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(frozen, (x,))
    assert not any(p.requires_grad for p in frozen.buffers())
    assert list(frozen.parameters()) == []


def test_convert_frozen_batchnorm_nested_and_top_level():
    net = nn.Sequential(nn.Conv2d(2, 4, 3), _random_bn(4, seed=3), nn.ReLU())
    net.eval()
    x = torch.randn(2, 2, 6, 6)
    expected = net(x)
    converted = FrozenBatchNorm2d.convert_frozen_batchnorm(net)
    assert converted is net and isinstance(net[1], FrozenBatchNorm2d)
    assert net[1].eps == 1e-3
    torch.testing.assert_close(net(x), expected)
    bn = _random_bn(4, seed=4)
    frozen = FrozenBatchNorm2d.convert_frozen_batchnorm(bn)
    assert isinstance(frozen, FrozenBatchNorm2d)
    torch.testing.assert_close(frozen(x.new_ones(1, 4, 2, 2)), bn(x.new_ones(1, 4, 2, 2)))
    # The copy does not alias the original's tensors.
    frozen.running_mean.add_(1.0)
    assert not torch.equal(frozen.running_mean, bn.running_mean)


def test_frozen_bn_loads_caffe2_weights_without_running_stats():
    # Caffe2 / MSRA backbones fold the statistics into weight and bias: only those two, and
    # no version metadata in the (plain) state_dict.
    frozen = FrozenBatchNorm2d(4)
    frozen.running_mean.fill_(5.0)
    frozen.running_var.fill_(7.0)
    w, b = torch.rand(4) + 0.5, torch.randn(4)
    result = frozen.load_state_dict({"weight": w, "bias": b}, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(frozen.running_mean, torch.zeros(4))
    assert torch.equal(frozen.running_var, torch.ones(4))
    x = torch.randn(2, 4, 3, 3)
    expected = x * (w / math.sqrt(1 + frozen.eps))[:, None, None] + b[:, None, None]
    torch.testing.assert_close(frozen(x), expected)


def test_frozen_bn_loads_batchnorm_and_detectron2_state_dicts():
    bn = _random_bn(5, seed=5)
    # From a trainable BatchNorm2d: num_batches_tracked is ignored, not "unexpected".
    frozen = FrozenBatchNorm2d(5, eps=bn.eps)
    result = frozen.load_state_dict(bn.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(2, 5, 3, 3)
    torch.testing.assert_close(frozen(x), bn(x))
    # A saved FrozenBatchNorm2d (version 3 metadata) round-trips with its statistics intact,
    # also through pickle as Detectron2 .pkl files store them.
    restored = FrozenBatchNorm2d(5, eps=bn.eps)
    state = pickle.loads(pickle.dumps(frozen.state_dict()))
    assert state._metadata[""]["version"] == 3
    restored.load_state_dict(state)
    torch.testing.assert_close(restored(x), bn(x))
    assert set(frozen.state_dict()) == {"weight", "bias", "running_mean", "running_var"}


def test_frozen_bn_rejects_bad_num_features():
    with pytest.raises(ValueError, match="num_features"):
        FrozenBatchNorm2d(0)


def test_get_norm():
    assert get_norm("", 8) is None and get_norm(None, 8) is None
    assert isinstance(get_norm("BN", 8), nn.BatchNorm2d)
    assert isinstance(get_norm("FrozenBN", 8), FrozenBatchNorm2d)
    gn = get_norm("GN", 64)
    assert isinstance(gn, nn.GroupNorm) and gn.num_groups == 32 and gn.num_channels == 64
    assert isinstance(get_norm("SyncBN", 8), nn.SyncBatchNorm)
    assert isinstance(get_norm("LN", 8), LayerNorm)
    custom = get_norm(lambda c: nn.GroupNorm(2, c), 8)
    assert custom.num_groups == 2
    with pytest.raises(ValueError, match="norm='BatchNorm'"):
        get_norm("BatchNorm", 8)


def test_layer_norm_normalizes_channels_per_pixel():
    ln = LayerNorm(6)
    with torch.no_grad():
        ln.weight.copy_(torch.arange(1.0, 7.0))
        ln.bias.fill_(0.5)
    x = torch.randn(2, 6, 3, 4)
    ref = F.layer_norm(x.permute(0, 2, 3, 1), (6,), ln.weight, ln.bias, eps=ln.eps)
    torch.testing.assert_close(ln(x), ref.permute(0, 3, 1, 2).detach())


# ------------------------------------------------------------------ wrappers


def test_conv2d_with_norm_and_activation():
    torch.manual_seed(0)
    norm = _random_bn(4, seed=6)
    conv = Conv2d(3, 4, kernel_size=3, padding=1, bias=False, norm=norm, activation=F.relu)
    assert list(conv.state_dict()) == [
        "weight",
        "norm.weight",
        "norm.bias",
        "norm.running_mean",
        "norm.running_var",
        "norm.num_batches_tracked",
    ]
    x = torch.randn(2, 3, 5, 5)
    ref = F.relu(norm(F.conv2d(x, conv.weight, padding=1)))
    torch.testing.assert_close(conv(x), ref)
    plain = Conv2d(3, 4, 1)
    torch.testing.assert_close(plain(x), F.conv2d(x, plain.weight, plain.bias))
    # Empty batches go through (the RPN / ROI heads see them).
    assert conv(x[:0]).shape == (0, 4, 5, 5)


@pytest.mark.parametrize("conv_bias", [False, True])
def test_conv2d_folds_frozen_bn_exactly_with_same_gradients(conv_bias):
    # The folded convolution (kernel * scale, shift as bias) equals conv followed by the frozen
    # norm, and gradients reach the input and the kernel as through the two separate ops.
    torch.manual_seed(0)
    norm = FrozenBatchNorm2d(4, eps=1e-3)
    norm.weight.uniform_(0.5, 2.0)
    norm.bias.normal_()
    norm.running_mean.normal_()
    norm.running_var.uniform_(0.2, 3.0)
    conv = Conv2d(3, 4, 3, padding=1, bias=conv_bias, norm=norm).double()
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    out = conv(x)
    ref = norm(F.conv2d(x, conv.weight, conv.bias, padding=1))
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    g_out = torch.randn_like(out)
    gx, gw = torch.autograd.grad(out, (x, conv.weight), g_out)
    rx, rw = torch.autograd.grad(ref, (x, conv.weight), g_out)
    torch.testing.assert_close(gx, rx, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gw, rw, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda t: conv(t), (x[:1, :, :4, :4].detach().requires_grad_(),)
    )
    scale, shift = norm.scale_and_shift()
    y = torch.randn(1, 4, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(norm(y), y * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1))


def test_conv_transpose2d_is_torch():
    deconv = ConvTranspose2d(4, 2, kernel_size=2, stride=2)
    assert deconv(torch.randn(1, 4, 3, 3)).shape == (1, 2, 6, 6)


def test_cat_nonzero_tuple_shapes_to_tensor():
    a = torch.randn(2, 3)
    assert cat([a]) is a
    torch.testing.assert_close(cat([a, a], dim=1), torch.cat([a, a], 1))
    with pytest.raises(ValueError, match="tensors"):
        cat([])
    x = torch.tensor([[0, 1], [2, 0]])
    rows, cols = nonzero_tuple(x)
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]
    (idx,) = nonzero_tuple(torch.tensor(3))
    assert idx.tolist() == [0]
    (idx,) = nonzero_tuple(torch.tensor(0))
    assert idx.numel() == 0
    t = shapes_to_tensor([3, 4])
    assert t.dtype == torch.int64 and t.tolist() == [3, 4]
    assert shapes_to_tensor([torch.tensor(5), torch.tensor(6)]).tolist() == [5, 6]


def test_shape_spec():
    s = ShapeSpec(channels=256, stride=4)
    assert (s.channels, s.height, s.width, s.stride) == (256, None, None, 4)
    assert s == ShapeSpec(256, None, None, 4)
    with pytest.raises(AttributeError):
        s.channels = 3


# ------------------------------------------------------------------ ROIAlign


def _bilinear(feat, y, x):
    """One bilinear sample of ``feat (C, H, W)`` with ROIAlign's border rules."""
    _, h, w = feat.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return feat.new_zeros(feat.shape[0])
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    return (
        (1 - ly) * (1 - lx) * feat[:, y0, x0]
        + (1 - ly) * lx * feat[:, y0, x1]
        + ly * (1 - lx) * feat[:, y1, x0]
        + ly * lx * feat[:, y1, x1]
    )


def _naive_roi_align(feats, rois, out_hw, scale, ratio, aligned):
    out = feats.new_zeros(len(rois), feats.shape[1], *out_hw)
    offset = 0.5 if aligned else 0.0
    for r, (b, x0, y0, x1, y1) in enumerate(rois.tolist()):
        sx, sy = x0 * scale - offset, y0 * scale - offset
        rw, rh = x1 * scale - offset - sx, y1 * scale - offset - sy
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / out_hw[0], rw / out_hw[1]
        gh = ratio if ratio > 0 else math.ceil(rh / out_hw[0])
        gw = ratio if ratio > 0 else math.ceil(rw / out_hw[1])
        for ph in range(out_hw[0]):
            for pw in range(out_hw[1]):
                acc = feats.new_zeros(feats.shape[1])
                for iy in range(gh):
                    for ix in range(gw):
                        y = sy + ph * bh + (iy + 0.5) * bh / gh
                        x = sx + pw * bw + (ix + 0.5) * bw / gw
                        acc += _bilinear(feats[int(b)], y, x)
                out[r, :, ph, pw] = acc / max(gh * gw, 1)
    return out


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("ratio", [0, 2])
def test_roi_align_matches_naive_reference(aligned, ratio):
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 3, 9, 11, dtype=torch.float64, generator=g)
    rois = torch.tensor(
        [
            [0, 1.3, 2.2, 20.5, 15.0],
            [1, 0.0, 0.0, 43.9, 35.9],  # whole image
            [1, 30.0, 5.0, 31.0, 5.5],  # smaller than a feature pixel
            [0, -6.0, -3.0, 10.0, 50.0],  # partly outside
        ],
        dtype=torch.float64,
    )
    pooler = ROIAlign((3, 4), spatial_scale=0.25, sampling_ratio=ratio, aligned=aligned)
    out = pooler(feats, rois)
    assert out.shape == (4, 3, 3, 4) and out.dtype == torch.float64
    ref = _naive_roi_align(feats, rois, (3, 4), 0.25, ratio, aligned)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


def test_roi_align_aligned_flag_matters_and_validates():
    feats = torch.randn(1, 2, 8, 8)
    rois = torch.tensor([[0, 1.0, 1.0, 5.0, 6.0]])
    a = ROIAlign(2, 1.0, 2, aligned=True)(feats, rois)
    b = ROIAlign(2, 1.0, 2, aligned=False)(feats, rois)
    assert a.shape == (1, 2, 2, 2) and not torch.allclose(a, b)
    assert "aligned=True" in repr(ROIAlign(2, 1.0, 2))
    with pytest.raises(ValueError, match="rois"):
        ROIAlign(2, 1.0, 2)(feats, rois[:, 1:])
    with pytest.raises(ValueError, match="input"):
        ROIAlign(2, 1.0, 2)(feats[0], rois)
    with pytest.raises(ValueError, match="spatial_scale"):
        ROIAlign(2, 0.0, 2)
    with pytest.raises(ValueError, match="output_size"):
        ROIAlign((2, 0), 1.0, 2)
    with pytest.raises(ValueError, match="sampling_ratio"):
        ROIAlign(2, 1.0, -1)


_EDGE_ROIS = [
    [0, 1.3, 2.2, 20.5, 15.0],
    [1, 0.0, 0.0, 43.9, 35.9],  # whole image
    [1, 30.0, 5.0, 31.0, 5.5],  # smaller than a feature pixel
    [0, -6.0, -3.0, 10.0, 50.0],  # partly outside
    [1, -30.0, -30.0, -10.0, -12.0],  # wholly outside: reads nothing
    [0, 38.0, 30.0, 44.0, 36.0],  # on the last row and column
]


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("ratio", [1, 2, 3])
def test_roi_align_gradient_matches_naive_reference_and_torchvision(aligned, ratio):
    from torchvision.ops import roi_align

    g = torch.Generator().manual_seed(ratio)
    feats = torch.randn(2, 3, 9, 11, dtype=torch.float64, generator=g)
    rois = torch.tensor(_EDGE_ROIS, dtype=torch.float64)
    grad_out = torch.randn(len(rois), 3, 3, 4, dtype=torch.float64, generator=g)
    grads = []
    for fn in (
        lambda f: ROIAlign((3, 4), 0.25, ratio, aligned)(f, rois),
        lambda f: _naive_roi_align(f, rois, (3, 4), 0.25, ratio, aligned),
        lambda f: roi_align(f, rois, (3, 4), 0.25, ratio, aligned),
    ):
        f = feats.clone().requires_grad_()
        fn(f).backward(grad_out)
        grads.append(f.grad)
    ours, naive, torchvision = grads
    torch.testing.assert_close(ours, naive, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ours, torchvision, rtol=1e-10, atol=1e-10)
    # ROIAlign is linear in its input, so gradcheck's finite differences are exact.
    f = feats.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x: ROIAlign((3, 4), 0.25, ratio, aligned)(x, rois), f, fast_mode=True
    )


def test_roi_align_float32_gradient_and_empty_rois():
    from torchvision.ops import roi_align

    g = torch.Generator().manual_seed(0)
    feats = torch.randn(3, 16, 20, 24, generator=g)
    boxes = torch.rand(50, 2, generator=g) * 90 - 5
    rois = torch.cat([torch.randint(0, 3, (50, 1), generator=g).float(), boxes, boxes + 30], 1)
    grad_out = torch.randn(50, 16, 7, 7, generator=g)
    a, b = feats.clone().requires_grad_(), feats.clone().requires_grad_()
    out = ROIAlign(7, 0.25, 2, aligned=False)(a, rois)
    torch.testing.assert_close(out, roi_align(b, rois, 7, 0.25, 2, False), rtol=0, atol=0)
    out.backward(grad_out)
    roi_align(b, rois, 7, 0.25, 2, False).backward(grad_out)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-5)
    empty = feats.clone().requires_grad_()
    ROIAlign(7, 0.25, 2)(empty, rois[:0]).sum().backward()
    assert torch.equal(empty.grad, torch.zeros_like(feats))
