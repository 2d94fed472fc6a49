"""3D-R2N2 (Choy et al., ECCV 2016): 2D encoder -> 3D conv-GRU/LSTM over views -> 3D decoder.

Each view is encoded to a feature vector; a recurrent unit whose state is a small 3D grid
(``GRID^3`` cells of ``HIDDEN`` channels) reads the views one after the other; the final state is
decoded to a ``VOXEL_SIZE^3`` grid of 2-way (empty / occupied) logits, trained with voxel-wise
softmax cross-entropy. Layer widths, the leaky-ReLU slope (0.01), max-pooling with one pixel of
padding, zero-inserting 3D unpooling, and the initialisation (normal with std sqrt(2 / n), n the
mean of fan-in and fan-out; biases 0.1) follow the authors' Theano code.

Recurrent units (``*`` is a 3D convolution over the hidden grid, ``T(x)`` a fully connected map
of the view's feature vector onto the grid, one weight per cell and channel):

* GRU:  ``u = sig(T_u(x) + U_u*h + b_u)``, ``r = sig(T_r(x) + U_r*h + b_r)``,
  ``h' = (1 - u) h + u tanh(T_h(x) + U_h*(r h) + b_h)`` (the paper's equations; the authors' code
  swaps the roles of u and 1 - u, which is the same family of functions);
* LSTM: ``i = sig(T_i(x) + U_i*h + b_i)``, ``f = sig(T_f(x) + U_f*h + b_f)``,
  ``s' = f s + i tanh(T_s(x) + U_s*h + b_s)``, ``h' = tanh(s')`` (no output gate, as in the
  paper: only the last state is used).

Objects of a batch may have different numbers of views: the views of all objects are encoded in
one packed 2D pass, then the recurrence runs for the largest count and an object's state stops
changing after its last view (a masked update), so an object's prediction does not depend on the
rest of the batch. In inference the state after every view is decoded, which gives the prediction
from the first k views for every k at the cost of one extra decoder pass per view.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from meshrecon.config import configurable
from meshrecon.modeling.heads.build import MULTIVIEW_HEAD_REGISTRY
from meshrecon.utils.stage_timer import stage

__all__ = [
    "Conv3dGRUCell",
    "Conv3dLSTMCell",
    "R2N2Decoder",
    "R2N2Encoder",
    "R2N2Head",
    "encoder_output_size",
    "unpool3d",
    "voxel_softmax_loss",
]

LEAKY_SLOPE = 0.01
# Shortcut of each residual encoder block (the authors' Res3D-GRU): none, a 1x1 projection,
# or the identity.
_ENCODER_SHORTCUTS = (None, "project", "project", None, "project", "identity")


def _init_r2n2_(module: nn.Module) -> None:
    """Initialise convolutions and linear maps as the authors' code: N(0, 2/n), bias 0.1."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d, nn.Linear)):
            w = m.weight
            receptive = w[0, 0].numel() if w.dim() > 2 else 1
            n = (w.shape[0] + w.shape[1]) * receptive / 2.0
            nn.init.normal_(w, 0.0, math.sqrt(2.0 / n))
            if m.bias is not None:
                nn.init.constant_(m.bias, 0.1)


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, LEAKY_SLOPE)


def _pool2d(x: torch.Tensor) -> torch.Tensor:
    # 2x2 max-pooling with one pixel of padding: a side s becomes s // 2 + 1 (127 -> 64 -> 33...).
    return F.max_pool2d(x, 2, 2, padding=1)


def encoder_output_size(image_size: int, num_blocks: int = 6) -> int:
    """Return the side of the encoder's last feature map for square inputs of ``image_size``."""
    side = int(image_size)
    for _ in range(num_blocks):
        side = side // 2 + 1
    return side


def unpool3d(x: torch.Tensor) -> torch.Tensor:
    """Zero-inserting 3D unpooling by 2: (B, C, D, H, W) -> (B, C, 2D, 2H, 2W).

    Each input value lands at the even indices of its 2x2x2 cell, the other seven are zero (the
    authors' ``Unpool3DLayer``; the following convolutions fill the gaps).
    """
    if x.dim() != 5:
        raise ValueError(f"x must be (B, C, D, H, W), got {tuple(x.shape)}")
    B, C, D, H, W = x.shape
    out = x.new_zeros((B, C, 2 * D, 2 * H, 2 * W))
    out[:, :, ::2, ::2, ::2] = x
    return out


class R2N2Encoder(nn.Module):
    """Images (N, 3, S, S) -> feature vectors (N, fc_dim).

    Six blocks, each ending in 2x2 max-pooling; the first convolution is 7x7, the others 3x3.
    ``residual=False``: conv -> pool -> leaky ReLU per block (the paper's 3D-GRU/LSTM encoder).
    ``residual=True``: two convs with leaky ReLUs plus a shortcut (1x1 projection or identity,
    as in the authors' Res3D-GRU), then pool. Then flatten -> FC -> leaky ReLU.

    Args:
        residual: which of the two encoders.
        dims: channels of the six blocks (paper: 96, 128, 256, 256, 256, 256).
        fc_dim: output size (paper: 1024).
        image_size: side of the square input images (paper: 127); fixes the FC's input size.
    """

    def __init__(
        self, *, residual: bool, dims: Sequence[int], fc_dim: int, image_size: int
    ) -> None:
        super().__init__()
        dims = [int(d) for d in dims]
        if len(dims) != 6 or min(dims) < 1:
            raise ValueError(f"dims must be six positive channel counts, got {dims}")
        if image_size < 2:
            raise ValueError(f"image_size must be >= 2, got {image_size}")
        self.residual, self.image_size = residual, int(image_size)
        self.conv_a, self.conv_b, self.shortcut = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        shortcuts: list[str | None] = []
        c_in = 3
        for i, c in enumerate(dims):
            k = 7 if i == 0 else 3
            self.conv_a.append(nn.Conv2d(c_in, c, k, padding=k // 2))
            if residual:
                self.conv_b.append(nn.Conv2d(c, c, 3, padding=1))
                kind = _ENCODER_SHORTCUTS[i]
                if kind == "identity" and c_in != c:
                    kind = "project"
                shortcuts.append(kind)
                proj = nn.Conv2d(c_in, c, 1) if kind == "project" else nn.Identity()
                self.shortcut.append(proj)
            c_in = c
        self.shortcut_kinds = shortcuts
        side = encoder_output_size(self.image_size)
        self.fc = nn.Linear(dims[-1] * side * side, fc_dim)
        self.out_dim = int(fc_dim)
        _init_r2n2_(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (N, 3, S, S) normalized -> (N, fc_dim)."""
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, self.image_size, self.image_size):
            raise ValueError(
                f"images must be (N, 3, {self.image_size}, {self.image_size}) (the encoder's "
                f"image_size), got {tuple(images.shape)}"
            )
        x = images
        for i, conv_a in enumerate(self.conv_a):
            if not self.residual:
                x = _lrelu(_pool2d(conv_a(x)))
                continue
            y = _lrelu(self.conv_b[i](_lrelu(conv_a(x))))
            kind = self.shortcut_kinds[i]
            if kind is not None:
                y = y + self.shortcut[i](x)
            x = _pool2d(y)
        return _lrelu(self.fc(x.flatten(1)))


class _GridGates(nn.Module):
    """``T(x) + U * h + b`` for ``num_gates`` gates at once: the FC-plus-3D-conv of R2N2.

    Returns (B, num_gates * hidden, G, G, G), gate-major along channels.
    """

    def __init__(self, input_dim: int, hidden: int, grid: int, kernel: int, num_gates: int):
        super().__init__()
        self.hidden, self.grid, self.num_gates = hidden, grid, num_gates
        # One weight per (input unit, gate, channel, cell): the feature vector is mapped onto
        # the whole grid, so each cell sees the image through its own weights.
        self.fc = nn.Linear(input_dim, num_gates * hidden * grid**3, bias=False)
        self.conv = nn.Conv3d(hidden, num_gates * hidden, kernel, padding=kernel // 2, bias=False)
        self.bias = nn.Parameter(torch.full((num_gates * hidden,), 0.1))

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        g = self.grid
        fc = self.fc(x).view(x.shape[0], self.num_gates * self.hidden, g, g, g)
        return fc + self.conv(h) + self.bias.view(1, -1, 1, 1, 1)


class _GridRNNCell(nn.Module):
    """Shared checks and state handling of the 3D recurrent cells."""

    def __init__(self, *, input_dim: int, hidden: int, grid: int, kernel: int) -> None:
        super().__init__()
        if kernel not in (1, 3):
            raise ValueError(f"kernel must be 3 or 1 (MODEL.R2N2.KERNEL), got {kernel}")
        if grid < 1 or hidden < 1 or input_dim < 1:
            raise ValueError(
                f"input_dim, hidden and grid must be >= 1, got {input_dim}, {hidden}, {grid}"
            )
        self.input_dim, self.hidden, self.grid, self.kernel = input_dim, hidden, grid, kernel

    def state_shape(self, batch: int) -> tuple[int, int, int, int, int]:
        g = self.grid
        return (batch, self.hidden, g, g, g)


class Conv3dGRUCell(_GridRNNCell):
    """The paper's 3D convolutional GRU; state ``h`` (B, hidden, G, G, G).

    ``forward(x (B, input_dim), h) -> h'``; see the module docstring for the equations.
    """

    def __init__(self, *, input_dim: int, hidden: int, grid: int, kernel: int = 3) -> None:
        super().__init__(input_dim=input_dim, hidden=hidden, grid=grid, kernel=kernel)
        self.gates = _GridGates(input_dim, hidden, grid, kernel, 2)  # update, reset
        self.candidate = _GridGates(input_dim, hidden, grid, kernel, 1)
        _init_r2n2_(self)

    def init_state(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        return like.new_zeros(self.state_shape(batch))

    @staticmethod
    def output(state: torch.Tensor) -> torch.Tensor:
        return state

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        u, r = torch.sigmoid(self.gates(x, h)).chunk(2, dim=1)
        cand = torch.tanh(self.candidate(x, r * h))
        return (1.0 - u) * h + u * cand


class Conv3dLSTMCell(_GridRNNCell):
    """The paper's 3D convolutional LSTM (no output gate); state ``(h, s)``, each
    (B, hidden, G, G, G).

    ``forward(x (B, input_dim), (h, s)) -> (h', s')``; see the module docstring.
    """

    def __init__(self, *, input_dim: int, hidden: int, grid: int, kernel: int = 3) -> None:
        super().__init__(input_dim=input_dim, hidden=hidden, grid=grid, kernel=kernel)
        self.gates = _GridGates(input_dim, hidden, grid, kernel, 3)  # input, forget, cell
        _init_r2n2_(self)

    def init_state(self, batch: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = like.new_zeros(self.state_shape(batch))
        return zeros, zeros.clone()

    @staticmethod
    def output(state: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return state[0]

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h, s = state
        i, f, c = self.gates(x, h).chunk(3, dim=1)
        s = torch.sigmoid(f) * s + torch.sigmoid(i) * torch.tanh(c)
        return torch.tanh(s), s


class R2N2Decoder(nn.Module):
    """Hidden grid (B, C, G, G, G) -> 2-way logits (B, 2, S, S, S), S = G * 2^(len(dims) - 1).

    Stage i < len(dims) - 1: unpool x2 then 3x3x3 conv(s) to ``dims[i]`` channels; the last
    stage keeps the resolution. ``residual=False``: one conv + leaky ReLU per stage (the paper's
    3D-GRU decoder). ``residual=True``: two convs + leaky ReLUs plus a shortcut (identity when
    the width is unchanged, else a 1x1x1 projection; the authors take the last stage's shortcut
    from its first activation through a 3x3x3 conv, here it is the 1x1x1 projection of the
    stage's input like the others). Then a 3x3x3 conv to 2 channels.
    """

    def __init__(self, *, residual: bool, in_channels: int, dims: Sequence[int]) -> None:
        super().__init__()
        dims = [int(d) for d in dims]
        if len(dims) < 1 or min(dims) < 1:
            raise ValueError(f"dims must be at least one positive channel count, got {dims}")
        self.residual, self.num_unpool = residual, len(dims) - 1
        self.conv_a, self.conv_b, self.shortcut = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        c_in = in_channels
        for c in dims:
            self.conv_a.append(nn.Conv3d(c_in, c, 3, padding=1))
            if residual:
                self.conv_b.append(nn.Conv3d(c, c, 3, padding=1))
                self.shortcut.append(nn.Identity() if c == c_in else nn.Conv3d(c_in, c, 1))
            c_in = c
        self.predictor = nn.Conv3d(c_in, 2, 3, padding=1)
        _init_r2n2_(self)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = h
        for i, conv_a in enumerate(self.conv_a):
            if i < self.num_unpool:
                x = unpool3d(x)
            y = _lrelu(conv_a(x))
            if self.residual:
                y = _lrelu(self.conv_b[i](y)) + self.shortcut[i](x)
            x = y
        return self.predictor(x)


@stage("losses")
def voxel_softmax_loss(logits: torch.Tensor, gt_voxels: torch.Tensor) -> torch.Tensor:
    """Mean voxel-wise 2-way softmax cross-entropy.

    Args:
        logits: (B, 2, D, H, W), channel 1 = occupied.
        gt_voxels: (B, D, H, W) occupancy (bool or 0/1).
    """
    if logits.dim() != 5 or logits.shape[1] != 2:
        raise ValueError(f"logits must be (B, 2, D, H, W), got {tuple(logits.shape)}")
    if gt_voxels.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(
            f"gt_voxels must be {tuple(logits.shape[:1] + logits.shape[2:])}, "
            f"got {tuple(gt_voxels.shape)}"
        )
    return F.cross_entropy(logits, gt_voxels.to(device=logits.device, dtype=torch.long))


@MULTIVIEW_HEAD_REGISTRY.register()
class R2N2Head(nn.Module):
    """3D-R2N2 as a multi-view head of :class:`~meshrecon.modeling.meta_arch.multi_view.
    MultiViewReconstructor`.

    Call: ``head(images, num_views, targets=None)`` with ``images`` (sum(V_b), 3, S, S) the
    normalized views of all objects packed object after object, ``num_views`` (B,) long with
    every V_b >= 1, and in training ``targets`` a list of B dicts with ``"voxels"`` (D, H, W).
    Training returns ``{"loss_voxel": scalar}``; inference returns, per object,
    ``{"voxels": (D, H, W) occupancy probabilities from all its views, "by_num_views": [
    {"voxels": ...} from the first k views, k = 1 .. V_b]}``.

    Args:
        encoder: images -> (N, F) features (:class:`R2N2Encoder`).
        rnn: :class:`Conv3dGRUCell` or :class:`Conv3dLSTMCell` with ``input_dim`` F.
        decoder: hidden grid -> 2-way logits (:class:`R2N2Decoder`).
        decode_every_view: in inference, also decode the state after each view.
    """

    # Voxels per view count: scored by R2N2Evaluator (the engine reads this).
    evaluator_type = "r2n2"

    @configurable
    def __init__(
        self,
        *,
        encoder: nn.Module,
        rnn: _GridRNNCell,
        decoder: nn.Module,
        decode_every_view: bool = True,
    ) -> None:
        super().__init__()
        self.encoder, self.rnn, self.decoder = encoder, rnn, decoder
        self.decode_every_view = decode_every_view

    @property
    def supports_prefix_outputs(self) -> bool:
        """Whether inference returns ``by_num_views`` itself (the state after k views depends
        only on the first k views, so decoding every state gives them for free)."""
        return self.decode_every_view

    @classmethod
    def from_config(cls, cfg, input_shape: Any = None) -> dict[str, Any]:
        r = cfg.MODEL.R2N2
        for key, value, allowed in (
            ("ENCODER", r.ENCODER, ("shallow", "residual")),
            ("DECODER", r.DECODER, ("shallow", "residual")),
            ("RNN", r.RNN, ("gru", "lstm")),
        ):
            if value not in allowed:
                raise ValueError(f"MODEL.R2N2.{key} must be one of {allowed}, got {value!r}")
        expected = r.GRID * 2 ** (len(r.DECODER_DIMS) - 1)
        if r.VOXEL_SIZE != expected:
            raise ValueError(
                f"MODEL.R2N2.VOXEL_SIZE={r.VOXEL_SIZE} but GRID={r.GRID} with "
                f"{len(r.DECODER_DIMS) - 1} unpooling stages (DECODER_DIMS) gives {expected}"
            )
        image_size = cfg.INPUT.MULTIVIEW.CROP_SIZE
        if not image_size:
            raise ValueError("R2N2 needs square views: set INPUT.MULTIVIEW.CROP_SIZE (e.g. 127)")
        encoder = R2N2Encoder(
            residual=r.ENCODER == "residual",
            dims=r.ENCODER_DIMS,
            fc_dim=r.FC_DIM,
            image_size=image_size,
        )
        cell = Conv3dGRUCell if r.RNN == "gru" else Conv3dLSTMCell
        rnn = cell(input_dim=r.FC_DIM, hidden=r.HIDDEN, grid=r.GRID, kernel=r.KERNEL)
        decoder = R2N2Decoder(
            residual=r.DECODER == "residual", in_channels=r.HIDDEN, dims=r.DECODER_DIMS
        )
        return {"encoder": encoder, "rnn": rnn, "decoder": decoder}

    def recur(
        self, features: torch.Tensor, num_views: torch.Tensor, keep_states: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the recurrence over padded per-view features.

        Args:
            features: (B, T, F), T = max(num_views); entries past an object's count are ignored.
            num_views: (B,) long, each in 1 .. T.
            keep_states: also return the hidden output after every view.

        Returns:
            final: (B, C, G, G, G) hidden output after each object's last view;
            per_view: (B, T, C, G, G, G) hidden output after view t (frozen after the last
            view), or None.
        """
        B, T = features.shape[:2]
        state = self.rnn.init_state(B, features)
        steps = []
        for t in range(T):
            new = self.rnn(features[:, t], state)
            live = (num_views > t).view(B, 1, 1, 1, 1)
            if isinstance(state, tuple):
                state = tuple(torch.where(live, n, o) for n, o in zip(new, state))
            else:
                state = torch.where(live, new, state)
            if keep_states:
                steps.append(self.rnn.output(state))
        per_view = torch.stack(steps, 1) if keep_states else None
        return self.rnn.output(state), per_view

    def forward(
        self,
        images: torch.Tensor,
        num_views: torch.Tensor,
        targets: Sequence[dict] | None = None,
    ) -> dict[str, torch.Tensor] | list[dict[str, Any]]:
        num_views = torch.as_tensor(num_views, dtype=torch.long, device=images.device)
        if num_views.dim() != 1 or int(num_views.min()) < 1:
            raise ValueError(f"num_views must be (B,) with every count >= 1, got {num_views}")
        total = int(num_views.sum())
        if images.shape[0] != total:
            raise ValueError(f"images holds {images.shape[0]} views, num_views sums to {total}")
        with stage("backbone"):
            feats = self.encoder(images)
        # Packed (sum V, F) -> padded (B, T, F).
        padded = nn.utils.rnn.pad_sequence(list(feats.split(num_views.tolist())), batch_first=True)
        if self.training:
            if (
                targets is None
                or len(targets) != len(num_views)
                or any("voxels" not in t for t in targets)
            ):
                raise ValueError("training needs targets: one dict with 'voxels' per object")
            gt = torch.stack([t["voxels"] for t in targets]).to(images.device)
            final, _ = self.recur(padded, num_views)
            return {"loss_voxel": voxel_softmax_loss(self.decoder(final), gt)}
        final, per_view = self.recur(padded, num_views, keep_states=self.decode_every_view)
        if per_view is None:
            probs = F.softmax(self.decoder(final), dim=1)[:, 1]
            return [{"voxels": p} for p in probs]
        # The state after an object's last view is its final state: one decoder pass serves both.
        valid = torch.arange(per_view.shape[1], device=images.device)[None] < num_views[:, None]
        step_probs = F.softmax(self.decoder(per_view[valid]), dim=1)[:, 1]
        return [
            {"voxels": chunk[-1], "by_num_views": [{"voxels": p} for p in chunk]}
            for chunk in step_probs.split(num_views.tolist())
        ]
