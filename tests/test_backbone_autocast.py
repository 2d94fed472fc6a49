"""MODEL.BACKBONE.AUTOCAST: the image encoder computes in bfloat16, the rest in float32."""

import pytest
import torch

from meshrecon.config import get_cfg
from meshrecon.modeling.backbone import build_backbone


def _cfg(name: str, autocast: str):
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = name
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.BACKBONE.AUTOCAST = autocast
    if name == "build_resnet_fpn_backbone":
        cfg.MODEL.RESNETS.DEPTH = 18
        cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
        cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
        cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
        cfg.MODEL.FPN.OUT_CHANNELS = 32
    return cfg


def _pair(name: str):
    """The same weights built twice: float32, and with the bfloat16 autocast."""
    torch.manual_seed(0)
    plain = build_backbone(_cfg(name, "")).train()
    mixed = build_backbone(_cfg(name, "bfloat16")).train()
    mixed.load_state_dict(plain.state_dict())
    return plain, mixed


@pytest.mark.parametrize("name", ["resnet18", "build_resnet_fpn_backbone"])
def test_bfloat16_backbone_gives_float32_features_close_to_float32(name):
    plain, mixed = _pair(name)
    assert plain.autocast_dtype is None and mixed.autocast_dtype is torch.bfloat16
    # Record what the convolutions computed in: the autocast must reach inside (the FPN's
    # bottom-up network included) and must not outlive the call.
    conv_dtypes = []
    for m in mixed.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(lambda _m, _i, out: conv_dtypes.append(out.dtype))
    x = torch.randn(2, 3, 64, 64)
    ref = plain(x)
    got = mixed(x)
    assert conv_dtypes and set(conv_dtypes) == {torch.bfloat16}
    assert not torch.is_autocast_enabled("cpu")
    assert list(got) == list(ref)
    for k in ref:
        assert got[k].dtype == torch.float32 and got[k].shape == ref[k].shape
        rel = (got[k] - ref[k]).norm() / ref[k].norm()
        # bfloat16 keeps 8 bits of mantissa: about 0.4% per op, a few % after ~20 layers.
        assert 0 < rel < 0.05, (k, rel)


def test_bfloat16_backbone_gradients_are_float32_and_agree():
    # In eval mode (BatchNorm with fixed statistics): in train mode a batch of two normalizes
    # the gradients into mostly cancelling parts, and the comparison would measure that.
    plain, mixed = _pair("resnet18")
    plain.eval(), mixed.eval()
    x = torch.randn(2, 3, 64, 64)
    for net in (plain, mixed):
        sum(f.square().mean() for f in net(x).values()).backward()
    for k, q in mixed.named_parameters():
        assert q.dtype == torch.float32 and q.grad.dtype == torch.float32, k
    g_ref = torch.cat([p.grad.flatten() for p in plain.parameters()]).double()
    g_mix = torch.cat([p.grad.flatten() for p in mixed.parameters()]).double()
    cos = torch.nn.functional.cosine_similarity(g_ref, g_mix, dim=0)
    assert 0.99 < cos < 1 + 1e-9


def test_autocast_leaves_float64_alone():
    # Autocast only touches float32 inputs: double-precision checks (gradcheck, golden parity in
    # float64) compute exactly as without it.
    plain, mixed = _pair("resnet18")
    plain.double(), mixed.double()
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    a, b = plain.eval()(x), mixed.eval()(x)
    for k in a:
        assert b[k].dtype == torch.float64
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0)


def test_unknown_autocast_dtype_is_named():
    with pytest.raises(ValueError, match=r"MODEL\.BACKBONE\.AUTOCAST='float8'.*bfloat16"):
        build_backbone(_cfg("resnet18", "float8"))


def test_auto_picks_bfloat16_only_where_the_hardware_has_it(monkeypatch):
    from meshrecon.utils import precision

    for native, expected in ((True, torch.bfloat16), (False, None)):
        monkeypatch.setattr(precision, "has_native_bfloat16", lambda device, n=native: n)
        assert build_backbone(_cfg("resnet18", "auto")).autocast_dtype is expected
    assert build_backbone(_cfg("resnet18", "")).autocast_dtype is None


def test_has_native_bfloat16_reads_the_cpu_flags(monkeypatch):
    from meshrecon.utils.precision import has_native_bfloat16

    for bf16, amx in ((True, False), (False, True), (False, False)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=bf16: v, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v, raising=False)
        assert has_native_bfloat16("cpu") is (bf16 or amx)
    assert has_native_bfloat16("meta") is False
    if not torch.cuda.is_available():
        assert has_native_bfloat16("cuda") is False


def test_call_in_dtype_computes_low_and_returns_float32_through_containers():
    from collections import OrderedDict

    from meshrecon.utils.precision import call_in_dtype

    seen = {}
    weight = torch.randn(8, 8)
    index = torch.arange(3)

    def fn(x, *, scale):
        y = (x @ weight) * scale  # a matmul: autocast computes it in the low dtype
        seen["dtype"] = y.dtype
        return OrderedDict(a=y, nested=[y, (y, index)], n=7)

    x = torch.randn(4, 8)
    out = call_in_dtype(fn, torch.bfloat16, "cpu", x, scale=2.0)
    assert seen["dtype"] == torch.bfloat16
    assert isinstance(out, OrderedDict) and list(out) == ["a", "nested", "n"]
    assert out["a"].dtype == torch.float32
    assert isinstance(out["nested"], list) and isinstance(out["nested"][1], tuple)
    assert out["nested"][0].dtype == out["nested"][1][0].dtype == torch.float32
    assert out["nested"][1][1] is index  # tensors of other dtypes pass through untouched
    assert out["n"] == 7
    expected = (x @ weight) * 2.0
    torch.testing.assert_close(out["a"], expected, atol=0.1, rtol=0.05)
    assert not torch.equal(out["a"], expected)  # really computed in bfloat16

    plain = call_in_dtype(fn, None, "cpu", x, scale=2.0)  # no dtype: a plain float32 call
    assert seen["dtype"] == torch.float32
    assert torch.equal(plain["a"], expected)

    x64 = x.double()  # autocast leaves float64 alone: bit-equal to the plain call
    weight64 = weight.double()
    out64 = call_in_dtype(lambda t: t @ weight64, torch.bfloat16, "cpu", x64)
    assert out64.dtype == torch.float64 and torch.equal(out64, x64 @ weight64)
