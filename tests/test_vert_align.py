import math

import pytest
import torch
from conftest import load_golden

from meshrecon.ops.vert_align import vert_align


def _reflect(coord: float, twice_low: float, twice_high: float) -> float:
    if twice_low == twice_high:
        return 0.0
    low = twice_low / 2
    span = (twice_high - twice_low) / 2
    coord = abs(coord - low)
    extra = math.fmod(coord, span)
    flips = math.floor(coord / span)
    return extra + low if flips % 2 == 0 else span - extra + low


def _pixel_coord(x: float, size: int, padding_mode: str, align_corners: bool) -> float:
    if align_corners:
        coord = (x + 1) / 2 * (size - 1)
    else:
        coord = ((x + 1) * size - 1) / 2
    if padding_mode == "reflection":
        if align_corners:
            coord = _reflect(coord, 0, 2 * (size - 1))
        else:
            coord = _reflect(coord, -1, 2 * size - 1)
    if padding_mode in ("border", "reflection"):
        coord = min(max(coord, 0.0), size - 1.0)
    return coord


def vert_align_loop(feats, verts, mode, padding_mode, align_corners):
    """Obviously correct reference: one vertex, one corner at a time."""
    feats = [feats] if torch.is_tensor(feats) else feats
    rows = []
    for n in range(verts.shape[0]):
        per_vert = []
        for v in range(verts.shape[1]):
            x, y = verts[n, v, 0].item(), verts[n, v, 1].item()
            parts = []
            for feat in feats:
                _, C, H, W = feat.shape
                ix = _pixel_coord(x, W, padding_mode, align_corners)
                iy = _pixel_coord(y, H, padding_mode, align_corners)
                val = feat.new_zeros(C)
                if mode == "nearest":
                    cx, cy = round(ix), round(iy)
                    if 0 <= cx < W and 0 <= cy < H:
                        val = val + feat[n, :, cy, cx]
                else:
                    x0, y0 = math.floor(ix), math.floor(iy)
                    for cx, cy in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
                        w = (1 - abs(ix - cx)) * (1 - abs(iy - cy))
                        if 0 <= cx < W and 0 <= cy < H:
                            val = val + w * feat[n, :, cy, cx]
                parts.append(val)
            per_vert.append(torch.cat(parts))
        rows.append(torch.stack(per_vert))
    return torch.stack(rows)


class FakeMeshes:
    """Just the padded/packed views vert_align reads, for a ragged batch."""

    def __init__(self, verts_list):
        self._list = verts_list
        self._max = max(v.shape[0] for v in verts_list)

    def verts_padded(self):
        out = self._list[0].new_zeros(len(self._list), self._max, 3)
        for i, v in enumerate(self._list):
            out[i, : v.shape[0]] = v
        return out

    def verts_padded_to_packed_idx(self):
        return torch.cat(
            [torch.arange(v.shape[0]) + i * self._max for i, v in enumerate(self._list)]
        )


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
def test_golden_pytorch3d(align_corners, padding_mode):
    gold = load_golden("vert_align")
    key = f"ac{align_corners}_{padding_mode}"
    kwargs = dict(padding_mode=padding_mode, align_corners=align_corners)
    single = vert_align(gold["feats0"], gold["verts"], **kwargs)
    multi = vert_align([gold["feats0"], gold["feats1"]], gold["verts"], **kwargs)
    torch.testing.assert_close(single, gold["single_" + key], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(multi, gold["multi_" + key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
def test_matches_loop_forward_backward(mode, align_corners, padding_mode):
    g = torch.Generator().manual_seed(7)
    feats = [torch.randn(2, 3, 5, 7, generator=g), torch.randn(2, 2, 4, 3, generator=g)]
    # Positions reach outside [-1, 1] so every padding mode matters.
    verts = torch.rand(2, 9, 3, generator=g) * 3.2 - 1.6
    f1 = [f.clone().requires_grad_(True) for f in feats]
    f2 = [f.clone().requires_grad_(True) for f in feats]
    kwargs = dict(padding_mode=padding_mode, align_corners=align_corners)
    out = vert_align(f1, verts, interp_mode=mode, **kwargs)
    ref = vert_align_loop(f2, verts, mode, **kwargs)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(out)
    g1 = torch.autograd.grad(out, f1, grad)
    g2 = torch.autograd.grad(ref, f2, grad)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_gradcheck_feats_and_verts():
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(1, 2, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    verts = (torch.rand(1, 6, 3, generator=g, dtype=torch.float64) * 1.8 - 0.9).requires_grad_()
    assert torch.autograd.gradcheck(lambda f, v: vert_align(f, v), (feats, verts))


def test_packed_ragged_meshes():
    g = torch.Generator().manual_seed(1)
    verts_list = [torch.rand(n, 3, generator=g) * 2 - 1 for n in (4, 7, 1)]
    feats = torch.randn(3, 5, 6, 6, generator=g)
    meshes = FakeMeshes(verts_list)
    packed = vert_align(feats, meshes, return_packed=True)
    assert packed.shape == (12, 5)
    expected = torch.cat(
        [vert_align(feats[i : i + 1], v[None])[0] for i, v in enumerate(verts_list)]
    )
    torch.testing.assert_close(packed, expected)
    padded = vert_align(feats, meshes)
    assert padded.shape == (3, 7, 5)
    flat = vert_align(feats, meshes.verts_padded(), return_packed=True)
    assert flat.shape == (21, 5)


def test_points_padded_object():
    class FakeClouds:
        def __init__(self, pts):
            self.pts = pts

        def points_padded(self):
            return self.pts

    pts = torch.rand(2, 5, 3) * 2 - 1
    feats = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(vert_align(feats, FakeClouds(pts)), vert_align(feats, pts))


def test_invalid_inputs():
    feats = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="verts"):
        vert_align(feats, torch.rand(2, 5))
    with pytest.raises(ValueError, match="verts"):
        vert_align(feats, [1, 2, 3])
    with pytest.raises(ValueError, match="batch size"):
        vert_align(feats, torch.rand(3, 5, 3))
    with pytest.raises(ValueError, match=r"feats\[1\]"):
        vert_align([feats, torch.randn(2, 3, 4)], torch.rand(2, 5, 3))
    with pytest.raises(ValueError, match="interp_mode"):
        vert_align(feats, torch.rand(2, 5, 3), interp_mode="bicubicx")
    with pytest.raises(ValueError, match="padding_mode"):
        vert_align(feats, torch.rand(2, 5, 3), padding_mode="wrap")
    # A device mismatch is named (the meta device stands in for a GPU on CPU-only machines).
    with pytest.raises(ValueError, match=r"feats\[0\] is on meta"):
        vert_align(feats.to("meta"), torch.rand(2, 5, 3))


def test_packed_with_real_structures():
    from meshrecon.structures import Meshes, Pointclouds

    g = torch.Generator().manual_seed(2)
    verts_list = [torch.rand(n, 3, generator=g) * 2 - 1 for n in (5, 2)]
    faces_list = [torch.tensor([[0, 1, 2]]), torch.zeros(0, 3, dtype=torch.long)]
    feats = torch.randn(2, 3, 5, 5, generator=g)
    expected = torch.cat(
        [vert_align(feats[i : i + 1], v[None])[0] for i, v in enumerate(verts_list)]
    )
    meshes = Meshes(verts_list, faces_list)
    torch.testing.assert_close(vert_align(feats, meshes, return_packed=True), expected)
    clouds = Pointclouds(verts_list)
    torch.testing.assert_close(vert_align(feats, clouds, return_packed=True), expected)
