# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""AUROC as a rank statistic, on raw scores of any range.

The project computes its own AUROCs (per category, in the benchmarks) on the models' raw scores, which are
unbounded: log-likelihood z-scores, ``-log`` maps, DifferNet's negative log-likelihoods in the tens of thousands.
torchmetrics' ``binary_auroc`` treats inputs outside ``[0, 1]`` as logits and applies a sigmoid first, which rounds
to exactly 1.0 from about 16.6 up in float32 (36.7 in float64), so large scores tie and the AUROC drifts towards 0.5.

:func:`rank_auroc` is the Mann-Whitney statistic: the probability that a random anomalous sample scores above a
random normal one, ties counted as one half. It depends only on the order of the scores, so any strictly increasing
transform of them (normalisation, ``exp``, a sigmoid that does not round) gives the same value.
"""

import math

import torch

__all__ = ["rank_auroc"]


def rank_auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` for ``labels`` (1 anomalous, 0 normal), from the ranks of the scores.

    Tied scores share their average rank, so a tie between a normal and an anomalous sample counts one half, as in
    the trapezoidal ROC area. Runs in ``O(n log n)``; pixel AUROCs over tens of millions of values fit in memory.

    Args:
        scores (torch.Tensor): Scores of any shape and range (higher: more anomalous); flattened.
        labels (torch.Tensor): Labels of the same number of elements, 0/1 or boolean.

    Returns:
        float: The AUROC in ``[0, 1]``; NaN when only one label is present.

    Raises:
        ValueError: Scores and labels differ in size, labels are not 0/1, or a score is NaN.

    Example:
        >>> rank_auroc(torch.tensor([40.0, 20.0, 19.0, 35.0, 18.0]), torch.tensor([1, 0, 0, 1, 1]))
        0.6666666666666666
    """
    values = scores.detach().flatten().to(torch.float64)
    target = labels.detach().flatten()
    if values.numel() != target.numel():
        msg = f"rank_auroc: {values.numel()} scores but {target.numel()} labels."
        raise ValueError(msg)
    if bool(((target != 0) & (target != 1)).any()):
        msg = "rank_auroc: labels must be 0 (normal) or 1 (anomalous)."
        raise ValueError(msg)
    if bool(values.isnan().any()):
        msg = "rank_auroc: scores contain NaN; the model produced non-finite scores, AUROC is undefined for them."
        raise ValueError(msg)
    positive = target.bool()
    n_pos = int(positive.sum())
    n_neg = positive.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = torch.argsort(values)
    _, counts = torch.unique_consecutive(values[order], return_counts=True)
    last = counts.cumsum(0).to(torch.float64)  # 1-based rank of each group's last member
    mean_rank = (last - (counts.to(torch.float64) - 1) / 2).repeat_interleave(counts)
    pos_rank_sum = float(mean_rank[positive[order]].sum())
    return (pos_rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
