# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""A tiny third-party model registered through the plugin's start-up hook and ``expose``, as the real models are.

It proves the registration mechanism end to end (CLI short name, ``get_model``, ``list_models``, train, test,
export) independently of any one plugin model. The model is a real, if small, density model: a diagonal
Gaussian over average-pooled pixel colours; the anomaly map is the per-position negative log-likelihood.
"""

from typing import Any

import torch
from anomalib import LearningType
from anomalib.data import Batch, InferenceBatch
from anomalib.models import AnomalibModule
from torch import nn
from torch.nn import functional as F

from anomalib_nfplus.plugin import expose


class NfplusProbeModel(nn.Module):
    """Per-position Gaussian NLL of pooled colours; returns the loss in training, an InferenceBatch in eval."""

    def __init__(self, pool: int = 4) -> None:
        super().__init__()
        self.pool = pool
        self.mean = nn.Parameter(torch.zeros(3))
        self.log_std = nn.Parameter(torch.zeros(3))

    def _nll_map(self, images: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(images, self.pool)  # (B, 3, h, w)
        z = (x - self.mean.view(1, 3, 1, 1)) * torch.exp(-self.log_std).view(1, 3, 1, 1)
        return (0.5 * z.pow(2) + self.log_std.view(1, 3, 1, 1)).sum(1, keepdim=True)  # (B, 1, h, w)

    def forward(self, images: torch.Tensor) -> torch.Tensor | InferenceBatch:
        nll = self._nll_map(images)
        if self.training:
            return nll.mean()
        anomaly_map = F.interpolate(nll, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return InferenceBatch(pred_score=anomaly_map.amax(dim=(1, 2, 3)), anomaly_map=anomaly_map)


class NfplusProbe(AnomalibModule):
    """Registration probe model for the plugin's tests."""

    def __init__(
        self,
        pool: int = 4,
        lr: float = 0.05,
        pre_processor: Any = True,
        post_processor: Any = True,
        evaluator: Any = True,
        visualizer: Any = False,
    ) -> None:
        super().__init__(pre_processor, post_processor, evaluator, visualizer)
        self.lr = lr
        self.model = NfplusProbeModel(pool)

    def training_step(self, batch: Batch, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        del args, kwargs
        return {"loss": self.model(batch.image)}

    def validation_step(self, batch: Batch, *args: Any, **kwargs: Any) -> Batch:
        del args, kwargs
        return batch.update(**self.model(batch.image)._asdict())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.parameters(), lr=self.lr)

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        return {"num_sanity_val_steps": 0}

    @property
    def learning_type(self) -> LearningType:
        return LearningType.ONE_CLASS


# As anomalib_nfplus.models does: expose once fully defined (the hook defers while this module is half-built).
expose(__name__, ("NfplusProbe",))
