# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""When the training-data score statistics are collected, and how checkpoints keep them.

The models normalise their maps with statistics of their *training* images (:class:`TrainingStatistics`), so
those must belong to the weights that score: they are collected again whenever training changed the weights,
before validation, testing and prediction, and before a checkpoint stores them.

Statistics never collected for the weights (a model never trained, or a ``last_finite_step*.ckpt`` written at a
non-finite loss) are never used: validation, testing and prediction collect them from the datamodule's training
images when it has some and refuse otherwise, and so does an export (which never collects: it has no trainer).
"""

import copy
import logging
from typing import Any, Protocol, cast, runtime_checkable

import torch
from anomalib.data import Batch
from anomalib.pre_processing import PreProcessor
from lightning.pytorch.trainer.states import TrainerFn

from ..host.distributed import process_grid, rank_share
from ..host.lightning_host import LightningHost
from ..host.precision import float32_scoring
from ..scoring.statistics import TrainingStatistics, UnfittedStatisticsError

__all__ = ["StatisticsModel", "TrainingStatisticsMixin"]

logger = logging.getLogger(__name__)


@runtime_checkable
class StatisticsModel(Protocol):
    """A torch model whose maps are normalised by statistics of its training images.

    ``statistics`` is ``None`` while the model cannot hold them yet (HGAD before it knows its classes).
    ``update_statistics(batch)`` adds one batch of training images to them; ``batch.image`` is pre-processed,
    float32 and on the model's device, and the batch keeps its other fields (``class_index``).
    """

    statistics: TrainingStatistics | None

    def update_statistics(self, batch: Batch) -> None:
        """Add one training batch to ``statistics``."""


def _prefix_of(root: torch.nn.Module, module: torch.nn.Module) -> str:
    """State-dict prefix of ``module`` inside ``root`` (``"model.statistics."``)."""
    for name, candidate in root.named_modules():
        if candidate is module:
            return f"{name}." if name else ""
    msg = f"{type(module).__name__} is not a submodule of {type(root).__name__}."
    raise ValueError(msg)


def _with_images(batch: Any, images: torch.Tensor) -> Any:
    """A shallow copy of ``batch`` holding ``images``; the loader's batch is left as it was."""
    view = copy.copy(batch)
    view.image = images
    return view


class TrainingStatisticsMixin(LightningHost):
    """Fits the torch model's statistics from the training data before anything is scored or saved.

    Contract: ``self.model`` is a :class:`StatisticsModel`. :attr:`saving_last_finite` (set by
    :class:`~anomalib_nfplus.models.components.training.LossGuardMixin` when it is also a base) marks a checkpoint
    of older weights, whose statistics are stored as unfitted. Override :meth:`on_statistics_collected` to refuse
    training data the statistics cannot be complete from.

    Unfitted statistics are collected before validation, testing and prediction when a datamodule with training
    images is at hand, and refused otherwise (:class:`UnfittedStatisticsError`); exports refuse them
    (:meth:`check_fitted`, called by :class:`~anomalib_nfplus.models.components.export.FlowExportMixin`), and so
    does the torch model's eager ``forward``.
    """

    #: Whether training changed the weights since the statistics were last collected.
    statistics_stale: bool = False
    #: True while a checkpoint of older weights is written (see :class:`LossGuardMixin`).
    saving_last_finite: bool = False

    @property
    def statistics_model(self) -> StatisticsModel:
        """``self.model``, checked against :class:`StatisticsModel`."""
        model = self.model
        if not isinstance(model, StatisticsModel):
            msg = (
                f"{type(self).__name__} uses TrainingStatisticsMixin, so its model needs `statistics` and "
                f"`update_statistics(batch)`; {type(model).__name__} has not."
            )
            raise TypeError(msg)
        return model

    def on_train_batch_start(self, *args: Any, **kwargs: Any) -> Any:
        """The weights are about to change: collect the statistics again before anything is scored or saved.

        Per batch, not per epoch: validation may run several times an epoch (``val_check_interval``) and
        checkpoints may be written mid-epoch (callbacks' ``on_train_batch_end`` runs before the module's), and each
        must see the statistics of the weights it scores or saves.
        """
        self.statistics_stale = True
        return super().on_train_batch_start(*args, **kwargs)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store statistics that belong to the saved weights (collected now if training changed them since)."""
        super().on_save_checkpoint(checkpoint)
        stats = self.statistics_model.statistics
        if stats is None or not self.statistics_stale:
            return
        state = checkpoint.get("state_dict", {})
        prefix = _prefix_of(self, stats)
        if self.saving_last_finite or self._training_loader() is None:
            # Statistics of older weights: mark them unfitted so a reload collects them again.
            if prefix + "fitted" in state:
                state[prefix + "fitted"] = torch.tensor(False)
            return
        self._refresh_statistics()
        # Lightning took the state dict before this hook; replace its statistics with the fresh ones.
        for name, buffer in stats.state_dict().items():
            if prefix + name in state:
                state[prefix + name] = buffer.detach().clone()

    def on_validation_epoch_start(self) -> None:
        """Collect statistics with the current weights before validation scores anything."""
        self._refresh_statistics()
        super().on_validation_epoch_start()

    def on_test_start(self) -> None:
        """Collect statistics if the weights changed since the last collection (or there never was one)."""
        self._refresh_statistics()
        super().on_test_start()

    def on_predict_start(self) -> None:
        """As :meth:`on_test_start`."""
        self._refresh_statistics()
        super().on_predict_start()

    def check_fitted(self) -> None:
        """Raise :class:`UnfittedStatisticsError` while the statistics were never collected for these weights.

        Every export calls it before tracing: an exported graph carries the statistics as constants, and the
        placeholders (mean 0, std 1) would score every image arbitrarily. An export has no trainer to collect them
        with.
        """
        stats = self.statistics_model.statistics
        if stats is not None and not bool(stats.fitted):
            raise UnfittedStatisticsError(self._unfitted_message("cannot be exported"))

    def last_finite_note(self) -> str:
        """What the ``last_finite_step*.ckpt`` that :class:`LossGuardMixin` writes holds, for its error message."""
        return (
            " It holds no training statistics (they were not collected for those weights), so it cannot be exported "
            "as it is: to score or export it, collect them from the training images first, e.g. "
            "engine.validate(model, datamodule=datamodule, ckpt_path=<that file>), then engine.export(model, ...) "
            "without ckpt_path, or engine.trainer.save_checkpoint(path) to keep a checkpoint with them."
        )

    def _unfitted_message(self, what: str) -> str:
        return (
            f"{type(self).__name__} {what}: its training statistics (they normalise its anomaly maps) were never "
            "collected for its weights; it is untrained, or loaded from a last_finite_step*.ckpt. Use a trained "
            "model or a checkpoint written by training (engine.fit, anomalib fit), or collect the statistics for "
            "these weights from the training images: engine.validate(model, datamodule=datamodule) does (as do test "
            "and predict with a datamodule); then export the model in memory (engine.export(model, ...) without "
            "ckpt_path) or keep a checkpoint with them (engine.trainer.save_checkpoint(path))."
        )

    def _refresh_statistics(self) -> None:
        stats = self.statistics_model.statistics
        if stats is None or (bool(stats.fitted) and not self.statistics_stale):
            return
        loader = self._training_loader()
        if loader is None:
            if bool(stats.fitted):
                return
            raise UnfittedStatisticsError(
                self._unfitted_message("cannot score without a datamodule that has training images")
            )
        if not bool(stats.fitted) and not self._fitting():  # in fit, the first collection is the expected one
            logger.info(
                "%s: training statistics were never collected for these weights; collecting them from the "
                "datamodule's training images.",
                type(self).__name__,
            )
        self.collect_training_statistics(loader)

    def _fitting(self) -> bool:
        trainer = self._trainer
        return trainer is not None and trainer.state.fn == TrainerFn.FITTING

    def _training_loader(self) -> Any:
        trainer = self._trainer
        if trainer is None:
            return None
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "train_dataloader"):
            try:
                return datamodule.train_dataloader()
            except (AttributeError, RuntimeError, ValueError):
                pass
        return getattr(trainer, "train_dataloader", None)

    @torch.no_grad()
    def collect_training_statistics(self, loader: Any) -> None:
        """Score training batches in eval mode and freeze the map statistics into buffers."""
        model = self.statistics_model
        stats = model.statistics
        if stats is None:
            return
        module: torch.nn.Module = self.model
        was_training = module.training
        module.eval()
        stats.reset()
        # Several processes: each scores its own share of the images, then the sums are reduced (see .distributed).
        rank, world = process_grid(self._trainer)
        for batch in rank_share(loader, rank, world):
            images = batch.image.to(self.device)
            pre_processor = cast("PreProcessor | None", self.pre_processor)  # anomalib types it as nn.Module
            if pre_processor is not None and pre_processor.transform is not None:
                images = pre_processor.transform(images)
            with float32_scoring(images) as images_32:
                model.update_statistics(_with_images(batch, images_32))
        self.on_statistics_collected(stats, world)
        if world > 1:
            stats.all_reduce()
        stats.finalize()
        module.train(was_training)
        self.statistics_stale = False

    def on_statistics_collected(self, statistics: TrainingStatistics, world: int) -> None:
        """Called when this process has scored its share (``world`` processes), before the sums are reduced.

        Raise here to name what the training data lacks; :meth:`TrainingStatistics.finalize` only says that some
        map received no values.
        """
        del statistics, world
