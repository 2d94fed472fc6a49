"""``meshrecon zoo``: the configs shipped with meshrecon, their weights, and what is cached.

    meshrecon zoo                      # every config: released weights, initialization
    meshrecon zoo synthetic            # only names containing "synthetic"
    meshrecon zoo --urls               # also the download URLs and cache paths

Writes nothing: it reads the shipped configs and looks for the weight files in the download
cache (``$MESHRECON_CACHE``, default ``~/.cache/meshrecon``); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass

__all__ = ["ZooEntry", "list_zoo", "main"]

# MODEL.WEIGHTS values that are not files to fetch.
_NO_WEIGHTS = ("",)


@dataclass
class ZooEntry:
    """One shipped config and the weights that go with it.

    Attributes:
        config: path relative to the configs folder (what ``--config-file`` accepts).
        base: a ``Base-*`` file that other configs include (not a model on its own).
        released: the released trained weights (a prefixed URL), or "".
        released_cached: the cache path of ``released`` when the file is there, else "".
        init: the config's own ``MODEL.WEIGHTS`` (e.g. ImageNet initialization), or "".
        init_cached: the cache path of ``init`` when the file is there, else "".
    """

    config: str
    base: bool
    released: str = ""
    released_cached: str = ""
    init: str = ""
    init_cached: str = ""


def _cached(url: str) -> tuple[str, str]:
    """(download URL, cache path) of a weights URL; ("", "") for a local path or nothing."""
    from meshrecon.checkpoint.catalog import cache_path_for_url, resolve_url

    if url in _NO_WEIGHTS or "://" not in url:
        return "", ""
    try:
        http = resolve_url(url)
    except (ValueError, KeyError, AttributeError):  # e.g. an unknown torchvision model
        return "", ""
    if "://" not in http or http.startswith("file://"):
        return "", ""
    return http, cache_path_for_url(http)


def list_zoo(pattern: str = "") -> list[ZooEntry]:
    """Return the shipped configs whose name contains ``pattern``, with their weights."""
    from meshrecon.model_zoo import get_checkpoint_url, get_config, list_configs

    entries = []
    for name in list_configs():
        if pattern not in name:
            continue
        entry = ZooEntry(name, base=os.path.basename(name).startswith("Base-"))
        if not entry.base:
            try:
                entry.released = get_checkpoint_url(name)
            except KeyError:
                pass
            entry.init = str(get_config(name).MODEL.WEIGHTS)
        for field in ("released", "init"):
            url = getattr(entry, field)
            _, path = _cached(url)
            if path and os.path.isfile(path):
                setattr(entry, f"{field}_cached", path)
        entries.append(entry)
    return entries


def _status(url: str, cached: str, missing: str) -> str:
    if not url:
        return missing
    if "://" not in url:
        return url + (" (exists)" if os.path.isfile(url) else " (missing)")
    return url + (" [cached]" if cached else " [not cached]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="List the configs shipped with meshrecon, the weights released for them "
        "and the weights they start from, and whether each weight file is already in the "
        "download cache. Writes nothing and downloads nothing.",
        epilog="A config name is what --config-file of 'meshrecon train' / 'eval' / 'demo' "
        "accepts. Weights download on first use into $MESHRECON_CACHE (default "
        "~/.cache/meshrecon); offline, put a file at the cache path that --urls shows.",
    )
    parser.add_argument("pattern", nargs="?", default="", help="only configs containing this")
    parser.add_argument("--urls", action="store_true", help="show download URLs, cache paths")
    parser.add_argument("--json", action="store_true", help="print the list as JSON")
    parser.add_argument("--bases", action="store_true", help="also list the Base-* files")
    args = parser.parse_args(argv)

    from meshrecon.checkpoint.catalog import get_cache_dir

    entries = [e for e in list_zoo(args.pattern) if args.bases or not e.base]
    if args.json:
        json.dump([asdict(e) for e in entries], sys.stdout, indent=1)
        print()
        return 0
    if not entries:
        print(f"no shipped config matches {args.pattern!r}", file=sys.stderr)
        return 1
    width = max(len(e.config) for e in entries)
    print(f"{'config'.ljust(width)}  released weights / starts from")
    for e in entries:
        if e.base:
            print(f"{e.config.ljust(width)}  (included by other configs)")
            continue
        print(
            f"{e.config.ljust(width)}  released: {_status(e.released, e.released_cached, 'none')}"
        )
        print(f"{''.ljust(width)}  starts from: {_status(e.init, e.init_cached, 'random weights')}")
        if args.urls:
            for url in (e.released, e.init):
                http, path = _cached(url)
                if http:
                    print(f"{''.ljust(width)}    {url} = {http}\n{''.ljust(width)}      -> {path}")
    print(f"\n{len(entries)} configs; download cache: {get_cache_dir()}")
    return 0
