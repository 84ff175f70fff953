# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Map post-processing: per-image scores, blur maths, upsampling shapes."""

import pytest
import torch

from anomalib_nfplus.models.components import GaussianBlur, check_top_k, image_score, upsample_maps


def test_image_score_max_and_top_k():
    maps = torch.zeros(2, 1, 4, 4)
    maps[0, 0, 0, :2] = torch.tensor([8.0, 4.0])
    maps[1, 0, 3, 3] = 1.0
    assert image_score(maps).tolist() == [8.0, 1.0]
    # top 2 of 16 pixels = 0.125
    assert image_score(maps, top_k=0.125).tolist() == [6.0, 0.5]


def test_image_score_is_per_image():
    torch.manual_seed(0)
    maps = torch.randn(5, 1, 8, 8)
    together = image_score(maps, top_k=0.1)
    alone = torch.cat([image_score(maps[i : i + 1], top_k=0.1) for i in range(5)])
    assert torch.equal(together, alone)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_top_k_checked(bad):
    with pytest.raises(ValueError, match="top_k"):
        check_top_k(bad)


def test_blur_matches_a_dense_gaussian_and_keeps_mass():
    sigma = 1.5
    blur = GaussianBlur(sigma)
    impulse = torch.zeros(1, 1, 31, 31)
    impulse[0, 0, 15, 15] = 1.0
    out = blur(impulse)[0, 0]
    x = torch.arange(-15, 16, dtype=torch.float32)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    dense = torch.outer(g, g) / torch.outer(g, g).sum()
    assert torch.allclose(out, dense, atol=1e-4)
    assert out.sum().item() == pytest.approx(1.0, abs=1e-5)


def test_blur_is_per_image_and_handles_small_maps():
    torch.manual_seed(0)
    blur = GaussianBlur(4.0)
    maps = torch.rand(3, 1, 6, 5)
    out = blur(maps)
    assert out.shape == maps.shape
    assert torch.allclose(out[1:2], blur(maps[1:2]))
    assert torch.equal(GaussianBlur(0)(maps), maps)
    with pytest.raises(ValueError, match="sigma"):
        GaussianBlur(-1)


def test_upsample_maps_stacks_levels():
    out = upsample_maps([torch.ones(2, 4, 4), torch.zeros(2, 1, 2, 2)], (8, 8))
    assert out.shape == (2, 2, 8, 8)
    assert out[:, 0].eq(1).all()
    assert out[:, 1].eq(0).all()
