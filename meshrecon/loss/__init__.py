"""PyTorch3D's ``pytorch3d.loss`` import paths for the losses meshrecon carries.

The implementations live in :mod:`meshrecon.ops`; this package only gives them the module
paths a PyTorch3D user types (``meshrecon.loss.chamfer_distance``,
``meshrecon.loss.chamfer.chamfer_distance``, ...). See docs/PYTORCH3D_COMPAT.md.
"""

from .chamfer import chamfer_distance
from .mesh_edge_loss import mesh_edge_loss
from .mesh_laplacian_smoothing import mesh_laplacian_smoothing
from .mesh_normal_consistency import mesh_normal_consistency

__all__ = [
    "chamfer_distance",
    "mesh_edge_loss",
    "mesh_laplacian_smoothing",
    "mesh_normal_consistency",
]
