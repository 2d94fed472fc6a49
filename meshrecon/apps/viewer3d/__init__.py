"""An interactive 3D viewer for HTML pages written into a folder (reports, demo index pages).

:func:`write_viewer` turns groups of files (a picture, GLB meshes, PLY point clouds) into an
HTML fragment: one row of views per group, each view turned, zoomed and panned with the mouse,
the views of a row sharing one camera, and a switch between shaded, wireframe and point views.
It works offline from a page opened by double-click (``file://``), where browsers refuse
ES-module imports and ``fetch()``: see :mod:`.writer`. three.js ships inside this package
(``static/three``, pinned, MIT licence; ``static/three/README.md`` says how to update it).
"""

from .writer import THREE_VERSION, ViewerGroup, ViewerItem, three_module_graph, write_viewer

__all__ = ["THREE_VERSION", "ViewerGroup", "ViewerItem", "three_module_graph", "write_viewer"]
