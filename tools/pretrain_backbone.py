#!/usr/bin/env python
"""Pretrain the synthetic configs' image encoders ahead of training (else: on first use).

    python tools/pretrain_backbone.py                                  # resnet18_pretrained.pth
    python tools/pretrain_backbone.py --name eigen_alexnet_pretrained.pth
    python tools/pretrain_backbone.py --list                           # recipes and cache state
    python tools/pretrain_backbone.py --set steps=200 image_size=96   # a variant, cached apart

The weights land in the cache (``$MESHRECON_CACHE``, default ``~/.cache/meshrecon``) under a
folder keyed by the recipe and the synthetic generator; configs name them
``synthetic://<name>`` (``MODEL.BACKBONE.PRETRAINED`` for ResNet-18 models,
``MODEL.DEPTH.PRETRAINED`` for Eigen et al.'s coarse network). A ``--set`` variant is not what
``synthetic://<name>`` resolves to: pass the printed path instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from meshrecon.pretrain import (  # noqa: E402
    PRETRAINED_RECIPES,
    PretrainRecipe,
    ensure_pretrained,
    is_cached,
    pretrained_dir,
)


def _parse_set(items: list[str]) -> dict:
    fields = {f.name: f.type for f in dataclasses.fields(PretrainRecipe)}
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"--set {item!r}: expected FIELD=VALUE with FIELD in {sorted(fields)}")
        default = getattr(PretrainRecipe(), key)
        if isinstance(default, tuple):
            out[key] = tuple(float(v) for v in value.split(","))
        else:
            out[key] = type(default)(value)
    return out


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="resnet18_pretrained.pth", help="weights to make")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--list", action="store_true", help="list the recipes and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.list:
        for name, recipe in sorted(PRETRAINED_RECIPES.items()):
            state = "cached" if is_cached(name) else "not made yet"
            print(f"synthetic://{name}: {state}, {pretrained_dir(name)}\n  {recipe}")
        return ""
    if args.name not in PRETRAINED_RECIPES:
        parser.error(f"--name: known weights are {', '.join(sorted(PRETRAINED_RECIPES))}")
    recipe = dataclasses.replace(PRETRAINED_RECIPES[args.name], **_parse_set(args.set))
    cached = is_cached(args.name, recipe)
    start = time.perf_counter()
    path = ensure_pretrained(args.name, recipe)
    seconds = time.perf_counter() - start
    with open(os.path.join(os.path.dirname(path), "meta.json"), encoding="utf-8") as f:
        meta = json.load(f)
    print(f"{'cached' if cached else f'made in {seconds / 60:.1f} min'}: {path}")
    print("held-out objects, random init -> pretrained:")
    for key, after in meta["heldout_after"].items():
        print(f"  {key}: {meta['heldout_before'][key]:.4f} -> {after:.4f}")
    print(
        f"rendering {meta['render_seconds']:.0f} s (CPU {meta['render_cpu_seconds']:.0f} s), "
        f"training {meta['train_seconds']:.0f} s (CPU {meta['train_cpu_seconds']:.0f} s), "
        f"{meta['threads']} threads"
    )
    return path


if __name__ == "__main__":
    main()
