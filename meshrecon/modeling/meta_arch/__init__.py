"""Meta-architectures: whole models, registered in ``META_ARCH_REGISTRY``."""

from meshrecon.modeling.meta_arch.build import META_ARCH_REGISTRY, build_model, resolve_device
from meshrecon.modeling.meta_arch.rcnn import GeneralizedRCNN

__all__ = ["META_ARCH_REGISTRY", "build_model", "resolve_device", "GeneralizedRCNN"]

# --- section: single-view (owner: single-view) ---
from meshrecon.modeling.meta_arch.single_view import SingleViewReconstructor  # noqa: E402

__all__ += ["SingleViewReconstructor"]
# --- end section ---
from meshrecon.modeling.meta_arch.depth import DepthEstimator  # noqa: E402

__all__ += ["DepthEstimator"]
from meshrecon.modeling.meta_arch.multi_view import MultiViewReconstructor  # noqa: E402

__all__ += ["MultiViewReconstructor"]
