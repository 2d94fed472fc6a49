"""``detector_postprocess``: bring detections from the network's input size to the requested
output size."""

from __future__ import annotations

from meshrecon.layers.mask_ops import paste_masks_in_image
from meshrecon.structures import Instances

__all__ = ["detector_postprocess"]


def detector_postprocess(
    results: Instances, output_height: int, output_width: int, mask_threshold: float = 0.5
) -> Instances:
    """Rescale detections to ``(output_height, output_width)``.

    Boxes (``pred_boxes``, else ``proposal_boxes``) are scaled, clipped, and empty ones dropped
    with their instances; ``pred_masks (D, 1, M, M)`` are pasted into ``(D, H, W)`` bool masks.
    Other fields are kept as they are (Mesh R-CNN's meshes, voxels and dz live in the camera
    frame, not in pixels).

    Args:
        results: detections of one image at the network's input size ``results.image_size``.
        output_height, output_width: the size to rescale to (usually the original image's).
        mask_threshold: foreground threshold of the pasted masks.
    """
    in_h, in_w = results.image_size
    scale_x, scale_y = output_width / in_w, output_height / in_h
    results = Instances((output_height, output_width), **results.get_fields())
    if results.has("pred_boxes"):
        name = "pred_boxes"
    elif results.has("proposal_boxes"):
        name = "proposal_boxes"
    else:
        raise ValueError("results must have pred_boxes or proposal_boxes")
    # Scaling works in place: copy so the caller's boxes are untouched.
    boxes = results.get(name).clone()
    boxes.scale(scale_x, scale_y)
    boxes.clip(results.image_size)
    results.set(name, boxes)
    results = results[boxes.nonempty()]

    if results.has("pred_masks"):
        masks = results.pred_masks
        if masks.dim() == 4:
            masks = masks[:, 0]
        results.pred_masks = paste_masks_in_image(
            masks, results.pred_boxes.tensor, results.image_size, threshold=mask_threshold
        )
    return results
