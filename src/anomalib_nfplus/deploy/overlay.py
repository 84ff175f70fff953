# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Heat-map overlays with numpy and Pillow only."""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["colorize", "overlay_heatmap"]

# Piecewise-linear "jet": blue -> cyan -> yellow -> red.
_STOPS = np.array([0.0, 0.35, 0.65, 1.0])
_COLOURS = np.array([[0, 0, 160], [0, 220, 255], [255, 230, 0], [220, 0, 0]], dtype=np.float64)


def colorize(anomaly_map: np.ndarray, vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """Map values in ``[vmin, vmax]`` to uint8 RGB; anomalib's normalised maps put the threshold at 0.5."""
    t = np.clip((anomaly_map.astype(np.float64) - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
    rgb = np.stack([np.interp(t, _STOPS, _COLOURS[:, c]) for c in range(3)], axis=-1)
    return rgb.round().astype(np.uint8)


def overlay_heatmap(image: np.ndarray, anomaly_map: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """Blend the coloured map over the RGB float image (the map is resized to the image)."""
    height, width = image.shape[:2]
    heat = Image.fromarray(colorize(anomaly_map)).resize((width, height), Image.Resampling.BILINEAR)
    base = Image.fromarray((np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8))
    return Image.blend(base.convert("RGB"), heat, alpha)
