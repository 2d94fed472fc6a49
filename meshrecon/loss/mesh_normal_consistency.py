"""``pytorch3d.loss.mesh_normal_consistency``'s path (the loss is in meshrecon.ops.mesh_losses)."""

from meshrecon.ops.mesh_losses import mesh_normal_consistency

__all__ = ["mesh_normal_consistency"]
