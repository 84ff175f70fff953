# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""CFLOW-AD's 2-D positional encoding."""

import math

import pytest
import torch

from anomalib_nfplus.flows import positional_encoding_2d


def _reference(dim: int, height: int, width: int) -> torch.Tensor:
    """Slice-assignment form of the encoding as the official CFLOW-AD code writes it."""
    enc = torch.zeros(dim, height, width, dtype=torch.float64)
    d = dim // 2
    div = torch.exp(torch.arange(0.0, d, 2, dtype=torch.float64) * -(math.log(1e4) / d))
    w = torch.arange(width, dtype=torch.float64)[:, None]
    h = torch.arange(height, dtype=torch.float64)[:, None]
    enc[0:d:2] = torch.sin(w * div).T[:, None, :].expand(-1, height, -1)
    enc[1:d:2] = torch.cos(w * div).T[:, None, :].expand(-1, height, -1)
    enc[d::2] = torch.sin(h * div).T[:, :, None].expand(-1, -1, width)
    enc[d + 1 :: 2] = torch.cos(h * div).T[:, :, None].expand(-1, -1, width)
    return enc


@pytest.mark.parametrize(("dim", "height", "width"), [(4, 1, 1), (8, 3, 5), (128, 7, 4), (256, 16, 16)])
def test_matches_reference(dim, height, width):
    enc = positional_encoding_2d(dim, height, width, dtype=torch.float64)
    assert enc.shape == (dim, height, width)
    torch.testing.assert_close(enc, _reference(dim, height, width))
    torch.testing.assert_close(positional_encoding_2d(dim, height, width), enc.float())


def test_known_values():
    enc = positional_encoding_2d(8, 3, 4)
    torch.testing.assert_close(enc[:, 0, 0], torch.tensor([0.0, 1.0] * 4))  # sin 0 = 0, cos 0 = 1
    # first half follows the column (width) index, second half the row (height) index
    assert torch.equal(enc[:4, 0], enc[:4, 2])
    assert torch.equal(enc[4:, :, 0], enc[4:, :, 3])
    torch.testing.assert_close(enc[0, 0, 3], torch.tensor(math.sin(3.0)))
    torch.testing.assert_close(enc[5, 2, 0], torch.tensor(math.cos(2.0)))
    torch.testing.assert_close(enc[6, 2, 0], torch.tensor(math.sin(2.0 * 1e-2)))  # frequency 10000^(-2/4)


@pytest.mark.parametrize("dim", [0, 2, 6, 130])
def test_rejects_dim_not_multiple_of_4(dim):
    with pytest.raises(ValueError, match=f"got {dim}"):
        positional_encoding_2d(dim, 2, 2)
