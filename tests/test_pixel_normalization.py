"""PixelNormalization: the one input normalization of the four meta-architectures."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from meshrecon.layers import PixelNormalization
from meshrecon.modeling.meta_arch.depth import DepthEstimator
from meshrecon.modeling.meta_arch.multi_view import MultiViewReconstructor
from meshrecon.modeling.meta_arch.rcnn import GeneralizedRCNN
from meshrecon.modeling.meta_arch.single_view import SingleViewReconstructor
from meshrecon.utils.point_hypotheses import sample_hypotheses

MEAN, STD = [103.53, 116.28, 123.675], [57.375, 57.12, 58.395]
H, W = 6, 5


class _Backbone(nn.Module):
    size_divisibility = 0

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)


def _rcnn(mean=MEAN, std=STD):
    return GeneralizedRCNN(
        backbone=_Backbone(),
        proposal_generator=None,
        roi_heads=nn.Linear(2, 2),
        pixel_mean=mean,
        pixel_std=std,
    )


def _single(mean=MEAN, std=STD):
    return SingleViewReconstructor(
        backbone=_Backbone(), point_head=nn.Linear(2, 2), pixel_mean=mean, pixel_std=std
    )


def _multi(mean=MEAN, std=STD):
    return MultiViewReconstructor(head=nn.Linear(2, 2), pixel_mean=mean, pixel_std=std)


def _depth(mean=MEAN, std=STD):
    return DepthEstimator(head=nn.Linear(2, 2), pixel_mean=mean, pixel_std=std, input_size=(H, W))


def _images(n=2, channels=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (channels, H, W), generator=g, dtype=torch.uint8)] * n


# Each model's normalized (N, C, H, W) batch of the images, through its own preprocessing.
def _rcnn_batch(model, images):
    return model.preprocess_image([{"image": im} for im in images]).tensor


def _single_batch(model, images):
    return model.preprocess_image([{"image": im} for im in images])


def _multi_batch(model, images):
    return model.preprocess([{"images": torch.stack(images)}])[0]


def _depth_batch(model, images):
    return model.preprocess_image([{"image": im} for im in images])


MODELS = {
    "rcnn": (_rcnn, _rcnn_batch, r"batched_inputs\[0\]\['image'\]"),
    "single_view": (_single, _single_batch, r"inputs\[0\]\['image'\]"),
    "multi_view": (_multi, _multi_batch, r"batched_inputs\[\*\]\['images'\] \(packed\)"),
    "depth": (_depth, _depth_batch, r"batched_inputs\[0\]\['image'\]"),
}


@pytest.mark.parametrize("kind", MODELS)
def test_buffers_keep_their_names_and_stay_out_of_the_state_dict(kind):
    model = MODELS[kind][0]()
    assert isinstance(model, PixelNormalization)
    buffers = dict(model.named_buffers())
    assert buffers["pixel_mean"].shape == buffers["pixel_std"].shape == (3, 1, 1)
    assert buffers["pixel_mean"].dtype == torch.get_default_dtype()
    assert buffers["pixel_mean"].flatten().tolist() == pytest.approx(MEAN)
    # Not persistent (the config gives them): the state dict is the submodules' and, for the
    # single-view model, Mesh R-CNN's projection buffer "K".
    keys = set(model.state_dict())
    children = {f"{name}.{k}" for name, child in model.named_children() for k in child.state_dict()}
    assert keys - children == ({"K"} if kind == "single_view" else set())


@pytest.mark.parametrize("kind", MODELS)
def test_every_model_normalizes_the_same_way(kind):
    make, batch, _ = MODELS[kind]
    model = make()
    images = _images()
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    want = torch.stack([(im.float() - mean) / std for im in images])
    got = batch(model, images)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    # After .double() the images are normalized in float64 by the float32-rounded statistics.
    got64 = batch(model.double(), images)
    want64 = torch.stack([(im.double() - mean.double()) / std.double() for im in images])
    assert got64.dtype == torch.float64
    torch.testing.assert_close(got64, want64, rtol=0, atol=0)


@pytest.mark.parametrize("kind", MODELS)
def test_bad_statistics_are_named(kind):
    make = MODELS[kind][0]
    with pytest.raises(ValueError, match=r"pixel_mean \(3 values\) and pixel_std \(2\) differ"):
        make(std=STD[:2])
    with pytest.raises(ValueError, match="empty"):
        make(mean=[], std=[])
    with pytest.raises(ValueError, match=r"pixel_std must be > 0 \(MODEL.PIXEL_STD\)"):
        make(std=[57.0, 0.0, 58.0])


@pytest.mark.parametrize("kind", MODELS)
def test_an_image_with_other_channels_is_named(kind):
    make, batch, name = MODELS[kind]
    model = make()
    lead = r"sum V, " if kind == "multi_view" else ""
    with pytest.raises(ValueError, match=rf"^{name} must be \({lead}3, H, W\) for the 3 values"):
        batch(model, _images(channels=1))
    # One statistic per channel of a grey-level model: 3-channel images are refused too.
    grey = make(mean=[128.0], std=[64.0])
    with pytest.raises(ValueError, match=rf"{name} must be \({lead}1, H, W\).*got"):
        batch(grey, _images(channels=3))
    torch.testing.assert_close(
        batch(grey, _images(channels=1)),
        torch.stack([(im.float() - 128) / 64 for im in _images(channels=1)]),
    )


def test_wrong_rank_is_named():
    model = _rcnn()
    with pytest.raises(ValueError, match=r"must be \(3, H, W\).*got \(1, 3, 6, 5\)"):
        model.check_image(torch.zeros(1, 3, H, W), "x")
    model.check_image(torch.zeros(2, 3, H, W), "x", leading="N, ")
    with pytest.raises(ValueError, match=r"x must be \(N, 3, H, W\)"):
        model.check_image(torch.zeros(3, H, W), "x", leading="N, ")


class _HypothesisHead(nn.Module):
    """Records what it encodes; 'generates' zeros."""

    noise_dim = 2

    def encode(self, x):
        self.seen = x
        return x

    def generate(self, feats, noise):
        return torch.zeros(1, noise.shape[1], 4, 3)


def test_point_hypotheses_normalize_through_the_model():
    model = MultiViewReconstructor(head=_HypothesisHead(), pixel_mean=MEAN, pixel_std=STD)
    image = _images(1)[0]
    clouds = sample_hypotheses(model, image, num=3)
    assert clouds.shape == (3, 4, 3)
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    torch.testing.assert_close(model.head.seen, ((image.float() - mean) / std)[None])
    with pytest.raises(ValueError, match=r"image must be \(3, H, W\)"):
        sample_hypotheses(model, image[:1])
