# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Tiny DifferNet torch models shared by the unit tests."""

import pytest
import torch

from anomalib_nfplus.models.differnet import DifferNetModel

TINY = {"coupling_blocks": 2, "hidden": 32, "depth": 1, "blur_sigma": 1.0}


def tiny_model(**kwargs) -> DifferNetModel:
    torch.manual_seed(0)
    args = {"backbone": "tf_efficientnet_lite0", "layers": ("blocks.2",), "pre_trained": False, **TINY, **kwargs}
    return DifferNetModel(**args).eval()


@pytest.fixture(scope="module")
def model() -> DifferNetModel:
    """Random-weight tiny model, 4 test-time rotations."""
    return tiny_model(n_test_transforms=4)
