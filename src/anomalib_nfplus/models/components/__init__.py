# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Model-level pieces shared by DifferNet, CflowAD and HGAD (the flows themselves live in ``flows``).

Lightning behaviour, one mixin per concern (:class:`FlowModuleMixin` composes those every model uses):

- :class:`FlowModuleMixin`: the composition every model lists before ``AnomalibModule``;
- :class:`TrainingStatisticsMixin` (model contract :class:`StatisticsModel`): statistics fitted on training data
  before validation, test and predict, and kept right in checkpoints;
- :class:`ChunkedOptimizationMixin` (:class:`ChunkLoss`): several guarded optimizer steps per image batch;
- :class:`LossGuardMixin`, :class:`NonFiniteLossError`: stop at a non-finite loss, last finite weights saved;
- :class:`CheckpointLoadingMixin`, :class:`HostDefaultsMixin`, :class:`ScoringStepsMixin`,
  :class:`FlowExportMixin`: strict loading, anomalib defaults, float32 scoring steps, export.

Sub-packages by concern:

- ``training/``: the mixins above, :func:`warmup_cosine` (CFLOW-AD's schedule, :func:`warmup_cosine_factor`,
  :func:`warmup_cosine_scheduler`), :func:`schedule_epochs`, :data:`OFFICIAL_WARMUP_FRACTION`,
  :func:`check_subnet_precision`;
- ``scoring/``: :class:`TrainingStatistics` (:class:`UnfittedStatisticsError`), :func:`upsample_maps`,
  :func:`image_score`, :func:`check_top_k`, :class:`GaussianBlur`, the log-domain likelihood maps of CflowAD and
  HGAD (:func:`complements`, :func:`log_domain`);
- ``export/``: export size, OpenVINO from ``torch.export``, backbone-only INT8 (:func:`backbone_only_scope`);
- ``host/``: :func:`flow_pre_processor`, :func:`check_images`, :func:`float32_scoring`, DDP helpers
  (:func:`process_grid`), the category visualizer, :func:`renamed_arguments` and :func:`renamed_attributes`
  (renamed names keep working, with a warning).

``training/fibers.py``: :func:`check_fiber_batch_size`, the ``fiber_batch_size`` check of CflowAD and HGAD.
"""

from .export import FlowExportMixin, backbone_only_scope
from .host import (
    CheckpointLoadingMixin,
    HostDefaultsMixin,
    check_images,
    float32_scoring,
    flow_pre_processor,
    process_grid,
    renamed_arguments,
    renamed_attributes,
)
from .lightning import FlowModuleMixin
from .scoring import (
    GaussianBlur,
    ScoringStepsMixin,
    TrainingStatistics,
    UnfittedStatisticsError,
    check_top_k,
    complements,
    image_score,
    log_domain,
    upsample_maps,
)
from .training import (
    OFFICIAL_WARMUP_FRACTION,
    ChunkedOptimizationMixin,
    ChunkLoss,
    LossGuardMixin,
    NonFiniteLossError,
    StatisticsModel,
    TrainingStatisticsMixin,
    check_subnet_precision,
    schedule_epochs,
    warmup_cosine,
    warmup_cosine_factor,
    warmup_cosine_scheduler,
)
from .training.fibers import check_fiber_batch_size

__all__ = [
    "OFFICIAL_WARMUP_FRACTION",
    "CheckpointLoadingMixin",
    "ChunkLoss",
    "ChunkedOptimizationMixin",
    "FlowExportMixin",
    "FlowModuleMixin",
    "GaussianBlur",
    "HostDefaultsMixin",
    "LossGuardMixin",
    "NonFiniteLossError",
    "ScoringStepsMixin",
    "StatisticsModel",
    "TrainingStatistics",
    "TrainingStatisticsMixin",
    "UnfittedStatisticsError",
    "backbone_only_scope",
    "check_fiber_batch_size",
    "check_images",
    "check_subnet_precision",
    "check_top_k",
    "complements",
    "float32_scoring",
    "flow_pre_processor",
    "image_score",
    "log_domain",
    "process_grid",
    "renamed_arguments",
    "renamed_attributes",
    "schedule_epochs",
    "upsample_maps",
    "warmup_cosine",
    "warmup_cosine_factor",
    "warmup_cosine_scheduler",
]
