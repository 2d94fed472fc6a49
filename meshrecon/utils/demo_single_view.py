"""Deprecated alias of :mod:`meshrecon.apps.demo.single_view` (moved there; goes next release).

Importing this path warns once (DeprecationWarning) and gives the new module itself.
"""

import sys
import warnings

from meshrecon.apps.demo import single_view as _moved

warnings.warn(
    "meshrecon.utils.demo_single_view moved to meshrecon.apps.demo.single_view; "
    "the old path goes in the next release",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = _moved
