"""What the subcommands share: config names, and the shipped configs they resolve to."""

from __future__ import annotations

import difflib
import os

__all__ = ["CONFIG_FILE_HELP", "resolve_config_file"]

CONFIG_FILE_HELP = (
    "a config file, or the name of a config shipped with meshrecon such as "
    "synthetic/voxmesh.yaml ('meshrecon zoo' lists them)"
)


def resolve_config_file(name: str) -> str:
    """Return the file a ``--config-file`` value names: a path, else a shipped config.

    A path that exists wins. Otherwise ``name`` is looked up among the configs shipped inside
    the package (relative to their folder, with or without a leading ``configs/`` and the
    ``.yaml`` suffix), so the same command works in a clone and after a plain ``pip install``.

    Raises:
        FileNotFoundError: naming ``name`` and the closest shipped configs.
    """
    if os.path.isfile(name):
        return name
    from meshrecon.model_zoo import get_config_file, list_configs

    rel = name.replace(os.sep, "/").removeprefix("./").removeprefix("configs/")
    if not rel.endswith((".yaml", ".yml")):
        rel += ".yaml"
    if rel in list_configs():
        return get_config_file(rel)
    # "voxmesh" or "my/voxmesh.yaml": the shipped files of that name; else similar names.
    close = [c for c in list_configs() if os.path.basename(c) == os.path.basename(rel)]
    close = close or difflib.get_close_matches(rel, list_configs(), n=3, cutoff=0.7)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise FileNotFoundError(
        f"config {name!r} is neither a file nor a config shipped with meshrecon{hint} "
        "('meshrecon zoo' lists the shipped configs)"
    )
