"""``Checkpointer``: fvcore's checkpointer with atomic saves, safe loads and three weight formats.

Formats it loads (by file name and content):

* ``.pth``/``.pt`` saved by meshrecon, Detectron2 or Mesh R-CNN (``{"model": state_dict, ...}``),
  read with ``torch.load(weights_only=True)``;
* Detectron2 / Caffe2 ``.pkl`` files (``{"model": {name: ndarray}, "__author__": ...,
  "matching_heuristics": ...}``, or a bare dict of blobs), read with an unpickler that admits only
  numpy arrays and plain containers;
* plain ``state_dict`` files such as torchvision's weights.

Paths may be URLs or ``detectron2://``, ``meshrcnn://``, ``shapenet://``, ``torchvision://``
prefixes (see ``meshrecon.checkpoint.catalog``).
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
from collections.abc import Callable
from typing import Any

import torch
from fvcore.common.checkpoint import Checkpointer as _FvcoreCheckpointer
from fvcore.common.checkpoint import _IncompatibleKeys
from torch import nn

from meshrecon.checkpoint.catalog import PathManager, fetch_and_load
from meshrecon.checkpoint.integrity import (
    CheckpointDamagedError,
    NonFiniteWeightsError,
    check_finite_weights,
    checkpoint_iteration,
    classify_torch_load_error,
    damaged_error,
    describe_oserror,
    oserror_in_chain,
    remove_interrupted_saves,
    verify_zip_archive,
)
from meshrecon.checkpoint.matching import align_by_suffix, convert_c2_names
from meshrecon.checkpoint.pickle_safety import (
    UnsafePickleError,
    safe_pickle_load,
    torch_safe_globals,
)

__all__ = ["Checkpointer", "RenameHook", "format_incompatible_keys"]

# (state_dict, source) -> state_dict. ``source`` is "meshrecon" (our own and other {"model": ...}
# .pth files), "detectron2" (.pkl), "caffe2" (.pkl without Detectron2 metadata) or "state_dict"
# (a plain name -> tensor file, e.g. torchvision's).
RenameHook = Callable[[dict[str, Any], str], dict[str, Any]]

LAST_CHECKPOINT = "last_checkpoint"


def _default_save_to_disk() -> bool:
    # Only one process of a distributed job writes; the others would race on the same files.
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return True


def _fsync_dir(path: str) -> None:
    # Makes the rename itself durable; not possible on every OS/file system, hence best-effort.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: str, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write ``path`` through a temporary file in its directory, fsync, then rename over it.

    On failure the temp file is removed and ``path`` keeps its previous content. A failed write
    of the OS (a full disk, a quota) is raised as ``OSError`` saying so and naming ``path``,
    also when a library wrapped it (torch reports ENOSPC as "unexpected pos ...").
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        os_error = oserror_in_chain(err) if isinstance(err, Exception) else None
        if os_error is not None:
            raise OSError(os_error.errno, describe_oserror(os_error, path)) from err
        raise
    _fsync_dir(directory)


def format_incompatible_keys(incompatible: _IncompatibleKeys) -> str:
    """Return a table of missing, unexpected and shape-mismatched keys ("" if there are none)."""
    rows: list[tuple[str, str, str, str]] = []
    for key, shape_ckpt, shape_model in incompatible.incorrect_shapes:
        rows.append(("shape mismatch", key, str(tuple(shape_ckpt)), str(tuple(shape_model))))
    for key in incompatible.missing_keys:
        rows.append(("missing", key, "-", ""))
    for key in incompatible.unexpected_keys:
        rows.append(("unexpected", key, "", "-"))
    if not rows:
        return ""
    header = ("status", "key", "in checkpoint", "in model")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]

    def line(r: tuple[str, ...]) -> str:
        return " | ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()

    sep = "-+-".join("-" * w for w in widths)
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


class Checkpointer(_FvcoreCheckpointer):
    """Save and load a model with its training state (fvcore's API, safer and broader).

    Args:
        model: the model; a ``DistributedDataParallel``/``DataParallel`` wrapper is unwrapped.
        save_dir: directory of ``<name>.pth`` files and the ``last_checkpoint`` tag.
        save_to_disk: write files; ``None`` (default) writes only on the main process.
        rename_hook: optional ``(state_dict, source) -> state_dict`` applied to loaded weights
            before matching (e.g. to map torchvision ResNet names to meshrecon's). With a hook,
            plain state_dict files are matched by suffix too, so a hook may return names
            relative to a submodule (``res2.0.conv1.weight``).
        **checkpointables: objects with ``state_dict``/``load_state_dict`` (optimizer,
            scheduler, ...) saved and resumed with the model.

    ``load`` returns the checkpoint's remaining entries (e.g. ``iteration``) and keeps the
    report of what did not match in ``self.last_incompatible``. A damaged file raises
    :class:`CheckpointDamagedError`, one with NaN/inf weights :class:`NonFiniteWeightsError`,
    and a pickle that asks for code is refused (``UnsafePickleError`` / ``ValueError``).

    ``extra_data`` holds entries written into every checkpoint (``DefaultTrainer`` records its
    config there as ``config``, the full YAML text).
    """

    def __init__(
        self,
        model: nn.Module,
        save_dir: str = "",
        *,
        save_to_disk: bool | None = None,
        rename_hook: RenameHook | None = None,
        **checkpointables: Any,
    ) -> None:
        if save_to_disk is None:
            save_to_disk = _default_save_to_disk()
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.path_manager = PathManager
        self.logger = logging.getLogger(__name__)
        self.rename_hook = rename_hook
        self.last_incompatible: _IncompatibleKeys | None = None
        self.extra_data: dict[str, Any] = {}

    # ------------------------------------------------------------------ saving
    def save(self, name: str, **kwargs: Any) -> None:
        """Write ``<save_dir>/<name>.pth`` atomically and tag it as the last checkpoint.

        Args:
            name: file name without extension (no directories).
            **kwargs: extra picklable data (e.g. ``iteration=...``), returned by ``load``.
        """
        if not self.save_dir or not self.save_to_disk:
            return
        basename = f"{name}.pth"
        if os.path.basename(basename) != basename:
            raise ValueError(f"Checkpoint name {name!r} must not contain a directory")
        data: dict[str, Any] = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(self.extra_data)
        data.update(kwargs)
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to %s", save_file)
        _atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Atomically record ``last_filename_basename`` as the checkpoint to resume from."""
        save_file = os.path.join(self.save_dir, LAST_CHECKPOINT)
        _atomic_write(save_file, lambda f: f.write(last_filename_basename), mode="w")

    def remove_interrupted_saves(self) -> list[str]:
        """Delete temp files of saves into ``save_dir`` that never completed; return them.

        Call it only while no other process saves into ``save_dir`` (``DefaultTrainer`` does,
        holding the ``OUTPUT_DIR`` lock): a live save's temp file looks the same.
        """
        if not self.save_dir or not self.save_to_disk:
            return []
        return remove_interrupted_saves(self.save_dir)

    # ------------------------------------------------------------------ loading
    def resume_or_load(self, path: str, *, resume: bool = True) -> dict[str, Any]:
        """Resume from ``save_dir``'s last checkpoint, or load only the model from ``path``.

        With ``resume`` and a ``last_checkpoint`` tag, the tagged file is loaded with every
        checkpointable. If it is damaged, missing or holds NaN weights, the periodic checkpoints
        before it (``<prefix>_<iteration>.pth``, newest first) are tried in turn, and each file
        skipped is logged with the reason. A refused (unsafe) file is not skipped: it raises.

        Raises:
            CheckpointDamagedError: resuming, and no checkpoint of ``save_dir`` is intact.
        """
        if not (resume and self.has_checkpoint()):
            return self.load(path, checkpointables=[])
        skipped: list[str] = []
        for candidate in self._resume_candidates():
            try:
                extra = self.load(candidate)
            except (CheckpointDamagedError, NonFiniteWeightsError, FileNotFoundError) as err:
                self.logger.warning("Not resuming from %s: %s", candidate, err)
                # The first sentence says what is wrong; the full message was just logged.
                skipped.append(f"{os.path.basename(candidate)}: {str(err).split('. ')[0]}")
                continue
            if skipped:
                self.logger.warning(
                    "Resumed from %s (iteration %s), the newest intact checkpoint; skipped:\n  %s",
                    candidate,
                    extra.get("iteration", "?"),
                    "\n  ".join(skipped),
                )
            return extra
        raise CheckpointDamagedError(
            f"No intact checkpoint to resume from in {self.save_dir}:\n  "
            + "\n  ".join(skipped or ["the last_checkpoint tag names no file"])
            + "\nStart without --resume (from MODEL.WEIGHTS) or restore a checkpoint."
        )

    def _resume_candidates(self) -> list[str]:
        """The tagged checkpoint, then the periodic ones older than it, newest first."""
        tagged = self.get_checkpoint_file()
        if os.path.normpath(tagged) == os.path.normpath(self.save_dir):
            tagged = ""  # an empty tag
        limit = checkpoint_iteration(tagged) if tagged else None
        older: list[tuple[int, str]] = []
        for file in self.get_all_checkpoint_files():
            iteration = checkpoint_iteration(file)
            if iteration is None or os.path.basename(file) == os.path.basename(tagged):
                continue
            # Never a later one: it may be a leftover of an earlier run in this folder.
            if limit is None or iteration < limit:
                older.append((iteration, file))
        older.sort(reverse=True)
        return ([tagged] if tagged else []) + [file for _, file in older]

    def load(self, path: str, checkpointables: list[str] | None = None) -> dict[str, Any]:
        """Load weights (and, unless excluded, checkpointables) from a path or URL.

        Args:
            path: file path, URL, or prefixed name (``meshrcnn://...``); empty: load nothing.
            checkpointables: names of checkpointables to restore; ``None`` restores all
                present in the file, ``[]`` only the model.

        Returns:
            The checkpoint's entries that are neither the model nor a restored checkpointable.
        """
        if not path:
            self.logger.info("No checkpoint given; the model keeps its initialization.")
            return {}
        self.logger.info("Loading checkpoint from %s", path)
        # A URL is downloaded to a temp file in the cache and kept only if it loads here.
        fetched = None if os.path.isfile(path) else fetch_and_load(path, self._load_file)
        if fetched is not None:
            local, checkpoint = fetched
        else:
            local = path if os.path.isfile(path) else self.path_manager.get_local_path(path)
            if not os.path.isfile(local):
                raise FileNotFoundError(
                    f"Checkpoint {path} not found"
                    + (f" (resolved to {local})" if local != path else "")
                )
            checkpoint = self._load_file(local)
        if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
            raise ValueError(f"Checkpoint {path} holds no 'model' state_dict")
        # Before anything is copied into the model, so that a refused file leaves it untouched.
        check_finite_weights(checkpoint["model"], path)
        incompatible = self._load_model(checkpoint)
        self.last_incompatible = incompatible
        self._log_incompatible_keys(incompatible)

        names = list(self.checkpointables) if checkpointables is None else checkpointables
        for key in names:
            if key not in self.checkpointables:
                raise KeyError(
                    f"No checkpointable named {key!r}; this Checkpointer has "
                    f"{sorted(self.checkpointables)}"
                )
            if key in checkpoint:
                self.logger.info("Loading %s from %s", key, path)
                self.checkpointables[key].load_state_dict(checkpoint.pop(key))
        for meta in ("__author__", "matching_heuristics", "__source__"):
            checkpoint.pop(meta, None)
        return checkpoint

    def _load_file(self, f: str) -> dict[str, Any]:
        """Read a local checkpoint file into ``{"model": ..., "__source__": ..., ...}``."""
        if f.endswith(".pkl"):
            try:
                with open(f, "rb") as fh:
                    data = safe_pickle_load(fh, source=f)
            except UnsafePickleError:
                raise
            except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError) as e:
                # Cut short ("Ran out of input", "pickle data was truncated") or not a pickle.
                raise damaged_error(f, "not a complete pickle", e) from e
            if not isinstance(data, dict):
                raise ValueError(f"{f} holds a {type(data).__name__}, not a dict of weights")
            if "model" in data and "__author__" in data:
                data["__source__"] = "detectron2"
                return data
            # Caffe2 / Detectron1 files: a bare dict of blobs (detection models under "blobs").
            blobs = data.get("blobs", data)
            blobs = {k: v for k, v in blobs.items() if not k.endswith("_momentum")}
            return {
                "model": blobs,
                "__author__": "Caffe2",
                "matching_heuristics": True,
                "__source__": "caffe2",
            }

        verify_zip_archive(f)  # torch.load neither checks CRCs nor names truncation as such
        try:
            with torch.serialization.safe_globals(torch_safe_globals()):
                data = torch.load(f, map_location="cpu", weights_only=True)
        except Exception as e:  # a refused global (UnpicklingError), or a damaged legacy file
            raise classify_torch_load_error(f, e) from e
        if not isinstance(data, dict):
            raise ValueError(f"{f} holds a {type(data).__name__}, not a dict")
        if isinstance(data.get("model"), dict):
            data.setdefault("__source__", "meshrecon")
            return data
        if data and all(isinstance(v, torch.Tensor) for v in data.values()):
            return {
                "model": data,
                "__source__": "state_dict",
                "matching_heuristics": self.rename_hook is not None,
            }
        raise ValueError(
            f"{f} is neither a checkpoint with a 'model' entry nor a plain state_dict of tensors "
            f"(top-level keys: {sorted(map(str, data))[:10]})"
        )

    def _load_model(self, checkpoint: dict[str, Any]) -> _IncompatibleKeys:
        """Rename, align and load ``checkpoint["model"]``; shape mismatches are skipped."""
        source = checkpoint.get("__source__", "meshrecon")
        state_dict = checkpoint["model"]
        self._convert_ndarray_to_tensor(state_dict)
        original_names: dict[str, str] = {}
        if checkpoint.get("__author__") == "Caffe2":
            state_dict, original_names = convert_c2_names(state_dict)
        if self.rename_hook is not None:
            state_dict = dict(self.rename_hook(dict(state_dict), source))
        unmatched: list[str] = []
        if checkpoint.get("matching_heuristics", False):
            model_keys = list(self.model.state_dict().keys())
            state_dict, unmatched = align_by_suffix(model_keys, state_dict)
            self.logger.info(
                "Matched %d of %d model tensors by name suffix", len(state_dict), len(model_keys)
            )
        checkpoint["model"] = state_dict
        incompatible = super()._load_model(checkpoint)
        if unmatched:
            extra = [original_names.get(k, k) for k in unmatched]
            incompatible = incompatible._replace(
                unexpected_keys=list(incompatible.unexpected_keys) + extra
            )
        return incompatible

    def _log_incompatible_keys(self, incompatible: _IncompatibleKeys) -> None:
        table = format_incompatible_keys(incompatible)
        if table:
            self.logger.warning(
                "Some weights were not loaded (%d missing, %d unexpected, %d shape mismatches; "
                "mismatched tensors keep their initialization):\n%s",
                len(incompatible.missing_keys),
                len(incompatible.unexpected_keys),
                len(incompatible.incorrect_shapes),
                table,
            )
