# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Lightning behaviour shared by the plugin's models, as a mixin.

anomalib's ``list_models``/``get_model`` only see *direct* subclasses of ``AnomalibModule``, so the models are
declared ``class CflowAD(FlowModuleMixin, AnomalibModule)`` rather than inheriting from a shared base class.

What the mixin gives every model:
    - ``learning_type`` (one-class) and ``trainer_arguments`` (no gradient clipping, no sanity validation);
    - ``validation_step`` (the PostProcessor needs validation outputs for its thresholds), ``test_step`` and
      ``predict_step``, all scoring in float32 under a mixed-precision trainer, as the statistics and exports;
    - training-data score statistics, re-collected whenever the weights changed, before validation, testing and
      prediction, so maps are normalised without looking at the images being scored;
    - a non-finite-loss guard that saves the last finite weights and stops with the step that failed;
    - :meth:`manual_step`, one guarded optimizer step per fiber chunk for models that train in chunks;
    - strict checkpoint loading with a message that says what does not match and how to fix it;
    - reloads that keep the pre-processing, and ONNX/OpenVINO exports at the pre-processor's size by default;
    - the warm-up + cosine schedule stepped per optimizer step;
    - ``INT8_PTQ`` export calibrated on training images (anomalib uses the validation set, which holds defects)
      that quantises the backbone only (:meth:`int8_ignored_scope`; the flows' log-likelihoods need float).
"""

import math
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from anomalib import LearningType
from anomalib.data import Batch
from anomalib.deploy.export import CompressionType, ExportType
from lightning.pytorch.utilities.types import STEP_OUTPUT, OptimizerLRSchedulerConfig

from anomalib_nfplus.quiet import third_party_noise_filtered

from .distributed import finite_everywhere, keep_buffers_local, process_grid, rank_share
from .export_size import export_input_size
from .inputs import keep_unstored_transform
from .openvino_export import convert_exported_program, example_input, export_program, output_names
from .precision import check_trainer_precision, float32_scoring
from .quantization import backbone_only_scope, quantize_with_training_images
from .schedule import warmup_cosine_scheduler
from .statistics import TrainingStatistics
from .visualizer import CategoryImageVisualizer

__all__ = ["FlowModuleMixin", "NonFiniteLossError"]

#: ONNX opset of exports that do not name one: the exporter's own, so no version conversion runs (and fails).
ONNX_OPSET = 18


def _prefix_of(root: torch.nn.Module, module: torch.nn.Module) -> str:
    """State-dict prefix of ``module`` inside ``root`` (``"model.statistics."``)."""
    for name, candidate in root.named_modules():
        if candidate is module:
            return f"{name}." if name else ""
    msg = f"{type(module).__name__} is not a submodule of {type(root).__name__}."
    raise ValueError(msg)


def _zero_weighted(parameters: list[torch.nn.Parameter]) -> torch.Tensor:
    """``0 * sum`` of the parameters: a zero term whose graph reaches each of them (see ``manual_step``)."""
    return torch.stack([parameter.sum() for parameter in parameters]).sum() * 0.0


def _drop_gradients(parameters: list[torch.nn.Parameter], reduced: bool) -> None:
    """Set the gradients of parameters the step's loss did not use back to ``None``, so the optimizer skips them.

    With ``reduced`` (DDP) a gradient is kept where it is not zero: another process used the parameter at this
    step. Gradients are identical on every process after the reduction, so all processes decide alike.
    """
    if not reduced:
        for parameter in parameters:
            parameter.grad = None
        return
    present = [parameter for parameter in parameters if parameter.grad is not None]
    if not present:
        return
    used = torch.stack([parameter.grad.detach().abs().amax() > 0 for parameter in present]).tolist()
    for parameter, nonzero in zip(present, used, strict=True):
        if not nonzero:
            parameter.grad = None


#: Buffers older checkpoints stored beside the tensor they derive from: name -> (source name, derivation).
_DERIVED_BUFFERS = {"w_perm_inv": ("w_perm", lambda w: w.T), "inv_perm": ("perm", torch.argsort)}


def _drop_derived_buffers(state_dict: Any) -> Any:
    """A copy of ``state_dict`` without the inverse rotations/permutations that older versions stored.

    The flows now compute an inverse only when the inverse pass needs it, so checkpoints carry each fixed
    rotation once. A stored inverse is checked against its source before it is dropped: a mismatch means a
    damaged or edited checkpoint, refused with the key named.
    """
    derived = [key for key in state_dict if key.rpartition(".")[2] in _DERIVED_BUFFERS]
    if not derived:
        return state_dict
    for key in derived:
        prefix, _, name = key.rpartition(".")
        source_name, derive = _DERIVED_BUFFERS[name]
        source = state_dict.get(f"{prefix}.{source_name}" if prefix else source_name)
        if source is not None and not torch.equal(derive(source), state_dict[key]):
            msg = (
                f"Checkpoint key {key!r} (stored by an older version) is not the inverse of {source_name!r} beside "
                "it: the checkpoint is damaged or was edited. Re-save it from the training run, or delete that key."
            )
            raise RuntimeError(msg)
    kept = type(state_dict)((key, value) for key, value in state_dict.items() if key not in derived)
    if hasattr(state_dict, "_metadata"):
        kept._metadata = state_dict._metadata  # torch keeps per-module versions there
    return kept


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
    _saving_last_finite: bool = False  # set while the non-finite-loss guard saves the weights before the bad step

    @property
    def learning_type(self) -> LearningType:
        """Normalizing-flow models learn from normal images only."""
        return LearningType.ONE_CLASS

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """No gradient clipping (flows clamp their scales) and no sanity validation (no statistics yet)."""
        return {"gradient_clip_val": 0, "num_sanity_val_steps": 0}

    @classmethod
    def configure_visualizer(cls) -> CategoryImageVisualizer:
        """Anomalib's image visualizer, with one folder per category in unified runs (no overwritten images)."""
        return CategoryImageVisualizer()

    def configure_model(self) -> None:
        """Before a DDP strategy wraps the model: no broadcast of buffers at every step (:func:`keep_buffers_local`)."""
        keep_buffers_local(getattr(self, "_trainer", None))
        check_trainer_precision(getattr(self, "_trainer", None), type(self).__name__)  # before any work
        super().configure_model()  # type: ignore[misc]

    def validation_step(self, batch: Batch, *args: Any, **kwargs: Any) -> STEP_OUTPUT:
        """Score the validation batch; the PostProcessor fits its thresholds on these outputs."""
        del args, kwargs
        return self.score_batch(batch)

    def test_step(self, batch: Batch, *args: Any, **kwargs: Any) -> STEP_OUTPUT:
        """As :meth:`validation_step`."""
        del args, kwargs
        return self.score_batch(batch)

    def predict_step(self, batch: Batch, *args: Any, **kwargs: Any) -> STEP_OUTPUT:
        """As :meth:`validation_step`."""
        del args, kwargs
        return self.score_batch(batch)

    def score_batch(self, batch: Batch) -> Batch:
        """The batch with the model's scores and maps, computed in float32 even under a mixed-precision trainer.

        Statistics and exported graphs are float32, so scores under autocast would not match them
        (see :mod:`.precision`).
        """
        with float32_scoring(batch.image) as images:
            return batch.update(**self.model(images)._asdict())  # type: ignore[attr-defined]

    # --- training statistics -------------------------------------------------------------------------------

    @property
    def _statistics(self) -> TrainingStatistics | None:
        return getattr(self.model, "statistics", None)  # type: ignore[attr-defined]

    def on_train_batch_start(self, *args: Any, **kwargs: Any) -> Any:
        """The weights are about to change: collect the statistics again before anything is scored or saved.

        Per batch, not per epoch: validation may run several times an epoch (``val_check_interval``) and
        checkpoints may be written mid-epoch (callbacks' ``on_train_batch_end`` runs before the module's), and each
        must see the statistics of the weights it scores or saves.
        """
        self._statistics_stale = True
        return super().on_train_batch_start(*args, **kwargs)  # type: ignore[misc]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store statistics that belong to the saved weights (collected now if training changed them since)."""
        super().on_save_checkpoint(checkpoint)  # type: ignore[misc]
        stats = self._statistics
        if stats is None or not self._statistics_stale:
            return
        state = checkpoint.get("state_dict", {})
        prefix = _prefix_of(self, stats)
        if self._saving_last_finite or self._training_loader() is None:
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
        # Several processes: each scores its own share of the images, then the sums are reduced (see .distributed).
        rank, world = process_grid(getattr(self, "_trainer", None))
        limit = self.statistics_batches
        limit = limit if limit is None or world == 1 else math.ceil(limit / world)
        for index, batch in enumerate(self._statistics_input(rank_share(loader, rank, world))):
            if limit is not None and index >= limit:
                break
            images = batch.image.to(self.device)  # type: ignore[attr-defined]
            pre_processor = getattr(self, "pre_processor", None)
            if pre_processor is not None and pre_processor.transform is not None:
                images = pre_processor.transform(images)
            with float32_scoring(images) as images_32:
                model.update_statistics(images_32)
        if world > 1:
            stats.all_reduce()
        stats.finalize()
        model.train(was_training)
        self._statistics_stale = False

    def _statistics_input(self, batches: Any) -> Any:
        """The batches :meth:`collect_training_statistics` scores (override to attach per-batch information)."""
        return batches

    # --- safety ---------------------------------------------------------------------------------------------

    def manual_step(self, loss: torch.Tensor, idle: Iterable[torch.nn.Parameter] = ()) -> torch.Tensor:
        """One optimizer step on ``loss`` under manual optimisation (checked finite first); returns it detached.

        For models that take several steps per image batch (fiber chunks): encode once, then one step per chunk.

        ``idle`` names the trainable parameters this step's loss does not reach (the flow of a level absent from a
        chunk, the intra-class centres before their stage). DDP's reducer expects a gradient for every parameter
        at every backward, so they are tied to the loss with weight zero (the loss value does not change); their
        zero gradients are then dropped before the step, so the optimizer skips them exactly as in one process
        (with a zero gradient Adam would still advance their moments and step count and apply weight decay).
        """
        loss = self.check_loss(loss)
        idle = [parameter for parameter in idle if parameter.requires_grad]
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(loss + _zero_weighted(idle) if idle else loss)
        if idle:
            _drop_gradients(idle, reduced=process_grid(getattr(self, "_trainer", None))[1] > 1)
        optimizer.step()
        return loss.detach()

    def check_loss(self, loss: torch.Tensor, what: str = "loss") -> torch.Tensor:
        """Return ``loss`` if finite; otherwise save the last finite weights and stop with the failing step.

        Under DDP the finite flags of all processes are gathered at every call, so when one process meets a
        non-finite loss every process saves (process 0 writes) and raises at the same step instead of waiting in
        the next gradient reduction for the one that stopped.
        """
        trainer = getattr(self, "_trainer", None)
        failed = finite_everywhere(trainer, torch.isfinite(loss.detach()).all())
        if not failed:
            return loss
        rank, world = process_grid(trainer)
        where = "outside a Trainer"
        saved = ""
        if trainer is not None:
            where = f"at epoch {trainer.current_epoch}, global step {trainer.global_step}"
            if world > 1:
                where += f" on process(es) {failed} of {world}"
            path = Path(trainer.default_root_dir) / f"last_finite_step{trainer.global_step}.ckpt"
            if world > 1:  # process 0 writes; its folder is the one to name (the processes' folders may differ)
                path = trainer.strategy.broadcast(path)
            try:
                self._saving_last_finite = True
                trainer.save_checkpoint(path)
                saved = f" The weights before this step were saved to {path}."
            except (OSError, RuntimeError) as error:
                saved = f" (Saving the last finite weights failed: {error}.)"
            finally:
                self._saving_last_finite = False
        values = loss.detach().flatten()[:4].tolist() if rank in failed else f"this process (rank {rank}) was finite"
        msg = (
            f"{type(self).__name__}: non-finite {what} ({values}) {where}; the "
            f"optimizer step was not taken.{saved} Lower the learning rate, check the images for NaN/inf, or keep "
            "training in float32."
        )
        raise NonFiniteLossError(msg)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """Strict by default, with an error that lists the mismatching keys and names the likely cause.

        Checkpoints of older versions, which also stored the inverse of every fixed rotation and permutation, load
        after those inverses are checked and dropped.
        """
        state_dict = _drop_derived_buffers(state_dict)
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

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Anomalib's restore of the components, keeping the pre-processing where the checkpoint stores none.

        Exports and every other use of a reloaded model depend on it (see :func:`keep_unstored_transform`).
        """
        with keep_unstored_transform(getattr(self, "pre_processor", None), checkpoint, type(self).__name__):
            super().on_load_checkpoint(checkpoint)  # type: ignore[misc]

    def check_exportable(self) -> None:
        """Raise when the model's current configuration cannot be exported (every export checks this first)."""

    def export_input_size(self, input_size: tuple[int, int] | None = None) -> tuple[int, int]:
        """The static ``(H, W)`` to export at (default: the pre-processor's size), checked against the model."""
        self.check_exportable()
        return export_input_size(self, input_size)

    def to_onnx(
        self,
        export_root: Path | str,
        model_file_name: str = "model",
        input_size: tuple[int, int] | None = None,
        **kwargs: Any,
    ) -> Path:
        """Anomalib's ONNX export (OpenVINO's goes through it) at one static size, checked before tracing.

        ``input_size=None`` means the pre-processor's output size, the size the model was trained at, instead of
        anomalib's dynamic size traced at 32x32 px (see :mod:`.export_size`).
        """
        size = self.export_input_size(input_size)
        kwargs.setdefault("opset_version", ONNX_OPSET)
        with third_party_noise_filtered(), self.export_tracing(size):
            return super().to_onnx(export_root, model_file_name, size, **kwargs)  # type: ignore[misc]

    def export_tracing(self, input_size: tuple[int, int]) -> AbstractContextManager[None]:
        """Context a trace for export runs in (override where ``forward`` needs a pre-traced part, as DifferNet)."""
        del input_size
        return nullcontext()

    def to_openvino(
        self,
        export_root: Path | str,
        model_file_name: str = "model",
        input_size: tuple[int, int] | None = None,
        compression_type: CompressionType | None = None,
        datamodule: Any = None,
        metric: Any = None,
        task: Any = None,
        max_drop: float = 0.01,
        ov_kwargs: dict[str, Any] | None = None,
        onnx_kwargs: dict[str, Any] | None = None,
    ) -> Path:
        """OpenVINO export at one static size, converted from ``torch.export`` directly (see :mod:`.openvino_export`).

        Same contract as anomalib's: the IR is written to ``<export_root>/weights/openvino/<model_file_name>.xml``
        with the input ``input`` and the outputs the ONNX route names; ``compression_type`` (FP16, INT8, INT8_PTQ,
        INT8_ACQ), ``datamodule``, ``metric``, ``task``, ``max_drop`` and ``ov_kwargs`` act as in anomalib.
        ``input_size=None`` means the pre-processor's size, as in :meth:`to_onnx`.

        Passing ``onnx_kwargs`` (even ``{}``; CLI: ``--onnx_kwargs '{}'``) takes anomalib's route through an ONNX
        file instead: same graph and outputs, several times slower.
        """
        size = self.export_input_size(input_size)
        if onnx_kwargs is not None:
            with third_party_noise_filtered():
                return super().to_openvino(  # type: ignore[misc]
                    export_root, model_file_name, size, compression_type, datamodule, metric, task, max_drop,
                    ov_kwargs, onnx_kwargs,
                )  # fmt: skip
        import openvino as ov
        from anomalib.models.components.base.export_mixin.utils import create_export_root

        model = self.ov_model(size, ov_kwargs)
        if compression_type and compression_type != CompressionType.FP16:
            model = self._compress_ov_model(model, compression_type, datamodule, metric, task, max_drop)  # type: ignore[attr-defined]
        path = create_export_root(export_root, ExportType.OPENVINO) / f"{model_file_name}.xml"
        ov.save_model(model, path, compress_to_fp16=compression_type == CompressionType.FP16)
        return path

    def ov_model(self, input_size: tuple[int, int], ov_kwargs: dict[str, Any] | None = None) -> Any:
        """The in-memory OpenVINO model (float32) of this module at the static ``input_size``, uncompressed."""
        module: torch.nn.Module = self  # type: ignore[assignment]
        was_training = module.training
        module.eval()
        example = example_input(input_size, self.device)  # type: ignore[attr-defined]
        try:
            with third_party_noise_filtered(), self.export_tracing(input_size):
                names = output_names(module, example)
                program = export_program(module, example)
                return convert_exported_program(program, names, ov_kwargs)
        finally:
            module.train(was_training)

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
