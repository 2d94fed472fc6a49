"""Reading and writing meshes, point clouds and voxel grids."""

# --- section: io (owner: E) ---
# --- end section ---
