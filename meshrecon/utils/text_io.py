"""Read the text files that datasets describe themselves with (JSON annotations, split lists,
calibration files), with errors that name the file, the byte and the line at fault."""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["read_json", "read_text"]


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """Return the UTF-8 text of ``path``.

    Raises:
        FileNotFoundError: ``path`` does not exist (named with ``what``).
        ValueError: the file is not UTF-8; the message names it, the byte, its offset and line.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise ValueError(
            f"{what} {path} is not UTF-8 text: byte {raw[err.start : err.end]!r} at offset "
            f"{err.start} (line {line})"
        ) from None


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Return the parsed JSON of ``path`` (UTF-8).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not UTF-8 or not valid JSON (the message names the file, line
            and column).
    """
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} {os.fspath(path)} is not valid JSON: {err}") from None
