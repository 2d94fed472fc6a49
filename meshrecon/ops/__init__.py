"""3D operations with PyTorch3D's names, arguments and semantics, in vectorized PyTorch."""

# --- section: knn/chamfer/emd (owner: B) ---
# --- end section ---
# --- section: cubify/ico_sphere/ellipsoid/subdivide/voxels (owner: C) ---
# --- end section ---
# --- section: graph_conv/vert_align/sampling/mesh losses (owner: D) ---
# --- end section ---
