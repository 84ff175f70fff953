# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Image sources for the edge runtime: a file, a folder, a video file or a camera index (streamed).

A file with an image suffix that cannot be decoded (corrupt, truncated, or not an image at all) is skipped with
one line on stderr, so one bad file does not stop a folder or a long-running job. Files without an image suffix
in a folder are not read. An input that cannot be used at all (missing, an empty folder, a video OpenCV cannot open)
raises when :func:`iter_sources` is called, before any frame is read.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .runtime import read_rgb

__all__ = ["IMAGE_SUFFIXES", "UNREADABLE_IMAGE_ERRORS", "VIDEO_SUFFIXES", "Frame", "iter_sources", "warn_stderr"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}
#: What Pillow raises for files it cannot decode (``UnidentifiedImageError`` and truncation are ``OSError``;
#: some broken PNG chunks raise ``SyntaxError``).
UNREADABLE_IMAGE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    Image.DecompressionBombError,
)


def warn_stderr(message: str) -> None:
    """Write one line to stderr, which stays free of the JSON lines on stdout."""
    print(" ".join(message.split()), file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Frame:
    """One input image: a name for the output (path or ``video#frame``) and RGB float32 pixels."""

    name: str
    image: np.ndarray


def iter_sources(
    source: str | Path,
    max_frames: int | None = None,
    on_skip: Callable[[str], None] = warn_stderr,
) -> Iterator[Frame]:
    """Frames of ``source``, read lazily, so folders, videos and cameras stream without loading everything.

    Args:
        source (str | Path): An image file, a folder (recursed, sorted), a video file, or a camera index (``"0"``).
        max_frames (int | None, optional): Stop after this many frames (cameras never end). Defaults to ``None``.
        on_skip (Callable[[str], None], optional): Called with one line per image file that cannot be decoded
            (the file is skipped). Defaults to writing the line to stderr.

    Returns:
        Iterator[Frame]: The images, one at a time.

    Raises:
        FileNotFoundError: Now, not at the first frame: ``source`` does not exist, is not a usable kind of file,
            is a folder without images, or is a video or camera OpenCV cannot open.
        ImportError: A video or camera without OpenCV installed.
    """
    text = str(source)
    path = Path(text)
    if text.isdigit() and not path.exists():
        frames = _video(int(text), f"camera{text}")
    elif not path.exists():
        msg = f"Input {text!r} does not exist (expected an image, a folder of images, a video file or a camera index)."
        raise FileNotFoundError(msg)
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            msg = f"No images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {path}."
            raise FileNotFoundError(msg)
        frames = _images(files, on_skip)
    elif path.suffix.lower() in VIDEO_SUFFIXES and path.is_file():
        frames = _video(str(path), path.name)
    elif path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
        frames = _images([path], on_skip)
    else:
        msg = f"Input {text!r} is not an image, a folder of images, a video file or a camera index."
        raise FileNotFoundError(msg)
    return frames if max_frames is None else itertools.islice(frames, max(max_frames, 0))


def _images(paths: Iterable[Path], on_skip: Callable[[str], None]) -> Iterator[Frame]:
    """Read each file when it is needed; report and skip the ones that are not decodable images."""
    for path in paths:
        try:
            image = read_rgb(path)
        except UNREADABLE_IMAGE_ERRORS as error:
            on_skip(f"skipped {path}: not a readable image ({type(error).__name__}: {error})")
            continue
        yield Frame(str(path), image)


def _video(source: int | str, name: str) -> Iterator[Frame]:
    """Open the video or camera now (so a bad one fails at once); its frames are read when they are needed."""
    try:
        import cv2
    except ImportError as error:
        msg = "Video and camera input need OpenCV: pip install opencv-python-headless."
        raise ImportError(msg) from error
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        msg = f"Could not open {name} (OpenCV VideoCapture failed)."
        raise FileNotFoundError(msg)
    return _read_video(capture, name)


def _read_video(capture: Any, name: str) -> Iterator[Frame]:
    try:
        index = 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                return
            rgb = bgr[..., ::-1].astype(np.float64) / 255.0
            yield Frame(f"{name}#{index}", rgb.astype(np.float32))
            index += 1
    finally:
        capture.release()
