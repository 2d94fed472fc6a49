"""Matching checkpoint names to model names when they differ by a prefix (or by Caffe2 naming).

Pretrained weights are usually saved from a smaller model than the one that loads them: an
ImageNet ResNet has ``res2.0.conv1.weight`` where a detector has
``backbone.bottom_up.res2.0.conv1.weight``. Detectron2 marks such files with
``"matching_heuristics": True``; for them each model key takes the longest checkpoint key that
is a dot-aligned suffix of it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["align_by_suffix", "convert_c2_names"]


def _is_suffix(model_key: str, ckpt_key: str) -> bool:
    # Dot-aligned: "mesh_head.conv1.weight" must not match "1.weight" or "head.conv1.weight"
    # must not match "_head.conv1.weight"; it may match "conv1.weight".
    return model_key == ckpt_key or model_key.endswith("." + ckpt_key)


def align_by_suffix(
    model_keys: Iterable[str], ckpt_state_dict: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """Rename checkpoint entries to the model keys they are the longest suffix of.

    Args:
        model_keys: names in the model's ``state_dict``.
        ckpt_state_dict: checkpoint name -> tensor.

    Returns:
        ``(renamed, unmatched)``: model name -> tensor for every matched model key, and the
        checkpoint names no model key took.

    Raises:
        ValueError: if one checkpoint entry is the best match of two model keys (its target is
            ambiguous; a rename hook must disambiguate).
    """
    by_last: dict[str, list[str]] = {}
    for ck in ckpt_state_dict:
        by_last.setdefault(ck.rsplit(".", 1)[-1], []).append(ck)

    renamed: dict[str, Any] = {}
    taken_by: dict[str, str] = {}
    for mk in sorted(model_keys):
        candidates = [ck for ck in by_last.get(mk.rsplit(".", 1)[-1], []) if _is_suffix(mk, ck)]
        if not candidates:
            continue
        best = max(candidates, key=len)
        if best in taken_by:
            raise ValueError(
                f"Checkpoint key {best!r} matches two model keys, {taken_by[best]!r} and "
                f"{mk!r}; give the Checkpointer a rename_hook that names it fully."
            )
        taken_by[best] = mk
        renamed[mk] = ckpt_state_dict[best]
    unmatched = [ck for ck in ckpt_state_dict if ck not in taken_by]
    return renamed, unmatched


# Caffe2 (Detectron1 / MSRA ImageNet) ResNet names -> Detectron2's, applied in order.
_C2_RULES: list[tuple[str, str]] = [
    (r"^res_conv1_bn_", "stem.conv1.norm."),
    (r"^conv1_", "stem.conv1_"),
    (r"^res(\d+)_(\d+)_", r"res\1.\2."),
    (r"branch2a", "conv1"),
    (r"branch2b", "conv2"),
    (r"branch2c", "conv3"),
    (r"branch1", "shortcut"),
    (r"_bn_s$", ".norm.weight"),
    (r"_bn_b$", ".norm.bias"),
    (r"_bn_rm$", ".norm.running_mean"),
    (r"_bn_riv$", ".norm.running_var"),
    (r"norm\.s$", "norm.weight"),
    (r"norm\.b$", "norm.bias"),
    (r"norm\.rm$", "norm.running_mean"),
    (r"norm\.riv$", "norm.running_var"),
    (r"_w$", ".weight"),
    (r"_b$", ".bias"),
]


def convert_c2_names(state_dict: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Rename a Caffe2 ResNet's blobs to Detectron2's names.

    Covers the stem and the residual stages (what ImageNet-pretrained MSRA files hold, e.g.
    ``res2_0_branch2a_bn_s`` -> ``res2.0.conv1.norm.weight``). Detection-head blobs of
    Detectron1 models get only the generic ``_w``/``_b`` renaming and will usually be reported
    as unexpected.

    Returns:
        ``(renamed, new_to_original)``.
    """
    renamed: dict[str, Any] = {}
    original: dict[str, str] = {}
    for name, value in state_dict.items():
        new = name
        for pattern, repl in _C2_RULES:
            new = re.sub(pattern, repl, new)
        renamed[new] = value
        original[new] = name
    return renamed, original
