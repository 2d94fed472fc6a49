"""Heads built with statistics of their training split: how they get them, how they keep them.

The mean-shape head and the recognition heads answer from the training shapes: a mean shape,
a database of descriptors. Those are data, computed by the data layer
(:mod:`meshrecon.data.shape_statistics`: once per content and parameters, cached on disk), and
are handed to the heads as constructor arguments.

* **Getting them.** Built from a config, a head asks :func:`training_statistics`, the one place
  where a model reaches the data layer. It returns None when ``DATASETS.TRAIN`` is empty or not
  registered: the head is then built without its statistics.
* **Keeping them.** A head keeps them as *statistic buffers* (:func:`register_statistic`):
  persistent buffers, so that every checkpoint carries them. A head built without them has an
  empty, non-persistent placeholder in their place, absent from its ``state_dict``; loading a
  checkpoint that holds them (:func:`adopt_statistics`, from the head's
  ``_load_from_state_dict``) turns each placeholder into a buffer of the checkpoint's shape.
  Evaluating, exporting or running the demo from a checkpoint therefore needs no training
  split. The placeholders being absent from the ``state_dict``, the checkpointer's shape check
  (which skips tensors whose shapes differ) never sees them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

__all__ = [
    "adopt_statistics",
    "differs_from_checkpoint",
    "has_statistic",
    "register_statistic",
    "training_statistics",
]


def training_statistics(cfg: Any, kind: str) -> dict[str, Any] | None:
    """The statistics of ``cfg.DATASETS.TRAIN`` a head of ``kind`` is built with, or None.

    ``kind`` is ``"mean_shape"`` (``{"mean_verts", "mean_faces"}``) or ``"shape_database"``
    (``{"database"}``); see :func:`meshrecon.data.shape_statistics.training_statistics`, which
    this calls. None: the training split is not registered, and a checkpoint must provide them.
    """
    # Imported here, the one import of the data layer by modeling (docs/ARCHITECTURE.md):
    # importing meshrecon.data registers the datasets and loads SciPy, a second that building
    # any other model, or importing modeling, should not pay.
    from meshrecon.data.shape_statistics import training_statistics as compute

    return compute(cfg, kind)


def register_statistic(
    module: nn.Module, name: str, value: torch.Tensor | None, dtype: torch.dtype
) -> None:
    """Register ``value`` as the persistent buffer ``name`` of ``module`` (cast to ``dtype``),
    or, for None, an empty non-persistent placeholder that a checkpoint fills."""
    if value is None:
        module.register_buffer(name, torch.empty(0, dtype=dtype), persistent=False)
    else:
        module.register_buffer(name, value.to(dtype), persistent=True)


def has_statistic(module: nn.Module, name: str) -> bool:
    """Whether the statistic buffer ``name`` holds a value (is not a placeholder)."""
    return name in module._buffers and name not in module._non_persistent_buffers_set


def differs_from_checkpoint(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor], prefix: str, name: str
) -> bool:
    """Whether ``module`` holds the statistic ``name`` and ``state_dict`` holds a different one.

    For a fingerprint of the statistics (a digest buffer): True means the checkpoint was made
    from another training split or setup than the one the head was built with. A placeholder
    (built without it) or a checkpoint without it never differs.
    """
    saved = state_dict.get(prefix + name)
    if saved is None or not has_statistic(module, name):
        return False
    mine = module._buffers[name]
    assert mine is not None  # a statistic, registered by register_statistic
    return not torch.equal(saved.to(mine), mine)


def adopt_statistics(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor], prefix: str, names: Iterable[str]
) -> list[str]:
    """Turn the placeholders among ``names`` that ``state_dict`` holds into persistent buffers
    of the checkpoint's shapes, on the placeholder's device and dtype.

    Call it from ``_load_from_state_dict`` before the parent's: the values are then copied by
    the usual loading. Returns the names adopted.
    """
    adopted = []
    for name in names:
        key = prefix + name
        if has_statistic(module, name) or key not in state_dict:
            continue
        placeholder = module._buffers[name]
        assert placeholder is not None  # registered by register_statistic
        value = state_dict[key]
        module._buffers[name] = torch.empty(
            tuple(value.shape), dtype=placeholder.dtype, device=placeholder.device
        )
        module._non_persistent_buffers_set.discard(name)
        adopted.append(name)
    return adopted
