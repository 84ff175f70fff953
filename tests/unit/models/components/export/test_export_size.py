# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Export size: the pre-processor's size by default, and sizes the model cannot take refused before tracing."""

import time
from pathlib import Path

import pytest
import torch

from anomalib_nfplus.models import HGAD, CflowAD, DifferNet
from anomalib_nfplus.models.components.export.export_size import export_input_size

TINY = {
    CflowAD: {"layers": ["blocks.2", "blocks.4"], "coupling_blocks": 1, "condition_dim": 16, "reflect_padding": False},
    HGAD: {"layers": ["blocks.4"], "coupling_blocks": 1, "condition_dim": 16, "n_intra": 2, "n_classes": 1},
    DifferNet: {"layers": ["blocks.2"], "coupling_blocks": 1, "hidden": 16, "depth": 1, "n_test_transforms": 2},
}


def _model(cls: type, **kwargs) -> torch.nn.Module:
    args = {"backbone": "tf_efficientnet_lite0", "pre_trained": False, "evaluator": False, "visualizer": False}
    return cls(**args, **TINY[cls], **kwargs)


@pytest.mark.parametrize("cls", [CflowAD, HGAD, DifferNet])
def test_default_is_the_pre_processors_size(cls: type) -> None:
    model = _model(cls, image_size=(96, 80))
    assert model.export_input_size() == (96, 80)
    assert model.export_input_size((50, 70)) == (50, 70)  # any size works when the pre-processor resizes


@pytest.mark.parametrize("cls", [CflowAD, HGAD, DifferNet])
def test_too_small_for_the_model_fails_before_tracing(cls: type, tmp_path: Path) -> None:
    model = _model(cls, image_size=96, pre_processor=False)  # without a resize, the graph sees input_size
    minimum = model.model.min_size
    assert export_input_size(model, (minimum, minimum)) == (minimum, minimum)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=rf"needs at least {minimum}x{minimum} px"):
        model.to_onnx(tmp_path, input_size=(minimum - 1, 2 * minimum))
    assert time.perf_counter() - start < 5  # refused, not traced
    assert not list(tmp_path.rglob("*.onnx"))


def test_without_a_resizing_pre_processor_the_size_must_be_given() -> None:
    model = _model(CflowAD, pre_processor=False)
    with pytest.raises(ValueError, match=r"pass input_size=\(H, W\)"):
        model.export_input_size()


def test_hgad_minimum_keeps_one_position_on_the_smallest_pyramid_level() -> None:
    model = _model(HGAD, image_size=64, pyramid_scales=(1.0, 0.5, 0.25))
    assert model.model.feature_extractor.strides == [16]
    assert model.model.min_size == 64  # 64 px * 0.25 = 16 px = one stride-16 position
    with pytest.raises(ValueError, match="too small"):
        model.model.eval()(torch.rand(1, 3, 63, 63))


def test_malformed_size_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\(height, width\)"):
        _model(CflowAD, image_size=64).export_input_size((64, 64, 3))
