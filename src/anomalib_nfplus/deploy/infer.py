# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""``anomalib-nfplus infer``: run an exported model on files, folders, videos or a camera; JSON lines out.

Output is meant for pipes: when the reader goes away (``anomalib-nfplus infer ... | head -1``), inference stops and
the command exits cleanly, following Python's documented SIGPIPE recipe (stdout is pointed at ``os.devnull`` so the
final flush at exit cannot fail again). Image files that cannot be decoded are skipped with one line on stderr.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

from .overlay import overlay_heatmap
from .runtime import EdgeModel, Prediction
from .sources import Frame, iter_sources, warn_stderr

__all__ = ["batched", "run_inference"]

PROG = "anomalib-nfplus infer"


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
    """Predict every frame of ``source``, print one JSON object per image, write overlays to ``output``.

    Stops early, without an error, when ``stream`` is a pipe whose reader has closed it.
    """
    if batch_size < 1:
        msg = f"--batch-size must be >= 1, got {batch_size}."
        raise ValueError(msg)
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
    root = Path(source) if Path(source).is_dir() else None
    results: list[Prediction] = []
    frames = iter_sources(source, max_frames, on_skip=lambda line: warn_stderr(f"{PROG}: {line}"))
    for batch in batched(frames, batch_size):
        predictions = model.predict_batch([frame.image for frame in batch])
        for frame, prediction in zip(batch, predictions, strict=True):
            record = prediction.as_json(frame.name)
            if output is not None and prediction.anomaly_map is not None:
                target = output / _overlay_name(frame.name, root)
                overlay_heatmap(frame.image, prediction.anomaly_map).save(target)
                record["overlay"] = str(target)
            if not _write_line(stream, json.dumps(record)):
                return results
            results.append(prediction)
    return results


def _write_line(stream: TextIO, line: str) -> bool:
    """Write and flush one line; ``False`` when the reader of the pipe has gone (nothing more to write)."""
    try:
        stream.write(line + "\n")
        stream.flush()
    except BrokenPipeError:
        silence_closed_stream(stream)
        return False
    return True


def silence_closed_stream(stream: TextIO) -> None:
    """Point a closed pipe's file descriptor at ``os.devnull``, so Python's flush at exit does not fail again.

    This is the recipe of Python's documentation (``signal`` module, "Note on SIGPIPE"); streams without a file
    descriptor are left alone.
    """
    try:
        descriptor = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, descriptor)
    finally:
        os.close(devnull)
