"""Deprecated alias of :mod:`meshrecon.apps.viewer3d` (moved there; goes next release).

Importing this path warns once (DeprecationWarning) and gives the new package and its module
themselves: ``meshrecon.utils.viewer3d.writer is meshrecon.apps.viewer3d.writer``.
"""

import sys
import warnings

from meshrecon.apps import viewer3d as _moved
from meshrecon.apps.viewer3d import writer

warnings.warn(
    "meshrecon.utils.viewer3d moved to meshrecon.apps.viewer3d; "
    "the old path goes in the next release",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[f"{__name__}.writer"] = writer
sys.modules[__name__] = _moved
