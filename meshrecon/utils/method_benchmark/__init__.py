"""Deprecated alias of :mod:`meshrecon.apps.method_benchmark` (moved there; goes next release).

Importing this path warns once (DeprecationWarning) and gives the new package and its modules
themselves: ``meshrecon.utils.method_benchmark.methods is meshrecon.apps.method_benchmark.methods``.
"""

import sys
import warnings

from meshrecon.apps import method_benchmark as _moved
from meshrecon.apps.method_benchmark import (
    gallery,
    methods,
    per_category,
    presets,
    quality,
    report,
    runner,
    yardstick,
)

warnings.warn(
    "meshrecon.utils.method_benchmark moved to meshrecon.apps.method_benchmark; "
    "the old path goes in the next release",
    DeprecationWarning,
    stacklevel=2,
)
# Every submodule under its old name too, so that no module is loaded twice under two names.
for _module in (gallery, methods, per_category, presets, quality, report, runner, yardstick):
    sys.modules[f"{__name__}.{_module.__name__.rsplit('.', 1)[1]}"] = _module
sys.modules[__name__] = _moved
