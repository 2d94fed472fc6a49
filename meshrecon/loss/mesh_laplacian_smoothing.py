"""``pytorch3d.loss.mesh_laplacian_smoothing``'s path (the loss is in meshrecon.ops.mesh_losses)."""

from meshrecon.ops.mesh_losses import mesh_laplacian_smoothing

__all__ = ["mesh_laplacian_smoothing"]
