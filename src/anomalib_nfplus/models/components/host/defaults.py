# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""What every plugin model tells anomalib and Lightning about itself: learning type, trainer and callbacks."""

from collections.abc import Sequence
from typing import Any

from anomalib import LearningType
from lightning.pytorch import Callback

from anomalib_nfplus.callbacks import category_metrics_callbacks

from .distributed import keep_buffers_local
from .lightning_host import LightningHost
from .precision import check_trainer_precision
from .visualizer import CategoryImageVisualizer

__all__ = ["HostDefaultsMixin"]


class HostDefaultsMixin(LightningHost):
    """One-class learning, trainer arguments, the default visualizer and callbacks, DDP and precision set-up.

    Contract: none beyond ``AnomalibModule``; every method calls the next class's in the MRO where it extends one.
    """

    @property
    def learning_type(self) -> LearningType:
        """Normalizing-flow models learn from normal images only."""
        return LearningType.ONE_CLASS

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """No gradient clipping (flows clamp their scales) and no sanity validation (no statistics yet)."""
        return {"gradient_clip_val": 0, "num_sanity_val_steps": 0}

    @classmethod
    def configure_visualizer(cls) -> CategoryImageVisualizer:
        """Anomalib's image visualizer, with one folder per category in unified runs (no overwritten images)."""
        return CategoryImageVisualizer()

    def configure_callbacks(self) -> Sequence[Callback] | Callback:
        """Anomalib's component callbacks, plus the per-category metrics on a multi-class datamodule.

        See :func:`~anomalib_nfplus.callbacks.category_metrics_callbacks`: added when the trainer's datamodule has
        ``class_names`` (``Unified``) unless it sets ``category_metrics=False`` or the trainer already has one.
        """
        callbacks = super().configure_callbacks()
        own = [callbacks] if isinstance(callbacks, Callback) else list(callbacks)
        return category_metrics_callbacks(self._trainer) + own  # first: it reads scores before post-processing

    def configure_model(self) -> None:
        """Before a DDP strategy wraps the model: no broadcast of buffers at every step (:func:`keep_buffers_local`)."""
        keep_buffers_local(self._trainer)
        check_trainer_precision(self._trainer, type(self).__name__)  # before any work
        super().configure_model()
