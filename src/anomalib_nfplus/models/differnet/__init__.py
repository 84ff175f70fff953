# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""DifferNet: a normalizing flow on multi-scale pooled features, test-time rotations, gradient anomaly maps.

Rudolph, Wandt, Rosenhahn, "Same Same But DifferNet: Semi-Supervised Defect Detection with Normalizing Flows",
WACV 2021. Paper: https://arxiv.org/abs/2008.12577

One flow maps the pooled features of an image pyramid to a standard normal; the image score is the mean
``||z||^2 / D`` over rotations of the image, the map the gradient of the negative log-likelihood w.r.t. the pixels.
See ``README.md`` beside this file for the defaults and deviations.

Example:
    >>> from anomalib.data import MVTecAD
    >>> from anomalib.engine import Engine
    >>> from anomalib_nfplus.models.differnet import DifferNet
    >>> model = DifferNet(layers=("blocks.2",), pre_trained=False, image_size=64, coupling_blocks=1, hidden=16)
    >>> model.model.feature_dim  # 3 pyramid scales x 40 channels
    120
    >>> Engine(max_epochs=1).fit(model, datamodule=MVTecAD(category="bottle"))  # doctest: +SKIP
"""

from .anomaly_map import AnomalyMapGenerator
from .lightning_model import DifferNet
from .loss import DifferNetLoss
from .torch_model import DifferNetModel

__all__ = ["AnomalyMapGenerator", "DifferNet", "DifferNetLoss", "DifferNetModel"]
