# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""rank_auroc against an AUROC counted pair by pair, on scores far outside [0, 1], negative scores and ties."""

import itertools
import math

import pytest
import torch

from anomalib_nfplus.metrics import rank_auroc


def pairwise_auroc(scores: list[float], labels: list[int]) -> float:
    """P(anomalous scores above normal), ties one half: every (anomalous, normal) pair counted by hand."""
    positives = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    negatives = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(positives, negatives))
    return wins / (len(positives) * len(negatives))


def test_the_issue_example_far_above_sigmoid_saturation():
    scores, labels = [40.0, 20.0, 19.0, 35.0, 18.0], [1, 0, 0, 1, 1]
    assert rank_auroc(torch.tensor(scores), torch.tensor(labels)) == pytest.approx(2 / 3)
    assert pairwise_auroc(scores, labels) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("low", "high"),
    [(-1e4, 1e4), (500.0, 40_000.0), (-600.0, -10.0), (0.0, 1.0), (16.0, 100.0)],
)
def test_matches_the_pairwise_count_over_any_range(low: float, high: float):
    generator = torch.Generator().manual_seed(0)
    scores = low + (high - low) * torch.rand(60, generator=generator, dtype=torch.float64)
    scores[::7] = scores[1]  # ties, across labels too
    labels = (torch.rand(60, generator=generator) < 0.4).long()
    labels[:2] = torch.tensor([0, 1])
    expected = pairwise_auroc(scores.tolist(), labels.tolist())
    assert rank_auroc(scores.float(), labels) == pytest.approx(
        pairwise_auroc(scores.float().double().tolist(), labels.tolist())
    )
    assert rank_auroc(scores, labels) == pytest.approx(expected)


def test_invariant_to_strictly_increasing_transforms():
    generator = torch.Generator().manual_seed(1)
    scores = torch.randn(200, generator=generator, dtype=torch.float64) * 50
    labels = (torch.rand(200, generator=generator) < 0.3).long()
    reference = rank_auroc(scores, labels)
    assert rank_auroc(1000 * scores + 7, labels) == pytest.approx(reference)
    assert rank_auroc(torch.sigmoid(scores / 100), labels) == pytest.approx(reference)


def test_ties_across_labels_count_one_half():
    assert rank_auroc(torch.tensor([50.0, 50.0, 50.0, 50.0]), torch.tensor([0, 1, 0, 1])) == pytest.approx(0.5)
    assert rank_auroc(torch.tensor([1.0, 2.0, 2.0]), torch.tensor([0, 0, 1])) == pytest.approx(0.75)


def test_maps_of_any_shape_and_boolean_masks():
    maps = torch.tensor([[[100.0, 300.0], [200.0, 400.0]]])
    masks = torch.tensor([[[False, True], [False, True]]])
    assert rank_auroc(maps, masks) == pytest.approx(1.0)


def test_single_label_is_nan_and_bad_input_is_refused():
    assert math.isnan(rank_auroc(torch.tensor([1.0, 2.0]), torch.tensor([1, 1])))
    with pytest.raises(ValueError, match="3 scores but 2 labels"):
        rank_auroc(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="0 \\(normal\\) or 1"):
        rank_auroc(torch.tensor([1.0, 2.0]), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="NaN"):
        rank_auroc(torch.tensor([1.0, math.nan]), torch.tensor([0, 1]))


def test_infinite_scores_rank_at_the_ends():
    scores = torch.tensor([-math.inf, 0.0, math.inf, 5.0])
    assert rank_auroc(scores, torch.tensor([0, 0, 1, 1])) == pytest.approx(1.0)


def test_no_other_auroc_computation_in_the_project():
    """Every AUROC the project computes goes through rank_auroc: a new call to a sigmoid-based AUROC fails here.

    (anomalib's own ``AUROC`` in ``benchmarks/baselines.py`` runs inside its Evaluator, after the PostProcessor has
    put the scores in ``[0, 1]``.)
    """
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    sources = [*root.joinpath("src", "anomalib_nfplus").rglob("*.py"), *root.joinpath("benchmarks").rglob("*.py")]
    offending = [
        f"{path.relative_to(root)}: {name}"
        for path in sources
        if path.name != "metrics.py"
        for name in ("binary_auroc(", "import binary_auroc", "BinaryAUROC(", "roc_auc_score(", "import auroc")
        if name in path.read_text()
    ]
    assert offending == [], "use anomalib_nfplus.metrics.rank_auroc instead: " + "; ".join(offending)
