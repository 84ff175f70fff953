# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""LossGuardMixin: a non-finite loss stops with a message that says where and what to try."""

import pytest
import torch

from anomalib_nfplus.models.components import NonFiniteLossError
from tests.unit.models.components.modules import Tiny


def test_finite_loss_passes_through():
    module = Tiny()
    assert module.check_loss(torch.tensor(1.5)).item() == 1.5
    assert module.saving_last_finite is False


def test_non_finite_loss_stops_with_a_clear_error():
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss.*outside a Trainer.*Lower the learning rate"):
        Tiny().check_loss(torch.tensor(float("nan")))
