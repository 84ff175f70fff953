# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Frozen timm feature extractor with layers chosen by module name.

The flows of the plugin model the features of a fixed, pretrained encoder, so the encoder never trains: its
parameters do not require gradients and it stays in eval mode (BatchNorm uses its ImageNet statistics) even when
the enclosing model is put in training mode. Gradients can still flow through it to the input pixels, which
DifferNet's gradient maps need.

Example:
    >>> import torch
    >>> from anomalib_nfplus.backbones import FeatureExtractor
    >>> extractor = FeatureExtractor("resnet18", layers=("layer2", "layer3"), pre_trained=False)
    >>> extractor.channels, extractor.strides
    ([128, 256], [8, 16])
    >>> [f.shape for f in extractor(torch.rand(1, 3, 64, 64))]
    [torch.Size([1, 128, 8, 8]), torch.Size([1, 256, 4, 4])]

Weights from a checkpoint: a trained model's checkpoint holds its backbone's weights, so building the model to load
one must need neither the ``backbone_weights`` file nor the network. An extractor built inside
:func:`weights_from_checkpoint` (what ``load_from_checkpoint`` of the plugin's models does), or with
``defer_unavailable_weights=True`` (what their torch models pass) when the weights cannot be obtained here, starts
from random weights marked *pending* (:attr:`FeatureExtractor.pending_weights`). Loading a state dict that holds the
backbone clears the mark; running a pending backbone raises :class:`~anomalib_nfplus.backbones.BackboneWeightsError`
with the reason and the fix, so random weights are never trained or scored with.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, cast

import torch
from timm.models import FeatureInfo
from torch import nn

from anomalib_nfplus.backbones._timm import check_backbone, feature_module_names
from anomalib_nfplus.backbones.fold import fold_batchnorm
from anomalib_nfplus.backbones.weights import UNAVAILABLE_WEIGHTS, BackboneWeightsError, create_timm_model

__all__ = ["FeatureExtractor", "available_layers", "require_backbone_weights", "weights_from_checkpoint"]

logger = logging.getLogger(__name__)

#: Set while a model is built to receive a checkpoint's state dict (see :func:`weights_from_checkpoint`).
_FROM_CHECKPOINT: ContextVar[bool] = ContextVar("anomalib_nfplus_weights_from_checkpoint", default=False)


@contextmanager
def weights_from_checkpoint() -> Iterator[None]:
    """Backbones built inside the block skip their pretrained weights: the checkpoint loaded next supplies them.

    Neither the ``backbone_weights`` file nor the hub is touched; each extractor is marked pending until a state
    dict holding its weights is loaded (see the module docstring).
    """
    token = _FROM_CHECKPOINT.set(True)
    try:
        yield
    finally:
        _FROM_CHECKPOINT.reset(token)


def require_backbone_weights(module: nn.Module) -> None:
    """Raise :class:`BackboneWeightsError` if a :class:`FeatureExtractor` inside ``module`` still waits for its weights.

    Args:
        module (nn.Module): A model, or any module holding feature extractors.

    Raises:
        BackboneWeightsError: The first pending extractor's reason and the fixes.
    """
    for child in module.modules():
        if isinstance(child, FeatureExtractor):
            child.require_weights()


def available_layers(backbone: str) -> list[str]:
    """Return the layer names :class:`FeatureExtractor` accepts for ``backbone``, shallow to deep.

    Args:
        backbone (str): timm model name.

    Returns:
        list[str]: Module names from timm's ``feature_info`` (``["act1", "layer1", ...]`` for ResNets,
        ``["blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.6"]`` for EfficientNets).
    """
    check_backbone(backbone)
    return feature_module_names(backbone)


class FeatureExtractor(nn.Module):
    """Frozen timm backbone returning the feature maps of the named layers.

    Args:
        backbone (str): timm model name.
        layers (Sequence[str]): Module names to return, as listed by :func:`available_layers`
            (``("layer2", "layer3")``, ``("blocks.2", "blocks.4", "blocks.6")``). Outputs follow this order.
        pre_trained (bool, optional): Start from pretrained weights (see
            :func:`~anomalib_nfplus.backbones.create_timm_model` for where they come from). Defaults to ``True``.
        backbone_weights (str | Path | None, optional): Local timm state dict of the full model, used instead
            of the hub. Defaults to ``None``.
        requires_input_grad (bool, optional): Keep the autograd graph so gradients reach the input images;
            otherwise the backbone runs under ``torch.no_grad()``. An attribute that may be switched later.
            Defaults to ``False``.
        fold_norms (bool, optional): Fold each ``conv -> BatchNorm`` pair into the convolution (same outputs up to
            rounding, one pass per feature map fewer; see :func:`~anomalib_nfplus.backbones.fold.fold_batchnorm`).
            Defaults to ``True``.
        defer_unavailable_weights (bool, optional): When the pretrained weights cannot be obtained here (missing
            ``backbone_weights`` file, unreachable hub, offline-weights package not installed), build the backbone
            with pending weights instead of failing, for a state dict to fill (see the module docstring). Weights
            that do not fit still fail at once. Defaults to ``False``.

    Attributes:
        layers (tuple[str, ...]): The selected layers.
        channels (list[int]): Channels of each output.
        strides (list[int]): Downsampling factor of each output relative to the input.
        pending_weights (str | None): ``None`` when the backbone holds the weights it was asked for; otherwise why
            it does not (it then refuses to run until a state dict holding its weights is loaded).
    """

    def __init__(
        self,
        backbone: str,
        layers: Sequence[str],
        pre_trained: bool = True,
        backbone_weights: str | Path | None = None,
        requires_input_grad: bool = False,
        fold_norms: bool = True,
        defer_unavailable_weights: bool = False,
    ) -> None:
        super().__init__()
        check_backbone(backbone)
        self.backbone = backbone
        self.layers = _check_layers(layers)
        names = feature_module_names(backbone)
        unknown = [layer for layer in self.layers if layer not in names]
        if unknown:
            msg = f"Unknown layers {unknown} for backbone {backbone!r}. Available layers: {names}."
            raise ValueError(msg)
        indices = sorted(names.index(layer) for layer in self.layers)
        self.pending_weights: str | None = None
        self.model = self._create(backbone, tuple(indices), pre_trained, backbone_weights, defer_unavailable_weights)
        info = cast(FeatureInfo, self.model.feature_info)  # a features_only model's
        if info.module_name() != [names[i] for i in indices]:  # guards against a timm indexing change
            msg = f"timm returned layers {info.module_name()} for out_indices {indices} of {backbone!r}."
            raise RuntimeError(msg)
        # timm returns outputs shallow to deep; ``_order`` puts them back in the requested order.
        self._order = tuple(indices.index(names.index(layer)) for layer in self.layers)
        self.channels = [info.channels()[i] for i in self._order]
        self.strides = [info.reduction()[i] for i in self._order]
        self.requires_input_grad = requires_input_grad
        if fold_norms:
            probe = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
            self.model, _ = fold_batchnorm(self.model, probe)
        self.model.requires_grad_(False)
        self.train(False)

    def _create(
        self,
        backbone: str,
        indices: tuple[int, ...],
        pre_trained: bool,
        backbone_weights: str | Path | None,
        defer: bool,
    ) -> nn.Module:
        """The timm model with its weights, or with random ones and :attr:`pending_weights` set."""
        wants_weights = pre_trained or backbone_weights is not None
        if wants_weights and _FROM_CHECKPOINT.get():
            self.pending_weights = "they were skipped because the model was built to load a checkpoint."
        else:
            try:
                return create_timm_model(
                    backbone,
                    pre_trained=pre_trained,
                    backbone_weights=backbone_weights,
                    features_only=True,
                    out_indices=indices,
                )
            except UNAVAILABLE_WEIGHTS as err:
                if not defer:
                    raise
                self.pending_weights = str(err)
                logger.info("Backbone %s built without its weights, for a checkpoint to fill: %s", backbone, err)
        return create_timm_model(backbone, pre_trained=False, features_only=True, out_indices=indices)

    def require_weights(self) -> None:
        """Raise :class:`BackboneWeightsError` while the weights are pending (see :attr:`pending_weights`)."""
        if self.pending_weights is None:
            return
        reason = self.pending_weights.rstrip(".")
        msg = (
            f"Backbone {self.backbone!r} has no pretrained weights: {reason}. It was built without them so that a "
            "checkpoint of the trained model could supply them (Model.load_from_checkpoint(path), ckpt_path=..., "
            "--ckpt_path), but no state dict holding the backbone was loaded, and random weights are never trained or "
            "scored with. To train, make the weights available (an existing backbone_weights file, the timm hub, or "
            "pre_trained=False for a random backbone); to score or export a trained model, load its checkpoint."
        )
        raise BackboneWeightsError(msg)

    def _load_from_state_dict(
        self,
        state_dict: Mapping[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        """Torch's per-module loading hook: a state dict with every backbone tensor clears :attr:`pending_weights`."""
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        if self.pending_weights is None:
            return
        if all(
            isinstance(value := state_dict.get(f"{prefix}model.{key}"), torch.Tensor) and value.shape == own.shape
            for key, own in self.model.state_dict().items()
        ):
            self.pending_weights = None

    def train(self, mode: bool = True) -> FeatureExtractor:
        """Keep the backbone in eval mode whatever ``mode`` is, so BatchNorm statistics never change."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Return one ``(B, C_i, H / s_i, W / s_i)`` map per layer, in the order of ``layers``."""
        self.require_weights()
        if self.requires_input_grad:
            features = self.model(images)
        else:
            with torch.no_grad():
                features = self.model(images)
        return [features[i] for i in self._order]


def _check_layers(layers: Sequence[str]) -> tuple[str, ...]:
    if isinstance(layers, str) or not all(isinstance(layer, str) for layer in layers):
        msg = f"layers must be a sequence of layer names such as ('layer2', 'layer3'), got {layers!r}."
        raise TypeError(msg)
    if not layers or len(set(layers)) != len(layers):
        msg = f"layers must be non-empty and without duplicates, got {list(layers)!r}."
        raise ValueError(msg)
    return tuple(layers)
