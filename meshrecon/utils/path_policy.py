"""One policy for every path that comes from data or a config and lands on the local disk.

Three kinds of such paths exist in meshrecon, and each goes through one function here:

* the path of a weights URL, mapped into the download cache (:func:`url_cache_path`);
* a path read from an annotation or split file, joined onto a dataset folder
  (:class:`DatasetRoot`, :func:`resolve_dataset_path`);
* a config name, joined onto the model zoo's config folder (:func:`resolve_under`).

The rules are the same for all three: a path names a file *below* its root and nothing else.
Absolute paths, drive letters, ``..`` segments and, for URLs, percent-encoded separators or
dots, empty or ``.`` segments and control characters are refused by looking at the text; then
the joined path is resolved (symlinks included) and must still lie inside the root's own
resolved path, so a symlink planted inside the root cannot lead out of it. The root itself may
be a symlink (a dataset folder linked from another disk): only links below it are checked.

Every refusal raises :class:`UnsafePathError` (a ``ValueError``) naming the path, the reason and
the root, before anything is created, read or written. This module imports nothing from
meshrecon, so every layer may use it.
"""

from __future__ import annotations

import functools
import os
import re
from urllib.parse import unquote, urlsplit

__all__ = [
    "UnsafePathError",
    "DatasetRoot",
    "is_inside",
    "resolve_dataset_path",
    "resolve_under",
    "url_cache_path",
]

_DRIVE = re.compile(r"^[A-Za-z]:")


class UnsafePathError(ValueError):
    """A path from data or a config would lead outside the folder it must stay in."""


# Unicode category Cc: NUL, the C0 controls, DEL and the C1 controls. A file name holding one
# is never legitimate, and some (NUL, newline) change how a path is parsed or logged.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None


def is_inside(path: str, root: str) -> bool:
    """Whether ``path`` equals ``root`` or lies below it (both compared as given, no resolving)."""
    path, root = os.path.normcase(path), os.path.normcase(root)
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


@functools.lru_cache(maxsize=4096)  # loaders join many files below the same folder
def _relative_segments(rel: str) -> tuple[tuple[str, ...] | None, str]:
    """Split a dataset-relative path into segments, or return ``(None, reason)``."""
    if _has_control(rel):
        return None, "holds a control character"
    # Backslashes are separators too: an annotation file written on Windows must resolve the
    # same here, and "..\\x" must not slip past the ".." check.
    posix = rel.replace("\\", "/")
    if posix.startswith("/") or _DRIVE.match(posix) or os.path.isabs(rel):
        return None, "is absolute"
    segments = tuple(s for s in posix.split("/") if s not in ("", "."))
    if ".." in segments:
        return None, "climbs out with '..'"
    if not segments:
        return None, "names no file"
    return segments, ""


def resolve_under(root: str, rel: str, what: str = "path", kind: str = "folder") -> str:
    """Join ``rel`` onto ``root``, refusing anything that would end up outside ``root``.

    Args:
        root: the folder ``rel`` must stay in.
        rel: a relative path (``/`` or ``\\`` separated); ``.`` segments are dropped.
        what: how to name ``rel`` in an error (e.g. ``"config 'x.yaml'"``).
        kind: how to name ``root`` in an error (e.g. ``"model zoo's config folder"``).

    Returns:
        ``os.path.join(root, *segments)`` with ``root`` made absolute.

    Raises:
        UnsafePathError: ``rel`` is absolute, holds ``..`` or a control character, or resolves
            (through a symlink) outside the resolved ``root``.
    """
    return DatasetRoot(root, kind).join(rel, what)


class DatasetRoot:
    """A folder that paths read from data are joined onto (see the module docstring).

    Each folder is resolved and listed once (which of its entries are symlinks), so a loader
    joining a million view paths pays per folder, not per file, for the file system calls.

    Args:
        root: the dataset folder; it may itself be a symlink.
        kind: what the folder is, for error messages.
    """

    def __init__(self, root: str, kind: str = "dataset folder") -> None:
        self.root = os.path.abspath(root)
        self.kind = kind
        self.real = os.path.realpath(self.root)
        self._real_dirs: dict[str, tuple[str, bool]] = {}
        self._links: dict[str, frozenset[str]] = {}

    def __repr__(self) -> str:
        return f"DatasetRoot({self.root!r})"

    def _refuse(self, rel: object, reason: str, where: str) -> UnsafePathError:
        hint = (
            " (the folder itself may be a symlink; links inside it may not lead out)"
            if "symlink" in reason
            else ""
        )
        return UnsafePathError(
            f"{where}: path {rel!r} {reason}; it must stay inside the {self.kind} {self.root}{hint}"
        )

    def _real_dir(self, directory: str) -> tuple[str, bool]:
        """``(resolved directory, whether it lies inside the root)``, computed once."""
        known = self._real_dirs.get(directory)
        if known is None:
            real = os.path.realpath(directory)
            known = self._real_dirs[directory] = (real, is_inside(real, self.real))
        return known

    def _symlinks_in(self, directory: str) -> frozenset[str]:
        links = self._links.get(directory)
        if links is None:
            try:
                with os.scandir(directory) as entries:
                    links = frozenset(e.name for e in entries if e.is_symlink())
            except OSError:  # missing folder: its files are reported missing by the loader
                links = frozenset()
            self._links[directory] = links
        return links

    def join(self, rel: str, where: str = "path", under: str = "") -> str:
        """Return the absolute path of ``rel`` below the root (below ``root/under``).

        Args:
            rel: the relative path found in the data.
            where: the file and record it came from, for the error message.
            under: a relative folder of the root that ``rel`` is relative to (e.g. a model's
                folder for an image name read from that model's metadata); it is checked with
                ``rel``, but ``rel`` alone must already be relative and free of ``..``.

        Raises:
            UnsafePathError: ``rel`` (or ``under``) is not a non-empty string, is absolute,
                holds ``..`` or a control character, or the path resolves (through a symlink)
                outside the root.
        """
        segments: tuple[str, ...] = ()
        for part in (under, rel) if under else (rel,):
            if not isinstance(part, str) or not part:
                raise self._refuse(part, "is not a non-empty relative path", where)
            part_segments, reason = _relative_segments(part)
            if part_segments is None:
                raise self._refuse(part, reason, where)
            segments += part_segments
        path = os.path.join(self.root, *segments)
        parent = os.path.dirname(path)
        real_parent, inside = self._real_dir(parent)
        shown = f"{under}/{rel}" if under else rel
        if not inside:
            raise self._refuse(shown, f"leads through a symlink to {real_parent}", where)
        if segments[-1] in self._symlinks_in(parent):
            real = os.path.realpath(path)
            if not is_inside(real, self.real):
                raise self._refuse(shown, f"is a symlink to {real}", where)
        return path


def resolve_dataset_path(root: str, rel: str, where: str = "path") -> str:
    """Join a path read from an annotation or split file onto its dataset folder ``root``.

    One-off form of :meth:`DatasetRoot.join` (a loader joining many paths keeps one
    :class:`DatasetRoot`).
    """
    return DatasetRoot(root).join(rel, where)


def _url_segments(url: str) -> tuple[list[str] | None, str]:
    """The cache-path segments of an http(s)/ftp URL, or ``(None, reason)``."""
    if _has_control(url):
        # Checked before parsing: urlsplit silently deletes tabs and newlines.
        return None, "holds a control character"
    parsed = urlsplit(url)
    if parsed.scheme.lower() not in ("http", "https", "ftp") or not parsed.netloc:
        return None, "is not an http(s) or ftp URL with a host"
    path = parsed.path
    if not path.startswith("/") or path == "/":
        return None, "names no file"
    if path.endswith("/"):
        return None, "does not name a file (its path ends with '/')"
    if "\\" in path:
        return None, "holds a backslash (a separator on Windows)"
    segments = path[1:].split("/")
    for raw in segments:
        decoded = unquote(raw)
        if raw == "" or decoded == "":
            return None, "holds an empty path segment ('//')"
        if decoded in (".", "..") or raw in (".", ".."):
            return None, f"holds a {decoded!r} path segment"
        if any(c in decoded for c in "/\\"):
            return None, f"holds an encoded separator in the segment {raw!r}"
        if _has_control(decoded):
            return None, f"holds an encoded control character in the segment {raw!r}"
        if ":" in decoded:
            return None, f"holds a ':' (a drive or stream name on Windows) in {raw!r}"
    return segments, ""


def url_cache_path(url: str, cache_dir: str, origin: str | None = None) -> str:
    """Return where ``url`` is cached: ``<cache_dir>/<path of the URL>`` (host and query dropped).

    The URL's path segments are used as they are written (percent escapes included), after
    refusing any that could point elsewhere once decoded by a server or by the file system.

    Args:
        url: an http(s) or ftp URL.
        cache_dir: the download cache folder (may be a symlink itself; need not exist).
        origin: the name the user gave (``meshrcnn://x.pth``), named in the error.

    Raises:
        UnsafePathError: the URL's path cannot be mapped inside ``cache_dir``; raised before
            any folder is created or byte written.
    """
    named = f"{origin} ({url})" if origin and origin != url else url
    segments, reason = _url_segments(url)
    if segments is None:
        raise UnsafePathError(
            f"Refusing weights URL {named!r}: it {reason}, so it cannot be mapped to a file "
            f"inside the download cache {cache_dir}"
        )
    return DatasetRoot(cache_dir, "download cache").join(
        "/".join(segments), f"Refusing weights URL {named!r}"
    )
