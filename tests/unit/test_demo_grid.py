# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The demo's picture grid: defect outlines drawn from masks, one row per category."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

from anomalib_nfplus.demo_grid import outline, write_grid


def test_outline_is_the_mask_border() -> None:
    mask = np.zeros((6, 6), bool)
    mask[1:5, 1:5] = True
    expected = mask.copy()
    expected[2:4, 2:4] = False  # the 2x2 interior has all four neighbours inside
    assert (outline(mask) == expected).all()
    assert not outline(np.zeros((3, 3), bool)).any()


def test_outline_of_a_mask_touching_the_image_edge_is_drawn() -> None:
    mask = np.ones((3, 3), bool)
    edge = outline(mask)
    assert edge[0].all()
    assert edge[-1].all()
    assert not edge[1, 1]


def test_grid_has_one_row_per_category_and_draws_the_outline(tmp_path: Path) -> None:
    mask = np.zeros((16, 16), np.uint8)
    mask[4:12, 4:12] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    samples = [
        ("a", tmp_path / "good" / "0.png", None),
        ("a", tmp_path / "blob" / "1.png", tmp_path / "m.png"),
        ("b", tmp_path / "good" / "2.png", None),
    ]
    images = np.full((3, 16, 16, 3), 0.5, np.float32)
    predictions = [SimpleNamespace(score=s, label=s > 0.5, anomaly_map=np.zeros((16, 16))) for s in (0.1, 0.9, 0.2)]
    grid = np.asarray(Image.open(write_grid(tmp_path / "g.png", samples, images, predictions)))
    cell_width = 2 * 16 + 6
    assert grid.shape[1] == 2 * (cell_width + 6)  # two cells in the widest row
    row_height = grid.shape[0] // 2
    assert row_height >= 16  # two rows: categories a and b
    second_cell = grid[:16, cell_width + 6 : cell_width + 6 + 16]
    assert (second_cell[4, 4:12] == (0, 255, 0)).all()  # the mask's top edge in green
    assert not (grid[:16, :16] == (0, 255, 0)).all(axis=-1).any()  # no outline on the normal image
