# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Tests of the unified-vs-separate benchmark: arguments, variants, rows, and one tiny end-to-end run."""

import csv
import math
from pathlib import Path

import pytest

from anomalib_nfplus.data.synthetic import make_mvtec_like
from benchmarks import unified


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench_unified")
    make_mvtec_like(root, ["stripes"], n_train=4, n_test_good=3, n_test_bad=1, image_size=64, seed=2)
    make_mvtec_like(root, ["dots"], n_train=4, n_test_good=3, n_test_bad=1, image_size=(48, 80), seed=2, channels=1)
    return root


def _argv(root: Path, out: Path, *extra: str) -> list[str]:
    return ["--root", str(root), "--categories", "stripes", "dots", "--out", str(out), *extra]


def test_variants_replace_the_plain_run_and_merge_init_args(root, tmp_path):
    args = unified.parse_args(
        _argv(root, tmp_path / "r.csv", "--image-size", "64", "--models", "HGAD", "Fastflow",
              "--init-args", "HGAD", '{"a": 1}', "--variants", "hgad", '{"scoring": "label_free"}',
              "--variants", "HGAD", "{}")
    )  # fmt: skip
    assert unified.runs(args) == [
        ("HGAD[scoring=label_free]", "HGAD", {"a": 1, "scoring": "label_free"}),
        ("HGAD", "HGAD", {"a": 1}),
        ("Fastflow", "Fastflow", {}),
    ]
    assert args.image_size == (64, 64)
    assert args.command.startswith("python -m benchmarks.unified --root")


@pytest.mark.parametrize(
    "argv",
    [
        ["--models", "Fastflow"],
        ["--models", "Fastflow", "--root", "x"],
        ["--models", "Fastflow", "--root", "x", "--categories", "a", "--data", "c.yaml"],
        ["--models", "Fastflow", "--root", "x", "--categories", "a", "--init-args", "Fastflow", "[1]"],
        ["--models", "Fastflow", "--root", "x", "--categories", "a", "--variants", "Fastflow", "{bad"],
        ["--models", "Fastflow", "--root", "x", "--categories", "a", "--epochs", "0"],
    ],
)
def test_bad_arguments_are_usage_errors(argv):
    with pytest.raises(SystemExit):
        unified.parse_args(argv)


def test_default_out_names_the_data(root):
    args = unified.parse_args(["--models", "Fastflow", "--data", "configs/data/unified_shared.yaml"])
    assert args.out.name == "unified_shared.csv"


def test_mean_rows_average_aurocs_and_sum_separate_times(root, tmp_path):
    args = unified.parse_args(_argv(root, tmp_path / "r.csv", "--models", "Fastflow"))
    per = {
        "a": {"image_AUROC": 0.8, "pixel_AUROC": 0.9, "train_s": 2.0, "test_s": 1.0},
        "b": {"image_AUROC": 0.6, "train_s": 3.0, "test_s": 1.0},
        "c": {"image_AUROC": math.nan, "train_s": 1.0, "test_s": 1.0},
    }
    mean = unified.rows_for("X", "separate", per, args)[-1]
    assert mean["category"] == "mean"
    assert mean["image_AUROC"] == pytest.approx(0.7)
    assert mean["pixel_AUROC"] == pytest.approx(0.9)
    assert mean["train_s"] == pytest.approx(6.0)
    assert unified.rows_for("X", "unified", per, args)[-1]["train_s"] == pytest.approx(2.0)


@pytest.mark.slow
def test_tiny_run_writes_per_category_rows(root, tmp_path):
    out = tmp_path / "unified_tiny.csv"
    tiny = ["--models", "Fastflow", "--epochs", "1", "--batch-size", "6", "--layers", "blocks.2", "--image-size", "32"]
    rows = unified.main(_argv(root, out, *tiny))
    with out.open(newline="") as handle:
        written = list(csv.DictReader(handle))
    assert [(r["mode"], r["category"]) for r in written] == [
        (mode, category) for mode in ("unified", "separate") for category in ("stripes", "dots", "mean")
    ]
    assert len(rows) == 6
    for row in written:
        assert 0.0 <= float(row["image_AUROC"]) <= 1.0
        assert 0.0 <= float(row["pixel_AUROC"]) <= 1.0  # both categories have masks in the MVTec layout
        assert float(row["train_s"]) > 0
    assert "| Fastflow | unified | mean |" in out.with_suffix(".md").read_text()
