# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""float32_scoring: no autocast inside, float32 inputs, autocast restored after; 16-bit weights are refused."""

from types import SimpleNamespace

import pytest
import torch

from anomalib_nfplus.models.components import float32_scoring
from anomalib_nfplus.models.components.host.precision import check_trainer_precision
from tests.unit.models.components.modules import Tiny


def test_scores_in_float32_inside_an_autocast_region():
    weight = torch.randn(4, 4)
    images = torch.randn(2, 4).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (torch.randn(2, 4) @ weight).dtype == torch.bfloat16
        with float32_scoring(images) as inputs:
            assert inputs.dtype == torch.float32
            assert not torch.is_autocast_enabled("cpu")
            assert (inputs @ weight).dtype == torch.float32
        assert torch.is_autocast_enabled("cpu")
    for unchanged in (torch.tensor([1, 0]), torch.ones(2, dtype=torch.float64)):
        with float32_scoring(unchanged) as same:
            assert same is unchanged  # integers and float64 (a 64-true trainer) pass through


@pytest.mark.parametrize("precision", ["bf16-true", "16-true"])
def test_weights_below_float32_are_refused_before_any_work(precision):
    module = Tiny()
    module._trainer = SimpleNamespace(strategy=SimpleNamespace(), precision=precision)
    with pytest.raises(ValueError, match="bf16-mixed"):
        module.configure_model()


@pytest.mark.parametrize("precision", ["32-true", "64-true", "bf16-mixed", "16-mixed"])
def test_full_weights_and_mixed_precision_are_accepted(precision):
    check_trainer_precision(SimpleNamespace(precision=precision), "Model")
    check_trainer_precision(None, "Model")
