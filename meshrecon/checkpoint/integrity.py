"""Telling a damaged checkpoint from a refused one, and cleaning up after interrupted saves.

A checkpoint that does not load is either *damaged* (cut short by a killed save or copy or a
full disk, bits flipped on disk: nothing to fear, use another one) or *refused* (its pickle asks
for code a weights file never needs: possibly an attack, nothing of it was run). The two need
different actions, so the errors differ: :class:`CheckpointDamagedError` here, and the refusals
(:class:`~meshrecon.checkpoint.pickle_safety.UnsafePickleError`, or a ``ValueError`` saying that
``torch.load(weights_only=True)`` refused a global) in the loader. A file of NaN or infinite
weights is refused too (:class:`NonFiniteWeightsError`): loaded, it would give NaN predictions
or a diverging training without a word.
"""

from __future__ import annotations

import errno
import logging
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = [
    "CheckpointDamagedError",
    "NonFiniteWeightsError",
    "checkpoint_iteration",
    "check_finite_weights",
    "classify_torch_load_error",
    "damaged_error",
    "describe_oserror",
    "is_interrupted_save",
    "oserror_in_chain",
    "recorded_config",
    "remove_interrupted_saves",
    "verify_zip_archive",
]

logger = logging.getLogger(__name__)

_ZIP_MAGIC = b"PK\x03\x04"
# Temp files of ``_atomic_write``: ``.<target>.<8 random chars of tempfile.mkstemp>.tmp``; only
# those of checkpoints (``*.pth``) and of the ``last_checkpoint`` tag are ours to delete.
_TEMP_RE = re.compile(r"^\.(?P<target>.+\.pth|last_checkpoint)\.[a-z0-9_]{8}\.tmp$")
_ITER_RE = re.compile(r"_(?P<iter>\d+)\.pth$")


class CheckpointDamagedError(ValueError):
    """A checkpoint file is truncated or corrupt (not an attack; nothing of it was loaded)."""


class NonFiniteWeightsError(ValueError):
    """A checkpoint holds NaN or infinite weights; it was not loaded."""


def damaged_error(
    path: str, what: str, cause: BaseException | None = None
) -> CheckpointDamagedError:
    """The error for a damaged ``path``: what is wrong, the likely causes, what to do."""
    detail = f": {type(cause).__name__}: {cause}" if cause is not None and str(cause) else ""
    return CheckpointDamagedError(
        f"Checkpoint {path} is damaged ({what}{detail}). This is a broken file, not a refused "
        "one: typically a save or copy cut short (killed process, full disk) or corruption on "
        "disk. Use another checkpoint (--resume falls back to the newest intact one) or "
        "download / copy it again."
    )


def verify_zip_archive(path: str) -> bool:
    """Check a torch zip-format checkpoint completely (structure and every CRC).

    ``torch.load`` does not check CRCs, so a flipped bit in a tensor loads silently, and a
    truncated file fails with unrelated messages ("Invalid argument", "failed finding central
    directory").

    Returns:
        True if ``path`` is a zip archive and intact, False if it is not a zip file at all
        (a legacy torch pickle, or a Detectron2 ``.pkl``: checked by their unpickler).

    Raises:
        CheckpointDamagedError: empty, truncated, or a member fails its CRC check.
    """
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise damaged_error(path, "the file is empty")
    if head != _ZIP_MAGIC:
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile as err:
        size = os.path.getsize(path)
        raise damaged_error(
            path, f"truncated: a zip archive without its central directory ({size} bytes)", err
        ) from err
    except (EOFError, OSError, zipfile.LargeZipFile) as err:
        raise damaged_error(path, "an unreadable zip archive", err) from err
    if bad is not None:
        raise damaged_error(path, f"CRC check failed for member {bad!r}")
    return True


def oserror_in_chain(err: BaseException) -> OSError | None:
    """The first ``OSError`` with an errno in ``err``'s cause/context chain (``err`` included).

    torch's zip writer reports a failed write as ``RuntimeError("unexpected pos ...")``; the
    ``OSError`` (e.g. ENOSPC) is only its context.
    """
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno is not None:
            return current
        current = current.__cause__ or current.__context__
    return None


def classify_torch_load_error(path: str, err: BaseException) -> Exception:
    """The error to raise for a failed ``torch.load(weights_only=True)`` of ``path``.

    A refused global is reported as such (``ValueError``, the file may be hostile); anything
    else that goes wrong while reading is damage.
    """
    message = str(err)
    if isinstance(err, pickle.UnpicklingError) and "GLOBAL" in message:
        found = re.search(r"GLOBAL (\S+)", message)
        name = found.group(1) if found else "a global"
        return ValueError(
            f"Refusing to load {path}: torch.load(weights_only=True) refused {name}, which a "
            "weights file does not need and which could run code; nothing of the file was "
            "executed. Only tensors, numpy arrays and plain containers are loaded; a file that "
            "needs anything else must be converted to such a state_dict in a trusted step."
        )
    return damaged_error(path, "not a readable torch checkpoint", err)


def check_finite_weights(state_dict: Mapping[str, Any], source: str) -> None:
    """Raise :class:`NonFiniteWeightsError` naming the tensors of ``state_dict`` with NaN/inf.

    Refused rather than warned about: a warning scrolls by in a long log while the run reports
    NaN metrics or diverges; NaN weights are never what a user wants to load. Integer tensors
    cannot hold either and are skipped.
    """
    bad: list[str] = []
    total = 0
    for name, value in state_dict.items():
        if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.inexact):
            value = torch.from_numpy(value)
        if not torch.is_tensor(value) or not (value.is_floating_point() or value.is_complex()):
            continue
        # A sum is NaN or infinite if any element is (NaN and inf propagate), so one reduction
        # clears a tensor; only a non-finite sum (or a finite overflow) needs the full check.
        if bool(torch.isfinite(value.sum())):
            continue
        finite = torch.isfinite(value)
        if bool(finite.all()):
            continue
        total += 1
        nan = int(torch.isnan(value).sum())
        inf = int(value.numel() - int(finite.sum()) - nan)
        if len(bad) < 10:
            bad.append(f"{name} ({nan} NaN, {inf} inf of {value.numel()})")
    if bad:
        more = f" and {total - len(bad)} more" if total > len(bad) else ""
        raise NonFiniteWeightsError(
            f"Refusing to load {source}: {total} tensor(s) hold NaN or infinite values: "
            + ", ".join(bad)
            + more
            + ". Such weights give NaN outputs; the run that saved them had probably diverged. "
            "Use an earlier checkpoint."
        )


def checkpoint_iteration(filename: str) -> int | None:
    """The iteration in a periodic checkpoint's name (``model_0004999.pth`` -> 4999), else None."""
    found = _ITER_RE.search(os.path.basename(filename))
    return int(found.group("iter")) if found else None


def is_interrupted_save(filename: str) -> bool:
    """Whether ``filename`` is the temp file of a checkpoint save that never completed."""
    return _TEMP_RE.match(os.path.basename(filename)) is not None


def remove_interrupted_saves(save_dir: str) -> list[str]:
    """Delete the temp files that killed saves left in ``save_dir``; return their paths.

    Safe only while no other process saves into ``save_dir`` (the trainer holds the
    ``OUTPUT_DIR`` lock when it calls this), since a live save's temp file has the same form.
    """
    removed: list[str] = []
    try:
        names = os.listdir(save_dir)
    except FileNotFoundError:
        return removed
    for name in sorted(names):
        path = os.path.join(save_dir, name)
        if not is_interrupted_save(name) or not os.path.isfile(path):
            continue
        try:
            size = os.path.getsize(path)
            os.unlink(path)
        except FileNotFoundError:
            continue
        except OSError as err:
            logger.warning("Could not remove %s, left by an interrupted save: %s", path, err)
            continue
        logger.info("Removed %s (%d bytes), left by an interrupted save", path, size)
        removed.append(path)
    return removed


def recorded_config(path: str) -> str | None:
    """The config YAML a meshrecon checkpoint recorded at save time, or None if it has none.

    Tensors are memory-mapped, not read, so this is cheap even for large checkpoints.

    Raises:
        CheckpointDamagedError: the file is truncated or corrupt.
    """
    zip_format = verify_zip_archive(path)
    from meshrecon.checkpoint.pickle_safety import torch_safe_globals

    try:
        with torch.serialization.safe_globals(torch_safe_globals()):
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=zip_format)
    except Exception as err:
        raise classify_torch_load_error(path, err) from err
    config = data.get("config") if isinstance(data, dict) else None
    return config if isinstance(config, str) else None


def describe_oserror(err: OSError, path: str) -> str:
    """``"no space left on device writing <path>"`` and the like, for a failed write."""
    reason = os.strerror(err.errno) if err.errno else str(err)
    message = f"{reason[:1].lower()}{reason[1:]} writing {path}"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        message += " (free some space or choose another OUTPUT_DIR)"
    return message
