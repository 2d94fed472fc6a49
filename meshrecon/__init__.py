"""meshrecon: learning 3D shape from images, mesh first."""

__version__ = "0.1.0"
