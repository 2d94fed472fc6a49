"""Data structures: PyTorch3D-compatible Meshes/Pointclouds, Detectron2-compatible boxes etc."""

# --- section: meshes/pointclouds (owner: structures) ---
# --- end section ---
# --- section: detection structures (owner: framework) ---
# --- end section ---
