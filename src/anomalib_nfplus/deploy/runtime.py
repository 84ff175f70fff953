# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Load an exported OpenVINO model and run it on images, exactly as ``anomalib.deploy.OpenVINOInferencer`` does.

Torch-free on purpose: edge boxes have OpenVINO and numpy, rarely PyTorch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["PRECISIONS", "EdgeModel", "Prediction", "precision_config", "read_rgb"]

#: ``EdgeModel(precision=...)`` values: an OpenVINO ``INFERENCE_PRECISION_HINT``, or ``"auto"`` for the device's own.
PRECISIONS = ("f32", "bf16", "f16", "auto")
_HINT = "INFERENCE_PRECISION_HINT"
_VIRTUAL_DEVICES = {"AUTO", "HETERO", "MULTI", "BATCH"}


def precision_config(
    core: Any,
    device: str,
    precision: str,
    config: Mapping[str, str] | None,
) -> dict[str, str]:
    """Compile properties with the precision hint for ``device`` (``config``'s own hint, if any, wins).

    OpenVINO's CPU plugin computes in bfloat16 by default on CPUs with AVX512-BF16 or AMX and its GPU plugin in
    float16, so an exported model's scores would differ from torch's. ``"f32"`` asks for float32 wherever the device
    takes a precision hint (devices that do not, such as some NPUs, keep their own precision).
    """
    if precision not in PRECISIONS:
        msg = f"precision must be one of {PRECISIONS}, got {precision!r}."
        raise ValueError(msg)
    properties = dict(config or {})
    if precision == "auto" or _HINT in properties:
        return properties
    base = device.split(":")[0].split(".")[0]
    if base not in _VIRTUAL_DEVICES and _HINT not in core.get_property(device, "SUPPORTED_PROPERTIES"):
        if precision != "f32":
            msg = f"OpenVINO device {device!r} takes no {_HINT}; run it with precision 'auto' (its own precision)."
            raise ValueError(msg)
        return properties
    properties[_HINT] = precision
    return properties


@dataclass(frozen=True)
class Prediction:
    """One image's result: ``score`` (normalised, threshold 0.5 after anomalib's post-processing), ``label``."""

    score: float
    label: bool
    anomaly_map: np.ndarray | None
    mask: np.ndarray | None

    def as_json(self, path: str) -> dict[str, Any]:
        """The fields printed per image by ``anomalib-nfplus infer``."""
        return {"path": path, "score": self.score, "label": "anomalous" if self.label else "normal"}


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image as RGB float32 ``(H, W, 3)`` in ``[0, 1]``, bit-identical to anomalib's ``read_image``."""
    with Image.open(path) as image:
        return (np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0).astype(np.float32)


def to_rgb_float(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3|1)`` or ``(H, W)`` uint8/float image -> RGB float32 in ``[0, 1]`` (grayscale repeated)."""
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in {1, 3}:
        msg = f"Expected an (H, W), (H, W, 1) or (H, W, 3) image, got shape {image.shape}."
        raise ValueError(msg)
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    if image.dtype == np.uint8:
        return (image.astype(np.float64) / 255.0).astype(np.float32)
    image = image.astype(np.float32)
    return image / 255.0 if image.max() > 1.0 else image


class EdgeModel:
    """An exported anomalib model compiled for one OpenVINO device.

    Args:
        path (str | Path): ``model.xml`` (with ``model.bin`` beside it) or ``model.onnx``.
        device (str, optional): OpenVINO device: ``CPU``, ``GPU``, ``NPU`` or ``AUTO``. Defaults to ``"CPU"``.
        config (Mapping[str, str] | None, optional): Compile properties; an ``INFERENCE_PRECISION_HINT`` here
            overrides ``precision``. Defaults to ``None``.
        cache_dir (str | Path | None, optional): OpenVINO model cache (faster second start); off if ``None``.
        precision (str, optional): Inference precision: ``"f32"`` (the exported float32 graph as torch computes
            it), ``"bf16"`` or ``"f16"`` (faster on hardware with native support, less accurate: see the README),
            or ``"auto"`` (the device's default, bfloat16 on CPUs with AVX512-BF16/AMX). Defaults to ``"f32"``.
    """

    def __init__(
        self,
        path: str | Path,
        device: str = "CPU",
        config: Mapping[str, str] | None = None,
        cache_dir: str | Path | None = None,
        precision: str = "f32",
    ) -> None:
        import openvino as ov

        path = Path(path)
        if path.suffix not in {".xml", ".onnx"} or not path.is_file():
            msg = f"Model file {path} not found or not an OpenVINO .xml / .onnx file (export with anomalib export)."
            raise FileNotFoundError(msg)
        core = ov.Core()
        if device.split(":")[0].split(".")[0] not in {"AUTO", "HETERO", "MULTI"} and not any(
            d.startswith(device) for d in core.available_devices
        ):
            msg = f"OpenVINO device {device!r} is not available here; available: {core.available_devices}."
            raise ValueError(msg)
        if cache_dir is not None:
            core.set_property({"CACHE_DIR": str(cache_dir)})
        properties = precision_config(core, device, precision, config)
        self.compiled = core.compile_model(core.read_model(path), device, properties)
        self.device = device
        self._input = self.compiled.input(0)
        self.output_names = [next(iter(out.get_names())) for out in self.compiled.outputs]
        missing = {"pred_score", "anomaly_map"} - set(self.output_names)
        if missing == {"pred_score", "anomaly_map"}:
            msg = f"{path} has outputs {self.output_names}, none of pred_score/anomaly_map: not an anomalib export."
            raise ValueError(msg)

    @property
    def input_size(self) -> tuple[int, int] | None:
        """Static ``(H, W)`` the graph expects, or ``None`` when it takes any size."""
        shape = self._input.get_partial_shape()
        height, width = shape[2], shape[3]
        return (height.get_length(), width.get_length()) if height.is_static and width.is_static else None

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """RGB float image -> ``(1, 3, H, W)``; resized (bilinear, antialiased) only if the graph's size is fixed."""
        image = to_rgb_float(image)
        size = self.input_size
        if size is not None and image.shape[:2] != size:
            channels = [
                Image.fromarray(image[..., c], mode="F").resize(size[::-1], Image.Resampling.BILINEAR) for c in range(3)
            ]
            image = np.stack([np.asarray(c, dtype=np.float32) for c in channels], axis=-1)
        return np.ascontiguousarray(image.transpose(2, 0, 1)[None])

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run a prepared ``(N, 3, H, W)`` batch; outputs by name."""
        result = self.compiled({self._input.any_name: batch})
        return {
            name: np.asarray(result[out]) for name, out in zip(self.output_names, self.compiled.outputs, strict=True)
        }

    def predict(self, image: np.ndarray | str | Path) -> Prediction:
        """Score one image (a path or an ``(H, W[, C])`` array)."""
        array = read_rgb(image) if isinstance(image, str | Path) else image
        return self._split(self.infer(self.prepare(array)), 0)

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        """Score several images in one call (same size after :meth:`prepare`)."""
        outputs = self.infer(np.concatenate([self.prepare(image) for image in images]))
        return [self._split(outputs, i) for i in range(len(images))]

    @staticmethod
    def _split(outputs: dict[str, np.ndarray], index: int) -> Prediction:
        score = outputs.get("pred_score")
        amap = outputs.get("anomaly_map")
        if score is None and amap is not None:
            score = amap.reshape(amap.shape[0], -1).max(axis=1)
        label = outputs.get("pred_label")
        value = float(np.asarray(score).reshape(-1)[index])
        mask = outputs.get("pred_mask")
        return Prediction(
            score=value,
            label=bool(np.asarray(label).reshape(-1)[index]) if label is not None else value >= 0.5,
            anomaly_map=None if amap is None else np.squeeze(amap[index]).astype(np.float32),
            mask=None if mask is None else np.squeeze(mask[index]).astype(bool),
        )
