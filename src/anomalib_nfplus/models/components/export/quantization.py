# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""INT8 post-training quantisation of the backbone only, calibrated on *training* images.

Two departures from anomalib 2.7's ``INT8_PTQ``:

- Calibration data. anomalib calibrates on the validation dataloader, which for MVTec-style datamodules is carved
  from the test split and holds anomalous images. A one-class model must not see those: its quantisation ranges
  would be fitted to defects. The plugin's models calibrate on the training images instead (normal by definition).
- What is quantised. NNCF's default quantises every convolution, MatMul, Add and Multiply it can, including the
  flows' subnets and the log-likelihood arithmetic. A flow scores an image by a log-density that is sharp around
  the normal features, so what INT8 perturbs ahead of it must stay small. Only the backbone's pointwise and full
  convolutions that feed the flows (most of the compute) are quantised. Depthwise convolutions (``GroupConvolution``:
  per-tensor activation ranges are the known weak spot of MobileNet/EfficientNet-style networks), the flows, the
  scoring and map post-processing (e.g. a Gaussian-blur convolution) stay in float, and NNCF's bias correction is
  off by default: on CflowAD's per-position maps it lowered accuracy. DifferNet turns it on: it scores
  one globally pooled vector per view, whose density is sensitive to the mean shift the quantised convolutions add
  and bias correction removes.

The accuracy of each scope, FP32 against INT8 per model, is in ``benchmarks/RESULTS.md`` ("INT8 scopes").
"""

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.nn import functional as F

__all__ = [
    "BACKBONE_OP_TYPES",
    "FLOW_OP_TYPES",
    "backbone_only_scope",
    "calibration_batches",
    "feature_ops",
    "quantize_with_training_images",
]

#: OpenVINO op types INT8 quantises by default: a CNN backbone's convolutions except the depthwise ones.
BACKBONE_OP_TYPES: tuple[str, ...] = ("Convolution",)
#: OpenVINO op types that start the flow part; only ops upstream of one of them are quantised.
FLOW_OP_TYPES: tuple[str, ...] = ("MatMul",)


def calibration_batches(
    datamodule: Any,
    input_size: tuple[int, int] | None,
    max_images: int = 300,
) -> Iterator[torch.Tensor]:
    """Raw ``[0, 1]`` training images (what the exported graph takes), resized to a static ``input_size``."""
    datamodule.setup("fit")
    seen = 0
    for batch in datamodule.train_dataloader():
        images = batch.image if hasattr(batch, "image") else batch["image"]
        if input_size is not None and tuple(images.shape[-2:]) != tuple(input_size):
            images = F.interpolate(images, size=input_size, mode="bilinear", antialias=True, align_corners=False)
        for image in images:
            if seen >= max_images:
                return
            seen += 1
            yield image.unsqueeze(0)


def feature_ops(
    model: Any,
    op_types: Iterable[str] = BACKBONE_OP_TYPES,
    flow_types: Iterable[str] = FLOW_OP_TYPES,
) -> list[str]:
    """Friendly names of the ``op_types`` ops from which a ``flow_types`` op can be reached (the backbone).

    Walking the graph upwards from the flows' first MatMuls finds the feature extractor whatever the exporter named
    its nodes, and leaves out convolutions after the flows (map blur) or in a traced backward pass.
    """
    op_types, flow_types = set(op_types), set(flow_types)
    queue = deque(op for op in model.get_ops() if op.get_type_name() in flow_types)
    seen = {op.get_friendly_name() for op in queue}
    found = set()
    while queue:
        node = queue.popleft()
        for port in node.inputs():
            parent = port.get_source_output().get_node()
            name = parent.get_friendly_name()
            if name in seen:
                continue
            seen.add(name)
            queue.append(parent)
            if parent.get_type_name() in op_types:
                found.add(name)
    return sorted(found)


def backbone_only_scope(
    model: Any,
    op_types: Iterable[str] = BACKBONE_OP_TYPES,
    flow_types: Iterable[str] = FLOW_OP_TYPES,
) -> Any:
    """``nncf.IgnoredScope`` that leaves every op in float except :func:`feature_ops`."""
    import nncf

    op_types = set(op_types)
    keep = set(feature_ops(model, op_types, flow_types))
    if not keep:
        msg = (
            f"INT8 found no {sorted(op_types)} op upstream of a {sorted(set(flow_types))} op, so nothing would be "
            "quantised. Override the model's int8_ignored_scope() for this graph."
        )
        raise ValueError(msg)
    other_types = sorted({op.get_type_name() for op in model.get_ops()} - op_types)
    outside = sorted(
        op.get_friendly_name()
        for op in model.get_ops()
        if op.get_type_name() in op_types and op.get_friendly_name() not in keep
    )
    return nncf.IgnoredScope(names=outside, types=other_types, validate=False)


def quantize_with_training_images(
    model: Any,
    datamodule: Any,
    max_images: int = 300,
    ignored_scope: Any = None,
    bias_correction: bool = False,
) -> Any:
    """NNCF post-training quantisation of an OpenVINO model, calibrated on ``datamodule``'s training images.

    Args:
        model (Any): ``openvino.Model`` to quantise.
        datamodule (Any): Datamodule whose ``train_dataloader`` gives the calibration images.
        max_images (int, optional): Calibration images at most. Defaults to ``300``.
        ignored_scope (Any, optional): ``nncf.IgnoredScope`` of ops kept in float; ``None``: the backbone is
            quantised and everything else kept in float (:func:`backbone_only_scope`). Defaults to ``None``.
        bias_correction (bool, optional): NNCF's bias correction (see the module docstring). Defaults to ``False``.

    Returns:
        Any: The quantised ``openvino.Model``.
    """
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    if datamodule is None:
        msg = "INT8 quantisation needs the datamodule of the training images (pass datamodule= / --data ...)."
        raise ValueError(msg)
    if ignored_scope is None:
        ignored_scope = backbone_only_scope(model)
    shape = model.input(0).get_partial_shape()
    static = shape[2].is_static and shape[3].is_static
    size = (shape[2].get_length(), shape[3].get_length()) if static else None
    images = [image.numpy() for image in calibration_batches(datamodule, size, max_images)]
    if not images:
        msg = "INT8 quantisation found no training images in the datamodule."
        raise ValueError(msg)
    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    nncf_log.setLevel(max(level, logging.WARNING))  # NNCF logs one INFO line per op the scope keeps in float
    try:
        return nncf.quantize(
            model,
            nncf.Dataset(images),
            subset_size=len(images),
            ignored_scope=ignored_scope,
            advanced_parameters=AdvancedQuantizationParameters(disable_bias_correction=not bias_correction),
        )
    finally:
        nncf_log.setLevel(level)
