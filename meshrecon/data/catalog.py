"""Registries of datasets by name: how to load each one, and what is known about it."""

from __future__ import annotations

import logging
from collections import UserDict
from collections.abc import Callable
from typing import Any

__all__ = ["DatasetCatalog", "Metadata", "MetadataCatalog"]

logger = logging.getLogger(__name__)


class _DatasetCatalog(UserDict):
    """Map a dataset name to a function that returns the dataset as a list of dicts.

    The function is called on every ``get``, so that loading stays lazy and the caller may
    modify the returned list freely.
    """

    def register(self, name: str, func: Callable[[], list[dict]]) -> None:
        """Register ``func``, a zero-argument callable returning a list of dicts, as ``name``."""
        if not callable(func):
            raise TypeError(f"DatasetCatalog.register({name!r}, ...) needs a callable")
        if name in self:
            raise KeyError(f"dataset {name!r} is already registered")
        self[name] = func

    def get(self, name: str) -> list[dict]:  # type: ignore[override]
        """Load and return dataset ``name``.

        Raises:
            KeyError: naming the registered datasets, if ``name`` is not one of them.
        """
        try:
            func = self[name]
        except KeyError as err:
            raise KeyError(
                f"dataset {name!r} is not registered; registered datasets: "
                f"{', '.join(sorted(self.keys())) or '(none)'}"
            ) from err
        dataset = func()
        if not isinstance(dataset, list):
            raise TypeError(
                f"the loader of dataset {name!r} returned {type(dataset).__name__}, "
                "expected a list of dicts"
            )
        return dataset

    def list(self) -> list[str]:
        """Return the registered names."""
        return list(self.keys())

    def remove(self, name: str) -> None:
        """Unregister ``name`` (and nothing else)."""
        self.pop(name)

    def __str__(self) -> str:
        return f"DatasetCatalog(registered datasets: {', '.join(self.keys())})"

    __repr__ = __str__


DatasetCatalog = _DatasetCatalog()
"""The global dataset registry: ``DatasetCatalog.register(name, func)``, ``.get(name)``."""


class Metadata:
    """Facts about one dataset (class names, evaluator type, root directory...), as attributes.

    An attribute may be set once; setting it again to a different value raises, since two
    pieces of code disagreeing on a dataset's facts is a bug.
    """

    name: str = "N/A"

    def __init__(self, name: str = "N/A", **kwargs: Any) -> None:
        object.__setattr__(self, "name", name)
        self.set(**kwargs)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        raise AttributeError(
            f"metadata of dataset {self.name!r} has no attribute {key!r}; available: "
            f"{', '.join(sorted(self.__dict__.keys()))}"
        )

    def __setattr__(self, key: str, value: Any) -> None:
        if key in self.__dict__ and self.__dict__[key] != value:
            raise AttributeError(
                f"attribute {key!r} of the metadata of dataset {self.name!r} is already "
                f"{self.__dict__[key]!r}; cannot set it to {value!r}"
            )
        object.__setattr__(self, key, value)

    def as_dict(self) -> dict[str, Any]:
        """Return the attributes as a dict (a copy)."""
        return dict(self.__dict__)

    def set(self, **kwargs: Any) -> Metadata:
        """Set several attributes; return self."""
        for key, value in kwargs.items():
            setattr(self, key, value)
        return self

    def get(self, key: str, default: Any = None) -> Any:
        """Return attribute ``key``, or ``default`` when it is not set."""
        return self.__dict__.get(key, default)

    def __repr__(self) -> str:
        return f"Metadata({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"


class _MetadataCatalog(UserDict):
    """Map a dataset name to its :class:`Metadata`, created empty on first access."""

    def get(self, name: str) -> Metadata:  # type: ignore[override]
        """Return the metadata of ``name``, creating it when it does not exist yet."""
        if not name:
            raise ValueError("MetadataCatalog.get() needs a non-empty dataset name")
        if name not in self:
            self[name] = Metadata(name=name)
        return self[name]

    def list(self) -> list[str]:
        """Return the names that have metadata."""
        return list(self.keys())

    def remove(self, name: str) -> None:
        """Forget the metadata of ``name``."""
        self.pop(name)

    def __str__(self) -> str:
        return f"MetadataCatalog(datasets with metadata: {', '.join(self.keys())})"

    __repr__ = __str__


MetadataCatalog = _MetadataCatalog()
"""The global metadata registry: ``MetadataCatalog.get(name).thing_classes = [...]``."""
