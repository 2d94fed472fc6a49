"""Pretrained encoders on the synthetic world: making, caching, the URL, loading into models."""

import dataclasses
import glob
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from meshrecon.checkpoint import Checkpointer, PathManager
from meshrecon.config import get_cfg
from meshrecon.data import DatasetCatalog
from meshrecon.data.datasets.synthetic import SyntheticConfig, generator, read_split
from meshrecon.data.datasets.synthetic import scenes as synthetic_scenes
from meshrecon.data.datasets.synthetic.shapes import CATEGORIES, make_shape
from meshrecon.io import load_obj
from meshrecon.modeling import build_model
from meshrecon.modeling.backbone import build_backbone
from meshrecon.modeling.backbone.pretrained import (
    adapt_first_conv,
    find_image_encoder,
    load_pretrained_backbone,
)
from meshrecon.modeling.heads.depth_eigen import build_coarse_features
from meshrecon.pretrain import (
    PretrainRecipe,
    ensure_pretrained,
    pretrain_objects,
    pretrained_dir,
    register_pretrain_recipe,
)
from meshrecon.pretrain import cache as pretrain_cache
from meshrecon.pretrain import recipe as pretrain_recipe
from meshrecon.pretrain.data import object_rng

ROOT = os.path.join(os.path.dirname(__file__), "..")
TOY = PretrainRecipe(
    models_per_category=2,
    holdout_per_category=1,
    views_per_model=1,
    image_size=32,
    target_size=8,
    steps=2,
    batch_size=4,
    warmup_steps=1,
)
TOY_R18, TOY_ALEX = "toy_resnet18.pth", "toy_eigen_alexnet.pth"


def _forbid_reading_splits(mp):
    def forbidden(*args, **kwargs):
        raise AssertionError("pretraining read a dataset split")

    for module, name in [
        (DatasetCatalog, "get"),
        (generator, "load_synthetic"),
        (generator, "ensure_generated"),
        (generator, "read_split"),
    ]:
        mp.setattr(module, name, forbidden)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """A private weights cache holding the toy ResNet-18 and AlexNet weights, made once while
    every way of reading a dataset split raises."""
    old = os.environ.get("MESHRECON_CACHE")
    os.environ["MESHRECON_CACHE"] = str(tmp_path_factory.mktemp("weights_cache"))
    register_pretrain_recipe(TOY_R18, TOY)
    register_pretrain_recipe(
        TOY_ALEX, dataclasses.replace(TOY, arch="eigen_alexnet", image_size=64)
    )
    with pytest.MonkeyPatch.context() as mp:
        _forbid_reading_splits(mp)
        ensure_pretrained(TOY_R18, progress=False)
        ensure_pretrained(TOY_ALEX, progress=False)
    yield os.environ["MESHRECON_CACHE"]
    if old is None:
        os.environ.pop("MESHRECON_CACHE")
    else:
        os.environ["MESHRECON_CACHE"] = old


def _synthetic_cfg(name):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(ROOT, "configs", "synthetic", name))
    cfg.MODEL.WEIGHTS = ""
    return cfg


def _resnet_configs():
    names = sorted(
        os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "configs/synthetic/*"))
    )
    # R2N2 has its own narrow encoder, Eigen its coarse stack (MODEL.DEPTH.PRETRAINED); the
    # mean shape and the oracles learn nothing (building the mean shape reads the training
    # split; the multi-view oracle has no image encoder at all).
    skip = ("Base-", "eigen", "r2n2", "mean_shape", "oracle_nn")
    return [n for n in names if not n.startswith(skip)]


def test_configs_name_the_pretrained_encoder_where_something_is_learned():
    # OptimizeMVS's stage 2 starts from stage 1's whole model (MODEL.WEIGHTS).
    learned_from_scratch = [n for n in _resnet_configs() if n != "optimize_mvs_stage2.yaml"]
    for name in learned_from_scratch:
        assert _synthetic_cfg(name).MODEL.BACKBONE.PRETRAINED.startswith("synthetic://"), name
    for name in ("mean_shape.yaml", "oracle_nn.yaml", "oracle_nn_multiview.yaml"):
        assert _synthetic_cfg(name).MODEL.BACKBONE.PRETRAINED == "", name


def _file_weights(name):
    local = PathManager.get_local_path("synthetic://" + name)
    return torch.load(local, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("config", _resnet_configs())
def test_every_synthetic_resnet_backbone_loads_the_weights_by_url(cache_dir, config):
    cfg = _synthetic_cfg(config)
    model = build_model(cfg)
    incompatible = load_pretrained_backbone(
        model,
        "synthetic://" + TOY_R18,
        input_format=cfg.INPUT.FORMAT,
        pixel_mean=cfg.MODEL.PIXEL_MEAN,
        pixel_std=cfg.MODEL.PIXEL_STD,
    )
    assert incompatible.missing_keys == [] and incompatible.incorrect_shapes == []
    saved = _file_weights(TOY_R18)["model"]
    _, encoder = find_image_encoder(model)
    state = encoder.state_dict()
    # One weight deep inside and the first convolution, under either layout's names.
    deep = state.get("stage4.1.conv2.weight", state.get("res5.1.conv2.weight"))
    assert torch.equal(deep, saved["layer4.1.conv2.weight"])
    first = state.get("stem.0.weight", state.get("stem.conv1.weight"))
    if cfg.INPUT.FORMAT == "RGB" and list(cfg.MODEL.PIXEL_STD) == [58.395, 57.12, 57.375]:
        assert torch.equal(first, saved["conv1.weight"])
    else:  # Mesh R-CNN's BGR, std-1 inputs: the channels reordered and rescaled
        expected = saved["conv1.weight"].flip(1) / torch.tensor([57.375, 57.12, 58.395]).view(
            1, 3, 1, 1
        )
        assert torch.allclose(first, expected)


def test_eigen_coarse_stacks_load_the_weights_by_url(cache_dir):
    features = build_coarse_features("alexnet", "synthetic://" + TOY_ALEX)
    saved = _file_weights(TOY_ALEX)["model"]
    assert set(features.state_dict()) == set(saved)
    for key, value in features.state_dict().items():
        assert torch.equal(value, saved[key])
    resnet = build_coarse_features("resnet18", "synthetic://" + TOY_R18)
    assert torch.equal(
        resnet.layer3[0].conv1.weight, _file_weights(TOY_R18)["model"]["layer3.0.conv1.weight"]
    )
    with pytest.raises(ValueError, match="torchvision"):
        build_coarse_features("alexnet", "torchvision://alexnet")


def test_the_trainer_loads_the_pretrained_backbone_only_when_not_resuming(cache_dir, tmp_path):
    from torch import nn
    from toy_task import TOY_DIM, toy_cfg

    from meshrecon.engine import DefaultTrainer
    from meshrecon.modeling import META_ARCH_REGISTRY
    from meshrecon.modeling.backbone import TorchvisionResNet

    if "ToyResNetRegressor" not in META_ARCH_REGISTRY:

        @META_ARCH_REGISTRY.register()
        class ToyResNetRegressor(nn.Module):
            def __init__(self, cfg):
                super().__init__()
                self.backbone = TorchvisionResNet(depth=18)
                self.head = nn.Linear(TOY_DIM, 1)

            def forward(self, batched_inputs):
                x = torch.stack([torch.as_tensor(d["x"]) for d in batched_inputs]).float()
                pred = self.head(x).squeeze(1)
                if not self.training:
                    return [{"pred": float(p)} for p in pred]
                y = torch.tensor([d["y"] for d in batched_inputs])
                # The backbone trains too (a tiny term), so its weights move from the file's.
                touch = sum(p.sum() for p in self.backbone.stage4.parameters()) * 1e-3
                return {"loss": ((pred - y) ** 2).mean() + touch}

    opts = {
        "MODEL.META_ARCHITECTURE": "ToyResNetRegressor",
        "MODEL.BACKBONE.PRETRAINED": "synthetic://" + TOY_R18,
        "SOLVER.MAX_ITER": 4,
        "SOLVER.CHECKPOINT_PERIOD": 2,
        "SOLVER.STEPS": (3,),
        "SOLVER.WARMUP_ITERS": 0,
    }
    saved = _file_weights(TOY_R18)["model"]
    trainer = DefaultTrainer(toy_cfg(str(tmp_path), **opts))
    trainer.resume_or_load(resume=False)
    model = trainer.model
    assert torch.equal(model.backbone.stage4[1].conv2.weight, saved["layer4.1.conv2.weight"])
    trainer.train()
    trained = model.backbone.stage4[1].conv2.weight.detach().clone()
    assert not torch.equal(trained, saved["layer4.1.conv2.weight"])
    # Resuming restores the checkpoint; the pretrained file must not overwrite it.
    trainer = DefaultTrainer(toy_cfg(str(tmp_path), **opts))
    trainer.resume_or_load(resume=True)
    assert torch.equal(trainer.model.backbone.stage4[1].conv2.weight, trained)
    # Empty key: the encoder keeps its random initialization (training from scratch).
    fresh = DefaultTrainer(
        toy_cfg(str(tmp_path / "scratch"), **{**opts, "MODEL.BACKBONE.PRETRAINED": ""})
    )
    fresh.resume_or_load(resume=False)
    assert not torch.equal(
        fresh.model.backbone.stage4[1].conv2.weight, saved["layer4.1.conv2.weight"]
    )


def test_the_cache_is_reused_and_a_changed_recipe_makes_a_new_entry(cache_dir, monkeypatch):
    path = ensure_pretrained(TOY_R18, progress=False)
    meta = os.path.join(os.path.dirname(path), "meta.json")
    mtime = os.path.getmtime(path)

    def no_pretraining(*args, **kwargs):
        raise AssertionError("pretraining ran although the weights are cached")

    monkeypatch.setattr(pretrain_recipe, "pretrain", no_pretraining)
    assert ensure_pretrained(TOY_R18, progress=False) == path
    assert PathManager.get_local_path("synthetic://" + TOY_R18) == path
    assert os.path.getmtime(path) == mtime and os.path.isfile(meta)
    assert PathManager.exists("synthetic://" + TOY_R18)
    # Another recipe: another folder, made anew (here the patched pretraining refuses).
    other = dataclasses.replace(TOY, steps=3)
    assert pretrained_dir(TOY_R18, other) != os.path.dirname(path)
    with pytest.raises(AssertionError, match="pretraining ran"):
        ensure_pretrained(TOY_R18, other, progress=False)
    # A failed run leaves nothing that a later call would trust.
    assert not os.path.exists(pretrained_dir(TOY_R18, other))
    assert not glob.glob(os.path.join(os.path.dirname(pretrained_dir(TOY_R18, other)), ".tmp-*"))


def test_the_key_follows_the_low_dtype_call_the_encoder_runs_in(tmp_path, monkeypatch):
    # The pretraining network runs its encoder through meshrecon.utils.precision: a change
    # there can change the weights, so it is part of the cache key like meshrecon/pretrain.
    from meshrecon.utils import precision

    base = pretrain_cache.recipe_key(TOY)
    copy = tmp_path / "precision.py"
    with open(precision.__file__, "rb") as f:
        copy.write_bytes(f.read())
    monkeypatch.setattr(precision, "__file__", str(copy))
    assert pretrain_cache.recipe_key(TOY) == base
    copy.write_bytes(copy.read_bytes() + b"\n# edited\n")
    assert pretrain_cache.recipe_key(TOY) != base


def test_the_encoder_trains_in_the_dtype_the_hardware_has_and_the_key_says_which(monkeypatch):
    from meshrecon.pretrain.net import PretrainNet
    from meshrecon.utils import precision

    keys = {}
    for native in (True, False):
        monkeypatch.setattr(precision, "has_native_bfloat16", lambda device, n=native: n)
        assert TOY.encoder_dtype() is (torch.bfloat16 if native else None)
        keys[native] = pretrain_cache.recipe_key(TOY)
        # An explicit choice does not depend on the machine.
        assert dataclasses.replace(TOY, encoder_autocast="").encoder_dtype() is None
        assert (
            dataclasses.replace(TOY, encoder_autocast="bfloat16").encoder_dtype() is torch.bfloat16
        )
    assert keys[True] != keys[False]  # weights made in bfloat16 are not float32's
    # In bfloat16 the encoder's convolutions compute in it; the heads get float32 maps.
    net = PretrainNet("resnet18", 9, 8)
    net.encoder_dtype = torch.bfloat16
    seen = []
    net.encoder.conv1.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    logits, dense = net(torch.randn(2, 3, 32, 32))
    assert seen == [torch.bfloat16] and logits.dtype == dense.dtype == torch.float32
    with pytest.raises(ValueError, match="encoder_autocast"):
        dataclasses.replace(TOY, encoder_autocast="float16")


def test_unknown_names_and_bad_recipes_are_clear_errors(cache_dir):
    with pytest.raises(ValueError, match="synthetic://resnet18_pretrained.pth"):
        PathManager.get_local_path("synthetic://resnet50_pretrained.pth")
    assert not PathManager.exists("synthetic://nothing.pth")
    with pytest.raises(ValueError, match="arch"):
        PretrainRecipe(arch="vgg16")
    with pytest.raises(ValueError, match="holdout_per_category"):
        PretrainRecipe(models_per_category=2, holdout_per_category=2)
    with pytest.raises(ValueError, match="MODEL.BACKBONE.PRETRAINED"):
        load_pretrained_backbone(build_model(_synthetic_cfg("r2n2_res_gru.yaml")), "x.pth")


def _fingerprint(verts):
    """Geometry up to scale and translation: the sorted, normalized, rounded vertices."""
    v = np.asarray(verts, dtype=np.float64)
    v = (v - v.min(0)) / np.linalg.norm(v.max(0) - v.min(0))
    return np.round(v[np.lexsort(v.T)], 3).tobytes()


def test_pretraining_reads_no_split_and_shares_no_object_with_val_or_test(cache_dir):
    # The fixture made the toy weights while every way of reading a split raised.
    meta = _file_weights(TOY_R18)
    ids = set(meta["model_ids"])
    assert ids == {m for *_, m in pretrain_objects(TOY.seed, TOY.models_per_category)}
    # The real recipe's objects against every val and test model of the ShapeNet-style splits
    # at SCALE 1 and 3: model ids as the generator names them, and geometry (the Pix3D-style
    # libraries have no ids), drawn from the generator's streams of those splits.
    recipe = pretrain_cache.PRETRAINED_RECIPES["resnet18_pretrained.pth"]
    objects = pretrain_objects(recipe.seed, recipe.models_per_category)
    real_ids = {m for *_, m in objects}
    real_shapes = {
        _fingerprint(make_shape(cat, object_rng(recipe.seed, c, m)).verts)
        for c, cat, m, _ in objects
    }
    assert len(real_shapes) == len(objects) == 360
    for scale in (1.0, 3.0):
        for split in ("val", "test"):
            spec = generator.split_spec("shapenet", split, SyntheticConfig(scale=scale))
            split_ids = {
                synthetic_scenes._model_id(spec, c, m)
                for c in CATEGORIES
                for m in range(spec["models_per_category"])
            }
            assert len(split_ids) == 9 * spec["models_per_category"]
            assert not real_ids & split_ids
    for kind, stream in (("shapenet", lambda c: 10 * c), ("pix3d", lambda c: 100 + c)):
        for split in ("val", "test"):
            spec = generator.split_spec(kind, split, SyntheticConfig(scale=1.0))
            shapes = {
                _fingerprint(make_shape(cat, synthetic_scenes.item_rng(spec, stream(c), m)).verts)
                for c, cat in enumerate(CATEGORIES)
                for m in range(spec["models_per_category"])
            }
            assert shapes.isdisjoint(real_shapes), (kind, split)


@pytest.mark.slow
def test_generated_val_and_test_splits_share_no_object_with_pretraining(cache_dir, tmp_path):
    # The same on splits generated to disk: ShapeNet-style records' model ids and meshes, the
    # Pix3D-style val/test libraries' meshes.
    ids = set(_file_weights(TOY_R18)["model_ids"])
    config = SyntheticConfig(
        scale=0.05, root=str(tmp_path), shapenet_views=1, pix3d_image_size=(64, 48)
    )
    pretrain_shapes = {
        _fingerprint(make_shape(cat, object_rng(TOY.seed, c, m)).verts)
        for c, cat, m, _ in pretrain_objects(TOY.seed, TOY.models_per_category)
    }
    for split in ("val", "test"):
        records, _ = read_split(generator.ensure_generated("shapenet", split, config))
        assert {r["model_id"] for r in records}.isdisjoint(ids)
        shapenet_shapes = {_fingerprint(load_obj(r["mesh"])[0]) for r in records}
        assert shapenet_shapes.isdisjoint(pretrain_shapes)
        folder = generator.ensure_generated("pix3d", split, config)
        meshes = glob.glob(os.path.join(folder, "model", "*", "*", "model.obj"))
        assert len(meshes) == 9
        assert {_fingerprint(load_obj(p)[0]) for p in meshes}.isdisjoint(pretrain_shapes)
    # A positive control: the fingerprint recognizes a split's model regenerated from the
    # split's stream, so the disjointness above is not an artifact of the comparison.
    spec = generator.split_spec("shapenet", "test", config)
    again = make_shape(CATEGORIES[0], synthetic_scenes.item_rng(spec, 0, 0)).verts
    assert _fingerprint(again) in shapenet_shapes


def test_first_conv_adaptation_reproduces_the_pretrained_response():
    torch.manual_seed(0)
    weight = torch.randn(8, 3, 3, 3)
    pixels_rgb = torch.rand(2, 3, 10, 10) * 255
    mean, std = torch.tensor([123.675, 116.28, 103.53]), torch.tensor([58.395, 57.12, 57.375])
    src = (pixels_rgb - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    expected = F.conv2d(src, weight)
    # Detectron2-style input: BGR, the same means reordered, std 1.
    dst = pixels_rgb.flip(1) - mean.flip(0).view(1, 3, 1, 1)
    new = adapt_first_conv(weight, "RGB", mean, std, "BGR", mean.flip(0), [1.0, 1.0, 1.0])
    assert torch.allclose(F.conv2d(dst, new), expected, atol=1e-4)
    with pytest.raises(ValueError, match="MODEL.PIXEL_MEAN"):
        adapt_first_conv(weight, "RGB", mean, std, "RGB", [0.0, 0.0, 0.0], std)
    with pytest.raises(ValueError, match="format"):
        adapt_first_conv(weight, "RGB", mean, std, "HSV", mean, std)


def test_torchvision_weights_compute_the_same_features_in_both_resnet_layouts(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    for m in reference.modules():  # non-trivial BN statistics, so a misplaced one shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    path = str(tmp_path / "resnet18.pth")
    torch.save(reference.state_dict(), path)
    pixels = torch.rand(1, 3, 64, 64) * 255
    mean, std = torch.tensor([123.675, 116.28, 103.53]), torch.tensor([58.395, 57.12, 57.375])
    with torch.no_grad():
        x = (pixels - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
        x = reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))
        expected = reference.layer4(reference.layer3(reference.layer2(reference.layer1(x))))
    for config in ("meshrcnn_R18_FPN.yaml", "psgn.yaml"):
        cfg = _synthetic_cfg(config)
        cfg.MODEL.BACKBONE.AUTOCAST = ""  # a float32 comparison of the two layouts
        backbone = build_backbone(cfg).eval()
        report = load_pretrained_backbone(
            backbone,
            path,
            input_format=cfg.INPUT.FORMAT,
            pixel_mean=cfg.MODEL.PIXEL_MEAN,
            pixel_std=cfg.MODEL.PIXEL_STD,
        )
        assert report.missing_keys == [] and report.incorrect_shapes == []
        image = pixels.flip(1) if cfg.INPUT.FORMAT == "BGR" else pixels
        model_mean = torch.tensor(cfg.MODEL.PIXEL_MEAN).view(1, 3, 1, 1)
        model_std = torch.tensor(cfg.MODEL.PIXEL_STD).view(1, 3, 1, 1)
        _, encoder = find_image_encoder(backbone)
        with torch.no_grad():
            out = encoder((image - model_mean) / model_std)["res5"]
        assert torch.allclose(out, expected, atol=1e-4), config


def test_checkpointer_loads_synthetic_weights_into_a_torchvision_resnet(cache_dir):
    # The file is a torchvision-layout ResNet-18: torchvision's own class takes it as it is.
    net = torchvision.models.resnet18(weights=None)
    Checkpointer(net, save_to_disk=False).load("synthetic://" + TOY_R18, checkpointables=[])
    saved = _file_weights(TOY_R18)
    assert torch.equal(
        net.layer2[0].downsample[0].weight, saved["model"]["layer2.0.downsample.0.weight"]
    )
    assert saved["input_format"] == "RGB" and len(saved["model_ids"]) == 18
