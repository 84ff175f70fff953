# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Scoring in float32 whatever the trainer's precision.

With ``precision="bf16-mixed"`` or ``"16-mixed"`` Lightning runs validation, test and predict steps under
``torch.autocast``, while the training statistics and every exported graph are float32. Scored under autocast, the
flows' log-likelihoods lose most of their digits (bfloat16 keeps 8 bits), maps quantise to a few levels and scores
would differ from the same checkpoint's export. The models therefore score inside :func:`float32_scoring`:
training may be mixed precision, evaluation never is. Trainers that store the weights themselves in 16 bits
(``"bf16-true"``, ``"16-true"``) are refused at once (:func:`check_trainer_precision`).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

__all__ = ["check_trainer_precision", "float32_scoring"]

_FULL_WEIGHTS = {"32-true", "64-true"}


def check_trainer_precision(trainer: Any, model: str) -> None:
    """Refuse a trainer precision that casts the weights below float32, naming the settings that work.

    Args:
        trainer (Any): The Lightning trainer, or ``None`` outside one (nothing to check).
        model (str): Model name for the message.

    Raises:
        ValueError: For ``"bf16-true"``, ``"16-true"`` and other ``"*-true"`` precisions below float32.
    """
    precision = str(getattr(trainer, "precision", "32-true"))
    if precision.endswith("-true") and precision not in _FULL_WEIGHTS:
        msg = (
            f"{model} cannot run with precision={precision!r}: it stores the weights in 16 bits, while the flows' "
            "log-likelihoods, the training statistics and the exported graphs need float32 weights. Use "
            "precision='bf16-mixed' (bfloat16 training steps, float32 weights and scoring) or '32-true'."
        )
        raise ValueError(msg)


@contextmanager
def float32_scoring(images: torch.Tensor) -> Iterator[torch.Tensor]:
    """Autocast off on ``images``' device for the block; yields ``images`` in at least float32.

    Args:
        images (torch.Tensor): The batch about to be scored (any dtype).

    Yields:
        torch.Tensor: 16-bit float ``images`` as float32; others (float32, float64, integers) unchanged.

    Example:
        >>> with torch.autocast("cpu", dtype=torch.bfloat16), float32_scoring(torch.ones(1, 2)) as x:
        ...     (x @ torch.ones(2, 2)).dtype
        torch.float32
    """
    with torch.autocast(images.device.type, enabled=False):
        yield images.float() if images.is_floating_point() and images.element_size() < 4 else images
