# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The edge benchmark's option handling and its accuracy/latency measurement (the full run is a script)."""

import numpy as np
import pytest

from benchmarks import edge, edge_runners


def test_options_extend_the_runner_and_default_output(tmp_path):
    (tmp_path / "x").mkdir()
    args = edge.parse_args(["--models", "Cflow", "--root", str(tmp_path), "--category", "x", "--precisions", "fp32"])
    assert args.precisions == ["fp32"]
    assert args.models == ["Cflow"]  # no baselines added
    assert args.out.name == f"edge_{tmp_path.name}_x.csv"
    assert args.command.startswith("python -m benchmarks.edge --models Cflow")
    assert args.image_size == (256, 256)


def _sample(value: float, label: int, mask: bool) -> edge_runners.Sample:
    m = np.zeros((2, 2), dtype=bool)
    m[0, 0] = mask
    return edge_runners.Sample(np.full((1, 3, 2, 2), value, dtype=np.float32), label, m)


def test_accuracy_scores_images_and_pixels():
    samples = [_sample(0.1, 0, False), _sample(0.9, 1, True), _sample(0.2, 0, False)]

    def runner(image):
        amap = np.zeros((1, 1, 2, 2), dtype=np.float32)
        amap[0, 0, 0, 0] = image.mean()
        return {"pred_score": np.array([image.mean()]), "anomaly_map": amap}

    result = edge_runners.accuracy(runner, samples)
    assert result["image_AUROC"] == pytest.approx(1.0)
    assert result["pixel_AUROC"] == pytest.approx(1.0)
    inverted = edge_runners.accuracy(lambda x: {"pred_score": np.array([-x.mean()])}, samples)
    assert inverted["image_AUROC"] == pytest.approx(0.0)
    assert "pixel_AUROC" not in inverted


def test_accuracy_ranks_raw_scores_above_the_sigmoid_range():
    # raw exported scores (e.g. DifferNet's in the hundreds): a sigmoid would tie them all at 1.0 in float32
    samples = [_sample(0.1, 0, False), _sample(0.9, 1, True), _sample(0.2, 0, False), _sample(0.5, 1, True)]

    def runner(image):
        amap = np.full((1, 1, 2, 2), 100.0, dtype=np.float32)
        amap[0, 0, 0, 0] = 100.0 + 1000 * image.mean()
        return {"pred_score": np.array([500.0 + 1000 * image.mean()]), "anomaly_map": amap}

    result = edge_runners.accuracy(runner, samples)
    assert result["image_AUROC"] == pytest.approx(1.0)
    assert result["pixel_AUROC"] == pytest.approx(1.0)


def test_latency_reports_median_and_p95():
    calls = []
    stats = edge_runners.latency(calls.append, 1, runs=20, warmup=3)
    assert len(calls) == 23
    assert 0 <= stats["median_ms"] <= stats["p95_ms"]


def test_pyramid_backbone_converts_to_openvino():
    """HGAD's extractor returns lists per scale; the timed backbone must still convert (it crashed edge.py)."""
    import openvino as ov
    import torch

    from anomalib_nfplus.models.hgad import HGADModel

    model = HGADModel("tf_efficientnet_lite0", ["blocks.2", "blocks.4"], pre_trained=False, pyramid_scales=(1.0, 0.5))
    backbone = edge_runners.backbone_of(model)
    image = torch.rand(1, 3, 64, 64)
    outputs = backbone(image)
    assert [tuple(o.shape) for o in outputs] == [(1, 40, 8, 8), (1, 112, 4, 4), (1, 40, 4, 4), (1, 112, 2, 2)]
    compiled = ov.Core().compile_model(ov.convert_model(backbone, example_input=image), "CPU")
    assert len(compiled.outputs) == 4
