# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Tests of the HGAD and homogeneous-mapping diagnostics: the measures on hand-computed cases, tiny end-to-end runs."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from anomalib_nfplus.data.synthetic import make_mvtec_like
from benchmarks import hgad_diagnostics, homogeneous_mapping


def test_auroc_counts_ties_as_one_half():
    # the four (anomalous, normal) pairs: 2 > 1, 2 = 2 (one half), 3 > 1, 3 > 2
    scores = np.array([1.0, 2.0, 2.0, 3.0])
    labels = np.array([0, 0, 1, 1])
    assert hgad_diagnostics.auroc(scores, labels) == pytest.approx((1 + 1 + 1 + 0.5) / 4)


def test_auroc_ranks_raw_scores_far_outside_zero_one():
    # float64 sigmoids round to 1.0 from about 36.7: torchmetrics would tie 40, 50 and 60 (0.5 instead of 1.0)
    scores = np.array([40.0, 50.0, 60.0, -700.0, 55.0])
    labels = np.array([0, 1, 1, 0, 0])
    assert hgad_diagnostics.auroc(scores, labels) == pytest.approx(5 / 6)
    assert hgad_diagnostics.auroc(scores * 1000, labels) == pytest.approx(5 / 6)


def test_auroc_of_a_single_label_is_nan():
    assert math.isnan(hgad_diagnostics.auroc(np.array([0.1, 0.2]), np.array([1, 1])))


def test_saturation_counts_scores_at_the_top_within_float32_resolution():
    top = 4.0
    scores = np.array([top, top * (1 + 1e-8), top * (1 - 1e-3), 1.0])
    assert hgad_diagnostics.saturation(scores) == {"at_top_score": 2, "distinct_scores": 3}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A two-category ``Unified`` config over tiny generated data."""
    make_mvtec_like(tmp_path / "data", ["stripes", "dots"], n_train=4, n_test_good=2, n_test_bad=1, image_size=48)
    path = tmp_path / "unified.yaml"
    path.write_text(
        "class_path: anomalib_nfplus.data.unified.Unified\n"
        f"init_args:\n  root: {tmp_path / 'data'}\n  categories: [stripes, dots]\n  num_workers: 0\n"
    )
    return path


@pytest.mark.slow
def test_diagnostics_run_end_to_end(tmp_path: Path, config: Path):
    out = tmp_path / "out"
    summary = hgad_diagnostics.main(
        ["--data", str(config), "--image-size", "48", "--layers", "blocks.2", "--batch-size", "4",
         "--out-dir", str(out), "--init-args", "HGAD", '{"coupling_blocks": 1, "condition_dim": 16, "n_intra": 1}']
    )  # fmt: skip
    assert json.loads((out / "diagnostics.json").read_text())["mean"] == summary["mean"]
    assert {p.name for p in out.glob("*.png")} == {"scores.png", "class_posterior.png", "likelihood.png"}
    assert set(summary["per_category"]) == {"stripes", "dots"}
    assert all(0.0 <= accuracy <= 1.0 for accuracy in summary["class_posterior_accuracy_per_level"])
    assert len(summary["train_loss_per_epoch"]) == 1
    for values in summary["per_category"].values():
        assert values["test_images"] == 2 + 3  # two normal, one image per defect type


def test_homogeneous_mapping_gap_is_normal_minus_anomalous_mean_log_likelihood():
    rows = {
        "category": np.array([0, 0, 0, 1, 1]),
        "label": np.array([0, 1, 1, 0, 1]),
        "score": np.array([0.1, 0.2, 0.05, 0.3, 0.4]),
        "mean_log_p": np.array([-1.0, -2.0, -4.0, -1.5, -1.0]),
    }
    summary = homogeneous_mapping.summarise(rows, ["a", "b"])
    assert summary["a"]["gap"] == pytest.approx(-1.0 - (-3.0))
    assert summary["a"]["image_AUROC"] == pytest.approx(0.5)  # 0.2 > 0.1, 0.05 < 0.1
    assert summary["a"]["image_AUROC_mean_log_p"] == pytest.approx(1.0)
    assert summary["b"]["gap"] == pytest.approx(-0.5)  # the anomaly is the more likely: homogeneous mapping
    assert summary["b"]["image_AUROC_mean_log_p"] == pytest.approx(0.0)


@pytest.mark.slow
def test_homogeneous_mapping_runs_end_to_end(tmp_path: Path, config: Path):
    out = tmp_path / "out"
    tiny = '{"coupling_blocks": 1, "condition_dim": 16, "reflect_padding": false}'
    summary = homogeneous_mapping.main(
        ["--data", str(config), "--image-size", "48", "--layers", "blocks.2", "--batch-size", "4",
         "--classes", "1", "2", "--out-dir", str(out), "--init-args", "CflowAD", tiny]
    )  # fmt: skip
    assert json.loads((out / "homogeneous_mapping.json").read_text())["runs"] == summary["runs"]
    assert (out / "homogeneous_mapping.png").is_file()
    assert [set(r["per_category"]) for r in summary["runs"]] == [{"stripes"}, {"stripes", "dots"}]
    assert all(len(r["train_loss_per_epoch"]) == 1 for r in summary["runs"])
