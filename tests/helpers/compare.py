# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Comparisons of scores and maps between torch, a reloaded model and exported graphs."""

from typing import Any

import numpy as np


def assert_close_to_scale(actual: Any, expected: Any, rtol: float, what: str) -> None:
    """``|actual - expected| <= rtol x max |expected|`` everywhere (post-processed maps reach 0, where a relative
    error per value means nothing)."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = max(float(np.abs(expected).max()), 1e-12)
    error = float(np.abs(actual - expected).max())
    assert error <= rtol * scale, f"{what}: max |difference| {error:.3g} > {rtol:g} x {scale:.3g}"


def assert_labels_agree(actual: Any, expected: Any, max_fraction: float, what: str) -> None:
    """Thresholded outputs may flip where the value lies within float rounding of the threshold, rarely."""
    actual, expected = np.asarray(actual).astype(bool), np.asarray(expected).astype(bool)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    differ = int(np.sum(actual != expected))
    assert differ <= max_fraction * actual.size, f"{what}: {differ} of {actual.size} differ"


def torch_and_openvino(module: Any, inputs: tuple[Any, ...]) -> tuple[np.ndarray, np.ndarray]:
    """First output of an eval ``module`` in torch and through ``torch.export`` -> OpenVINO (CPU, float32)."""
    import openvino as ov
    import torch

    with torch.no_grad():
        expected = module(*inputs)
    compiled = ov.Core().compile_model(
        ov.convert_model(torch.export.export(module, inputs)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    return compiled([t.numpy() for t in inputs])[compiled.outputs[0]], expected.numpy()
