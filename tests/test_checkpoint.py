import logging
import os
import pickle
import urllib.error
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from meshrecon.checkpoint import (
    Checkpointer,
    PeriodicCheckpointer,
    UnsafePickleError,
    WeightsDownloadError,
    cache_path_for_url,
    catalog,
    format_incompatible_keys,
    resolve_url,
)


def _net(seed=0, out=3):
    torch.manual_seed(seed)
    return nn.Sequential(
        OrderedDict(conv=nn.Conv2d(2, 4, 3), bn=nn.BatchNorm2d(4), fc=nn.Linear(4, out))
    )


class _Detector(nn.Module):
    """Names like a detector's: the pretrained parts sit under a prefix."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.bottom_up = nn.Module()
        stem = nn.Module()
        stem.conv1 = nn.Conv2d(3, 4, 3, bias=False)
        stem.conv1.norm = nn.BatchNorm2d(4)
        self.backbone.bottom_up.stem = stem
        res2 = nn.Module()
        res2.conv1 = nn.Conv2d(4, 4, 1)
        self.backbone.bottom_up.res2 = nn.ModuleList([res2])
        self.head = nn.Linear(4, 2)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """A private cache dir, and any attempt to reach a host fails at once."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("MESHRECON_CACHE", str(cache))
    calls = []

    def no_network(url, dst, timeout=0):
        calls.append(url)
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(catalog, "_download", no_network)

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to open a URL")

    monkeypatch.setattr(catalog.urllib.request, "urlopen", refuse)
    return calls


# ---------------------------------------------------------------- save / resume


def test_save_load_round_trip_with_optimizer_and_extra(tmp_path):
    model = _net(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.fc.weight.grad = torch.ones_like(model.fc.weight)
    opt.step()
    ckpt = Checkpointer(model, str(tmp_path), optimizer=opt)
    ckpt.save("model_0000009", iteration=9, note="x")
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"
    assert ckpt.has_checkpoint() and ckpt.get_checkpoint_file() == str(
        tmp_path / "model_0000009.pth"
    )
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000009.pth"]

    fresh = _net(1)
    fresh_opt = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    extra = Checkpointer(fresh, str(tmp_path), optimizer=fresh_opt).resume_or_load("", resume=True)
    assert extra == {"iteration": 9, "note": "x"}
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    assert fresh_opt.state_dict()["state"].keys() == opt.state_dict()["state"].keys()
    assert torch.equal(
        fresh_opt.state_dict()["state"][4]["momentum_buffer"],
        opt.state_dict()["state"][4]["momentum_buffer"],
    )


def test_resume_false_loads_only_the_model(tmp_path):
    model = _net(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    Checkpointer(model, str(tmp_path), optimizer=opt).save("a", iteration=3)
    other_opt = torch.optim.SGD(_net(1).parameters(), lr=0.01)
    fresh = _net(1)
    extra = Checkpointer(fresh, str(tmp_path / "elsewhere"), optimizer=other_opt).resume_or_load(
        str(tmp_path / "a.pth"), resume=False
    )
    assert extra["iteration"] == 3 and "optimizer" in extra  # not restored, handed back
    assert other_opt.param_groups[0]["lr"] == 0.01
    assert torch.equal(fresh.fc.weight, model.fc.weight)


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model = _net(0)
    ckpt = Checkpointer(model, str(tmp_path))
    ckpt.save("model_final")
    before = (tmp_path / "model_final.pth").read_bytes()

    def crash(obj, f, *a, **k):
        f.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        ckpt.save("model_final")
    assert (tmp_path / "model_final.pth").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_final.pth"]


def test_periodic_checkpointer_and_ddp_unwrap(tmp_path):
    model = _net(0)
    wrapped = nn.DataParallel(model)
    ckpt = Checkpointer(wrapped, str(tmp_path))
    assert ckpt.model is model
    periodic = PeriodicCheckpointer(ckpt, period=2, max_iter=6, max_to_keep=2)
    for it in range(6):
        periodic.step(it)
    names = sorted(f for f in os.listdir(tmp_path) if f.endswith(".pth"))
    assert names == ["model_0000003.pth", "model_0000005.pth", "model_final.pth"]
    state = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert state["iteration"] == 5 and not any(k.startswith("module.") for k in state["model"])


def test_save_without_dir_or_on_non_main_does_nothing(tmp_path):
    Checkpointer(_net(), "").save("x")
    Checkpointer(_net(), str(tmp_path), save_to_disk=False).save("x")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- formats


def test_module_prefix_and_shape_mismatch_are_reported_not_fatal(tmp_path, caplog):
    src = _net(0, out=5)
    sd = {"module." + k: v for k, v in src.state_dict().items()}
    sd["module.extra.weight"] = torch.zeros(2)
    torch.save({"model": sd}, tmp_path / "w.pth")
    dst = _net(1, out=3)
    fc_before = dst.fc.weight.clone()
    ckpt = Checkpointer(dst)
    with caplog.at_level(logging.WARNING):
        assert ckpt.load(str(tmp_path / "w.pth")) == {}
    assert torch.equal(dst.conv.weight, src.conv.weight)
    assert torch.equal(dst.fc.weight, fc_before)  # skipped, kept its init
    inc = ckpt.last_incompatible
    assert ("fc.weight", (5, 4), (3, 4)) in inc.incorrect_shapes
    assert "extra.weight" in inc.unexpected_keys and "fc.weight" in inc.missing_keys
    assert "shape mismatch | fc.weight" in caplog.text and "(5, 4)" in caplog.text


def test_format_incompatible_keys_table():
    from fvcore.common.checkpoint import _IncompatibleKeys

    table = format_incompatible_keys(
        _IncompatibleKeys(["a.w"], ["zz"], [("fc.weight", (5, 4), (3, 4))])
    )
    lines = table.splitlines()
    assert lines[0].split(" | ") == ["status        ", "key      ", "in checkpoint", "in model"]
    assert lines[2].split(" | ") == ["shape mismatch", "fc.weight", "(5, 4)       ", "(3, 4)"]
    assert lines[3].startswith("missing        | a.w") and lines[4].startswith(
        "unexpected     | zz"
    )
    assert format_incompatible_keys(_IncompatibleKeys([], [], [])) == ""


def test_detectron2_pkl_loads(tmp_path):
    src = _net(0)
    blobs = {k: v.numpy() for k, v in src.state_dict().items()}
    with open(tmp_path / "model_final.pkl", "wb") as f:
        pickle.dump({"model": blobs, "__author__": "Detectron2 Model Zoo"}, f, protocol=2)
    dst = _net(1)
    extra = Checkpointer(dst).load(str(tmp_path / "model_final.pkl"))
    assert extra == {}
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k


def test_pkl_matching_heuristics_aligns_suffixes(tmp_path):
    det = _Detector()
    blobs = {
        "stem.conv1.weight": np.full((4, 3, 3, 3), 2.0, np.float32),
        "stem.conv1.norm.running_var": np.full((4,), 3.0, np.float32),
        "res2.0.conv1.weight": np.full((4, 4, 1, 1), 5.0, np.float32),
        "fc1000.weight": np.zeros((10, 4), np.float32),
    }
    with open(tmp_path / "r.pkl", "wb") as f:
        pickle.dump({"model": blobs, "__author__": "x", "matching_heuristics": True}, f)
    ckpt = Checkpointer(det)
    ckpt.load(str(tmp_path / "r.pkl"))
    bu = det.backbone.bottom_up
    assert (bu.stem.conv1.weight == 2).all() and (bu.stem.conv1.norm.running_var == 3).all()
    assert (bu.res2[0].conv1.weight == 5).all()
    assert "fc1000.weight" in ckpt.last_incompatible.unexpected_keys
    assert "head.weight" in ckpt.last_incompatible.missing_keys


def test_caffe2_blob_names_are_converted(tmp_path):
    det = _Detector()
    blobs = {
        "conv1_w": np.full((4, 3, 3, 3), 1.5, np.float32),
        "res_conv1_bn_s": np.full((4,), 0.5, np.float32),
        "res_conv1_bn_b": np.full((4,), 0.25, np.float32),
        "res2_0_branch2a_w": np.full((4, 4, 1, 1), 7.0, np.float32),
        "res2_0_branch2a_b_momentum": np.zeros((4,), np.float32),
    }
    with open(tmp_path / "R-50.pkl", "wb") as f:
        pickle.dump({"blobs": blobs}, f)
    ckpt = Checkpointer(det)
    ckpt.load(str(tmp_path / "R-50.pkl"))
    bu = det.backbone.bottom_up
    assert (bu.stem.conv1.weight == 1.5).all()
    assert (bu.stem.conv1.norm.weight == 0.5).all() and (bu.stem.conv1.norm.bias == 0.25).all()
    assert (bu.res2[0].conv1.weight == 7).all()


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pkl_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"model": {"w": _Evil(marker)}, "__author__": "x"}, f)
    with pytest.raises(UnsafePickleError) as e:
        Checkpointer(_net()).load(str(tmp_path / "evil.pkl"))
    assert "system" in str(e.value) and "evil.pkl" in str(e.value)
    assert not marker.exists()


def test_crafted_pth_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"model": {}, "x": _Evil(marker)}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="weights_only"):
        Checkpointer(_net()).load(str(tmp_path / "evil.pth"))
    assert not marker.exists()


def test_pth_with_numpy_values_loads(tmp_path):
    src = _net(0)
    torch.save({"model": src.state_dict(), "metrics": np.arange(3.0)}, tmp_path / "m.pth")
    extra = Checkpointer(_net(1)).load(str(tmp_path / "m.pth"))
    np.testing.assert_array_equal(extra["metrics"], np.arange(3.0))


def test_plain_state_dict_with_rename_hook(tmp_path):
    # A torchvision-style file: its own names, no "model" entry.
    torch.save(
        {
            "conv1.weight": torch.full((4, 3, 3, 3), 9.0),
            "layer1.0.conv1.weight": torch.ones(4, 4, 1, 1),
        },
        tmp_path / "tv.pth",
    )
    seen = []

    def hook(sd, source):
        seen.append(source)
        return {
            k.replace("conv1.weight", "stem.conv1.weight", 1)
            if k == "conv1.weight"
            else k.replace("layer1.", "res2."): v
            for k, v in sd.items()
        }

    det = _Detector()
    Checkpointer(det, rename_hook=hook).load(str(tmp_path / "tv.pth"))
    assert seen == ["state_dict"]
    assert (det.backbone.bottom_up.stem.conv1.weight == 9).all()
    assert (det.backbone.bottom_up.res2[0].conv1.weight == 1).all()


def test_plain_state_dict_without_hook_loads_exact_names(tmp_path):
    src = _net(0)
    torch.save(src.state_dict(), tmp_path / "sd.pth")
    dst = _net(1)
    Checkpointer(dst).load(str(tmp_path / "sd.pth"))
    assert torch.equal(dst.fc.bias, src.fc.bias)


def test_ambiguous_suffix_match_is_an_error(tmp_path):
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 2)
            self.b = nn.Linear(2, 2)

    with open(tmp_path / "amb.pkl", "wb") as f:
        pickle.dump(
            {
                "model": {"weight": np.zeros((2, 2), np.float32)},
                "__author__": "x",
                "matching_heuristics": True,
            },
            f,
        )
    with pytest.raises(ValueError, match="matches two model keys"):
        Checkpointer(Two()).load(str(tmp_path / "amb.pkl"))


def test_missing_file_error_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        Checkpointer(_net()).load(str(tmp_path / "nope.pth"))


# ---------------------------------------------------------------- URLs


def test_prefixes_resolve_to_model_zoo_urls():
    assert resolve_url("meshrcnn://meshrcnn_R50.pth") == (
        "https://dl.fbaipublicfiles.com/meshrcnn/pix3d/meshrcnn_R50.pth"
    )
    assert resolve_url("shapenet://voxmesh_R50.pth") == (
        "https://dl.fbaipublicfiles.com/meshrcnn/shapenet/voxmesh_R50.pth"
    )
    assert resolve_url("detectron2://ImageNetPretrained/MSRA/R-50.pkl") == (
        "https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-50.pkl"
    )
    expected = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.url
    assert resolve_url("torchvision://resnet50") == expected
    assert resolve_url("torchvision://resnet50.IMAGENET1K_V2") == (
        torchvision.models.ResNet50_Weights.IMAGENET1K_V2.url
    )
    assert resolve_url("/some/local/file.pth") == "/some/local/file.pth"
    with pytest.raises(ValueError, match="resnet50"):
        resolve_url("torchvision://resnet5O")


def test_offline_error_names_url_and_path_then_manual_file_works(tmp_path, offline):
    src = _net(0)
    url = "meshrcnn://tiny_test_model.pth"
    with pytest.raises(WeightsDownloadError) as e:
        Checkpointer(_net(1)).load(url)
    expected_path = cache_path_for_url(resolve_url(url))
    assert expected_path.startswith(str(tmp_path / "cache"))
    msg = str(e.value)
    assert "https://dl.fbaipublicfiles.com/meshrcnn/pix3d/tiny_test_model.pth" in msg
    assert expected_path in msg and url in msg
    assert offline == ["https://dl.fbaipublicfiles.com/meshrcnn/pix3d/tiny_test_model.pth"]

    # Put the file where the message says; the same URL now loads, with no download attempt.
    os.makedirs(os.path.dirname(expected_path))
    torch.save({"model": src.state_dict()}, expected_path)
    dst = _net(1)
    Checkpointer(dst).load(url)
    assert torch.equal(dst.fc.weight, src.fc.weight)
    assert len(offline) == 1


def test_torchvision_prefix_offline_with_manual_file(offline):
    path = cache_path_for_url(resolve_url("torchvision://resnet18"))
    with pytest.raises(WeightsDownloadError, match="resnet18"):
        Checkpointer(_net()).load("torchvision://resnet18")
    os.makedirs(os.path.dirname(path))
    src = _net(3)
    torch.save(src.state_dict(), path)
    dst = _net(4)
    Checkpointer(dst).load("torchvision://resnet18")
    assert torch.equal(dst.conv.weight, src.conv.weight)


def test_download_is_atomic_and_cached(tmp_path, monkeypatch):
    # file:// exercises the real downloader without any network.
    payload = tmp_path / "remote.bin"
    payload.write_bytes(b"weights" * 1000)
    dst = tmp_path / "got.bin"
    catalog._download(payload.as_uri(), str(dst))
    assert dst.read_bytes() == payload.read_bytes()

    # A download that fails half-way leaves neither the file nor a temp file in the cache.
    monkeypatch.setenv("MESHRECON_CACHE", str(tmp_path / "cache"))

    def broken(url, dst, timeout=0):
        with open(dst, "wb") as f:
            f.write(b"partial")
        raise urllib.error.URLError("connection reset")

    monkeypatch.setattr(catalog, "_download", broken)
    with pytest.raises(WeightsDownloadError, match="connection reset"):
        catalog.PathManager.get_local_path("https://host.example/sub/remote.bin")
    assert os.listdir(tmp_path / "cache") == []


def test_cache_dir_env_var(monkeypatch, tmp_path):
    monkeypatch.setenv("MESHRECON_CACHE", str(tmp_path))
    assert cache_path_for_url("https://host.example/a/b/c.pth") == str(
        tmp_path / "a" / "b" / "c.pth"
    )
    with pytest.raises(ValueError, match="does not name a file"):
        cache_path_for_url("https://host.example/a/")
