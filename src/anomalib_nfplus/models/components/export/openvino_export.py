# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""OpenVINO export straight from ``torch.export``, without the ONNX detour, and with the exporters' noise muted.

anomalib converts to OpenVINO through an ONNX file. On these models most of that time goes into the ONNX
exporter's own decompositions of the exported program, and the exporter logs thousands of lines. OpenVINO reads a
``torch.export.ExportedProgram`` directly (its PyTorch frontend), which gives the same graph several times faster;
only the tensor names differ, so they are set to the ONNX route's: ``input`` and the non-``None`` fields of the
model's ``InferenceBatch``.

The exports run inside :func:`anomalib_nfplus.quiet.third_party_noise_filtered`: what the exporters print that a
user cannot act on (tracer warnings, deprecation notices of dependencies, their INFO logs) is muted for the
duration of one export only.
"""

from collections.abc import Sequence
from typing import Any

import torch

__all__ = [
    "INPUT_NAME",
    "convert_exported_program",
    "example_input",
    "export_program",
    "output_names",
]

#: Name of the exported graph's image input, as anomalib's ONNX export names it.
INPUT_NAME = "input"


def output_names(module: torch.nn.Module, example: torch.Tensor) -> list[str]:
    """Names of the outputs an export of ``module`` has: the non-``None`` fields of its ``InferenceBatch``."""
    with torch.no_grad():
        batch = module(example)
    return [name for name, value in batch._asdict().items() if value is not None]


def example_input(input_size: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
    """Zero images of ``input_size`` to trace with; two of them, as a batch of one would fix the batch size."""
    return torch.zeros(2, 3, *input_size, device=device)


def export_program(module: torch.nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """``module`` traced by ``torch.export`` (non-strict) without grad: batch size dynamic, image size static.

    The batch is dynamic as in anomalib's ONNX export (``batch_size``), so one IR scores any number of images.
    """
    batch = torch.export.Dim("batch_size")
    with torch.no_grad():
        return torch.export.export(module, (example,), dynamic_shapes=({0: batch},), strict=False)


def convert_exported_program(
    program: torch.export.ExportedProgram,
    names: Sequence[str],
    ov_kwargs: dict[str, Any] | None = None,
) -> Any:
    """The OpenVINO model of ``program``, its input named :data:`INPUT_NAME` and its outputs ``names``.

    Raises:
        RuntimeError: When the converted model does not have one input and ``len(names)`` outputs.
    """
    import openvino as ov

    model = ov.convert_model(program, **(ov_kwargs or {}))
    if len(model.inputs) != 1 or len(model.outputs) != len(names):
        msg = (
            f"The converted OpenVINO model has {len(model.inputs)} input(s) and {len(model.outputs)} output(s); "
            f"expected one image input and the outputs {list(names)}."
        )
        raise RuntimeError(msg)
    if "input" not in (ov_kwargs or {}):  # the frontend leaves every size open; fix all but the batch
        model.reshape({model.inputs[0]: ov.PartialShape([-1, *program.example_inputs[0][0].shape[1:]])})
    model.inputs[0].get_tensor().set_names({INPUT_NAME})
    for output, name in zip(model.outputs, names, strict=True):
        output.get_tensor().set_names({name})
    return model
