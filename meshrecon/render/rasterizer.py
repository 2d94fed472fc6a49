"""A batched z-buffer triangle rasterizer in vectorized PyTorch (one face per pixel).

How it works, with no Python loop over faces:

1. Every face becomes four affine functions of the pixel position ``(u, v)``: three edge
   functions ``e_k = d . (v_j x v_l)`` (``d`` the ray through the pixel, ``d_z = 1``) and
   ``s = d . n`` (``n`` the face normal). A ray hits the triangle iff the three ``e_k`` share a
   sign; the barycentrics of the hit are ``e_k / sum(e)`` (exactly perspective-correct, as they
   are the 3D barycentrics of the hit point) and its depth is ``Z = (v_0 . n) / s``.
2. Each face's pixel rows come from the bounding box of its projected vertices (the whole image
   for faces that cross the near plane); on each row the three half-planes give the exact span
   of columns, so the candidates are the covered pixels plus a one-pixel margin per row end.
3. Candidates (in chunks) are tested with the edge functions, and the nearest one per pixel
   wins through ``scatter_reduce("amin")`` on an int64 key ``(float32 bits of Z) << 32 | face``
   (positive floats order like their bit patterns; ties go to the lower face index).
4. Barycentrics and depth of the winners are recomputed with autograd enabled, so gradients
   reach the vertices through ``bary`` and ``zbuf`` (not through the coverage).

Clipping: a face crossing the near plane is not skipped; the half-plane test keeps exactly the
pixels whose rays hit it in front of the camera, and hits with ``Z <= znear`` are dropped.

Watertightness: an edge shared by two faces (same vertex indices) gets bit-for-bit opposite edge
functions, so a pixel centre on that edge is claimed by at least one of them, never by neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from meshrecon.structures import Meshes

__all__ = ["Fragments", "rasterize"]

_KEY_EMPTY = torch.iinfo(torch.int64).max


class Fragments(NamedTuple):
    """Rasterizer output for N images of H x W pixels.

    Attributes:
        pix_to_face: int64 (N, H, W), index into the packed faces of the nearest face whose
            triangle covers the pixel centre; -1 for background.
        zbuf: (N, H, W) camera-frame Z of that face at the pixel centre; 0 for background.
        bary: (N, H, W, 3) perspective-correct barycentric coordinates of the hit point with
            respect to the face's vertices (v0, v1, v2); 0 for background.
    """

    pix_to_face: torch.Tensor
    zbuf: torch.Tensor
    bary: torch.Tensor

    @property
    def bary_coords(self) -> torch.Tensor:
        """PyTorch3D's name for :attr:`bary`."""
        return self.bary


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # Separate multiply and subtract kernels (no fused multiply-add), so swapping the arguments
    # negates the result exactly; the watertightness of shared edges relies on it.
    a0, a1, a2 = a.unbind(-1)
    b0, b1, b2 = b.unbind(-1)
    return torch.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], dim=-1)


def _pack_inputs(verts, faces) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Return verts_packed (P, 3), faces_packed (F, 3), face_to_mesh (F,) and N."""
    if isinstance(verts, Meshes):
        if faces is not None:
            raise ValueError("faces must be None when verts is a Meshes")
        return (
            verts.verts_packed(),
            verts.faces_packed(),
            verts.faces_packed_to_mesh_idx(),
            len(verts),
        )
    if not torch.is_tensor(verts) or not verts.is_floating_point() or verts.shape[-1:] != (3,):
        raise ValueError("verts must be a Meshes or a float tensor (V, 3) / (N, V, 3)")
    if not torch.is_tensor(faces) or faces.is_floating_point() or faces.shape[-1:] != (3,):
        raise ValueError("faces must be an integer tensor (F, 3) or (N, F, 3)")
    if verts.ndim == 2:
        verts = verts[None]
    if verts.ndim != 3:
        raise ValueError(f"verts must have shape (V, 3) or (N, V, 3), got {tuple(verts.shape)}")
    N, V = verts.shape[:2]
    if faces.ndim == 2:
        faces = faces[None].expand(N, -1, -1)
    if faces.ndim != 3 or faces.shape[0] != N:
        raise ValueError(f"faces must have shape (F, 3) or (N={N}, F, 3), got {tuple(faces.shape)}")
    faces = faces.to(device=verts.device, dtype=torch.int64)
    real = (faces >= 0).all(-1)  # rows with -1 are padding
    if (faces >= V).any():
        raise ValueError(f"faces index a vertex >= V = {V}")
    offsets = torch.arange(N, device=verts.device) * V
    faces_packed = (faces + offsets[:, None, None])[real]
    face_to_mesh = torch.arange(N, device=verts.device)[:, None].expand(N, faces.shape[1])[real]
    return verts.reshape(N * V, 3), faces_packed, face_to_mesh, N


def _face_tables(
    verts: torch.Tensor, faces: torch.Tensor, Kf: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Affine pixel-space coefficients of each face's edge functions and normal.

    Returns ``coef`` (F, 4, 3): rows k = 0..2 the edge functions ``e_k(u, v) = A u + B v + C``
    (columns A, B, C), row 3 the same for ``s = d . n``; ``det`` (F,) = ``v0 . n``; and the
    face vertices ``tri`` (F, 3, 3).
    """
    tri = verts.index_select(0, faces.reshape(-1)).view(-1, 3, 3)
    idx = faces
    edges = []
    for k in range(3):
        j, l = (k + 1) % 3, (k + 2) % 3
        # v_j x v_l computed as base x (other - base) from the lower-indexed vertex: small
        # operands (accurate for small far-away triangles) and identical on both faces of a
        # shared edge, up to an exact sign flip.
        swap = (idx[:, j] > idx[:, l])[:, None]
        base = torch.where(swap, tri[:, l], tri[:, j])
        other = torch.where(swap, tri[:, j], tri[:, l])
        c = _cross(base, other - base)
        edges.append(torch.where(swap, -c, c))
    n = _cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    det = (tri[:, 0] * n).sum(-1)
    c = torch.stack(edges + [n], dim=1)  # (F, 4, 3)
    fx, fy, cx, cy = (k[:, None] for k in Kf.unbind(-1))
    # d = ((cx - u) / fx, (cy - v) / fy, 1), so d . c is affine in (u, v).
    A = -c[..., 0] / fx
    B = -c[..., 1] / fy
    C = c[..., 0] * (cx / fx) + c[..., 1] * (cy / fy) + c[..., 2]
    return torch.stack([A, B, C], dim=-1), det, tri


def _row_spans(
    a: torch.Tensor, b: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Column range [c0, c1] of pixels whose centres may satisfy ``a_k u + b_k <= 0`` for all k.

    a, b: (R, 3); lo, hi: (R,) int64 inclusive column bounds of the face's box.
    """
    with torch.no_grad():
        root = -b / a  # where a_k u + b_k changes sign
        inf = torch.full_like(root, float("inf"))
        lo_k = torch.where(a < 0, root, -inf)
        hi_k = torch.where(a > 0, root, inf)
        # Column-wise maxima and minima: reductions over a size-3 dim are slow on CPU.
        u_lo = torch.maximum(torch.maximum(lo_k[:, 0], lo_k[:, 1]), lo_k[:, 2])
        u_hi = torch.minimum(torch.minimum(hi_k[:, 0], hi_k[:, 1]), hi_k[:, 2])
        flat_out = (a == 0) & (b > 0)  # edge parallel to the row with the row outside
        empty = flat_out[:, 0] | flat_out[:, 1] | flat_out[:, 2]
        # One pixel of margin each side absorbs the rounding of the roots; the exact edge test
        # on the candidates decides.
        c0 = torch.ceil((u_lo - 0.5).clamp(-2.0, 1e8)).to(torch.int64) - 1
        c1 = torch.floor((u_hi - 0.5).clamp(-2.0, 1e8)).to(torch.int64) + 1
        c0 = torch.maximum(c0, lo)
        c1 = torch.where(empty, c0 - 1, torch.minimum(c1, hi))
    return c0, c1


def rasterize(
    verts: Meshes | torch.Tensor,
    faces: torch.Tensor | None = None,
    K: torch.Tensor | Sequence[float] | None = None,
    image_size: int | Sequence[int] | None = None,
    *,
    cull_backfaces: bool = False,
    znear: float = 1e-3,
    max_candidates: int = 1 << 20,
) -> Fragments:
    """Rasterize a batch of camera-frame meshes with a z-buffer (nearest face per pixel).

    Args:
        verts: a :class:`Meshes` in the camera frame (then ``faces`` is None), or vertices
            (N, V, 3) / (V, 3) in the camera frame (+X left, +Y up, +Z forward).
        faces: int (N, F, 3) with rows of -1 as padding, or (F, 3) shared by the batch. The
            "packed" face index of ``pix_to_face`` counts the non-padding rows mesh by mesh.
            ``rasterize(meshes, K, image_size)`` is also accepted.
        K: (4,) or (N, 4) intrinsics ``[fx, fy, cx, cy]`` (``u = cx - fx X/Z``).
        image_size: (H, W) or an int.
        cull_backfaces: drop faces whose normal ``(v1 - v0) x (v2 - v0)`` points away from the
            camera (for an outward-oriented closed mesh: its hidden side).
        znear: hits with ``Z <= znear`` are not drawn; faces crossing that plane are clipped.
        max_candidates: candidate (face, pixel) pairs processed at once (memory bound).

    Returns:
        :class:`Fragments` with pixel centres sampled at ``(j + 0.5, i + 0.5)``.

    Raises:
        ValueError: for NaN or infinite vertices or K, a zero focal length, a non-positive
            image size or znear, or float64 coordinates too large for the face tables
            (float32 ones that overflow are rasterized in float64).
    """
    if isinstance(verts, Meshes) and faces is not None and image_size is None:
        faces, K, image_size = None, faces, K  # rasterize(meshes, K, image_size)
    if K is None or image_size is None:
        raise ValueError("K and image_size are required")
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    H, W = (int(s) for s in image_size)
    if H <= 0 or W <= 0:
        raise ValueError(f"image_size must be positive, got {(H, W)}")
    if znear <= 0:
        raise ValueError(f"znear must be positive, got {znear}")
    verts_p, faces_p, face_mesh, N = _pack_inputs(verts, faces)
    device = verts_p.device
    dtype = verts_p.dtype if verts_p.dtype in (torch.float32, torch.float64) else torch.float32
    verts_p = verts_p.to(dtype)
    K = torch.as_tensor(K, dtype=dtype, device=device)
    if K.shape == (4,):
        K = K.expand(N, 4)
    if K.shape != (N, 4):
        raise ValueError(f"K must have shape (4,) or (N={N}, 4), got {tuple(K.shape)}")
    if (K[:, :2] == 0).any():
        raise ValueError("K's focal lengths fx, fy must be non-zero")
    if not bool(torch.isfinite(K).all()):
        raise ValueError(f"K must be finite, got {K.tolist()}")
    if not bool(torch.isfinite(verts_p).all()):
        # Such faces would silently vanish from the image (their tables are not finite).
        raise ValueError("verts contain NaN or infinite coordinates")

    out_dtype = dtype
    coef, det, tri = _face_tables(verts_p, faces_p, K.index_select(0, face_mesh))
    if not bool(torch.isfinite(coef).all() and torch.isfinite(det).all()):
        # Finite but huge coordinates: the products of the tables overflow float32 from about
        # 1e19 (and the face would be dropped). Rasterize in float64 and return float32.
        if dtype != torch.float32:
            raise ValueError(
                f"vertex coordinates up to {float(verts_p.abs().max()):.3g} overflow the "
                "rasterizer's float64 face tables"
            )
        dtype, verts_p, K = torch.float64, verts_p.double(), K.double()
        coef, det, tri = _face_tables(verts_p, faces_p, K.index_select(0, face_mesh))
    zkey = _zbuffer_keys(
        coef.detach(),
        det.detach(),
        tri.detach(),
        K,
        face_mesh,
        N,
        H,
        W,
        cull_backfaces,
        znear,
        max_candidates,
    )
    frags = _finish(zkey, coef, det, N, H, W)
    if dtype != out_dtype:
        frags = Fragments(frags.pix_to_face, frags.zbuf.to(out_dtype), frags.bary.to(out_dtype))
    return frags


def _zbuffer_keys(coef, det, tri, K, face_mesh, N, H, W, cull, znear, max_candidates):
    """The z-buffer as int64 keys (N * H * W,): min over hits of (Z bits << 32 | face)."""
    device, dtype = coef.device, coef.dtype
    z = tri[..., 2]
    # A non-finite coefficient makes the sum non-finite: one cheap test instead of a reduction.
    keep = (z.amax(1) > znear) & (det != 0) & torch.isfinite(coef.sum((1, 2)) + det)
    if cull:
        keep &= det < 0
    all_front = z.amin(1) > znear
    # Pixel box of faces entirely in front of the near plane; the whole image otherwise.
    fx, fy, cx, cy = (k[:, None] for k in K.index_select(0, face_mesh).unbind(-1))
    zs = torch.where(all_front[:, None], z, torch.ones_like(z))
    u = cx - fx * tri[..., 0] / zs
    v = cy - fy * tri[..., 1] / zs
    big = float(max(H, W) + 2)
    u_min = torch.where(all_front, u.amin(1), 0.0).clamp(-2.0, big)
    u_max = torch.where(all_front, u.amax(1), float(W)).clamp(-2.0, big)
    v_min = torch.where(all_front, v.amin(1), 0.0).clamp(-2.0, big)
    v_max = torch.where(all_front, v.amax(1), float(H)).clamp(-2.0, big)
    j0 = torch.ceil(u_min - 0.5).to(torch.int64).clamp(min=0)
    j1 = torch.floor(u_max - 0.5).to(torch.int64).clamp(max=W - 1)
    i0 = torch.ceil(v_min - 0.5).to(torch.int64).clamp(min=0)
    i1 = torch.floor(v_max - 0.5).to(torch.int64).clamp(max=H - 1)
    keep &= (j1 >= j0) & (i1 >= i0)
    fid = keep.nonzero().squeeze(1)
    zkey = torch.full((N * H * W,), _KEY_EMPTY, dtype=torch.int64, device=device)
    if fid.numel() == 0:
        return zkey

    # Orient every face so that "inside and in front" reads e_k <= 0 for all k (and s < 0).
    det_k = det.index_select(0, fid)
    sign = torch.where(det_k < 0, 1.0, -1.0).to(dtype)
    coef_k = coef.index_select(0, fid).flatten(1) * sign[:, None]  # (Fk, 12): A, B, C per row
    face_f = torch.cat([coef_k, -det_k.abs()[:, None]], 1)  # (Fk, 13)
    mesh_k = face_mesh.index_select(0, fid)
    face_i = torch.stack([i0, j0, j1], 1).index_select(0, fid)  # (Fk, 3)

    # (face, row) pairs.
    nrows = face_i[:, 0].neg().add_(i1.index_select(0, fid)).add_(1)
    rf = torch.repeat_interleave(torch.arange(fid.numel(), device=device), nrows)
    row_start = torch.cumsum(nrows, 0) - nrows
    row_i = face_i.index_select(0, rf)
    rows = row_i[:, 0] + torch.arange(rf.numel(), device=device) - row_start.index_select(0, rf)
    vc = rows.to(dtype) + 0.5
    cf = face_f.index_select(0, rf)  # (R, 13)
    coef_r = cf[:, :12].view(-1, 4, 3)
    a = coef_r[..., 0]  # (R, 4)
    b = coef_r[..., 1] * vc[:, None] + coef_r[..., 2]  # B v + C, then e = a u + b
    c0, c1 = _row_spans(a[:, :3], b[:, :3], row_i[:, 1], row_i[:, 2])
    counts = (c1 - c0 + 1).clamp(min=0)
    # Per-row table, rows contiguous for index_select: a0..a3, b0..b3, -|det|.
    table = torch.cat([a.t(), b.t(), cf[:, 12][None]], 0).contiguous()
    row_base = (mesh_k.index_select(0, rf) * H + rows) * W
    row_face = fid.index_select(0, rf)
    col_shift = c0 - (torch.cumsum(counts, 0) - counts)  # column = arange index + shift

    cum = torch.cumsum(counts, 0)
    total = int(cum[-1])
    start_row, done = 0, 0
    R = counts.numel()
    while done < total:
        end_row = int(torch.searchsorted(cum, done + max(max_candidates, W), right=True))
        end_row = max(end_row, start_row + 1)
        end_row = min(end_row, R)
        upto = int(cum[end_row - 1])
        _resolve_chunk(
            zkey,
            table[:, start_row:end_row],
            counts[start_row:end_row],
            col_shift[start_row:end_row],
            row_base[start_row:end_row],
            row_face[start_row:end_row],
            done,
            upto - done,
            znear,
        )
        start_row, done = end_row, upto
    return zkey


def _resolve_chunk(zkey, table, counts, col_shift, row_base, row_face, first, m, znear) -> None:
    if m == 0:
        return
    device, dtype = table.device, table.dtype
    rid = torch.repeat_interleave(torch.arange(counts.numel(), device=device), counts)
    col = torch.arange(first, first + m, device=device) + col_shift.index_select(0, rid)
    uc = col.to(dtype) + 0.5
    t = table.index_select(1, rid)  # (9, m)
    e0 = t[0] * uc + t[4]
    e1 = t[1] * uc + t[5]
    e2 = t[2] * uc + t[6]
    s = t[3] * uc + t[7]
    inside = torch.maximum(torch.maximum(e0, e1), e2) <= 0
    zc = t[8] / s
    ok = (inside & (zc > znear)).nonzero().squeeze(1)
    if ok.numel() == 0:
        return
    rid = rid.index_select(0, ok)
    pix = row_base.index_select(0, rid) + col.index_select(0, ok)
    zbits = zc.index_select(0, ok).to(torch.float32).view(torch.int32).to(torch.int64)
    key = (zbits << 32) | row_face.index_select(0, rid)
    zkey.scatter_reduce_(0, pix, key, "amin", include_self=True)


def _finish(zkey, coef, det, N, H, W) -> Fragments:
    device, dtype = coef.device, coef.dtype
    covered = (zkey != _KEY_EMPTY).nonzero().squeeze(1)
    face = zkey[covered] & 0xFFFFFFFF
    pix_to_face = torch.full((N * H * W,), -1, dtype=torch.int64, device=device)
    pix_to_face[covered] = face
    # Recompute the winners' barycentrics and depth with autograd (cheap: one row per pixel).
    rem = covered % (H * W)
    uc = (rem % W).to(dtype) + 0.5
    vc = (rem // W).to(dtype) + 0.5
    cf = coef.index_select(0, face)  # (P, 4, 3)
    val = cf[..., 0] * uc[:, None] + (cf[..., 1] * vc[:, None] + cf[..., 2])  # (P, 4)
    e = val[:, :3]
    bary_vals = e / e.sum(1, keepdim=True)
    z_vals = det.index_select(0, face) / val[:, 3]
    zbuf = torch.zeros(N * H * W, dtype=dtype, device=device).index_put((covered,), z_vals)
    bary = torch.zeros(N * H * W, 3, dtype=dtype, device=device).index_put((covered,), bary_vals)
    return Fragments(pix_to_face.view(N, H, W), zbuf.view(N, H, W), bary.view(N, H, W, 3))
