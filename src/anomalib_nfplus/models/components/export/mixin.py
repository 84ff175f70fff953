# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""ONNX and OpenVINO export of the plugin's models, and the hooks their INT8 export uses.

On top of anomalib's ``ExportMixin``: one static input size (the pre-processor's, checked against the model first,
:mod:`.export_size`), OpenVINO converted from ``torch.export`` directly (:mod:`.openvino_export`), exporters' noise
muted, and ``INT8_PTQ`` calibrated on training images with only the backbone quantised (:mod:`.quantization`).
"""

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from anomalib.deploy.export import CompressionType, ExportType

from anomalib_nfplus.quiet import third_party_noise_filtered

from ..host.lightning_host import LightningHost
from .export_size import export_input_size
from .openvino_export import convert_exported_program, example_input, export_program, output_names
from .quantization import backbone_only_scope, quantize_with_training_images

__all__ = ["ONNX_OPSET", "FlowExportMixin"]

#: ONNX opset of exports that do not name one: the exporter's own, so no version conversion runs (and fails).
ONNX_OPSET = 18


class FlowExportMixin(LightningHost):
    """``to_onnx``/``to_openvino`` at one static size, ``ov_model``, and the ``INT8_PTQ`` hooks.

    Contract: the eval-mode ``forward`` is ``torch.export``-traceable at the export size. Override
    :meth:`check_exportable` to refuse a configuration, :meth:`check_fitted` to refuse parts fitted on training data
    that are not fitted yet (:class:`~anomalib_nfplus.models.components.training.TrainingStatisticsMixin` does),
    :meth:`export_tracing` where ``forward`` needs a pre-traced part (DifferNet), :meth:`int8_ignored_scope` and
    :attr:`int8_bias_correction` for another INT8 scope. Every export (``to_torch``, ``to_onnx``, ``to_openvino``,
    :meth:`ov_model`) runs both checks before it traces anything.
    """

    #: NNCF bias correction in ``INT8_PTQ``: off for maps scored per position (it lowered CflowAD's accuracy), on where
    #: a model scores a globally pooled feature vector (DifferNet), whose density is sensitive to the mean
    #: shift that quantised convolutions add and bias correction removes.
    int8_bias_correction: bool = False

    def check_exportable(self) -> None:
        """Raise when the model's current configuration cannot be exported (every export checks this first)."""

    def check_fitted(self) -> None:
        """Raise when what the model fits on training data is not fitted for its weights (every export checks it)."""

    def export_input_size(self, input_size: tuple[int, int] | None = None) -> tuple[int, int]:
        """The static ``(H, W)`` to export at (default: the pre-processor's size), checked against the model."""
        self.check_exportable()
        return export_input_size(self, input_size)

    def to_torch(self, export_root: Path | str, model_file_name: str = "model") -> Path:
        """Anomalib's pickled PyTorch export, after :meth:`check_fitted` (the pickle would score as it is)."""
        self.check_fitted()
        return super().to_torch(export_root, model_file_name)

    def export_tracing(self, input_size: tuple[int, int]) -> AbstractContextManager[None]:
        """Context a trace for export runs in (override where ``forward`` needs a pre-traced part, as DifferNet)."""
        del input_size
        return nullcontext()

    def to_onnx(  # type: ignore[override]  # anomalib's ExportMixin signature, not LightningModule's
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
        self.check_fitted()
        kwargs.setdefault("opset_version", ONNX_OPSET)
        with third_party_noise_filtered(), self.export_tracing(size):
            return super().to_onnx(export_root, model_file_name, size, **kwargs)

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
        self.check_fitted()
        if onnx_kwargs is not None:
            with third_party_noise_filtered():
                return super().to_openvino(
                    export_root, model_file_name, size, compression_type, datamodule, metric, task, max_drop,
                    ov_kwargs, onnx_kwargs,
                )  # fmt: skip
        import openvino as ov
        from anomalib.models.components.base.export_mixin.utils import create_export_root

        model = self.ov_model(size, ov_kwargs)
        if compression_type and compression_type != CompressionType.FP16:
            model = self._compress_ov_model(model, compression_type, datamodule, metric, task, max_drop)
        path = create_export_root(export_root, ExportType.OPENVINO) / f"{model_file_name}.xml"
        ov.save_model(model, path, compress_to_fp16=compression_type == CompressionType.FP16)
        return path

    def ov_model(self, input_size: tuple[int, int], ov_kwargs: dict[str, Any] | None = None) -> Any:
        """The in-memory OpenVINO model (float32) of this module at the static ``input_size``, uncompressed."""
        self.check_fitted()
        was_training = self.training
        self.eval()
        example = example_input(input_size, self.device)
        try:
            with third_party_noise_filtered(), self.export_tracing(input_size):
                names = output_names(self, example)
                program = export_program(self, example)
                return convert_exported_program(program, names, ov_kwargs)
        finally:
            self.train(was_training)

    def int8_ignored_scope(self, model: Any) -> Any:
        """Ops ``INT8_PTQ`` keeps in float (an ``nncf.IgnoredScope``); override for a graph that needs another scope.

        Default (:func:`backbone_only_scope`): only the backbone's non-depthwise convolutions upstream of the flows'
        MatMuls are quantised; flows, scoring and map post-processing stay float (log-densities do not survive INT8).
        """
        return backbone_only_scope(model)

    # override: anomalib declares the hook a staticmethod (and calls it on the instance); this one needs ``self``.
    def _post_training_quantization_ov(self, model: Any, datamodule: Any = None) -> Any:  # type: ignore[override]
        """Anomalib's ``INT8_PTQ`` hook, calibrated on training images instead of the (anomalous) validation set."""
        scope = self.int8_ignored_scope(model) if datamodule is not None else None  # no datamodule: that error first
        return quantize_with_training_images(
            model, datamodule, ignored_scope=scope, bias_correction=self.int8_bias_correction
        )
