"""The config node type, ``get_cfg``, and the ``@configurable`` / ``from_config`` convention."""

from __future__ import annotations

import ast
import difflib
import functools
import inspect
import logging
import os
from collections.abc import Callable
from typing import Any

import yaml
from fvcore.common.config import CfgNode as _FvcoreCfgNode

__all__ = ["CfgNode", "RENAMED_KEYS", "get_cfg", "configurable", "closest_keys"]

logger = logging.getLogger(__name__)

BASE_KEY = "_BASE_"


class CfgNode(_FvcoreCfgNode):
    """A YAML-backed, attribute-accessible config tree (fvcore's ``CfgNode``), stricter on merge.

    Differences from fvcore:

    * an unknown key, from a file, a list or another node, raises ``KeyError`` naming the full
      dotted key, the file it came from, and the closest existing keys;
    * a value of the wrong type raises ``TypeError`` naming the key, the expected type and the
      offending value;
    * YAML is always read with ``yaml.safe_load``; ``_BASE_`` chains are resolved relative to
      the file that names them.
    """

    # ------------------------------------------------------------------ loading
    @classmethod
    def load_yaml_with_base(cls, filename: str, allow_unsafe: bool = False) -> dict:
        """Return the dict of ``filename`` with its ``_BASE_`` chain merged in (base first).

        ``allow_unsafe`` is accepted for fvcore compatibility but never enables unsafe YAML:
        a config file must not be able to run code.
        """
        return _load_yaml_with_base(filename, seen=())

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:
        """Merge a YAML file (and its ``_BASE_`` chain) into this node.

        Keys renamed since the file's ``VERSION`` (:data:`RENAMED_KEYS`) are read under their
        new names, with a logged warning.
        """
        loaded = self.load_yaml_with_base(cfg_filename)
        version = loaded.get("VERSION")
        if version is not None and "VERSION" in self and version != self.VERSION:
            # Detectron2's and Mesh R-CNN's files say VERSION 2: their keys are ours.
            logger.info(
                "Config %s has VERSION %s, meshrecon's is %s; renamed keys are upgraded.",
                cfg_filename,
                version,
                self.VERSION,
            )
        if "VERSION" in self:
            loaded = _upgrade_renamed_keys(loaded, str(cfg_filename))
            loaded.pop("VERSION", None)  # the file's keys are now the current version's
        _merge_dict_into(loaded, self, root=self, prefix="", source=str(cfg_filename))

    def merge_from_other_cfg(self, cfg_other: _FvcoreCfgNode) -> None:
        """Merge another node into this one (same checks as a file)."""
        if BASE_KEY in cfg_other:
            raise ValueError(f"Cannot merge a node that still holds a {BASE_KEY} key")
        _merge_dict_into(cfg_other, self, root=self, prefix="", source="another CfgNode")

    def merge_from_list(self, cfg_list: list) -> None:
        """Merge ``[KEY1, VALUE1, KEY2, VALUE2, ...]``, e.g. from the command line.

        Values are parsed as Python literals when they are one (``0.1``, ``[1, 2]``, ``True``),
        otherwise kept as strings.
        """
        if len(cfg_list) % 2 != 0:
            raise ValueError(
                f"Override list must hold KEY VALUE pairs, got an odd number of items: {cfg_list}"
            )
        for full_key, raw in zip(cfg_list[0::2], cfg_list[1::2]):
            full_key = str(full_key)
            if full_key in RENAMED_KEYS and "VERSION" in self:
                new_key = RENAMED_KEYS[full_key][0]
                logger.warning(
                    "Config key %s (from the override list) is now %s; set as %s.",
                    full_key,
                    new_key,
                    new_key,
                )
                full_key = new_key
            *parents, leaf = full_key.split(".")
            node: _FvcoreCfgNode = self
            for part in parents:
                child = node.get(part)
                if not isinstance(child, _FvcoreCfgNode):
                    raise KeyError(_unknown_key_message(full_key, self, "the override list"))
                node = child
            value = _decode_value(raw, node.get(leaf))
            if leaf not in node:
                if not node.is_new_allowed():
                    raise KeyError(_unknown_key_message(full_key, self, "the override list"))
                setattr(node, leaf, value)
            elif isinstance(node[leaf], _FvcoreCfgNode):
                raise TypeError(
                    f"Config key {full_key} (from the override list) is a section; "
                    f"set one of its keys instead of {raw!r}"
                )
            else:
                setattr(node, leaf, _coerce_type(value, node[leaf], full_key, "the override list"))


# Keys renamed or moved: old full key -> (new full key, the VERSION that renamed it). A file
# or override list naming the old key is read as the new one, with a logged warning; a file
# naming both is an error. Evaluator settings moved from MODEL.* to TEST.* in VERSION 3.
RENAMED_KEYS: dict[str, tuple[str, int]] = {
    "MODEL.R2N2.IOU_THRESH": ("TEST.R2N2.IOU_THRESH", 3),
    "MODEL.R2N2.EVAL_MESH_SAMPLES": ("TEST.R2N2.MESH_SAMPLES", 3),
    "MODEL.OPTIMIZE_MVS.EVAL_FPS_POINTS": ("TEST.OPTIMIZE_MVS.FPS_POINTS", 3),
    "MODEL.OPTIMIZE_MVS.EVAL_VIEW_COUNTS": ("TEST.OPTIMIZE_MVS.VIEW_COUNTS", 3),
}


def _pop_nested(tree: dict, parts: list[str]) -> tuple[bool, Any]:
    node: Any = tree
    for part in parts[:-1]:
        node = node.get(part)
        if not isinstance(node, dict):
            return False, None
    if parts[-1] not in node:
        return False, None
    return True, node.pop(parts[-1])


def _has_nested(tree: dict, parts: list[str]) -> bool:
    node: Any = tree
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _upgrade_renamed_keys(tree: dict, source: str) -> dict:
    """Move every key of :data:`RENAMED_KEYS` that ``tree`` sets to its new name.

    Args:
        tree: a loaded YAML mapping (changed in place).
        source: the file it was read from, for the messages.

    Returns:
        ``tree``, every renamed key under its new name (a warning logged for each).

    Raises:
        ValueError: ``tree`` sets both the old and the new name of a key.
    """
    for old, (new, version) in RENAMED_KEYS.items():
        found, value = _pop_nested(tree, old.split("."))
        if not found:
            continue
        if _has_nested(tree, new.split(".")):
            raise ValueError(
                f"Config {source} sets both {old} and {new}; {old} was renamed {new} "
                f"(VERSION {version}): keep only {new}"
            )
        logger.warning(
            "Config %s: %s was renamed %s (VERSION %s); read as %s.", source, old, new, version, new
        )
        node = tree
        for part in new.split(".")[:-1]:
            node = node.setdefault(part, {})
        node[new.split(".")[-1]] = value
    return tree


def _load_yaml_with_base(filename: str, seen: tuple[str, ...]) -> dict:
    path = os.path.abspath(os.path.expanduser(str(filename)))
    if path in seen:
        chain = " -> ".join([*seen, path])
        raise ValueError(f"Config {BASE_KEY} chain loops: {chain}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Config file not found: {filename}")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ValueError(
            f"Config file {filename} is not UTF-8 text: byte {raw[e.start : e.end]!r} at offset "
            f"{e.start} (line {line}); save it as UTF-8"
        ) from e
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"Config file {filename} is not valid (safe) YAML: {e}") from e
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise ValueError(f"Config file {filename} must hold a mapping, got {type(cfg).__name__}")

    bases = cfg.pop(BASE_KEY, None)
    if bases is None:
        return cfg
    if isinstance(bases, str):
        bases = [bases]
    merged: dict = {}
    for base in bases:
        base = os.path.expanduser(str(base))
        if not os.path.isabs(base):
            base = os.path.join(os.path.dirname(path), base)
        _merge_plain_dicts(_load_yaml_with_base(base, seen=(*seen, path)), merged)
    _merge_plain_dicts(cfg, merged)
    return merged


def _merge_plain_dicts(src: dict, dst: dict) -> None:
    """Recursively copy ``src`` over ``dst`` (dicts merge, anything else replaces)."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge_plain_dicts(v, dst[k])
        else:
            dst[k] = v


def _merge_dict_into(src: dict, dst: CfgNode, root: CfgNode, prefix: str, source: str) -> None:
    for key, value in src.items():
        full_key = prefix + str(key)
        if key not in dst:
            if dst.is_new_allowed():
                setattr(dst, key, CfgNode(value) if isinstance(value, dict) else value)
                continue
            raise KeyError(_unknown_key_message(full_key, root, source))
        current = dst[key]
        if isinstance(current, _FvcoreCfgNode):
            if not isinstance(value, dict):
                raise TypeError(
                    f"Config key {full_key} (from {source}) is a section; "
                    f"got a {type(value).__name__} value {value!r}"
                )
            _merge_dict_into(value, current, root, full_key + ".", source)
        else:
            if isinstance(value, dict):
                raise TypeError(
                    f"Config key {full_key} (from {source}) is a value "
                    f"(default {current!r}), not a section; got {value!r}"
                )
            value = _coerce_type(_decode_value(value, current), current, full_key, source)
            setattr(dst, key, value)


def _decode_value(raw: Any, default: Any = None) -> Any:
    """Parse a string that spells a Python literal (``"(1, 2)"``, ``"0.1"``), as yacs does.

    YAML has no tuples and reads ``1e-3`` as a string, so Detectron2-style files rely on this.
    A string stays a string where the default is one (a dataset may be named ``"2017"``).
    """
    if not isinstance(raw, str) or isinstance(default, str):
        return raw
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def _coerce_type(value: Any, default: Any, full_key: str, source: str) -> Any:
    """Return ``value`` converted to the type of ``default``, or raise ``TypeError``."""
    if value is None or default is None or type(value) is type(default):
        return value
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(default)(value)
    # An int where a float is declared is harmless (YAML writes 1e-3 as a string, 1 as an int).
    if isinstance(default, float) and type(value) is int:
        return float(value)
    raise TypeError(
        f"Config key {full_key} (from {source}) expects {type(default).__name__} "
        f"(default {default!r}), got {type(value).__name__} {value!r}"
    )


def _all_keys(node: _FvcoreCfgNode, prefix: str = "") -> list[str]:
    keys = []
    for k, v in node.items():
        keys.append(prefix + k)
        if isinstance(v, _FvcoreCfgNode):
            keys.extend(_all_keys(v, prefix + k + "."))
    return keys


def closest_keys(full_key: str, cfg: _FvcoreCfgNode, n: int = 3) -> list[str]:
    """Return up to ``n`` existing full keys of ``cfg`` that look like ``full_key``."""
    candidates = _all_keys(cfg)
    close = difflib.get_close_matches(full_key, candidates, n=n, cutoff=0.6)
    if not close:
        # A typo in the leaf name is usually best caught by comparing leaf names alone.
        leaf = full_key.rsplit(".", 1)[-1]
        by_leaf: dict[str, list[str]] = {}
        for key in candidates:
            by_leaf.setdefault(key.rsplit(".", 1)[-1], []).append(key)
        for name in difflib.get_close_matches(leaf, list(by_leaf), n=n, cutoff=0.75):
            close.extend(by_leaf[name])
    return close[:n]


def _unknown_key_message(full_key: str, root: _FvcoreCfgNode, source: str) -> str:
    close = closest_keys(full_key, root)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    return f"Unknown config key {full_key} (from {source}).{hint}"


def get_cfg() -> CfgNode:
    """Return a fresh copy of meshrecon's default config (see ``meshrecon/config/defaults.py``)."""
    from meshrecon.config.defaults import _C

    return _C.clone()


# ---------------------------------------------------------------------------- configurable


def configurable(init_func: Callable | None = None, *, from_config: Callable | None = None):
    """Let a class ``__init__`` (or a function) be called with a config or with explicit args.

    On ``__init__``::

        class Head(nn.Module):
            @configurable
            def __init__(self, *, in_channels: int, num_classes: int): ...

            @classmethod
            def from_config(cls, cfg, in_channels):
                return {"in_channels": in_channels, "num_classes": cfg.MODEL.NUM_CLASSES}

        Head(cfg, 256)                            # via from_config
        Head(in_channels=256, num_classes=3)      # explicit

    On a function, pass the translator: ``@configurable(from_config=lambda cfg: {...})``.
    Arguments given next to ``cfg`` that ``from_config`` does not accept are passed through,
    overriding nothing that ``from_config`` returned unless they share a name (then they win).
    """
    if init_func is not None:
        if not (inspect.isfunction(init_func) and init_func.__name__ == "__init__"):
            raise TypeError(
                "@configurable without arguments decorates an __init__; for a function use "
                "@configurable(from_config=...)"
            )

        @functools.wraps(init_func)
        def wrapped_init(self, *args, **kwargs):
            if not _called_with_cfg(*args, **kwargs):
                init_func(self, *args, **kwargs)
                return
            from_config_func = getattr(type(self), "from_config", None)
            if from_config_func is None:
                raise AttributeError(
                    f"{type(self).__name__} uses @configurable but defines no from_config "
                    "classmethod"
                )
            if not inspect.ismethod(from_config_func):
                raise TypeError(f"{type(self).__name__}.from_config must be a classmethod")
            init_func(self, **_get_args_from_config(from_config_func, *args, **kwargs))

        return wrapped_init

    if from_config is None:
        return configurable  # used as @configurable() on an __init__
    if not inspect.isfunction(from_config):
        raise TypeError("configurable(from_config=...) needs a function")

    def wrapper(orig_func):
        @functools.wraps(orig_func)
        def wrapped(*args, **kwargs):
            if _called_with_cfg(*args, **kwargs):
                return orig_func(**_get_args_from_config(from_config, *args, **kwargs))
            return orig_func(*args, **kwargs)

        wrapped.from_config = from_config
        return wrapped

    return wrapper


def _called_with_cfg(*args: Any, **kwargs: Any) -> bool:
    if args and isinstance(args[0], _FvcoreCfgNode):
        return True
    return isinstance(kwargs.get("cfg"), _FvcoreCfgNode)


def _get_args_from_config(from_config_func: Callable, *args: Any, **kwargs: Any) -> dict:
    """Call ``from_config`` with what it accepts; pass the rest of ``kwargs`` through."""
    signature = inspect.signature(from_config_func)
    params = list(signature.parameters.values())
    if not params or params[0].name != "cfg":
        name = getattr(from_config_func, "__qualname__", repr(from_config_func))
        raise TypeError(f"{name} must take 'cfg' as its first argument")
    takes_var_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    if takes_var_kwargs:
        return from_config_func(*args, **kwargs)
    accepted = set(signature.parameters)
    passed = {k: v for k, v in kwargs.items() if k in accepted}
    extra = {k: v for k, v in kwargs.items() if k not in accepted}
    result = from_config_func(*args, **passed)
    if not isinstance(result, dict):
        name = getattr(from_config_func, "__qualname__", repr(from_config_func))
        raise TypeError(f"{name} must return a dict of arguments, got {type(result).__name__}")
    result.update(extra)
    return result
