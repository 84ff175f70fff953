# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""``FlowModuleMixin``: the behaviour every plugin model shares, composed of one mixin per concern.

anomalib's ``list_models``/``get_model`` only see *direct* subclasses of ``AnomalibModule``, so the models are
declared ``class DifferNet(FlowModuleMixin, AnomalibModule)`` rather than inheriting from a shared base class.
Models that train in chunks and normalise by training statistics list those mixins first:
``class CflowAD(ChunkedOptimizationMixin, TrainingStatisticsMixin, FlowModuleMixin, AnomalibModule)``.
"""

from .export.mixin import FlowExportMixin
from .host.defaults import HostDefaultsMixin
from .host.loading import CheckpointLoadingMixin
from .scoring.steps import ScoringStepsMixin
from .training.loss_guard import LossGuardMixin

__all__ = ["FlowModuleMixin"]


class FlowModuleMixin(HostDefaultsMixin, ScoringStepsMixin, LossGuardMixin, CheckpointLoadingMixin, FlowExportMixin):
    """Shared behaviour of the plugin's ``AnomalibModule`` subclasses (list it before ``AnomalibModule``).

    - :class:`HostDefaultsMixin`: one-class learning, trainer arguments, visualizer, per-category metrics on
      multi-class data, DDP and precision set-up;
    - :class:`ScoringStepsMixin`: validation, test and predict steps scored in float32;
    - :class:`LossGuardMixin`: ``check_loss`` stops at a non-finite loss with the last finite weights saved;
    - :class:`CheckpointLoadingMixin`: strict loading with a readable error; reloads keep the pre-processing;
    - :class:`FlowExportMixin`: ONNX/OpenVINO at one static size and backbone-only ``INT8_PTQ``.
    """
