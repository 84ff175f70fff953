# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Edge runtime for exported models: OpenVINO, numpy and Pillow only (no torch, no anomalib).

An edge box runs the OpenVINO IR written by ``anomalib export ... --export_type openvino``. The exported graph
already holds the model's pre-processing (resize, normalisation) and post-processing (score normalisation,
threshold), so this runtime only reads images the way anomalib does and maps the outputs by name.

- :class:`EdgeModel`: load and compile an IR, predict one image or a batch.
- :class:`Prediction`: score, label, anomaly map and mask of one image.
- :func:`iter_sources`: images from a file, a folder, a video file or a camera index.
- :func:`overlay_heatmap`: the anomaly map blended over the image, for people to look at.
"""

from .overlay import overlay_heatmap
from .runtime import EdgeModel, Prediction, read_rgb
from .sources import Frame, iter_sources

__all__ = ["EdgeModel", "Frame", "Prediction", "iter_sources", "overlay_heatmap", "read_rgb"]
