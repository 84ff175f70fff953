# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Validation, test and predict steps: one scoring path, always in float32."""

from typing import Any

import torch
from anomalib.data import Batch
from lightning.pytorch.utilities.types import STEP_OUTPUT

from anomalib_nfplus.batch import batch_images

from ..host.lightning_host import LightningHost
from ..host.precision import float32_scoring

__all__ = ["ScoringStepsMixin"]


class ScoringStepsMixin(LightningHost):
    """``validation_step``, ``test_step`` and ``predict_step`` through :meth:`score_batch`.

    Contract: ``self.model(images, *self.scoring_inputs(batch))`` returns an ``InferenceBatch`` in eval mode.
    Override :meth:`scoring_inputs` to pass more than the images (HGAD's class-conditional scoring passes the
    batch's classes).
    """

    def validation_step(self, batch: Batch, *args: Any, **kwargs: Any) -> STEP_OUTPUT:
        """Score the validation batch; the PostProcessor fits its thresholds on these outputs."""
        del args, kwargs
        return self.score_batch(batch)  # type: ignore[return-value]  # anomalib steps return its Batch dataclass

    def test_step(self, batch: Batch, *args: Any, **kwargs: Any) -> STEP_OUTPUT:
        """As :meth:`validation_step`."""
        del args, kwargs
        return self.score_batch(batch)  # type: ignore[return-value]  # anomalib steps return its Batch dataclass

    def predict_step(self, batch: Batch, *args: Any, **kwargs: Any) -> STEP_OUTPUT:
        """As :meth:`validation_step`."""
        del args, kwargs
        return self.score_batch(batch)  # type: ignore[return-value]  # anomalib steps return its Batch dataclass

    def scoring_inputs(self, batch: Batch) -> tuple[torch.Tensor | None, ...]:
        """What the torch model takes after the images when scoring ``batch``; nothing by default."""
        del batch
        return ()

    def score_batch(self, batch: Batch) -> Batch:
        """The batch with the model's scores and maps, computed in float32 even under a mixed-precision trainer.

        Statistics and exported graphs are float32, so scores under autocast would not match them
        (see :mod:`~anomalib_nfplus.models.components.host.precision`).
        """
        extra = self.scoring_inputs(batch)
        with float32_scoring(batch_images(batch)) as images:
            return batch.update(**self.model(images, *extra)._asdict())
