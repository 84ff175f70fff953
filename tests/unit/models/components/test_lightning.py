# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""FlowModuleMixin: the composition every model lists, and which concerns each model takes on."""

import pytest
from anomalib.models import AnomalibModule

from anomalib_nfplus.models import HGAD, CflowAD, DifferNet
from anomalib_nfplus.models.components import (
    CheckpointLoadingMixin,
    ChunkedOptimizationMixin,
    FlowExportMixin,
    FlowModuleMixin,
    HostDefaultsMixin,
    LossGuardMixin,
    ScoringStepsMixin,
    TrainingStatisticsMixin,
)
from tests.unit.models.components.modules import Tiny


def test_is_a_direct_anomalib_subclass_with_flow_defaults():
    assert AnomalibModule in Tiny.__bases__
    module = Tiny()
    assert module.learning_type.value == "one_class"
    assert module.trainer_arguments["num_sanity_val_steps"] == 0


def test_composes_one_mixin_per_concern():
    for concern in (HostDefaultsMixin, ScoringStepsMixin, LossGuardMixin, CheckpointLoadingMixin, FlowExportMixin):
        assert issubclass(FlowModuleMixin, concern)
    assert not issubclass(FlowModuleMixin, TrainingStatisticsMixin)
    assert not issubclass(FlowModuleMixin, ChunkedOptimizationMixin)


@pytest.mark.parametrize(("model", "chunked"), [(CflowAD, True), (HGAD, True), (DifferNet, False)])
def test_models_take_on_the_concerns_they_use(model, chunked):
    assert AnomalibModule in model.__bases__  # anomalib lists direct subclasses only
    assert issubclass(model, FlowModuleMixin)
    assert issubclass(model, ChunkedOptimizationMixin) is chunked
    assert issubclass(model, TrainingStatisticsMixin) is chunked  # DifferNet scores without training statistics
