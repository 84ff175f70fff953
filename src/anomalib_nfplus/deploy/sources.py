# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Image sources for the edge runtime: a file, a folder, a video file or a camera index (streamed)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .runtime import read_rgb

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "Frame", "iter_sources"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


@dataclass(frozen=True)
class Frame:
    """One input image: a name for the output (path or ``video#frame``) and RGB float32 pixels."""

    name: str
    image: np.ndarray


def iter_sources(source: str | Path, max_frames: int | None = None) -> Iterator[Frame]:
    """Yield frames lazily, so folders, videos and cameras stream without loading everything.

    Args:
        source (str | Path): An image file, a folder (recursed, sorted), a video file, or a camera index (``"0"``).
        max_frames (int | None, optional): Stop after this many frames (cameras never end). Defaults to ``None``.

    Yields:
        Frame: The next image.
    """
    text = str(source)
    path = Path(text)
    if text.isdigit() and not path.exists():
        frames = _video(int(text), f"camera{text}")
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            msg = f"No images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {path}."
            raise FileNotFoundError(msg)
        frames = (Frame(str(p), read_rgb(p)) for p in files)
    elif path.suffix.lower() in VIDEO_SUFFIXES and path.is_file():
        frames = _video(str(path), path.name)
    elif path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
        frames = iter([Frame(str(path), read_rgb(path))])
    else:
        msg = f"Input {text!r} is not an image, a folder of images, a video file or a camera index."
        raise FileNotFoundError(msg)
    for count, frame in enumerate(frames):
        if max_frames is not None and count >= max_frames:
            return
        yield frame


def _video(source: int | str, name: str) -> Iterator[Frame]:
    try:
        import cv2
    except ImportError as error:
        msg = "Video and camera input need OpenCV: pip install opencv-python-headless."
        raise ImportError(msg) from error
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        msg = f"Could not open {name} (OpenCV VideoCapture failed)."
        raise FileNotFoundError(msg)
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
