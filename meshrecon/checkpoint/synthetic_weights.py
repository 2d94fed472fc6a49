"""``synthetic://NAME``: weights pretrained on the synthetic world, made on first use.

The handler resolves ``synthetic://resnet18_pretrained.pth`` (or another name registered in
``meshrecon.pretrain.PRETRAINED_RECIPES``) to its file in the cache, pretraining it first when
it is not there (``meshrecon.pretrain.ensure_pretrained``: a progress bar, a log line saying
why and how long it took). Nothing is downloaded.
"""

from __future__ import annotations

from typing import Any

from iopath.common.file_io import PathHandler

__all__ = ["SyntheticWeightsHandler"]


class SyntheticWeightsHandler(PathHandler):
    """iopath handler of the ``synthetic://`` prefix."""

    PREFIX = "synthetic://"

    def _get_supported_prefixes(self) -> list[str]:
        return [self.PREFIX]

    def _name(self, path: str) -> str:
        name = path[len(self.PREFIX) :]
        if not name:
            raise ValueError(
                f"{path!r} names no weights (e.g. synthetic://resnet18_pretrained.pth)"
            )
        return name

    def _get_local_path(self, path: str, force: bool = False, **kwargs: Any) -> str:
        self._check_kwargs(kwargs)
        # Imported here: resolving other paths must not import the renderer and the trainer.
        from meshrecon.pretrain import ensure_pretrained

        return ensure_pretrained(self._name(path))

    def _open(self, path: str, mode: str = "r", buffering: int = -1, **kwargs: Any):
        self._check_kwargs(kwargs)
        if mode not in ("r", "rb"):
            raise ValueError(f"{path} can only be opened for reading, not mode {mode!r}")
        return open(self._get_local_path(path), mode)

    def _exists(self, path: str, **kwargs: Any) -> bool:
        # Only weights already made count: checking must not start a pretraining run.
        from meshrecon.pretrain import PRETRAINED_RECIPES, is_cached

        name = self._name(path)
        return name in PRETRAINED_RECIPES and is_cached(name)

    def _isfile(self, path: str, **kwargs: Any) -> bool:
        return self._exists(path)
