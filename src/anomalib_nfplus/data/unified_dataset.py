# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""One dataset over several categories' anomalib datasets, and a batch sampler that keeps categories apart.

Each item is loaded by its own category's dataset (so MVTecAD, Folder, ... keep their own reading and masks),
then brought to a common size and to RGB, tagged with its class index and passed through the unified
datamodule's augmentations (anomalib appends the model's resize there).
"""

from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from typing import cast

import pandas as pd
import torch
from anomalib import TaskType
from anomalib.data import ImageItem
from anomalib.data.datasets.base.image import AnomalibDataset
from anomalib.data.utils import LabelName
from torch.utils.data import BatchSampler, Sampler
from torchvision.transforms.v2 import InterpolationMode, Transform
from torchvision.transforms.v2 import functional as F
from torchvision.tv_tensors import Image, Mask

from .unified_batch import UnifiedImageBatch, UnifiedImageItem

__all__ = ["CategoryBatchSampler", "UnifiedDataset"]


class UnifiedDataset(AnomalibDataset):
    """Concatenation of per-category datasets whose items carry ``class_index``.

    Args:
        sources (Sequence[AnomalibDataset | None]): One dataset per class, in class order; ``None`` where a
            category has no data for this split.
        class_names (Sequence[str]): Category names, in class order (used in messages and ``samples``).
        image_size (tuple[int, int]): Every image is resized to this ``(H, W)`` (masks: nearest) before batching.
        split (str): ``"train"``, ``"val"`` or ``"test"``. Training images are normal, so a category without
            masks gets all-zero masks there (batches mix categories); in evaluation it gets none.
        augmentations (Transform | None, optional): Applied after resizing. Defaults to ``None``.
    """

    def __init__(
        self,
        sources: Sequence[AnomalibDataset | None],
        class_names: Sequence[str],
        image_size: tuple[int, int],
        split: str,
        augmentations: Transform | None = None,
    ) -> None:
        super().__init__(augmentations=augmentations)
        self.sources = list(sources)
        self.class_names = list(class_names)
        self.image_size = tuple(image_size)
        self.split = split
        self.has_masks = [source is not None and source.task == TaskType.SEGMENTATION for source in self.sources]
        frames = [self._frame(index, source) for index, source in enumerate(self.sources) if source is not None]
        samples = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["image_path", "split"])
        samples.attrs["task"] = (TaskType.SEGMENTATION if any(self.has_masks) else TaskType.CLASSIFICATION).value
        # Kept in class order: the setter would sort by path, and evaluation batches rely on contiguous classes.
        self._samples = samples
        self.category = "+".join(self.class_names)

    def _frame(self, class_index: int, source: AnomalibDataset) -> pd.DataFrame:
        frame = source.samples.reset_index(drop=True)
        columns = [column for column in ("image_path", "split", "label_index", "mask_path") if column in frame]
        frame = frame[columns].copy()
        frame["category"] = self.class_names[class_index]
        frame["class_index"] = class_index
        frame["source_row"] = range(len(frame))
        return frame

    @property
    def collate_fn(self) -> Callable[[list[ImageItem]], UnifiedImageBatch]:
        """Batches are :class:`UnifiedImageBatch` (an anomalib ``ImageBatch`` with ``class_index``)."""
        return UnifiedImageBatch.collate

    def __getitem__(self, index: int) -> UnifiedImageItem:
        """Load the item from its category's dataset, resize it, make it RGB and tag it with its class."""
        row = self.samples.iloc[index]
        class_index = int(row.class_index)
        source = self.sources[class_index]
        if source is None:  # rows are made from the categories that have data only
            msg = f"Row {index} belongs to category {self.class_names[class_index]!r}, which has no data here."
            raise IndexError(msg)
        item = cast(ImageItem, source[int(row.source_row)])  # image datamodules give ImageItem; _rgb rejects others
        if item.image is None:
            msg = f"Category {self.class_names[class_index]!r} gave an item without an image (row {index})."
            raise ValueError(msg)
        image = self._rgb(item.image, class_index)
        mask = item.gt_mask
        if mask is None and self.split == "train" and item.gt_label is not None and not bool(item.gt_label):
            mask = Mask(torch.zeros(image.shape[-2:], dtype=torch.uint8))
        if not self.has_masks[class_index] and self.split != "train":
            mask = None
        image, mask = self._resize(image, mask)
        if self.augmentations is not None:
            if mask is None:
                image = self.augmentations(image)
            else:
                image, mask = self.augmentations(image, mask)
        return UnifiedImageItem(
            image=image,
            gt_mask=mask,
            gt_label=item.gt_label,
            image_path=item.image_path,
            mask_path=item.mask_path if mask is not None else None,
            class_index=torch.tensor(class_index, dtype=torch.int64),
        )

    def _rgb(self, image: torch.Tensor, class_index: int) -> Image:
        if image.ndim != 3:
            msg = (
                f"Category {self.class_names[class_index]!r} gives images of shape {tuple(image.shape)}; Unified "
                "combines image datamodules only (one (C, H, W) image per item, no video or depth)."
            )
            raise ValueError(msg)
        channels = image.shape[0]
        if channels == 1:
            image = image.expand(3, -1, -1)
        elif channels != 3:
            msg = (
                f"Category {self.class_names[class_index]!r} gives {channels}-channel images; Unified accepts "
                "grayscale (made RGB) or RGB. Convert the images (e.g. drop the alpha channel) first."
            )
            raise ValueError(msg)
        return Image(image)

    def _resize(self, image: Image, mask: torch.Tensor | None) -> tuple[Image, Mask | None]:
        size = list(self.image_size)
        if list(image.shape[-2:]) != size:
            image = F.resize(image, size, interpolation=InterpolationMode.BILINEAR, antialias=True)
        if mask is not None:
            mask = Mask(mask)
            if list(mask.shape[-2:]) != size:
                squeeze = mask.ndim == 2
                mask = F.resize(mask[None] if squeeze else mask, size, interpolation=InterpolationMode.NEAREST)
                mask = Mask(mask[0]) if squeeze else mask
        return image, mask

    @property
    def class_indices(self) -> list[int]:
        """Class index of every sample, in dataset order."""
        return [int(value) for value in self.samples["class_index"]] if len(self.samples) else []

    @property
    def has_normal(self) -> bool:
        """Whether any sample is normal."""
        return bool(len(self.samples)) and LabelName.NORMAL in list(self.samples.label_index)


class CategoryBatchSampler(BatchSampler):
    """Batches of consecutive samples that never mix categories (evaluation of a :class:`UnifiedDataset`).

    Categories without masks give ``gt_mask=None``; anomalib's pixel metrics skip such batches, so the overall
    pixel scores are computed over the categories that have masks, and mixed batches could not be collated.
    Lightning may re-create the sampler with ``(sampler, batch_size, drop_last)``; the categories are read from
    the dataset behind ``sampler`` (through Lightning's wrappers).

    Under DDP that sampler is a ``DistributedSampler``, which interleaves the categories and pads the processes
    with repeated samples. Then the batches of the whole dataset are formed as in one process (from the order of
    the sampler it wraps) and dealt out in turn, batch ``j`` to process ``j % num_replicas``: every sample is
    evaluated once, by one process, in a batch of one category. A process may get one batch fewer than another;
    batches are split when there are fewer of them than processes, so that each process runs the evaluation
    (and its end-of-epoch collectives) at all.
    """

    def __init__(self, sampler: Sampler[int], batch_size: int, drop_last: bool = False) -> None:
        super().__init__(sampler, batch_size, drop_last)
        self.num_replicas = int(getattr(sampler, "num_replicas", 1))
        self.rank = int(getattr(sampler, "rank", 0))
        source, self._order = _source_and_order(sampler, distributed=self.num_replicas > 1)
        self.groups = list(getattr(source, "class_indices", None) or [0] * len(source or []))

    def __iter__(self) -> Iterator[list[int]]:
        """Yield batches of at most ``batch_size`` indices from one category each (this process's share)."""
        if self.num_replicas == 1:
            yield from self._batches(self.sampler)
            return
        batches = list(self._batches(self._order))
        while len(batches) < self.num_replicas:  # tiny sets: split the largest batch so every process gets one
            largest = max(range(len(batches)), key=lambda j: len(batches[j]), default=None)
            if largest is None or len(batches[largest]) < 2:
                break
            batch = batches.pop(largest)
            batches[largest:largest] = [batch[: (len(batch) + 1) // 2], batch[(len(batch) + 1) // 2 :]]
        yield from batches[self.rank :: self.num_replicas]

    def _batches(self, indices: Iterable[int]) -> Iterator[list[int]]:
        batch: list[int] = []
        current = None
        for index in indices:
            group = self.groups[index] if index < len(self.groups) else 0
            if batch and (group != current or len(batch) == self.batch_size):
                if not (self.drop_last and len(batch) < self.batch_size):  # drop_last: every short batch
                    yield batch
                batch = []
            current = group
            batch.append(index)
        if batch and not (self.drop_last and len(batch) < self.batch_size):
            yield batch

    def __len__(self) -> int:
        """Number of batches (counted by walking the sampler once)."""
        return sum(1 for _ in self)


def _source_and_order(sampler: Sampler[int], distributed: bool) -> tuple[Sized | None, Sequence[int]]:
    """The dataset behind ``sampler`` and, for a distributed sampler, the one-process order of all its indices.

    A ``DistributedSampler`` holds the dataset (``dataset``), or, as Lightning's ``DistributedSamplerWrapper``, a
    dataset of the indices of the sampler it wraps (``dataset._sampler``); a plain sampler holds ``data_source``.
    """
    source = getattr(sampler, "data_source", None)
    if source is None:
        source = getattr(sampler, "dataset", None)
    inner = getattr(source, "_sampler", None)  # Lightning's _DatasetSamplerWrapper
    if inner is not None:
        order = list(inner) if distributed else []
        return getattr(inner, "data_source", None) or getattr(inner, "dataset", None), order
    return source, (range(len(source)) if distributed and source is not None else [])
