# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Runners, test-set loading, accuracy and latency measurement for ``benchmarks.edge`` (and ``benchmarks.int8_scopes``).

Every runner takes the same raw ``[0, 1]`` images already resized to the export size, so torch eager and the
OpenVINO precisions are compared on identical inputs and with identical metric code.
"""

import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from anomalib_nfplus.metrics import rank_auroc

__all__ = [
    "FlatOutputs",
    "Sample",
    "accuracy",
    "backbone_of",
    "latency",
    "load_test_samples",
    "openvino_runner",
    "torch_runner",
]

Runner = Callable[[np.ndarray], dict[str, np.ndarray]]


@dataclass
class Sample:
    """One test image at the export size, its label and (when the dataset has masks) its mask."""

    image: np.ndarray  # (1, 3, H, W) float32 in [0, 1]
    label: int
    mask: np.ndarray | None  # (H, W) bool


def load_test_samples(datamodule: Any, size: tuple[int, int]) -> Iterator[Sample]:
    """Test images resized like the PreProcessor does (bilinear, antialiased); masks nearest."""
    datamodule.setup("test")
    for batch in datamodule.test_dataloader():
        images = F.interpolate(batch.image, size=size, mode="bilinear", antialias=True, align_corners=False)
        masks = batch.gt_mask
        if masks is not None:
            masks = masks.float().reshape(masks.shape[0], 1, *masks.shape[-2:])
            masks = F.interpolate(masks, size=size, mode="nearest")[:, 0] > 0.5
        for i in range(images.shape[0]):
            mask = None if masks is None else masks[i].numpy()
            yield Sample(images[i : i + 1].numpy(), int(batch.gt_label[i]), mask)


def torch_runner(model: nn.Module) -> Runner:
    """Eager ``AnomalibModule.forward`` (pre-processing, model, post-processing: the graph that is exported)."""
    model.eval()

    def run(image: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            out = model(torch.from_numpy(image))
        return {k: v.numpy() for k, v in out._asdict().items() if isinstance(v, torch.Tensor)}

    return run


def openvino_runner(path: Path, config: dict[str, str]) -> Runner:
    """A compiled OpenVINO model; outputs by tensor name (as anomalib's inferencer)."""
    import openvino as ov

    compiled = ov.Core().compile_model(ov.Core().read_model(path), "CPU", config)
    names = [next(iter(out.get_names()), str(i)) for i, out in enumerate(compiled.outputs)]

    def run(image: np.ndarray) -> dict[str, np.ndarray]:
        result = compiled(image)
        return {name: np.asarray(result[out]) for name, out in zip(names, compiled.outputs, strict=True)}

    return run


class FlatOutputs(nn.Module):
    """A feature extractor whose (possibly nested) list outputs become one tuple of tensors, for the exporters."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Every tensor the wrapped extractor returns, depth first."""
        pending, flat = [self.module(images)], []
        while pending:
            item = pending.pop()
            if isinstance(item, torch.Tensor):
                flat.append(item)
            else:
                pending.extend(reversed(list(item.values() if isinstance(item, dict) else item)))
        return tuple(flat)


def backbone_of(model: nn.Module) -> nn.Module | None:
    """The plugin feature extractor inside a model (the floor no flow model can beat), if it has one."""
    from anomalib_nfplus.backbones import FeatureExtractor, PyramidFeatureExtractor

    found = next((m for m in model.modules() if isinstance(m, FeatureExtractor | PyramidFeatureExtractor)), None)
    return None if found is None else FlatOutputs(found).eval()


def accuracy(run: Runner, samples: list[Sample]) -> dict[str, float]:
    """Image AUROC (and pixel AUROC where masks exist) of one runner on the test samples."""
    scores, labels, maps, masks = [], [], [], []
    for sample in samples:
        out = run(sample.image)
        scores.append(float(np.asarray(out["pred_score"]).reshape(-1)[0]))
        labels.append(sample.label)
        if sample.mask is not None and "anomaly_map" in out:
            maps.append(torch.from_numpy(np.asarray(out["anomaly_map"], dtype=np.float32).reshape(sample.mask.shape)))
            masks.append(torch.from_numpy(sample.mask))
    result = {"image_AUROC": rank_auroc(torch.tensor(scores), torch.tensor(labels))}
    if masks and any(m.any() for m in masks):
        result["pixel_AUROC"] = rank_auroc(torch.stack(maps), torch.stack(masks))
    return result


def latency(run: Callable[[Any], Any], example: Any, runs: int, warmup: int) -> dict[str, float]:
    """Median and 95th-percentile wall time of one call, in milliseconds."""
    for _ in range(warmup):
        run(example)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run(example)
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return {"median_ms": statistics.median(times), "p95_ms": times[min(len(times) - 1, int(0.95 * len(times)))]}
