# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Small helpers around timm's registry shared by the backbone modules (private)."""

import difflib
from typing import Any, cast

import timm
import torch
from torch import nn


def arch_name(backbone: str) -> str:
    """Return the architecture part of a timm name (``"resnet18.a1_in1k"`` -> ``"resnet18"``)."""
    return backbone.split(".", 1)[0]


def check_backbone(backbone: str) -> None:
    """Raise a helpful error when ``backbone`` is not a timm model name.

    Args:
        backbone (str): Name to check, optionally with a pretrained tag.

    Raises:
        TypeError: ``backbone`` is not a string.
        ValueError: timm does not know the architecture.
    """
    if not isinstance(backbone, str):
        msg = f"backbone must be a timm model name (str), got {type(backbone).__name__}: {backbone!r}."
        raise TypeError(msg)
    if not timm.is_model(arch_name(backbone)):
        close = difflib.get_close_matches(arch_name(backbone), timm.list_models(), n=5)
        msg = f"Unknown timm backbone {backbone!r}. Close matches: {close}. See timm.list_models() for all names."
        raise ValueError(msg)


def reference_model(backbone: str) -> nn.Module:
    """Build the full (classifier included) timm model without weights, cheaply.

    The meta device avoids allocating and initialising parameters: only the module tree, the state-dict keys and
    ``feature_info`` are needed. A few architectures read tensor values while they are built, which the meta
    device forbids; those are built on the CPU instead.

    Args:
        backbone (str): timm model name.

    Returns:
        nn.Module: The randomly initialised (or meta) full model.
    """
    try:
        with torch.device("meta"):
            return timm.create_model(backbone, pretrained=False)
    except (RuntimeError, NotImplementedError):  # some timm models cannot be built on the meta device
        return timm.create_model(backbone, pretrained=False)


def feature_module_names(backbone: str) -> list[str]:
    """Names of the modules timm can return with ``features_only``, indexed like ``out_indices``."""
    feature_info = cast("list[dict[str, Any]]", reference_model(backbone).feature_info)  # a plain model's: dicts
    return [info["module"] for info in feature_info]
