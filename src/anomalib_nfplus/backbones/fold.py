# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Fold the BatchNorms of a frozen encoder into the convolutions before them.

The encoders of the plugin never train and always run BatchNorm with its running statistics, so each
``conv -> BN`` pair is one affine map: ``BN(W * x + b) = (g W) * x + (g (b - mean) + beta)`` with
``g = gamma / sqrt(var + eps)``. Folding removes a full pass over every feature map: EfficientNet-Lite0 at
EfficientNet-style encoders spend a large share of their CPU time in these norms. OpenVINO folds these
itself at export, so exported models are unchanged; the gain is for training and torch inference.

Pairs are found by module order: a ``BatchNorm2d`` is folded into the ``Conv2d`` registered right before it in the
same parent, which is how timm's CNNs (ResNets, EfficientNets, MobileNets) are written. Because module order does
not prove data flow, :func:`fold_batchnorm` checks the folded network against the original on a probe input and
keeps the original when they differ.
"""

import copy
import logging

import torch
from torch import nn

__all__ = ["fold_batchnorm"]

logger = logging.getLogger(__name__)


class _PostNorm(nn.Sequential):
    """What remains of timm's ``BatchNormAct2d`` after folding: its dropout and activation."""


def _fold_pair(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    running_mean, running_var = norm.running_mean, norm.running_var
    if running_mean is None or running_var is None:  # pragma: no cover - guarded by the caller
        msg = "BatchNorm without running statistics cannot be folded."
        raise ValueError(msg)
    gain = torch.rsqrt(running_var + norm.eps)
    if norm.weight is not None:
        gain = gain * norm.weight
    bias = conv.bias if conv.bias is not None else torch.zeros_like(running_mean)
    shift = (bias - running_mean) * gain
    if norm.bias is not None:
        shift = shift + norm.bias
    with torch.no_grad():
        conv.weight.mul_(gain.reshape(-1, 1, 1, 1))
        conv.bias = nn.Parameter(shift.detach().clone(), requires_grad=conv.weight.requires_grad)


def _remainder(norm: nn.BatchNorm2d) -> nn.Module:
    extras = [getattr(norm, name) for name in ("drop", "act") if isinstance(getattr(norm, name, None), nn.Module)]
    return _PostNorm(*extras) if extras else nn.Identity()


def _foldable(conv: nn.Module | None, norm: nn.Module) -> bool:
    return (
        isinstance(norm, nn.BatchNorm2d)
        and isinstance(conv, nn.Conv2d)
        and norm.running_mean is not None
        and conv.out_channels == norm.num_features
    )


def _fold_in_place(module: nn.Module) -> int:
    folded = 0
    for parent in list(module.modules()):
        previous: nn.Module | None = None
        for name, child in list(parent.named_children()):
            if _foldable(previous, child):
                _fold_pair(previous, child)  # type: ignore[arg-type]
                setattr(parent, name, _remainder(child))  # type: ignore[arg-type]
                folded += 1
            previous = child
    return folded


def _outputs(module: nn.Module, probe: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        out = module(probe)
    return list(out) if isinstance(out, list | tuple) else [out]


def fold_batchnorm(module: nn.Module, probe: torch.Tensor) -> tuple[nn.Module, int]:
    """Return an eval-mode copy of ``module`` with its ``conv -> BatchNorm`` pairs folded, and their count.

    Args:
        module (nn.Module): A frozen CNN in eval mode (BatchNorm uses running statistics).
        probe (torch.Tensor): An input the module accepts; outputs before and after folding must agree on it.

    Returns:
        tuple[nn.Module, int]: The folded copy and the number of folded pairs, or ``module`` itself and ``0`` when
        nothing could be folded or the folded copy disagrees with the original (logged).
    """
    folded = copy.deepcopy(module).eval()
    count = _fold_in_place(folded)
    if count == 0:
        return module, 0
    reference, result = _outputs(module.eval(), probe), _outputs(folded, probe)
    for ref, out in zip(reference, result, strict=True):
        scale = ref.abs().max().clamp_min(1e-6)
        if ref.shape != out.shape or (ref - out).abs().max() > 1e-3 * scale:
            logger.warning("BatchNorm folding changed the outputs of %s; keeping it unfolded.", type(module).__name__)
            return module, 0
    return folded, count
