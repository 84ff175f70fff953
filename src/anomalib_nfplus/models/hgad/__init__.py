# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""HGAD: hierarchical Gaussian mixture normalizing flow for unified (multi-class) anomaly detection.

Yao, Chen, Cheng, Liu, Wang, Zhang, Wang, "Hierarchical Gaussian Mixture Normalizing Flow Modeling for Unified
Anomaly Detection", ECCV 2024. Paper: https://arxiv.org/abs/2403.13349

One model for several product classes: class-agnostic positional flows map backbone features to a latent space
whose prior is a mixture over classes of per-class Gaussian mixtures; the anomaly map combines the latents'
log-likelihood with the entropy of their class posterior. See ``README.md`` beside this file for the defaults and
deviations.

Example:
    >>> from anomalib.engine import Engine
    >>> from anomalib_nfplus.data import Unified
    >>> from anomalib_nfplus.models.hgad import HGAD
    >>> model = HGAD(backbone="tf_efficientnet_lite0", layers=("blocks.4",), pre_trained=False, image_size=64,
    ...              coupling_blocks=1, condition_dim=16, n_classes=2)
    >>> model.model.statistics.n_maps  # 3 pyramid levels x (entropy, label-free, one per class)
    12
    >>> datamodule = Unified(root="./datasets/MVTecAD", categories=["bottle", "cable"])  # doctest: +SKIP
    >>> Engine(max_epochs=1).fit(model, datamodule=datamodule)  # doctest: +SKIP
"""

from .anomaly_map import AnomalyMapGenerator
from .lightning_model import HGAD
from .loss import HGADLoss
from .torch_model import HGADModel

__all__ = ["HGAD", "AnomalyMapGenerator", "HGADLoss", "HGADModel"]
