"""Synthetic datasets generated on first use: ShapeNet-, Pix3D- and NYU-style splits.

* :mod:`.shapes` (with its primitives and builders): procedural objects of Pix3D's 9 categories.
* :mod:`.scenes`: objects, scenes and rooms rendered into the record formats.
* :mod:`.writers`: byte-reproducible file writers.
* :mod:`.generator`: sizes, cache folders, atomic generation, loading, configuration.

The content modules (``scenes``, ``meshrecon.render``) are imported only when a split is
generated, so registering the splits stays cheap.
"""

from .generator import (
    GENERATOR_VERSION,
    SPLITS,
    SyntheticConfig,
    configure_synthetic,
    dataset_dir,
    dataset_name,
    datasets_root,
    ensure_generated,
    get_synthetic_config,
    load_synthetic,
    read_split,
    set_synthetic_config,
    split_spec,
    synthetic_config_from_env,
)
from .shapes import CATEGORIES

__all__ = [
    "CATEGORIES",
    "GENERATOR_VERSION",
    "SPLITS",
    "SyntheticConfig",
    "configure_synthetic",
    "dataset_dir",
    "dataset_name",
    "datasets_root",
    "ensure_generated",
    "get_synthetic_config",
    "load_synthetic",
    "read_split",
    "set_synthetic_config",
    "split_spec",
    "synthetic_config_from_env",
]
