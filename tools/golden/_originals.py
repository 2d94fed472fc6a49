"""Run the original PyTorch3D / Detectron2 / Mesh R-CNN code in float64, and capture its draws.

Used by ``record_training.py`` only; imports the originals, so it runs only where they are
installed (see README.md). Everything here changes numerics, never behaviour:

- ``float64_originals()`` relaxes the originals' float32 guards so that a float64 run stays in
  float64 end to end: Detectron2's ``Boxes`` keeps float64 tensors, and its RPN's NMS takes
  float64 boxes (no ``.float()``); the float32 constants of Mesh R-CNN's box-frustum crop
  (``meshrcnn.utils.projtransform`` / ``shape``), of its mesh, mask and voxel losses and
  targets, and of Detectron2's RPN / anchor code become float64; PyTorch3D's float32-only CPU
  KNN kernel gets a float64 path in plain torch with the same definition, and so do the
  sampler's ``packed_to_padded`` and the CPU GraphConv gather (which refuse float64);
  PyTorch3D's ``cubify`` and ``ico_sphere`` keep building float32 vertices, cast to the
  voxels' / features' dtype, as the existing float64 goldens did. (PyTorch3D computes the
  face areas that weight the sampler's face choice in float32 whatever the input: the face
  choice is recorded, so that does not matter.)
- ``capture_samples()`` records, for every call of PyTorch3D's ``sample_points_from_meshes``,
  the packed face indices and barycentric weights it drew, and checks that they rebuild the
  returned points exactly.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import types

import torch


class _TorchWithFloat64(types.ModuleType):
    """``torch`` for a patched module: every attribute is torch's, but ``float32`` is float64."""

    def __init__(self) -> None:
        super().__init__("torch")

    def __getattr__(self, name: str):
        if name == "float32":
            return torch.float64
        return getattr(torch, name)


class _C64:
    """PyTorch3D's ``_C`` whose float32-only CPU KNN kernels also take float64 (plain torch)."""

    def __init__(self, C) -> None:
        self._C = C

    def __getattr__(self, name: str):
        return getattr(self._C, name)

    # KNN: the C++ kernel reads float accessors only.
    def knn_points_idx(self, p1, p2, lengths1, lengths2, norm, K, version=-1):
        if p1.dtype != torch.float64:
            return self._C.knn_points_idx(p1, p2, lengths1, lengths2, norm, K, version)
        N, P1, _ = p1.shape
        idx = torch.zeros(N, P1, K, dtype=torch.int64)
        dists = torch.zeros(N, P1, K, dtype=p1.dtype)
        for n in range(N):
            a, b = p1[n, : lengths1[n]], p2[n, : lengths2[n]]
            diff = a[:, None, :] - b[None, :, :]
            d = diff.abs().sum(-1) if norm == 1 else (diff * diff).sum(-1)
            k = min(K, b.shape[0])
            vals, inds = d.topk(k, dim=1, largest=False, sorted=True)
            idx[n, : a.shape[0], :k] = inds
            dists[n, : a.shape[0], :k] = vals
        return idx, dists

    def knn_points_backward(self, p1, p2, lengths1, lengths2, idx, norm, grad_dists):
        if p1.dtype != torch.float64:
            return self._C.knn_points_backward(p1, p2, lengths1, lengths2, idx, norm, grad_dists)
        grad_p1, grad_p2 = torch.zeros_like(p1), torch.zeros_like(p2)
        for n in range(p1.shape[0]):
            L1 = int(lengths1[n])
            diff = p1[n, :L1, None, :] - p2[n][idx[n, :L1]]  # (L1, K, 3)
            g = grad_dists[n, :L1, :, None]
            d = diff.sign() if norm == 1 else 2.0 * diff
            grad_p1[n, :L1] += (g * d).sum(1)
            grad_p2[n].index_add_(0, idx[n, :L1].reshape(-1), (-(g * d)).reshape(-1, 3))
        return grad_p1, grad_p2


def _packed_to_padded_any(original):
    """PyTorch3D's ``packed_to_padded`` (float32 only: it checks) with a float64 path."""

    def packed_to_padded(inputs, first_idxs, max_size):
        if inputs.dtype != torch.float64:
            return original(inputs, first_idxs, max_size)
        N, total = first_idxs.shape[0], inputs.shape[0]
        out = inputs.new_zeros((N, max_size) + tuple(inputs.shape[1:]))
        ends = torch.cat([first_idxs[1:], first_idxs.new_tensor([total])])
        for n in range(N):
            s, e = int(first_idxs[n]), int(ends[n])
            out[n, : e - s] = inputs[s:e]
        return out

    return packed_to_padded


def _float64_aware(fn, module):
    """``fn`` of ``module`` whose ``torch.float32`` reads float64 when its input is float64
    (for functions that only check the dtype, e.g. PyTorch3D's CPU GraphConv gather)."""

    def wrapped(input, *args, **kwargs):
        if input.dtype != torch.float64:
            return fn(input, *args, **kwargs)
        module.torch = _TorchWithFloat64()
        try:
            return fn(input, *args, **kwargs)
        finally:
            module.torch = torch

    return wrapped


def _batched_nms(boxes, scores, idxs, iou_threshold):
    """Detectron2's ``batched_nms`` without its ``boxes.float()``: float64 boxes and scores
    (the RPN's proposals in training; they feed no loss)."""
    from torchvision.ops import boxes as box_ops

    dtype = torch.promote_types(boxes.dtype, scores.dtype)
    return box_ops.batched_nms(boxes.to(dtype), scores.to(dtype), idxs, iou_threshold)


def _boxes_init(self, tensor) -> None:
    """Detectron2's ``Boxes.__init__`` without the float32 cast of float64 tensors."""
    if not isinstance(tensor, torch.Tensor):
        tensor = torch.as_tensor(tensor, dtype=torch.float32, device=torch.device("cpu"))
    elif tensor.dtype != torch.float64:
        tensor = tensor.to(torch.float32)
    if tensor.numel() == 0:
        tensor = tensor.reshape((-1, 4))
    assert tensor.dim() == 2 and tensor.size(-1) == 4, tensor.size()
    self.tensor = tensor


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _float32_built(fn):
    """Run ``fn`` (cubify / ico_sphere) as in a float32 program; cast the vertices to ``like``'s
    dtype (the voxels' for cubify, float64 for ico_sphere in a float64 run)."""

    def wrapped(*args, **kwargs):
        like = args[0] if args and isinstance(args[0], torch.Tensor) else None
        with default_dtype(torch.float32):
            meshes = fn(*args, **kwargs)
        dtype = like.dtype if like is not None else torch.float64
        from pytorch3d.structures import Meshes

        return Meshes(verts=[v.to(dtype) for v in meshes.verts_list()], faces=meshes.faces_list())

    return wrapped


_PATCHED = False


def float64_originals() -> None:
    """Apply the float64 relaxations (once; see the module docstring)."""
    global _PATCHED
    if _PATCHED:
        return
    # By module path: several packages re-export names that shadow their submodules.
    (
        anchor_generator,
        rpn,
        boxes,
        mask_head,
        mesh_head,
        roi_heads,
        mask,
        voxel,
        projtransform,
        shape,
        mesh_arch,
        knn,
        spm,
        graph_conv,
        proposal_utils,
    ) = (
        importlib.import_module(m)
        for m in (
            "detectron2.modeling.anchor_generator",
            "detectron2.modeling.proposal_generator.rpn",
            "detectron2.structures.boxes",
            "meshrcnn.modeling.roi_heads.mask_head",
            "meshrcnn.modeling.roi_heads.mesh_head",
            "meshrcnn.modeling.roi_heads.roi_heads",
            "meshrcnn.structures.mask",
            "meshrcnn.structures.voxel",
            "meshrcnn.utils.projtransform",
            "meshrcnn.utils.shape",
            "shapenet.modeling.mesh_arch",
            "pytorch3d.ops.knn",
            "pytorch3d.ops.sample_points_from_meshes",
            "pytorch3d.ops.graph_conv",
            "detectron2.modeling.proposal_generator.proposal_utils",
        )
    )

    boxes.Boxes.__init__ = _boxes_init
    proposal_utils.batched_nms = _batched_nms
    f64 = _TorchWithFloat64()
    for module in (projtransform, shape, mesh_head, mask_head, mask, voxel, rpn, anchor_generator):
        module.torch = f64
    knn._C = _C64(knn._C)
    spm.packed_to_padded = _packed_to_padded_any(spm.packed_to_padded)
    graph_conv.gather_scatter_python = _float64_aware(graph_conv.gather_scatter_python, graph_conv)
    for module in (roi_heads, mesh_arch):
        module.cubify = _float32_built(module.cubify)
        module.ico_sphere = _float32_built(module.ico_sphere)
    _PATCHED = True


# ------------------------------------------------------------------------------ sampling
@contextlib.contextmanager
def capture_samples(modules):
    """Record every draw of PyTorch3D's ``sample_points_from_meshes`` called through
    ``modules`` (modules that imported it by name).

    Yields a list that receives, per call, ``(face_idx (M, S) int64 packed, bary (3, M, S))``
    for the M non-empty meshes, after checking that they rebuild the returned points.
    """
    spm = importlib.import_module("pytorch3d.ops.sample_points_from_meshes")

    draws: list[tuple[torch.Tensor, torch.Tensor]] = []
    original = spm.sample_points_from_meshes
    orig_bary = spm._rand_barycentric_coords
    orig_multinomial = torch.Tensor.multinomial

    def recording(meshes, num_samples=10000, return_normals=False, return_textures=False):
        seen: dict[str, torch.Tensor] = {}

        def multinomial(self, *args, **kwargs):
            out = orig_multinomial(self, *args, **kwargs)
            seen["idx"] = out  # PyTorch3D adds the packed offsets to it in place
            return out

        def bary(*args, **kwargs):
            w = orig_bary(*args, **kwargs)
            seen["bary"] = torch.stack(w).detach().clone()
            return w

        torch.Tensor.multinomial = multinomial
        spm._rand_barycentric_coords = bary
        try:
            out = original(meshes, num_samples, return_normals, return_textures)
        finally:
            torch.Tensor.multinomial = orig_multinomial
            spm._rand_barycentric_coords = orig_bary
        idx, w = seen["idx"].detach().clone(), seen["bary"]
        verts, faces = meshes.verts_packed(), meshes.faces_packed()
        tri = verts[faces][idx]  # (M, S, 3 corners, 3)
        rebuilt = (w.permute(1, 2, 0)[..., None] * tri).sum(2)
        samples = out[0] if isinstance(out, tuple) else out
        err = (rebuilt - samples[meshes.valid]).abs().max().item()
        assert err < 1e-12, f"captured draw does not rebuild the samples (error {err})"
        draws.append((idx, w))
        return out

    for module in modules:
        module.sample_points_from_meshes = recording
    try:
        yield draws
    finally:
        for module in modules:
            module.sample_points_from_meshes = original


def check_originals_importable() -> None:
    try:
        import detectron2  # noqa: F401
        import meshrcnn  # noqa: F401
        import pytorch3d  # noqa: F401
        import shapenet  # noqa: F401
    except ImportError as err:
        sys.exit(f"the original PyTorch3D, Detectron2 and Mesh R-CNN must be installed: {err}")
