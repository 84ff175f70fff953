# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Lightning callbacks of the plugin: per-category test metrics for multi-class (unified) runs.

:class:`PerCategoryMetrics` logs, beside anomalib's overall metrics, at the end of a test:

- ``image_AUROC/<category>`` for every category and ``image_AUROC/mean`` (mean over categories);
- ``pixel_AUROC/<category>`` for categories whose test images have masks and ``pixel_AUROC/mean`` over those.

The plugin's models return it from ``configure_callbacks`` (Lightning's hook for callbacks a model needs) when the
trainer's datamodule has ``class_names`` (:class:`~anomalib_nfplus.data.Unified`) and does not set
``category_metrics=False``: :func:`category_metrics_callbacks`. Other models get it the way anomalib adds any
callback: ``Engine(callbacks=[PerCategoryMetrics()])`` or ``--trainer.callbacks
anomalib_nfplus.callbacks.PerCategoryMetrics``. A trainer that already has one keeps it.

Values are the model's own scores and maps, read before anomalib's post-processing: the ``PostProcessor``
normalises with validation statistics and clamps to ``[0, 1]``, so every score beyond the validation range becomes
a tie, and AUROC counts ties as one half. In a unified model, where one category's scores can all lie beyond the
range of the mixed validation set, that clamping alone moved a category's AUROC from 0.89 to 0.56. The callback reads
raw values when it runs before the ``PostProcessor``: when passed to the ``Trainer`` (trainer callbacks come before
the model's) and when added by the plugin's models (they list it first). Placed after one, it reads the
post-processed values and says so. A category whose test set holds a single label gets NaN (AUROC is undefined) and
is left out of the mean. AUROCs are rank statistics of the raw values (:func:`~anomalib_nfplus.metrics.rank_auroc`):
torchmetrics' ``binary_auroc`` would pass scores outside ``[0, 1]`` through a sigmoid that ties them from about 16.6
up. A single-category datamodule (no ``class_index``) is scored as one class when the callback
is given one class name: ``PerCategoryMetrics(class_names=["bottle"])``.
"""

import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.nn import functional as F

from anomalib_nfplus.batch import class_index_of
from anomalib_nfplus.metrics import rank_auroc

__all__ = ["PerCategoryMetrics", "category_aurocs", "category_metrics_callbacks", "runs_before_post_processing"]

logger = logging.getLogger(__name__)


class PerCategoryMetrics(Callback):
    """Log image (and pixel, where masks exist) AUROC per category and their mean after ``test``.

    Args:
        class_names (Sequence[str] | None, optional): Names for class indices; default ``trainer.datamodule
            .class_names``, else ``class_<i>``.
        pixel (bool, optional): Also compute pixel AUROC (keeps the test maps in memory, as anomalib's own
            pixel AUROC does). Defaults to ``True``.
    """

    def __init__(self, class_names: Sequence[str] | None = None, pixel: bool = True) -> None:
        super().__init__()
        self.class_names = list(class_names) if class_names is not None else None
        self.pixel = pixel
        self.results: dict[str, float] = {}
        self._raw = True
        self._reset()

    def _reset(self) -> None:
        self._pending: Any = None
        self._scores: dict[int, list[torch.Tensor]] = defaultdict(list)
        self._labels: dict[int, list[torch.Tensor]] = defaultdict(list)
        self._maps: dict[int, list[torch.Tensor]] = defaultdict(list)
        self._masks: dict[int, list[torch.Tensor]] = defaultdict(list)
        self._unlabelled = False

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start collecting for a new test."""
        del pl_module
        self._reset()
        self.results = {}
        self._raw = runs_before_post_processing(self, getattr(trainer, "callbacks", ()))
        if not self._raw:
            logger.warning(
                "PerCategoryMetrics runs after anomalib's PostProcessor, so it reads normalised scores clamped to "
                "[0, 1] (ties lower the AUROC). Pass it to the Trainer (callbacks=[PerCategoryMetrics()]) to read "
                "the model's own scores."
            )

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Read this batch now (before post-processing), or after the post-processor when placed behind it."""
        del trainer, pl_module, batch_idx, dataloader_idx
        source = outputs if getattr(outputs, "pred_score", None) is not None else batch
        if self._raw:
            self._read(source)
        else:
            self._consume()  # the previous batch, post-processed by now
            self._pending = source

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Compute the per-category AUROCs and log them (over the whole test set when several processes test)."""
        self._consume()
        self._gather(trainer)
        if self._unlabelled and not self._scores:
            logger.warning("PerCategoryMetrics: test batches have no class_index (not a Unified datamodule); skipped.")
            return
        names = self._names(trainer)
        self.results = category_aurocs(self._scores, self._labels, self._maps, self._masks, names)
        for key, value in self.results.items():
            pl_module.log(key, value, on_step=False, on_epoch=True)
            if trainer.barebones:  # logging is off there; anomalib's Evaluator fills the results the same way
                trainer.callback_metrics[key] = torch.tensor(value)
                trainer.logged_metrics[key] = torch.tensor(value)
        self._reset()

    def _gather(self, trainer: Trainer) -> None:
        """Under DDP each process tested its share of the images: give every process all of them.

        AUROC does not decompose over shards, so the values themselves are gathered (CPU tensors, as anomalib's
        own AUROC gathers its predictions); every process then computes and logs the same numbers.
        """
        world = int(getattr(trainer, "world_size", 1) or 1)
        if world == 1 or not torch.distributed.is_available() or not torch.distributed.is_initialized():
            return
        local = (self._scores, self._labels, self._maps, self._masks, self._unlabelled)
        gathered: list[Any] = [None] * world
        torch.distributed.all_gather_object(gathered, local)
        self._reset()
        for *parts, unlabelled in gathered:
            for mine, theirs in zip((self._scores, self._labels, self._maps, self._masks), parts, strict=True):
                for index, values in theirs.items():
                    mine[index].extend(values)
            self._unlabelled = self._unlabelled or unlabelled

    def _names(self, trainer: Trainer) -> list[str]:
        names = self.class_names or getattr(getattr(trainer, "datamodule", None), "class_names", None)
        seen = max([*self._scores, -1]) + 1
        names = list(names or [])
        return names + [f"class_{index}" for index in range(len(names), seen)]

    def _consume(self) -> None:
        batch, self._pending = self._pending, None
        if batch is not None:
            self._read(batch)

    def _read(self, batch: Any) -> None:
        classes = class_index_of(batch)
        scores, labels = getattr(batch, "pred_score", None), getattr(batch, "gt_label", None)
        if classes is None and scores is not None and self.class_names is not None and len(self.class_names) == 1:
            classes = torch.zeros(scores.numel(), dtype=torch.long)
        if classes is None or scores is None or labels is None:
            self._unlabelled = True
            return
        classes, labels = classes.cpu(), labels.cpu().flatten()
        scores = scores.detach().cpu().flatten().float().clone()  # kept apart from what later callbacks do
        maps, masks = getattr(batch, "anomaly_map", None), getattr(batch, "gt_mask", None)
        if not self.pixel or maps is None or masks is None:
            maps = masks = None
        else:
            masks = masks.cpu().bool().reshape(len(classes), *masks.shape[-2:])
            maps = maps.detach().cpu().float().reshape(len(classes), 1, *maps.shape[-2:]).clone()
            if maps.shape[-2:] != masks.shape[-2:]:
                maps = F.interpolate(maps, size=masks.shape[-2:], mode="bilinear", align_corners=False)
        for index in classes.unique().tolist():
            selected = classes == index
            self._scores[index].append(scores[selected])
            self._labels[index].append(labels[selected])
            if maps is not None and masks is not None:
                self._maps[index].append(maps[selected].flatten())
                self._masks[index].append(masks[selected].flatten())


def runs_before_post_processing(callback: Callback, callbacks: Sequence[Callback]) -> bool:
    """Whether ``callback`` comes before every anomalib ``PostProcessor`` in ``callbacks`` (or there is none)."""
    from anomalib.post_processing import PostProcessor

    order = list(callbacks)
    post = [index for index, other in enumerate(order) if isinstance(other, PostProcessor)]
    mine = next((index for index, other in enumerate(order) if other is callback), len(order))
    return not post or mine < min(post)


def _auroc(preds: list[torch.Tensor], target: list[torch.Tensor], what: str) -> float:
    labels = torch.cat(target).int()
    if labels.numel() == 0 or labels.min() == labels.max():
        logger.warning("%s: the test set holds a single label, AUROC is undefined (NaN).", what)
        return math.nan
    return rank_auroc(torch.cat(preds), labels)


def category_aurocs(
    scores: dict[int, list[torch.Tensor]],
    labels: dict[int, list[torch.Tensor]],
    maps: dict[int, list[torch.Tensor]],
    masks: dict[int, list[torch.Tensor]],
    names: Sequence[str],
) -> dict[str, float]:
    """``image_AUROC/<name>`` per class, ``pixel_AUROC/<name>`` per class with masks, and both ``/mean``.

    Args:
        scores (dict[int, list[torch.Tensor]]): Image scores per class index.
        labels (dict[int, list[torch.Tensor]]): Image labels (0 normal, 1 anomalous) per class index.
        maps (dict[int, list[torch.Tensor]]): Flattened anomaly maps per class index (classes with masks).
        masks (dict[int, list[torch.Tensor]]): Flattened masks, aligned with ``maps``.
        names (Sequence[str]): Name of every class index.

    Returns:
        dict[str, float]: Metric name -> value; means ignore NaN categories (NaN when all are NaN).
    """
    results: dict[str, float] = {}
    for index in sorted(scores):
        results[f"image_AUROC/{names[index]}"] = _auroc(scores[index], labels[index], f"image AUROC {names[index]}")
    for index in sorted(maps):
        results[f"pixel_AUROC/{names[index]}"] = _auroc(maps[index], masks[index], f"pixel AUROC {names[index]}")
    for level in ("image", "pixel"):
        values = [value for key, value in results.items() if key.startswith(f"{level}_AUROC/")]
        if values:
            finite = [value for value in values if not math.isnan(value)]
            results[f"{level}_AUROC/mean"] = sum(finite) / len(finite) if finite else math.nan
    return results


def category_metrics_callbacks(trainer: Trainer | None) -> list[Callback]:
    """``[PerCategoryMetrics()]`` for a trainer on a multi-class datamodule that has none yet, else ``[]``.

    Multi-class means the datamodule declares ``class_names`` (the contract :class:`~anomalib_nfplus.data.Unified`
    follows); ``category_metrics=False`` on it opts out. A callback the trainer already holds (passed by the user,
    or added by an earlier run of the same trainer) is kept: Lightning would replace it with the returned one.
    """
    if trainer is None:
        return []
    datamodule = getattr(trainer, "datamodule", None)  # set on every trainer by Lightning, undeclared on the class
    if not getattr(datamodule, "class_names", None) or not getattr(datamodule, "category_metrics", True):
        return []
    if any(isinstance(callback, PerCategoryMetrics) for callback in getattr(trainer, "callbacks", ())):
        return []
    return [PerCategoryMetrics()]
