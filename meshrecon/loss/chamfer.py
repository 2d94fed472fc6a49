"""``pytorch3d.loss.chamfer``'s path for :func:`meshrecon.ops.chamfer.chamfer_distance`."""

from meshrecon.ops.chamfer import chamfer_distance

__all__ = ["chamfer_distance"]
