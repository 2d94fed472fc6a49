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
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.request
from typing import Any
from urllib.parse import urlparse

from iopath.common.file_io import PathHandler
from iopath.common.file_io import PathManager as _IopathPathManager

from meshrecon.checkpoint.synthetic_weights import SyntheticWeightsHandler

__all__ = [
    "PathManager",
    "DETECTRON2_BASE_URL",
    "MESHRCNN_BASE_URL",
    "SHAPENET_BASE_URL",
    "WeightsDownloadError",
    "get_cache_dir",
    "cache_path_for_url",
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


class WeightsDownloadError(OSError):
    """A URL could not be fetched; the message says where to put the file by hand."""


def get_cache_dir() -> str:
    """Return the download cache directory: ``$MESHRECON_CACHE`` or ``~/.cache/meshrecon``."""
    return os.path.expanduser(
        os.environ.get(CACHE_ENV_VAR) or os.path.join("~", ".cache", "meshrecon")
    )


def cache_path_for_url(url: str) -> str:
    """Return the local path where ``url`` (http/https/ftp) is cached."""
    parsed = urlparse(url)
    rel = parsed.path.lstrip("/")
    if not rel or rel.endswith("/"):
        raise ValueError(f"URL {url!r} does not name a file")
    return os.path.join(get_cache_dir(), *rel.split("/"))


def _download(url: str, dst: str, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Fetch ``url`` into ``dst`` through a temporary file, so ``dst`` is never partial."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dst), suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out, length=1 << 20)
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class CachedURLHandler(PathHandler):
    """http(s)/ftp URLs, downloaded once into ``get_cache_dir()``."""

    def _get_supported_prefixes(self) -> list[str]:
        return ["http://", "https://", "ftp://"]

    def fetch(self, url: str, origin: str | None = None, force: bool = False) -> str:
        """Return the cached local path of ``url``, downloading it first if needed.

        Args:
            url: the URL to fetch.
            origin: the name the user gave (e.g. ``meshrcnn://x.pth``), for error messages.
            force: download again even if cached.
        """
        local = cache_path_for_url(url)
        if os.path.isfile(local) and not force:
            return local
        named = f"{origin} ({url})" if origin and origin != url else url
        logger.info("Downloading %s to %s", named, local)
        try:
            _download(url, local)
        except Exception as e:
            raise WeightsDownloadError(
                f"Could not download {named}: {type(e).__name__}: {e}. Without network, "
                f"download the file elsewhere and place it at {local} (cache directory "
                f"{get_cache_dir()}, set by ${CACHE_ENV_VAR}); {origin or url} then loads "
                "from there without network."
            ) from e
        return local

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

    def _get_local_path(self, path: str, force: bool = False, **kwargs: Any) -> str:
        self._check_kwargs(kwargs)
        return self.http.fetch(self.to_url(path), origin=path, force=force)

    def _open(self, path: str, mode: str = "r", buffering: int = -1, **kwargs: Any):
        self._check_kwargs(kwargs)
        if mode not in ("r", "rb"):
            raise ValueError(f"{path} can only be opened for reading, not mode {mode!r}")
        return open(self._get_local_path(path), mode)

    def _exists(self, path: str, **kwargs: Any) -> bool:
        return os.path.isfile(cache_path_for_url(self.to_url(path)))

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


def _make_path_manager() -> tuple[_IopathPathManager, dict[str, _PrefixHandler]]:
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
    return manager, handlers


PathManager, _PREFIX_HANDLERS = _make_path_manager()


def resolve_url(path: str) -> str:
    """Return the http(s) URL a prefixed path stands for; other paths are returned unchanged."""
    for prefix, handler in _PREFIX_HANDLERS.items():
        if path.startswith(prefix):
            return handler.to_url(path)
    return path
