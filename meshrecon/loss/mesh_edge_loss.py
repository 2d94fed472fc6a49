"""``pytorch3d.loss.mesh_edge_loss``'s path (the loss is in meshrecon.ops.mesh_losses)."""

from meshrecon.ops.mesh_losses import mesh_edge_loss

__all__ = ["mesh_edge_loss"]
