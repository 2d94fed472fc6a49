"""``Registry``: fvcore's name -> object registry, with errors that list what is registered."""

from __future__ import annotations

import difflib
from typing import Any

from fvcore.common.registry import Registry as _FvcoreRegistry

__all__ = ["Registry"]


class Registry(_FvcoreRegistry):
    """A name -> class/function table (fvcore's), whose lookup errors help the reader.

    ``get(name, cfg_key=...)`` raises ``KeyError`` naming the registry, the config key that
    asked for ``name`` (when given), the closest registered names and all registered names.
    """

    def get(self, name: str, cfg_key: str | None = None) -> Any:  # type: ignore[override]
        """Return the object registered as ``name``."""
        obj = self._obj_map.get(name)
        if obj is not None:
            return obj
        registered = sorted(self._obj_map)
        asked = f"{cfg_key}={name!r}" if cfg_key else repr(name)
        close = difflib.get_close_matches(str(name), registered, n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        listing = ", ".join(registered) if registered else "(none: is the module imported?)"
        raise KeyError(f"{asked} is not in the {self._name} registry.{hint} Registered: {listing}")

    def names(self) -> list[str]:
        """Return the registered names, sorted."""
        return sorted(self._obj_map)
