# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Export: the export mixin, static export size, OpenVINO from ``torch.export``, backbone-only INT8."""

from .export_size import export_input_size
from .mixin import ONNX_OPSET, FlowExportMixin
from .openvino_export import INPUT_NAME, convert_exported_program, example_input, export_program, output_names
from .quantization import (
    BACKBONE_OP_TYPES,
    FLOW_OP_TYPES,
    backbone_only_scope,
    calibration_batches,
    feature_ops,
    quantize_with_training_images,
)

__all__ = [
    "BACKBONE_OP_TYPES",
    "FLOW_OP_TYPES",
    "INPUT_NAME",
    "ONNX_OPSET",
    "FlowExportMixin",
    "backbone_only_scope",
    "calibration_batches",
    "convert_exported_program",
    "example_input",
    "export_input_size",
    "export_program",
    "feature_ops",
    "output_names",
    "quantize_with_training_images",
]
