"""Loading pickles without letting them run code.

A pickle can name any importable callable and call it while loading (``os.system`` in a
``__reduce__`` is the classic), so checkpoints are read with an allow-list: numpy arrays, numpy
dtypes and scalars, and plain containers. Everything a weight file needs, nothing more.
"""

from __future__ import annotations

import collections
import importlib
import io
import pickle
from typing import IO, Any

import numpy as np

__all__ = ["UnsafePickleError", "RestrictedUnpickler", "safe_pickle_load", "torch_safe_globals"]

# (module, name) pairs a checkpoint may reference. numpy >= 2 writes ``numpy._core``, older
# versions ``numpy.core``; both are accepted so that Detectron2's 2019-2020 files load.
_ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    [
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("collections", "OrderedDict"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "slice"),
        ("__builtin__", "set"),
        ("__builtin__", "frozenset"),
        # Protocol-2 pickles written by Python 3 encode ``bytes`` through _codecs.encode.
        ("_codecs", "encode"),
    ]
)


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle referenced a global outside the allow-list; nothing from it was executed."""


def _numpy_multiarray():
    # numpy 2 moved numpy.core to numpy._core; importing the old name warns.
    try:
        return importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy < 2
        return importlib.import_module("numpy.core.multiarray")


def _resolve(module: str, name: str) -> Any:
    if module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        return getattr(_numpy_multiarray(), name)
    if module == "numpy":
        return getattr(np, name)
    if module == "collections":
        return getattr(collections, name)
    if module in ("builtins", "__builtin__"):
        return {"set": set, "frozenset": frozenset, "slice": slice}[name]
    if module == "_codecs":
        import _codecs

        return getattr(_codecs, name)
    raise AssertionError(f"unhandled allowed global {module}.{name}")


class RestrictedUnpickler(pickle.Unpickler):
    """An ``Unpickler`` that only resolves the allow-listed globals (numpy arrays, containers).

    Args:
        file: a binary file object.
        source: a name for the file in error messages (its path or URL).
        encoding: passed to ``pickle.Unpickler`` (``"latin1"`` reads Python 2 numpy pickles).
    """

    def __init__(self, file: IO[bytes], source: str = "<pickle>", encoding: str = "latin1"):
        super().__init__(file, encoding=encoding)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        """Resolve a global the pickle names, if it is one a weight file may hold.

        Raises:
            UnsafePickleError: ``module.name`` is not among the allowed numpy arrays, dtypes,
                scalars and plain containers.
        """
        if (module, name) in _ALLOWED_GLOBALS:
            return _resolve(module, name)
        raise UnsafePickleError(
            f"Refusing to load {self.source}: it references {module}.{name}, which a weight file "
            "does not need and which could run code. Only numpy arrays, dtypes, scalars and "
            "plain containers are allowed. If you trust the file, convert it to a state_dict "
            "of tensors in a separate, trusted step."
        )

    def persistent_load(self, pid: Any) -> Any:
        """Refuse every persistent id (a torch.save file uses them, a weight pickle does not).

        Raises:
            UnsafePickleError: always, naming the file and suggesting ``torch.load``.
        """
        raise UnsafePickleError(
            f"Refusing to load {self.source}: it uses persistent ids ({pid!r}); it is probably "
            "a torch.save file, load it with torch.load(weights_only=True) instead."
        )


def safe_pickle_load(file: IO[bytes] | bytes, source: str = "<pickle>") -> Any:
    """Unpickle ``file`` (a binary file or bytes) through ``RestrictedUnpickler``."""
    if isinstance(file, (bytes, bytearray)):
        file = io.BytesIO(file)
    return RestrictedUnpickler(file, source=source).load()


def torch_safe_globals() -> list[Any]:
    """Return the numpy objects to allow in ``torch.load(weights_only=True)``.

    Checkpoints saved with numpy values in them (metrics, RNG states) otherwise fail to load.
    """
    multiarray = _numpy_multiarray()
    objs: list[Any] = [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype]
    # numpy >= 1.25 pickles dtypes through per-type classes (numpy.dtypes.Float32DType, ...).
    dtypes_module = getattr(np, "dtypes", None)
    if dtypes_module is not None:
        objs.extend(
            getattr(dtypes_module, n)
            for n in dir(dtypes_module)
            if n.endswith("DType") and isinstance(getattr(dtypes_module, n), type)
        )
    return objs
