"""URL prefixes for model zoos, and a download cache that works offline.

``PathManager`` (an iopath ``PathManager``) resolves, besides local paths:

=====================  ===================================================================
``detectron2://X``     Detectron2's model zoo: ``DETECTRON2_BASE_URL + X``
``meshrcnn://X``       Mesh R-CNN's Pix3D models: ``MESHRCNN_BASE_URL + X``
``shapenet://X``       Mesh R-CNN's ShapeNet models: ``SHAPENET_BASE_URL + X``
``torchvision://N``    the URL of torchvision's weights for model ``N`` (``IMAGENET1K_V1`` if
                       it has them, else its default); ``N.VARIANT`` picks another variant
``http(s)://``         downloaded once into the cache, then read from there
``synthetic://N``      weights pretrained on the synthetic world, made on first use
                       (``meshrecon.checkpoint.synthetic_weights``)
=====================  ===================================================================

Downloads go to ``get_cache_dir()`` (``$MESHRECON_CACHE``, default ``~/.cache/meshrecon``),
at ``<cache>/<path of the URL>``. On a machine without network, put the file at that path by
hand: the same config then loads it without contacting any host. The error of a failed
download names both the URL and that path.

A URL's path is mapped into the cache by :func:`meshrecon.utils.path_policy.url_cache_path`:
one whose path could lead outside the cache (``..``, percent-encoded separators, a symlink in
the cache pointing out, ...) is refused before any folder is created or byte written. A download
goes to a temp file in the cache and is moved to its cache path only once complete (and, for
:func:`fetch_and_load`, once it loads). The cache is keyed by the URL's path, not its host:
a file cached from one host is used for any URL with the same path.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable
from typing import Any

from iopath.common.file_io import PathHandler
from iopath.common.file_io import PathManager as _IopathPathManager

from meshrecon.checkpoint.synthetic_weights import SyntheticWeightsHandler
from meshrecon.utils.path_policy import UnsafePathError, url_cache_path

__all__ = [
    "PathManager",
    "DETECTRON2_BASE_URL",
    "MESHRCNN_BASE_URL",
    "SHAPENET_BASE_URL",
    "DownloadedFileError",
    "UnsafePathError",
    "WeightsDownloadError",
    "get_cache_dir",
    "cache_path_for_url",
    "fetch_and_load",
    "resolve_url",
    "torchvision_weights_url",
]

logger = logging.getLogger(__name__)

DETECTRON2_BASE_URL = "https://dl.fbaipublicfiles.com/detectron2/"
MESHRCNN_BASE_URL = "https://dl.fbaipublicfiles.com/meshrcnn/pix3d/"
SHAPENET_BASE_URL = "https://dl.fbaipublicfiles.com/meshrcnn/shapenet/"

CACHE_ENV_VAR = "MESHRECON_CACHE"
# Seconds without progress before a download is abandoned.
DOWNLOAD_TIMEOUT_S = 60.0
# Largest download accepted (bytes): released detection weights are a few hundred MB; a server
# streaming without end must not fill the disk.
MAX_DOWNLOAD_BYTES = 8 * 1024**3


class WeightsDownloadError(OSError):
    """A URL could not be fetched; the message says where to put the file by hand."""


class DownloadedFileError(ValueError):
    """A download arrived but its content failed to load; it was not kept in the cache."""


def get_cache_dir() -> str:
    """Return the download cache directory: ``$MESHRECON_CACHE`` or ``~/.cache/meshrecon``."""
    return os.path.expanduser(
        os.environ.get(CACHE_ENV_VAR) or os.path.join("~", ".cache", "meshrecon")
    )


def cache_path_for_url(url: str, origin: str | None = None) -> str:
    """Return the local path where ``url`` (http/https/ftp) is cached: ``<cache>/<URL path>``.

    Raises:
        UnsafePathError: (a ``ValueError``) the URL's path cannot be mapped inside the cache:
            ``..`` or ``.`` segments, empty segments, percent-encoded separators or dots,
            backslashes, drive letters, control characters, or a symlink in the cache that
            leads out of it (see :mod:`meshrecon.utils.path_policy`).
    """
    return url_cache_path(url, get_cache_dir(), origin=origin)


def _download(url: str, dst: str, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Fetch ``url`` into the file ``dst`` (at most :data:`MAX_DOWNLOAD_BYTES`)."""
    with urllib.request.urlopen(url, timeout=timeout) as resp, open(dst, "wb") as out:
        length = resp.headers.get("Content-Length") if resp.headers else None
        if length is not None and length.isdigit() and int(length) > MAX_DOWNLOAD_BYTES:
            raise WeightsDownloadError(
                f"{url} announces {int(length)} bytes, more than MAX_DOWNLOAD_BYTES "
                f"({MAX_DOWNLOAD_BYTES})"
            )
        written = 0
        while chunk := resp.read(1 << 20):
            written += len(chunk)
            if written > MAX_DOWNLOAD_BYTES:
                raise WeightsDownloadError(
                    f"{url} sent more than MAX_DOWNLOAD_BYTES ({MAX_DOWNLOAD_BYTES}) bytes"
                )
            out.write(chunk)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _move_into_place(tmp: str, local: str) -> None:
    """Rename the verified download ``tmp`` (in the cache root) onto its cache path ``local``."""
    os.makedirs(os.path.dirname(local), exist_ok=True)
    try:
        os.replace(tmp, local)
    except OSError as err:
        if err.errno != errno.EXDEV:
            raise
        # A cache subfolder on another file system: copy next to the target, then rename.
        fd, near = tempfile.mkstemp(dir=os.path.dirname(local), prefix=".", suffix=".part")
        os.close(fd)
        try:
            shutil.copyfile(tmp, near)
            os.replace(near, local)
        finally:
            _unlink_quietly(near)
            _unlink_quietly(tmp)


class CachedURLHandler(PathHandler):
    """http(s)/ftp URLs, downloaded once into ``get_cache_dir()``."""

    def _get_supported_prefixes(self) -> list[str]:
        return ["http://", "https://", "ftp://"]

    def fetch(
        self,
        url: str,
        origin: str | None = None,
        force: bool = False,
        verify: Callable[[str], Any] | None = None,
    ) -> str:
        """Return the cached local path of ``url``, downloading it first if needed.

        Args:
            url: the URL to fetch.
            origin: the name the user gave (e.g. ``meshrcnn://x.pth``), for error messages.
            force: download again even if cached.
            verify: called with the path of a fresh download (a temp file in the cache whose
                name ends with the URL's file name); if it raises, the download is deleted and
                the error propagates. See :meth:`fetch_and_load`.
        """
        return self.fetch_and_load(url, verify, origin=origin, force=force)[0]

    def fetch_and_load(
        self,
        url: str,
        load: Callable[[str], Any] | None,
        origin: str | None = None,
        force: bool = False,
    ) -> tuple[str, Any]:
        """Return ``(cached path, load(path))`` of ``url``, downloading it first if needed.

        A fresh download goes to a temp file in the cache folder; it is loaded there and moved
        to its cache path only if ``load`` succeeds, so a file that does not load (a wrong URL
        serving an HTML page, a damaged or hostile file) leaves nothing in the cache. A file
        already in the cache is loaded where it is.

        Args:
            url: the URL to fetch.
            load: reads a local file; None: nothing is loaded (the result is None).
            origin: the name the user gave, for error messages.
            force: download again even if cached.

        Raises:
            UnsafePathError: the URL cannot be mapped inside the cache (nothing was written).
            WeightsDownloadError: the download failed (the message says where to put the file
                by hand).
            DownloadedFileError: ``load`` raised on the downloaded file (chained as the cause).
        """
        local = cache_path_for_url(url, origin=origin)
        if os.path.isfile(local) and not force:
            return local, (load(local) if load is not None else None)
        named = f"{origin} ({url})" if origin and origin != url else url
        cache = get_cache_dir()
        logger.info("Downloading %s to %s", named, local)
        os.makedirs(cache, exist_ok=True)
        # The temp file keeps the URL's file name as its suffix: loaders pick the format by it.
        suffix = "-" + os.path.basename(local)
        fd, tmp = tempfile.mkstemp(dir=cache, prefix=".download-", suffix=suffix)
        os.close(fd)
        try:
            try:
                _download(url, tmp)
            except Exception as e:
                raise WeightsDownloadError(
                    f"Could not download {named}: {type(e).__name__}: {e}. Without network, "
                    f"download the file elsewhere and place it at {local} (cache directory "
                    f"{cache}, set by ${CACHE_ENV_VAR}); {origin or url} then loads "
                    "from there without network."
                ) from e
            try:
                loaded = load(tmp) if load is not None else None
            except Exception as e:
                raise DownloadedFileError(
                    f"{named} was downloaded but does not load, so it was deleted and nothing "
                    f"was kept in the cache: {type(e).__name__}: {e}"
                ) from e
            _move_into_place(tmp, local)
        finally:
            _unlink_quietly(tmp)
        return local, loaded

    def _get_local_path(self, path: str, force: bool = False, **kwargs: Any) -> str:
        self._check_kwargs(kwargs)
        return self.fetch(path, force=force)

    def _open(self, path: str, mode: str = "r", buffering: int = -1, **kwargs: Any):
        self._check_kwargs(kwargs)
        if mode not in ("r", "rb"):
            raise ValueError(f"URL {path} can only be opened for reading, not mode {mode!r}")
        return open(self.fetch(path), mode)

    def _exists(self, path: str, **kwargs: Any) -> bool:
        # Only a cached copy counts: checking a remote host would need the network.
        return os.path.isfile(cache_path_for_url(path))

    def _isfile(self, path: str, **kwargs: Any) -> bool:
        return self._exists(path)


class _PrefixHandler(PathHandler):
    """``PREFIX + name`` -> a URL (through ``to_url``), fetched by a ``CachedURLHandler``."""

    def __init__(self, prefix: str, http: CachedURLHandler, base_url: str | None = None):
        super().__init__()
        self.prefix = prefix
        self.base_url = base_url
        self.http = http

    def _get_supported_prefixes(self) -> list[str]:
        return [self.prefix]

    def to_url(self, path: str) -> str:
        name = path[len(self.prefix) :]
        if not name:
            raise ValueError(f"{path!r} names no file after {self.prefix}")
        return self.base_url + name

    def fetch_and_load(
        self, path: str, load: Callable[[str], Any] | None, force: bool = False
    ) -> tuple[str, Any]:
        """:meth:`CachedURLHandler.fetch_and_load` of the URL ``path`` stands for."""
        return self.http.fetch_and_load(self.to_url(path), load, origin=path, force=force)

    def _get_local_path(self, path: str, force: bool = False, **kwargs: Any) -> str:
        self._check_kwargs(kwargs)
        return self.http.fetch(self.to_url(path), origin=path, force=force)

    def _open(self, path: str, mode: str = "r", buffering: int = -1, **kwargs: Any):
        self._check_kwargs(kwargs)
        if mode not in ("r", "rb"):
            raise ValueError(f"{path} can only be opened for reading, not mode {mode!r}")
        return open(self._get_local_path(path), mode)

    def _exists(self, path: str, **kwargs: Any) -> bool:
        return os.path.isfile(cache_path_for_url(self.to_url(path), origin=path))

    def _isfile(self, path: str, **kwargs: Any) -> bool:
        return self._exists(path)


def torchvision_weights_url(spec: str) -> str:
    """Return the download URL of torchvision weights ``"resnet50"`` or ``"resnet50.VARIANT"``.

    Without a variant: ``IMAGENET1K_V1`` if the model has it (the weights most papers used),
    else the model's default weights. The URL comes from torchvision itself, so it follows
    whatever version is installed.
    """
    import torchvision.models

    model_name, _, variant = spec.partition(".")
    try:
        weights_enum = torchvision.models.get_model_weights(model_name)
    except ValueError as e:
        import difflib

        close = difflib.get_close_matches(model_name, torchvision.models.list_models(), n=3)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise ValueError(f"torchvision has no model named {model_name!r}.{hint}") from e
    members = {m.name: m for m in weights_enum}
    if variant:
        if variant not in members:
            raise ValueError(
                f"torchvision model {model_name!r} has no weights {variant!r}; "
                f"it has {sorted(members)}"
            )
        weights = members[variant]
    else:
        weights = members.get("IMAGENET1K_V1") or weights_enum.DEFAULT
    return weights.url


class _TorchvisionHandler(_PrefixHandler):
    def to_url(self, path: str) -> str:
        spec = path[len(self.prefix) :]
        if not spec:
            raise ValueError(f"{path!r} names no torchvision model (e.g. torchvision://resnet50)")
        return torchvision_weights_url(spec)


def _make_path_manager() -> tuple[_IopathPathManager, dict[str, _PrefixHandler], CachedURLHandler]:
    manager = _IopathPathManager()
    http = CachedURLHandler()
    manager.register_handler(http)
    handlers = {
        "detectron2://": _PrefixHandler("detectron2://", http, DETECTRON2_BASE_URL),
        "meshrcnn://": _PrefixHandler("meshrcnn://", http, MESHRCNN_BASE_URL),
        "shapenet://": _PrefixHandler("shapenet://", http, SHAPENET_BASE_URL),
        "torchvision://": _TorchvisionHandler("torchvision://", http),
    }
    for handler in handlers.values():
        manager.register_handler(handler)
    manager.register_handler(SyntheticWeightsHandler())
    return manager, handlers, http


PathManager, _PREFIX_HANDLERS, _HTTP_HANDLER = _make_path_manager()


def resolve_url(path: str) -> str:
    """Return the http(s) URL a prefixed path stands for; other paths are returned unchanged."""
    for prefix, handler in _PREFIX_HANDLERS.items():
        if path.startswith(prefix):
            return handler.to_url(path)
    return path


def fetch_and_load(path: str, load: Callable[[str], Any]) -> tuple[str, Any] | None:
    """``(local path, load(local path))`` of a URL or prefixed name; None for other paths.

    A fresh download is loaded from a temp file in the cache and kept only if ``load``
    succeeds (see :meth:`CachedURLHandler.fetch_and_load`).
    """
    for prefix, handler in _PREFIX_HANDLERS.items():
        if path.startswith(prefix):
            return handler.fetch_and_load(path, load)
    if path.startswith(("http://", "https://", "ftp://")):
        return _HTTP_HANDLER.fetch_and_load(path, load)
    return None
