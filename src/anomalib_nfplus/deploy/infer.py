# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""``anomalib-nfplus infer``: run an exported model on files, folders, videos or a camera; JSON lines out."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

from .overlay import overlay_heatmap
from .runtime import EdgeModel, Prediction
from .sources import Frame, iter_sources

__all__ = ["batched", "run_inference"]


def batched(frames: Iterable[Frame], size: int) -> Iterator[list[Frame]]:
    """Group consecutive frames of equal shape into batches of at most ``size`` (a video stays streamed)."""
    batch: list[Frame] = []
    for frame in frames:
        if batch and (len(batch) == size or frame.image.shape != batch[0].image.shape):
            yield batch
            batch = []
        batch.append(frame)
    if batch:
        yield batch


def _overlay_name(name: str, root: Path | None = None) -> str:
    """Overlay file name from the path below the input folder, so ``good/000.png`` and ``blob/000.png`` differ."""
    path_part, _, frame = name.partition("#")
    path = Path(path_part)
    if root is not None and path.is_relative_to(root):
        path = path.relative_to(root)
    stem = "_".join([*path.parent.parts, path.stem]) if root is not None else path.stem
    stem += f"_{frame}" if frame else ""
    return re.sub(r"[^A-Za-z0-9._-]", "_", stem) + "_overlay.png"


def run_inference(
    model: EdgeModel,
    source: str,
    output: Path | None = None,
    batch_size: int = 1,
    max_frames: int | None = None,
    stream: TextIO = sys.stdout,
) -> list[Prediction]:
    """Predict every frame of ``source``, print one JSON object per image, write overlays to ``output``."""
    if batch_size < 1:
        msg = f"--batch-size must be >= 1, got {batch_size}."
        raise ValueError(msg)
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
    root = Path(source) if Path(source).is_dir() else None
    results: list[Prediction] = []
    for batch in batched(iter_sources(source, max_frames), batch_size):
        predictions = model.predict_batch([frame.image for frame in batch])
        for frame, prediction in zip(batch, predictions, strict=True):
            record = prediction.as_json(frame.name)
            if output is not None and prediction.anomaly_map is not None:
                target = output / _overlay_name(frame.name, root)
                overlay_heatmap(frame.image, prediction.anomaly_map).save(target)
                record["overlay"] = str(target)
            stream.write(json.dumps(record) + "\n")
            stream.flush()
            results.append(prediction)
    return results
