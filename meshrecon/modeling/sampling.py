"""``subsample_labels``: draw a fixed-size, class-balanced minibatch of labelled elements."""

from __future__ import annotations

import torch

__all__ = ["subsample_labels"]


def subsample_labels(
    labels: torch.Tensor, num_samples: int, positive_fraction: float, bg_label: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Randomly pick at most ``num_samples`` elements, positives first.

    Up to ``int(num_samples * positive_fraction)`` positives are drawn (fewer if fewer exist),
    and negatives fill the rest (again, as many as exist).

    Args:
        labels: ``(N,)`` int labels: -1 ignored, ``bg_label`` negative, anything else positive.
        num_samples: the total to draw.
        positive_fraction: the largest share of positives, in [0, 1].
        bg_label: the label of negatives.

    Returns:
        pos_idx, neg_idx: 1-d int64 indices into ``labels`` of the drawn positives / negatives.
    """
    if labels.dim() != 1:
        raise ValueError(f"labels must be 1-d, got shape {tuple(labels.shape)}")
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    positive = torch.nonzero((labels != -1) & (labels != bg_label), as_tuple=True)[0]
    negative = torch.nonzero(labels == bg_label, as_tuple=True)[0]

    num_pos = min(positive.numel(), int(num_samples * positive_fraction))
    num_neg = min(negative.numel(), num_samples - num_pos)

    perm_pos = torch.randperm(positive.numel(), device=positive.device)[:num_pos]
    perm_neg = torch.randperm(negative.numel(), device=negative.device)[:num_neg]
    return positive[perm_pos], negative[perm_neg]
