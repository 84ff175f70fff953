# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Host plumbing: what anomalib and Lightning expect of a model (inputs, visualizer, DDP, precision, loading).

``deprecation``: :func:`renamed_arguments` and :func:`renamed_attributes` keep renamed names working.
"""

from .defaults import HostDefaultsMixin
from .deprecation import renamed_arguments, renamed_attributes, translate_arguments
from .distributed import finite_everywhere, keep_buffers_local, process_grid, rank_share
from .inputs import check_images, flow_pre_processor, keep_unstored_transform
from .lightning_host import LightningHost
from .loading import CheckpointLoadingMixin
from .precision import check_trainer_precision, float32_scoring
from .visualizer import CategoryImageVisualizer

__all__ = [
    "CategoryImageVisualizer",
    "CheckpointLoadingMixin",
    "HostDefaultsMixin",
    "LightningHost",
    "check_images",
    "check_trainer_precision",
    "finite_everywhere",
    "float32_scoring",
    "flow_pre_processor",
    "keep_buffers_local",
    "keep_unstored_transform",
    "process_grid",
    "rank_share",
    "renamed_arguments",
    "renamed_attributes",
    "translate_arguments",
]
