"""MultiViewReconstructor: view packing, any number and order of views per object, batch
independence, prefix (first-k-views) predictions, and building from a config."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from meshrecon.config import get_cfg
from meshrecon.modeling import build_model
from meshrecon.modeling.heads.r2n2 import (
    Conv3dGRUCell,
    Conv3dLSTMCell,
    R2N2Decoder,
    R2N2Encoder,
    R2N2Head,
)
from meshrecon.modeling.meta_arch.multi_view import MultiViewReconstructor, pack_views

SIZE = 31


def _model(rnn: str = "gru", seed: int = 0) -> MultiViewReconstructor:
    torch.manual_seed(seed)
    cell = Conv3dGRUCell if rnn == "gru" else Conv3dLSTMCell
    head = R2N2Head(
        encoder=R2N2Encoder(residual=True, dims=[4, 4, 8, 8, 8, 8], fc_dim=16, image_size=SIZE),
        rnn=cell(input_dim=16, hidden=8, grid=2, kernel=3),
        decoder=R2N2Decoder(residual=True, in_channels=8, dims=[8, 8, 4]),
    )
    return MultiViewReconstructor(head=head, pixel_mean=[127.5] * 3, pixel_std=[64.0] * 3).eval()


def _item(num_views: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "images": torch.rand(num_views, 3, SIZE, SIZE, generator=g) * 255,
        "voxels": torch.rand(8, 8, 8, generator=g) > 0.7,
        "image_id": f"obj{seed}",
    }


def test_pack_views_and_errors():
    items = [_item(2, 0), _item(3, 1)]
    packed, counts = pack_views(items)
    assert packed.shape == (5, 3, SIZE, SIZE) and counts.tolist() == [2, 3]
    torch.testing.assert_close(packed[2:], items[1]["images"])
    with pytest.raises(ValueError, match="has no 'images'"):
        pack_views([{"image": torch.zeros(3, 4, 4)}])
    with pytest.raises(ValueError, match="crop views to one size"):
        pack_views([_item(1, 0), {"images": torch.zeros(1, 3, 8, 8)}])
    with pytest.raises(ValueError, match="V >= 1"):
        pack_views([{"images": torch.zeros(0, 3, SIZE, SIZE)}])


@pytest.mark.parametrize("rnn", ["gru", "lstm"])
def test_prediction_independent_of_batch(rnn):
    model = _model(rnn)
    items = [_item(1, 0), _item(4, 1), _item(2, 2)]
    with torch.no_grad():
        batched = model(items)
        alone = [model([x])[0] for x in items]
    for b, a, x in zip(batched, alone, items):
        assert b["voxels"].shape == (8, 8, 8)
        torch.testing.assert_close(b["voxels"], a["voxels"], rtol=1e-5, atol=1e-6)
        assert len(b["by_num_views"]) == len(x["images"])
        for pb, pa in zip(b["by_num_views"], a["by_num_views"]):
            torch.testing.assert_close(pb["voxels"], pa["voxels"], rtol=1e-5, atol=1e-6)


def test_training_losses_independent_of_padding():
    # An object's loss term must not change when a longer object pads the recurrence.
    model = _model().train()
    a, b = _item(1, 0), _item(5, 1)
    with torch.no_grad():
        la = model([a])["loss_voxel"]
        lb = model([b])["loss_voxel"]
        lab = model([a, b])["loss_voxel"]
    torch.testing.assert_close(lab, (la + lb) / 2, rtol=1e-5, atol=1e-6)


def test_prefix_predictions_equal_running_on_first_views():
    model = _model()
    x = _item(4, 3)
    with torch.no_grad():
        out = model([x])[0]
        for k in range(1, 5):
            first_k = model([{"images": x["images"][:k]}])[0]["voxels"]
            torch.testing.assert_close(
                out["by_num_views"][k - 1]["voxels"], first_k, rtol=1e-5, atol=1e-6
            )
        torch.testing.assert_close(out["by_num_views"][-1]["voxels"], out["voxels"])
        # Without per-view decoding the meta-arch runs the head once per prefix instead.
        model.head.decode_every_view = False
        looped = model([x])[0]
    assert len(looped["by_num_views"]) == 4
    for a, b in zip(looped["by_num_views"], out["by_num_views"]):
        torch.testing.assert_close(a["voxels"], b["voxels"], rtol=1e-5, atol=1e-6)


def test_views_in_any_order_are_accepted():
    model = _model()
    x = _item(3, 4)
    perm = {"images": x["images"][torch.tensor([2, 0, 1])]}
    with torch.no_grad():
        out, out_perm = model([x])[0], model([perm])[0]
    for o in (out, out_perm):
        assert o["voxels"].shape == (8, 8, 8)
        assert bool(((o["voxels"] >= 0) & (o["voxels"] <= 1)).all())
    # The recurrence is order dependent: the same set in another order is a different sequence.
    assert not torch.allclose(out["voxels"], out_perm["voxels"])


class _MeanPoolHead(nn.Module):
    """An order-free head without free prefixes: exercises the meta-arch's generic loop."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.seen_views = None

    def forward(self, images, num_views, targets=None, views=None):
        self.seen_views = views
        per_view = images.mean(dim=(1, 2, 3)) * self.scale
        means = torch.stack([c.mean() for c in per_view.split(num_views.tolist())])
        if self.training:
            return {"loss_mean": means.pow(2).mean()}
        return [{"value": m} for m in means]


def test_generic_prefix_loop_and_cameras_for_heads_without_free_prefixes():
    model = MultiViewReconstructor(
        head=_MeanPoolHead(), pixel_mean=[0.0] * 3, pixel_std=[1.0] * 3
    ).eval()
    items = []
    for v, seed in ((3, 0), (1, 1)):
        x = _item(v, seed)
        x.update(K=torch.rand(v, 4), R=torch.eye(3).expand(v, 3, 3), t=torch.rand(v, 3))
        items.append(x)
    with torch.no_grad():
        out = model(items)
    assert model.head.seen_views is not None  # cameras reach a head that takes them
    assert [len(o["by_num_views"]) for o in out] == [3, 1]
    for k in range(1, 4):
        expected = items[0]["images"][:k].mean()
        torch.testing.assert_close(out[0]["by_num_views"][k - 1]["value"], expected)
    model.train()
    assert set(model(items)) == {"loss_mean"}


def test_training_needs_targets():
    model = _model().train()
    with pytest.raises(ValueError, match="voxels"):
        model([{"images": torch.rand(2, 3, SIZE, SIZE)}])


def test_build_from_config_and_train_step():
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "MultiViewReconstructor"
    cfg.MODEL.MULTIVIEW_HEAD.NAME = "R2N2Head"
    cfg.INPUT.MULTIVIEW.CROP_SIZE = SIZE
    r = cfg.MODEL.R2N2
    r.ENCODER_DIMS, r.FC_DIM, r.HIDDEN = [4, 4, 8, 8, 8, 8], 16, 8
    r.GRID, r.DECODER_DIMS, r.VOXEL_SIZE = 2, [8, 8, 4], 8
    model = build_model(cfg)
    assert isinstance(model, MultiViewReconstructor) and isinstance(model.head, R2N2Head)
    losses = model([_item(2, 0), _item(1, 1)])
    assert set(losses) == {"loss_voxel"} and losses["loss_voxel"].requires_grad
