"""meshrecon.utils: distributed helpers, events and writers, logging, environment."""

# PyTorch3D's ``pytorch3d.utils.ico_sphere`` path (the implementation is in meshrecon.ops).
from .ico_sphere import ico_sphere as ico_sphere
