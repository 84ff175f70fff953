# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""CFLOW-AD's learning-rate schedule (HGAD copies it), expressed in Lightning epochs.

The official code runs ``meta_epochs x sub_epochs`` passes: a linear warm-up over the first meta-epochs from
``lr / 10``, then a cosine decay per meta-epoch to ``lr * 1e-3``. Here one Lightning epoch is one pass over the
data and the schedule is stepped per optimizer step with the fractional epoch, so it works for any
``max_epochs``.
"""

import math
from typing import Any

import torch
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch.optim.lr_scheduler import LambdaLR

__all__ = [
    "OFFICIAL_WARMUP_FRACTION",
    "schedule_epochs",
    "warmup_cosine",
    "warmup_cosine_factor",
    "warmup_cosine_scheduler",
]

#: Official warm-up share (CFLOW-AD and HGAD): 2 of 25 meta-epochs; HGAD's inter-class stage has the same length.
OFFICIAL_WARMUP_FRACTION = 2 / 25


def schedule_epochs(trainer: Any) -> int:
    """The trainer's ``max_epochs``, or ``1`` when it sets none (``None`` or ``-1``: schedules need a length)."""
    epochs = trainer.max_epochs
    return epochs if epochs is not None and epochs > 0 else 1


def warmup_cosine_factor(
    epoch: float,
    total_epochs: float,
    warmup_epochs: float = 0.0,
    min_ratio: float = 1e-3,
    warmup_start: float = 0.1,
) -> float:
    """Learning-rate multiplier at a (fractional) ``epoch``.

    Cosine from ``1`` at epoch 0 to ``min_ratio`` at ``total_epochs``; during the warm-up the factor rises linearly
    from ``warmup_start`` to the cosine's value at ``warmup_epochs`` (as in the official code).

    Args:
        epoch (float): Epochs done so far (fractional).
        total_epochs (float): Length of the schedule in epochs.
        warmup_epochs (float, optional): Length of the warm-up. Defaults to ``0``.
        min_ratio (float, optional): Final factor. Defaults to ``1e-3``.
        warmup_start (float, optional): Factor at epoch 0 when warming up. Defaults to ``0.1``.

    Returns:
        float: The multiplier.
    """
    total = max(float(total_epochs), 1e-9)

    def cosine(e: float) -> float:
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(e, total) / total))

    if warmup_epochs > 0 and epoch < warmup_epochs:
        return warmup_start + (cosine(warmup_epochs) - warmup_start) * epoch / warmup_epochs
    return cosine(epoch)


def warmup_cosine_scheduler(
    optimizer: torch.optim.Optimizer,
    steps_per_epoch: int,
    total_epochs: float,
    warmup_epochs: float = 0.0,
    min_ratio: float = 1e-3,
) -> LambdaLR:
    """A ``LambdaLR`` stepped once per optimizer step (Lightning ``interval="step"``).

    Every parameter group keeps its own base learning rate (HGAD's centres at 3x), unlike the official code,
    which overwrites all groups with one value.
    """
    steps = max(int(steps_per_epoch), 1)
    return LambdaLR(
        optimizer,
        lambda step: warmup_cosine_factor(step / steps, total_epochs, warmup_epochs, min_ratio),
    )


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    trainer: Any,
    warmup_epochs: float | None,
    min_ratio: float = 1e-3,
) -> OptimizerLRSchedulerConfig:
    """``optimizer`` plus the warm-up + cosine schedule over ``trainer``'s epochs, as ``configure_optimizers`` returns.

    ``warmup_epochs=None`` means the official share, :data:`OFFICIAL_WARMUP_FRACTION` of the epochs. The scheduler
    is stepped per optimizer step (``interval="step"``) with the fractional epoch.
    """
    epochs = schedule_epochs(trainer)
    if warmup_epochs is None:
        warmup_epochs = OFFICIAL_WARMUP_FRACTION * epochs
    total_steps = trainer.estimated_stepping_batches
    steps_per_epoch = math.ceil(total_steps / epochs) if math.isfinite(total_steps) else 1
    scheduler = warmup_cosine_scheduler(optimizer, steps_per_epoch, epochs, warmup_epochs, min_ratio)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
