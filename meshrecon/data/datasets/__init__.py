"""Datasets by name: importing this package registers every built-in split.

``import meshrecon.data.datasets`` registers the synthetic splits (generated on first use) and
the real ones (resolved under ``$MESHRECON_DATASETS``) in ``DatasetCatalog`` and
``MetadataCatalog``; see :mod:`meshrecon.data.datasets.builtin`.
"""

from . import builtin as builtin
from .synthetic import configure_synthetic as configure_synthetic

__all__ = ["builtin", "configure_synthetic"]
