"""Applications built on the library: the top layer (docs/ARCHITECTURE.md).

- :mod:`.method_benchmark`: trains, evaluates and compares the methods, writes the report.
- :mod:`.demo`: ``meshrecon demo``'s reconstructions of photos (single-view models and detectors)
  and its index page.
- :mod:`.viewer3d`: the interactive 3D viewer of the report and of the demo's index page.

Nothing in the library imports these packages; ``meshrecon.cli`` and ``tools/`` call them.
"""
