# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Image items and batches that carry each image's class index, for models trained on several categories.

They subclass anomalib's ``ImageItem``/``ImageBatch`` and add one field, ``class_index`` (int64, ``()`` per item,
``(B,)`` per batch), so every anomalib component (pre/post-processor, metrics, visualizer) handles them unchanged
and models that ignore the class never notice it. The field's contract (values, and how models read it) lives in
:mod:`anomalib_nfplus.batch`, which the models import instead of this package.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from anomalib.data import ImageBatch, ImageItem
from anomalib.data.dataclasses.generic import FieldDescriptor
from anomalib.data.dataclasses.numpy import NumpyImageBatch, NumpyImageItem

from anomalib_nfplus.batch import as_class_index

__all__ = [
    "UnifiedImageBatch",
    "UnifiedImageItem",
    "UnifiedNumpyImageBatch",
    "UnifiedNumpyImageItem",
    "class_names_of",
]


# Fields live in small dataclasses of their own: anomalib's descriptors resolve their type hints on the class that
# declares them, which fails on classes that also inherit ToNumpyMixin's unresolvable ``ClassVar[Callable]``.
@dataclass
class _ClassIndexField:
    class_index: FieldDescriptor[torch.Tensor | None] = FieldDescriptor(validator_name="validate_class_index")  # noqa: RUF009


@dataclass
class _NumpyClassIndexField:
    class_index: FieldDescriptor[np.ndarray | None] = FieldDescriptor(validator_name="validate_class_index")  # noqa: RUF009


@dataclass
class UnifiedNumpyImageItem(_NumpyClassIndexField, NumpyImageItem):
    """``NumpyImageItem`` plus ``class_index`` (what ``UnifiedImageItem.to_numpy()`` returns)."""

    @staticmethod
    def validate_class_index(class_index: Any) -> np.ndarray | None:
        """A scalar int64 array, or None."""
        index = as_class_index(class_index, 0, "class_index")
        return None if index is None else index.numpy()


@dataclass
class UnifiedNumpyImageBatch(_NumpyClassIndexField, NumpyImageBatch):
    """``NumpyImageBatch`` plus ``class_index`` of shape ``(B,)``."""

    item_class: ClassVar[type[NumpyImageItem]] = UnifiedNumpyImageItem

    @staticmethod
    def validate_class_index(class_index: Any) -> np.ndarray | None:
        """An int64 array of shape ``(B,)``, or None."""
        index = as_class_index(class_index, 1, "class_index")
        return None if index is None else index.numpy()


@dataclass
class UnifiedImageItem(_ClassIndexField, ImageItem):
    """anomalib ``ImageItem`` plus ``class_index``: a scalar int64 tensor, the item's index in ``class_names``."""

    numpy_class: ClassVar[type[NumpyImageItem]] = UnifiedNumpyImageItem

    @staticmethod
    def validate_class_index(class_index: Any) -> torch.Tensor | None:
        """A scalar int64 tensor, or None."""
        return as_class_index(class_index, 0, "class_index")


@dataclass
class UnifiedImageBatch(_ClassIndexField, ImageBatch):
    """anomalib ``ImageBatch`` plus ``class_index``: int64 ``(B,)``, each image's index in ``class_names``."""

    item_class: ClassVar[type[ImageItem]] = UnifiedImageItem
    numpy_class: ClassVar[type[NumpyImageBatch]] = UnifiedNumpyImageBatch

    @staticmethod
    def validate_class_index(class_index: Any) -> torch.Tensor | None:
        """An int64 tensor of shape ``(B,)``, or None."""
        return as_class_index(class_index, 1, "class_index")

    @classmethod
    def collate(cls, items: list[ImageItem]) -> "UnifiedImageBatch":
        """Collate like anomalib, after checking that fields are present in all items or in none.

        anomalib collates the fields set on the first item only, so a batch that mixes images with and without
        masks or class indices would otherwise fail deep inside ``default_collate``.
        """
        for name in ("gt_mask", "gt_label", "class_index"):
            present = [getattr(item, name, None) is not None for item in items]
            if any(present) and not all(present):
                paths = [item.image_path for item, has in zip(items, present, strict=True) if not has][:3]
                msg = (
                    f"Cannot batch images where only some have {name!r} (missing for e.g. {paths}). Unified "
                    "evaluation batches never mix categories; build batches from one category at a time."
                )
                raise ValueError(msg)
        return super().collate(items)  # type: ignore[return-value]


def class_names_of(datamodule: object) -> list[str]:
    """Category names a model should be built for: ``Unified.class_names``, else one class (the category).

    Args:
        datamodule (object): A datamodule (typically ``trainer.datamodule``), or ``None``.

    Returns:
        list[str]: ``datamodule.class_names`` when it has them, else ``[category or name]`` (one class).
    """
    names = getattr(datamodule, "class_names", None)
    if isinstance(names, Sequence) and not isinstance(names, str) and len(names) > 0:
        return [str(name) for name in names]
    single = getattr(datamodule, "category", "") or getattr(datamodule, "name", "") or "default"
    return [str(single)]
