# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""A tiny OpenVINO model with anomalib's output names, built with OpenVINO's opset (no torch, seconds)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def build_ir(path: Path, size: tuple[int, int] | None) -> Path:
    """``anomaly_map`` = channel mean of the input, ``pred_score`` = its spatial max, ``pred_label`` = score > 0.5."""
    import openvino as ov
    from openvino import opset13 as ops

    height, width = size if size is not None else (-1, -1)
    image = ops.parameter([-1, 3, height, width], np.float32, name="input")
    amap = ops.reduce_mean(image, np.array([1], dtype=np.int64), keep_dims=True)
    score = ops.reduce_max(amap, np.array([1, 2, 3], dtype=np.int64), keep_dims=False)
    label = ops.greater(score, np.float32(0.5))
    outputs = {"pred_score": score, "pred_label": label, "anomaly_map": amap}
    for name, node in outputs.items():
        node.output(0).get_tensor().set_names({name})
    model = ov.Model([node.output(0) for node in outputs.values()], [image], "tiny")
    ov.save_model(model, path)
    return path


@pytest.fixture(scope="session")
def tiny_ir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_ir(tmp_path_factory.mktemp("ir") / "model.xml", (16, 20))


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 16x20 images (one grayscale, one bright) in a folder with a subfolder."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    (root / "sub").mkdir()
    Image.fromarray(rng.integers(0, 100, (16, 20, 3), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(rng.integers(0, 255, (16, 20), dtype=np.uint8)).save(root / "sub" / "b.png")
    Image.fromarray(np.full((16, 20, 3), 250, dtype=np.uint8)).save(root / "c.png")
    return root
