"""``Matcher``: assign each prediction (anchor, proposal) to a ground-truth box and a label."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["Matcher"]


class Matcher:
    """Match predictions to ground truth by a quality matrix (usually IoU).

    Every prediction is matched to the ground-truth element of highest quality, and labelled by
    the interval of ``thresholds`` its best quality falls into: with thresholds
    ``[t1, ..., tk]`` and labels ``[l0, ..., lk]``, quality in ``[-inf, t1)`` gets ``l0``,
    ``[t1, t2)`` gets ``l1``, ..., ``[tk, inf)`` gets ``lk``. Labels are 1 (positive), 0
    (negative) or -1 (ignored).

    Args:
        thresholds: increasing positive thresholds.
        labels: one more label than thresholds, each in {-1, 0, 1}.
        allow_low_quality_matches: also label positive, for each ground-truth element, every
            prediction that reaches that element's highest quality (so no ground truth is left
            without a positive, as Faster R-CNN's RPN does).
    """

    def __init__(
        self,
        thresholds: Sequence[float],
        labels: Sequence[int],
        allow_low_quality_matches: bool = False,
    ) -> None:
        thresholds = [float(t) for t in thresholds]
        if not thresholds or thresholds[0] <= 0:
            raise ValueError(f"thresholds must be non-empty and positive, got {thresholds}")
        if any(lo > hi for lo, hi in zip(thresholds[:-1], thresholds[1:])):
            raise ValueError(f"thresholds must be non-decreasing, got {thresholds}")
        labels = [int(lab) for lab in labels]
        if any(lab not in (-1, 0, 1) for lab in labels):
            raise ValueError(f"labels must each be -1, 0 or 1, got {labels}")
        if len(labels) != len(thresholds) + 1:
            raise ValueError(
                f"labels needs len(thresholds) + 1 = {len(thresholds) + 1} entries, got {labels}"
            )
        self.thresholds = [-float("inf"), *thresholds, float("inf")]
        self.labels = labels
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, match_quality_matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Match the columns (predictions) of ``match_quality_matrix (M, N)`` to its rows.

        Returns:
            matches: ``(N,)`` int64, the row each prediction is matched to.
            match_labels: ``(N,)`` int8, the label of each prediction.
        """
        if match_quality_matrix.dim() != 2:
            raise ValueError(
                "match_quality_matrix must be (M ground truth, N predictions), got shape "
                f"{tuple(match_quality_matrix.shape)}"
            )
        num_pred = match_quality_matrix.shape[1]
        device = match_quality_matrix.device
        if match_quality_matrix.numel() == 0:
            # No ground truth (or no prediction): everything gets the lowest interval's label.
            matches = torch.zeros(num_pred, dtype=torch.int64, device=device)
            labels = torch.full((num_pred,), self.labels[0], dtype=torch.int8, device=device)
            return matches, labels
        if (match_quality_matrix < 0).any():
            raise ValueError("match_quality_matrix must be non-negative")

        matched_vals, matches = match_quality_matrix.max(dim=0)
        match_labels = torch.ones(num_pred, dtype=torch.int8, device=device)
        for label, low, high in zip(self.labels, self.thresholds[:-1], self.thresholds[1:]):
            in_interval = (matched_vals >= low) & (matched_vals < high)
            match_labels[in_interval] = label

        if self.allow_low_quality_matches:
            self._set_low_quality_matches(match_labels, match_quality_matrix)
        return matches, match_labels

    @staticmethod
    def _set_low_quality_matches(
        match_labels: torch.Tensor, match_quality_matrix: torch.Tensor
    ) -> None:
        # Ties count: every prediction reaching a ground truth's best quality becomes positive.
        # The prediction keeps its own argmax match, which may be another ground truth.
        best_per_gt = match_quality_matrix.max(dim=1).values
        _, pred_inds = torch.nonzero(match_quality_matrix == best_per_gt[:, None], as_tuple=True)
        match_labels[pred_inds] = 1
