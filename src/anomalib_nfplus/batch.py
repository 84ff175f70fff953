# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The class-index contract of multi-class batches, shared by the data and the models.

A batch of several categories carries ``class_index``: int64, ``(B,)``, each image's index in the datamodule's
``class_names`` (``()`` per item). :mod:`anomalib_nfplus.data` writes the field and the models read it; both import
this module and neither imports the other. Ordinary anomalib batches have no such field and are one class.

- :func:`as_class_index`: the field's value checked (integer, shape, ``>= 0``) and made int64;
- :func:`class_index_of`: a batch's class indices, ``None`` for ordinary anomalib batches;
- :func:`class_labels`: what a model trains and scores with: the indices checked against its number of classes,
  or zeros for a single-class model fed ordinary batches.

:func:`batch_images` returns a batch's images, refusing a batch that has none (anomalib's ``image`` is optional).
"""

from typing import Any

import torch

__all__ = ["as_class_index", "batch_images", "class_index_of", "class_labels"]


def as_class_index(value: Any, ndim: int, what: str = "class_index") -> torch.Tensor | None:
    """``value`` as int64 class indices with ``ndim`` dimensions (``0``: item, ``1``: batch), ``None`` kept.

    Raises:
        TypeError: The values are not integers.
        ValueError: Wrong number of dimensions, or a negative index.
    """
    if value is None:
        return None
    index, _ = _checked(torch.as_tensor(value), ndim, what)
    return index


def _checked(index: torch.Tensor, ndim: int, what: str) -> tuple[torch.Tensor, int]:
    """``index`` as int64 after the dtype, shape and sign checks, with its largest value (``-1`` when empty)."""
    if index.is_floating_point() or index.is_complex() or index.dtype == torch.bool:
        msg = f"{what} must hold integer class indices, got dtype {index.dtype}."
        raise TypeError(msg)
    if index.ndim != ndim:
        msg = (
            f"{what} must have {ndim} dimension(s) ({'(B,)' if ndim else 'a scalar'}), got shape {tuple(index.shape)}."
        )
        raise ValueError(msg)
    low, high = torch.stack(torch.aminmax(index)).tolist() if index.numel() else (0, -1)  # one device-to-host copy
    if low < 0:
        msg = f"{what} must be >= 0 (an index into the datamodule's class_names), got {index.tolist()}."
        raise ValueError(msg)
    return index.to(torch.int64), int(high)


def batch_images(batch: object) -> torch.Tensor:
    """The batch's images, ``batch.image``; anomalib types the field as optional, the models need it.

    Raises:
        ValueError: The batch carries no images.
    """
    images = getattr(batch, "image", None)
    if images is None:
        msg = f"The batch ({type(batch).__name__}) carries no images (batch.image is None); the models need them."
        raise ValueError(msg)
    return images


def class_index_of(batch: object) -> torch.Tensor | None:
    """The batch's class indices (int64 ``(B,)``), or ``None`` for ordinary anomalib batches."""
    index = getattr(batch, "class_index", None)
    return index if isinstance(index, torch.Tensor) else None


def class_labels(batch: Any, num_classes: int, model: str = "The model") -> torch.Tensor:
    """Each image's class (int64 ``(B,)``, on the images' device), checked once for a model of ``num_classes``.

    A batch without ``class_index`` is class 0 throughout when the model has one class; with several classes it
    is an error, as is a class index outside ``[0, num_classes)`` or one count of indices for another of images.

    Args:
        batch (Any): An anomalib batch; ``batch.image`` is ``(B, C, H, W)``.
        num_classes (int): Number of classes the model was built for.
        model (str, optional): Name of the model, for the messages. Defaults to ``"The model"``.

    Returns:
        torch.Tensor: int64 class indices of shape ``(B,)``.

    Raises:
        ValueError: The indices are missing (several classes), of the wrong length, or out of range.

    Example:
        >>> from types import SimpleNamespace
        >>> class_labels(SimpleNamespace(image=torch.zeros(2, 3, 4, 4), class_index=torch.tensor([1, 0])), 2)
        tensor([1, 0])
    """
    images: torch.Tensor = batch.image
    index = class_index_of(batch)
    if index is None:
        if num_classes > 1:
            msg = (
                f"{model} has {num_classes} classes and needs each image's class index here, but the batch "
                f"({type(batch).__name__}) has no class_index. Use the Unified datamodule "
                "(anomalib_nfplus.data.Unified), whose batches carry it, or build the model for one class."
            )
            raise ValueError(msg)
        return torch.zeros(images.shape[0], dtype=torch.long, device=images.device)
    checked, high = _checked(index.reshape(-1), 1, "class_index")
    if checked.shape[0] != images.shape[0]:
        msg = f"class_index has {checked.shape[0]} entries but the batch holds {images.shape[0]} images."
        raise ValueError(msg)
    if high >= num_classes:
        msg = (
            f"class_index values must lie in [0, {num_classes}), got up to {high}: {model} was built for "
            f"{num_classes} class(es) but the data has more categories. Build (or load) the model for the "
            "datamodule's class_names."
        )
        raise ValueError(msg)
    return checked.to(images.device)
