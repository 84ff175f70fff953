# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""``anomalib-nfplus infer``: run an exported model on files, folders, videos or a camera; JSON lines out.

Output is meant for pipes: when the reader goes away (``anomalib-nfplus infer ... | head -1``), inference stops and
the command exits cleanly, following Python's documented SIGPIPE recipe (stdout is pointed at ``os.devnull`` so the
final flush at exit cannot fail again). Image files that cannot be decoded are skipped with one line on stderr.

Exit status: 0 when at least one image was scored. 1, with one line on stderr and no traceback, when nothing was
(every image was unreadable, a video gave no frame) or the input cannot be used (it does not exist, a folder holds
no image, a video cannot be opened): scripts see the failure.

Overlays (``--output``) mirror the input: ``<input>/a_b/c.png`` is drawn to ``<output>/a_b/c_overlay.png`` and
``<input>/a/b_c.png`` to ``<output>/a/b_c_overlay.png`` (folders are created); a single image ``x.png`` to
``<output>/x_overlay.png``; frame 7 of ``clip.mp4`` to ``<output>/clip_7_overlay.png`` and of camera 0 to
``<output>/camera0_7_overlay.png``. Within one run no overlay replaces another: an input whose name is already
taken, ignoring case (``x.png`` after ``x.jpg``, in sorted order), gets its suffix in the name
(``x_png_overlay.png``), and a number after it if that is taken too. Each JSON line gives its overlay's path.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

from .overlay import overlay_heatmap
from .runtime import EdgeModel, Prediction
from .sources import IMAGE_SUFFIXES, Frame, iter_sources, warn_stderr

__all__ = ["InferenceArgumentError", "InferenceError", "OverlayPaths", "batched", "run_inference"]

PROG = "anomalib-nfplus infer"
OVERLAY_SUFFIX = "_overlay.png"


class InferenceError(RuntimeError):
    """``anomalib-nfplus infer`` could not do its job; ``str(error)`` is the one line to show.

    The console command prints that line on stderr and exits with status 1, without a traceback.
    """

    def __init__(self, message: str) -> None:
        super().__init__(f"{PROG}: {message}")


class InferenceArgumentError(InferenceError, ValueError):
    """An argument value :func:`run_inference` cannot use (also a :class:`ValueError`)."""


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


class OverlayPaths:
    """Overlay file of each frame of one run, unique within the run (see the module docstring for the scheme).

    Args:
        output (Path): The ``--output`` folder.
        source (str | Path): The ``--input``: a folder's images are mirrored below it, an image file keeps its
            name, anything else (a video file, a camera index) names frames ``<stem>_<frame>``. Names are checked
            against this object's earlier answers only, not against files already on disk (a rerun replaces them).

    Examples:
        >>> paths = OverlayPaths(Path("out"), "clip.mp4")
        >>> paths("clip.mp4#3").as_posix()
        'out/clip_3_overlay.png'
        >>> paths = OverlayPaths(Path("out"), "x.png")
        >>> [paths(name).as_posix() for name in ("x.png", "x.png")]
        ['out/x_overlay.png', 'out/x_png_overlay.png']
    """

    def __init__(self, output: Path, source: str | Path) -> None:
        path = Path(source)
        self.output = output
        self.root = path if path.is_dir() else None
        self.single_image = self.root is None and path.suffix.lower() in IMAGE_SUFFIXES
        self._taken: set[str] = set()

    def __call__(self, name: str) -> Path:
        """The overlay path of the frame called ``name`` (its :attr:`Frame.name`); taken for the rest of the run."""
        folder, stem, suffix = self._parts(name)
        base = f"{stem}_{suffix}" if suffix else stem
        for candidate in itertools.chain([stem, base], (f"{base}_{n}" for n in itertools.count(2))):
            target = folder / f"{candidate}{OVERLAY_SUFFIX}"
            if target.as_posix().casefold() not in self._taken:
                break
        self._taken.add(target.as_posix().casefold())
        return self.output / target

    def _parts(self, name: str) -> tuple[Path, str, str]:
        """Folder below ``output``, file stem and suffix (without the dot) the overlay name is made from."""
        if self.root is None and not self.single_image:  # a video or camera frame: "<name>#<index>"
            video, _, index = name.rpartition("#")
            return Path(), f"{Path(video).stem}_{index}", ""
        path = Path(name)
        if self.root is not None and path.is_relative_to(self.root):
            relative = path.relative_to(self.root)
            return relative.parent, path.stem, path.suffix.lstrip(".")
        return Path(), path.stem, path.suffix.lstrip(".")


def run_inference(
    model: EdgeModel,
    source: str,
    output: Path | None = None,
    batch_size: int = 1,
    max_frames: int | None = None,
    stream: TextIO = sys.stdout,
) -> list[Prediction]:
    """Predict every frame of ``source``, print one JSON object per image, write overlays to ``output``.

    Unreadable image files are skipped with one line each on stderr. Stops early, without an error, when
    ``stream`` is a pipe whose reader has closed it. Overlay names: see the module docstring.

    Raises:
        InferenceError: Nothing was scored (every image was unreadable, a video gave no frame; ``max_frames=0``
            asks for nothing and is not an error), or ``source`` cannot be used (missing, no images, a video that
            does not open, no OpenCV).
        InferenceArgumentError: ``batch_size`` below 1 or ``max_frames`` below 0.
    """
    if batch_size < 1:
        msg = f"--batch-size must be >= 1, got {batch_size}."
        raise InferenceArgumentError(msg)
    if max_frames is not None and max_frames < 0:
        msg = f"--max-frames must be >= 0, got {max_frames}."
        raise InferenceArgumentError(msg)
    skipped: list[str] = []

    def skip(line: str) -> None:
        skipped.append(line)
        warn_stderr(f"{PROG}: {line}")

    try:
        frames = iter_sources(source, max_frames, on_skip=skip)
    except (FileNotFoundError, ImportError) as error:
        raise InferenceError(str(error)) from error
    paths = None
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        paths = OverlayPaths(output, source)
    results: list[Prediction] = []
    for batch in batched(frames, batch_size):
        predictions = model.predict_batch([frame.image for frame in batch])
        for frame, prediction in zip(batch, predictions, strict=True):
            record = prediction.as_json(frame.name)
            if paths is not None and prediction.anomaly_map is not None:
                target = paths(frame.name)
                target.parent.mkdir(parents=True, exist_ok=True)
                overlay_heatmap(frame.image, prediction.anomaly_map).save(target)
                record["overlay"] = str(target)
            if not _write_line(stream, json.dumps(record)):
                return results
            results.append(prediction)
    if not results and max_frames != 0:
        raise InferenceError(_nothing_scored(source, len(skipped)))
    return results


def _nothing_scored(source: str, skipped: int) -> str:
    """The line for a run that scored no image, with the number of unreadable images it skipped."""
    if skipped == 0:
        return f"nothing scored from {source!r}: it gave no image."
    if skipped == 1:
        return f"nothing scored from {source!r}: its only image was skipped as unreadable."
    return f"nothing scored from {source!r}: all {skipped} images were skipped as unreadable."


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
