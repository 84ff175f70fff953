# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""One PNG that shows what a model sees, one row per category.

Per test image: the image, its anomaly map with the defect's outline, the score and the label.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from anomalib_nfplus.deploy.overlay import overlay_heatmap

__all__ = ["outline", "write_grid"]

_CAPTION = 30  # px of text under each cell
_GAP = 6
_OUTLINE_RGB = (0, 255, 0)


def outline(mask: np.ndarray) -> np.ndarray:
    """Boolean edge pixels of a binary mask: mask pixels with a 4-neighbour outside the mask."""
    inside = mask.astype(bool)
    padded = np.pad(inside, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & inside
    return inside & ~interior


def _with_outline(picture: Image.Image, mask_path: Path | None) -> Image.Image:
    if mask_path is None:
        return picture
    mask = np.asarray(Image.open(mask_path).convert("L").resize(picture.size, Image.Resampling.NEAREST)) > 127
    pixels = np.asarray(picture.convert("RGB")).copy()
    pixels[outline(mask)] = _OUTLINE_RGB
    return Image.fromarray(pixels)


def _cell(image: np.ndarray, prediction: Any, mask_path: Path | None, caption: str) -> Image.Image:
    height, width = image.shape[:2]
    base = Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8))
    heat = overlay_heatmap(image, prediction.anomaly_map) if prediction.anomaly_map is not None else base
    cell = Image.new("RGB", (2 * width + _GAP, height + _CAPTION), "white")
    cell.paste(_with_outline(base, mask_path), (0, 0))
    cell.paste(_with_outline(heat, mask_path), (width + _GAP, 0))
    label = "ANOMALOUS" if prediction.label else "normal"
    ImageDraw.Draw(cell).text((2, height + 2), f"{caption}\nscore {prediction.score:.2f}  {label}", fill="black")
    return cell


def write_grid(
    path: Path,
    samples: Sequence[tuple[str, Path, Path | None]],
    images: np.ndarray,
    predictions: Sequence[Any],
) -> Path:
    """Write the grid to ``path``: one row per category, one cell (image | map + outline, caption) per sample.

    Args:
        path (Path): The PNG to write.
        samples (Sequence[tuple[str, Path, Path | None]]): ``(category, image path, mask path or None)``.
        images (np.ndarray): The RGB float images ``(N, H, W, 3)`` that were scored.
        predictions (Sequence[Any]): The edge runtime's predictions (``score``, ``label``, ``anomaly_map``).

    Returns:
        Path: ``path``.
    """
    rows: dict[str, list[Image.Image]] = {}
    for (category, image_path, mask_path), image, prediction in zip(samples, images, predictions, strict=True):
        truth = "defect: " + image_path.parent.name if image_path.parent.name != "good" else "good"
        rows.setdefault(category, []).append(_cell(image, prediction, mask_path, f"{category} | {truth}"))
    cell_w = max(c.width for row in rows.values() for c in row)
    cell_h = max(c.height for row in rows.values() for c in row)
    columns = max(len(row) for row in rows.values())
    grid = Image.new("RGB", (columns * (cell_w + _GAP), len(rows) * (cell_h + _GAP)), "white")
    for r, row in enumerate(rows.values()):
        for c, cell in enumerate(row):
            grid.paste(cell, (c * (cell_w + _GAP), r * (cell_h + _GAP)))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path
