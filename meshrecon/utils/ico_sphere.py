"""``pytorch3d.utils.ico_sphere``'s path for :func:`meshrecon.ops.ico_sphere.ico_sphere`."""

from meshrecon.ops.ico_sphere import ico_sphere

__all__ = ["ico_sphere"]
