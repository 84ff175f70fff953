# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Lightning behaviour shared by the plugin's models, as a mixin.

anomalib's ``list_models``/``get_model`` only see *direct* subclasses of ``AnomalibModule``, so the models are
declared ``class CflowAD(FlowModuleMixin, AnomalibModule)`` rather than inheriting from a shared base class.

What the mixin gives every model:
    - ``learning_type`` (one-class) and ``trainer_arguments`` (no gradient clipping, no sanity validation);
    - ``validation_step`` (the PostProcessor needs validation outputs for its thresholds);
    - training-data score statistics, re-collected whenever the weights changed, before validation, testing and
      prediction, so maps are normalised without looking at the images being scored;
    - a non-finite-loss guard that saves the last finite weights and stops with the step that failed;
    - :meth:`manual_step`, one guarded optimizer step per fiber chunk for models that train in chunks;
    - strict checkpoint loading with a message that says what does not match and how to fix it;
    - the warm-up + cosine schedule stepped per optimizer step;
    - ``INT8_PTQ`` export calibrated on training images (anomalib uses the validation set, which holds defects)
      that quantises the backbone only (:meth:`int8_ignored_scope`; the flows' log-likelihoods need float).
"""

import math
from pathlib import Path
from typing import Any

import torch
from anomalib import LearningType
from anomalib.data import Batch
from lightning.pytorch.utilities.types import STEP_OUTPUT, OptimizerLRSchedulerConfig

from .quantization import backbone_only_scope, quantize_with_training_images
from .schedule import warmup_cosine_scheduler
from .statistics import TrainingStatistics

__all__ = ["FlowModuleMixin", "NonFiniteLossError"]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; training stopped before the optimizer applied it."""


class FlowModuleMixin:
    """Shared behaviour of the plugin's ``AnomalibModule`` subclasses (list it first among the bases).

    The torch model (``self.model``) opts into training statistics by having a ``statistics``
    (:class:`TrainingStatistics`) attribute and an ``update_statistics(images)`` method.
    """

    #: Upper bound on training batches used for the statistics (``None``: the whole training set).
    statistics_batches: int | None = None
    _statistics_stale: bool = False

    @property
    def learning_type(self) -> LearningType:
        """Normalizing-flow models learn from normal images only."""
        return LearningType.ONE_CLASS

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """No gradient clipping (flows clamp their scales) and no sanity validation (no statistics yet)."""
        return {"gradient_clip_val": 0, "num_sanity_val_steps": 0}

    def validation_step(self, batch: Batch, *args: Any, **kwargs: Any) -> STEP_OUTPUT:
        """Score the validation batch; the PostProcessor fits its thresholds on these outputs."""
        del args, kwargs
        return batch.update(**self.model(batch.image)._asdict())  # type: ignore[attr-defined]

    # --- training statistics -------------------------------------------------------------------------------

    @property
    def _statistics(self) -> TrainingStatistics | None:
        return getattr(self.model, "statistics", None)  # type: ignore[attr-defined]

    def on_train_epoch_start(self) -> None:
        """The weights are about to change: the statistics must be collected again before scoring."""
        self._statistics_stale = True
        super().on_train_epoch_start()  # type: ignore[misc]

    def on_validation_epoch_start(self) -> None:
        """Collect statistics with the current weights before validation scores anything."""
        self._refresh_statistics()
        super().on_validation_epoch_start()  # type: ignore[misc]

    def on_test_start(self) -> None:
        """Collect statistics if the weights changed since the last collection (or there never was one)."""
        self._refresh_statistics()
        super().on_test_start()  # type: ignore[misc]

    def on_predict_start(self) -> None:
        """As :meth:`on_test_start`."""
        self._refresh_statistics()
        super().on_predict_start()  # type: ignore[misc]

    def _refresh_statistics(self) -> None:
        stats = self._statistics
        if stats is None or (bool(stats.fitted) and not self._statistics_stale):
            return
        loader = self._training_loader()
        if loader is None:
            if bool(stats.fitted):
                return
            msg = (
                f"{type(self).__name__} has no training statistics to normalise its maps and no training data to "
                "collect them from. Train it first (engine.fit) or load a trained checkpoint (--ckpt_path)."
            )
            raise RuntimeError(msg)
        self.collect_training_statistics(loader)

    def _training_loader(self) -> Any:
        trainer = getattr(self, "_trainer", None)
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
        """Score training images in eval mode and freeze the map statistics into buffers."""
        stats = self._statistics
        if stats is None:
            return
        model = self.model  # type: ignore[attr-defined]
        was_training = model.training
        model.eval()
        stats.reset()
        for index, batch in enumerate(loader):
            if self.statistics_batches is not None and index >= self.statistics_batches:
                break
            images = batch.image.to(self.device)  # type: ignore[attr-defined]
            pre_processor = getattr(self, "pre_processor", None)
            if pre_processor is not None and pre_processor.transform is not None:
                images = pre_processor.transform(images)
            model.update_statistics(images)
        stats.finalize()
        model.train(was_training)
        self._statistics_stale = False

    # --- safety ---------------------------------------------------------------------------------------------

    def manual_step(self, loss: torch.Tensor) -> torch.Tensor:
        """One optimizer step on ``loss`` under manual optimisation (checked finite first); returns it detached.

        For models that take several steps per image batch (fiber chunks): encode once, then one step per chunk.
        """
        loss = self.check_loss(loss)
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        return loss.detach()

    def check_loss(self, loss: torch.Tensor, what: str = "loss") -> torch.Tensor:
        """Return ``loss`` if finite; otherwise save the last finite weights and stop with the failing step."""
        if bool(torch.isfinite(loss.detach()).all()):
            return loss
        trainer = getattr(self, "_trainer", None)
        where = "outside a Trainer"
        saved = ""
        if trainer is not None:
            where = f"at epoch {trainer.current_epoch}, global step {trainer.global_step}"
            path = Path(trainer.default_root_dir) / f"last_finite_step{trainer.global_step}.ckpt"
            try:
                trainer.save_checkpoint(path)
                saved = f" The weights before this step were saved to {path}."
            except (OSError, RuntimeError) as error:
                saved = f" (Saving the last finite weights failed: {error}.)"
        msg = (
            f"{type(self).__name__}: non-finite {what} ({loss.detach().flatten()[:4].tolist()}) {where}; the "
            f"optimizer step was not taken.{saved} Lower the learning rate, check the images for NaN/inf, or keep "
            "training in float32."
        )
        raise NonFiniteLossError(msg)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Strict by default, with an error that lists the mismatching keys and names the likely cause."""
        if strict:
            own_state = self.state_dict()  # type: ignore[attr-defined]
            own, given = set(own_state), set(state_dict)
            missing, unexpected = sorted(own - given), sorted(given - own)
            reshaped = [k for k in own & given if tuple(own_state[k].shape) != tuple(state_dict[k].shape)]
            if reshaped:
                unexpected += [f"{k} (shape {tuple(state_dict[k].shape)}, expected {tuple(own_state[k].shape)})"
                               for k in sorted(reshaped)]  # fmt: skip
            if missing or unexpected:
                msg = (
                    f"Checkpoint does not match {type(self).__name__}: {len(missing)} missing key(s) "
                    f"{missing[:5]}, {len(unexpected)} unexpected key(s) {unexpected[:5]}. It was saved by another "
                    "model or with other constructor arguments (backbone, layers, blocks, classes...). Load it with "
                    f"{type(self).__name__}.load_from_checkpoint(path), which restores the saved arguments, or build "
                    "the model with the arguments it was trained with."
                )
                raise RuntimeError(msg)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)  # type: ignore[misc]

    # --- export ---------------------------------------------------------------------------------------------

    def int8_ignored_scope(self, model: Any) -> Any:
        """Ops ``INT8_PTQ`` keeps in float (an ``nncf.IgnoredScope``); override for a graph that needs another scope.

        Default (:func:`backbone_only_scope`): only the backbone's non-depthwise convolutions upstream of the flows'
        MatMuls are quantised; flows, scoring and map post-processing stay float (log-densities do not survive INT8).
        """
        return backbone_only_scope(model)

    #: NNCF bias correction in ``INT8_PTQ``: off for maps scored per position (it cost CflowAD an AUROC point on
    #: generated stripes), on where a model scores a globally pooled feature vector (DifferNet), whose density
    #: is sensitive to the mean shift that quantised convolutions add and bias correction removes.
    int8_bias_correction: bool = False

    def _post_training_quantization_ov(self, model: Any, datamodule: Any = None) -> Any:
        """Anomalib's ``INT8_PTQ`` hook, calibrated on training images instead of the (anomalous) validation set."""
        scope = self.int8_ignored_scope(model) if datamodule is not None else None  # no datamodule: that error first
        return quantize_with_training_images(
            model, datamodule, ignored_scope=scope, bias_correction=self.int8_bias_correction
        )

    # --- schedule -------------------------------------------------------------------------------------------

    def warmup_cosine(
        self,
        optimizer: torch.optim.Optimizer,
        warmup_epochs: float,
        min_ratio: float = 1e-3,
    ) -> OptimizerLRSchedulerConfig:
        """Optimizer plus CFLOW-AD's warm-up/cosine schedule over the trainer's ``max_epochs``."""
        trainer = self.trainer  # type: ignore[attr-defined]
        epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 1
        total_steps = trainer.estimated_stepping_batches
        steps_per_epoch = math.ceil(total_steps / epochs) if math.isfinite(total_steps) else 1
        scheduler = warmup_cosine_scheduler(optimizer, steps_per_epoch, epochs, warmup_epochs, min_ratio)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
