# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""CFLOW-AD: conditional normalizing flows on multi-scale encoder features, with vectorised fiber training.

Gudovskiy, Ishizaka, Kozuka, "CFLOW-AD: Real-Time Unsupervised Anomaly Detection with Localization via
Conditional Normalizing Flows", WACV 2022. Paper: https://arxiv.org/abs/2107.12571

A frozen CNN encodes the image at several layers; per layer, a conditional flow (conditioned on a positional
encoding) maps every feature vector to a standard normal, and the per-position log-likelihoods, normalised with
training statistics, form the anomaly map. See ``README.md`` beside this file for the defaults and deviations.

Example:
    >>> from anomalib.data import MVTecAD
    >>> from anomalib.engine import Engine
    >>> from anomalib_nfplus.models.cflow_ad import CflowAD
    >>> model = CflowAD(backbone="resnet18", layers=("layer1", "layer2"), pre_trained=False, coupling_blocks=1)
    >>> model.model.flows.channels
    (64, 128)
    >>> Engine(max_epochs=1).fit(model, datamodule=MVTecAD(category="bottle"))  # doctest: +SKIP
"""

from .anomaly_map import AnomalyMapGenerator
from .lightning_model import CflowAD
from .loss import CflowADLoss
from .torch_model import CflowADModel

__all__ = ["AnomalyMapGenerator", "CflowAD", "CflowADLoss", "CflowADModel"]
