# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Rotations (test time) and random transforms (training)."""

import math

import pytest
import torch

from anomalib_nfplus.models.differnet.transforms import FixedRotations, RandomTransforms, rotate

HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def test_quarter_turn_is_rot90() -> None:
    x = torch.randn(2, 3, 8, 8)
    ones = torch.ones(2)
    turned = rotate(x, 0 * ones, ones)
    assert torch.allclose(turned, torch.rot90(x, k=1, dims=(2, 3)), atol=1e-5) or torch.allclose(
        turned, torch.rot90(x, k=-1, dims=(2, 3)), atol=1e-5
    )


def test_half_turn_of_non_square_image_flips_both_axes() -> None:
    x = torch.randn(1, 3, 6, 10)
    turned = rotate(x, -torch.ones(1), torch.zeros(1))
    assert torch.allclose(turned, x.flip(2, 3), atol=1e-5)


def test_test_time_rotations_are_evenly_spaced_and_invertible() -> None:
    rotations = FixedRotations(4)
    assert torch.allclose(rotations.cos, torch.tensor([1.0, 0.0, -1.0, 0.0]), atol=1e-6)
    x = torch.randn(2, 1, 8, 8)
    views = rotations(x)
    assert views.shape == (8, 1, 8, 8)
    assert torch.equal(views[0], x[0])  # identity first, image-major order
    assert torch.allclose(rotations.invert(views), x.repeat_interleave(4, dim=0), atol=1e-5)


def test_one_test_transform_is_the_image_itself() -> None:
    x = torch.randn(2, 3, 8, 8)
    assert FixedRotations(1)(x) is x


def test_invalid_counts_and_jitter_are_rejected() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        FixedRotations(0)
    with pytest.raises(ValueError, match="brightness"):
        RandomTransforms(*HALF, brightness=1.5)


def test_random_transforms_are_seeded_per_view_and_switchable() -> None:
    transforms = RandomTransforms(*HALF, rotation=True, brightness=0.15, contrast=0.15, saturation=0.1)
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    torch.manual_seed(0)
    a = transforms(x)
    torch.manual_seed(0)
    b = transforms(x)
    assert torch.equal(a, b)
    assert not torch.allclose(a[0], a[1])  # each view draws its own transform
    identity = RandomTransforms(*HALF, rotation=False)
    assert torch.equal(identity(x), x)


def test_brightness_only_scales_pixels_in_unit_range() -> None:
    transforms = RandomTransforms(*HALF, rotation=False, brightness=0.5)
    x = torch.full((8, 3, 4, 4), 0.0)  # pixel value 0.5
    pixels = transforms(x) * 0.5 + 0.5
    per_image = pixels.flatten(1)
    assert torch.allclose(per_image, per_image[:, :1].expand_as(per_image))
    assert per_image.min() >= 0.25 - 1e-6
    assert per_image.max() <= 0.75 + 1e-6
    assert per_image[:, 0].std() > 0


def test_rotation_angles_cover_full_turn() -> None:
    n = 8
    rotations = FixedRotations(n)
    angles = torch.atan2(rotations.sin, rotations.cos) % (2 * math.pi)
    assert torch.allclose(angles, torch.arange(n) * (2 * math.pi / n), atol=1e-5)


def test_rotation_steps_draw_right_angles_only() -> None:
    transforms = RandomTransforms(*HALF, rotation_steps=4)
    x = torch.randn(1, 3, 8, 8).expand(16, -1, -1, -1)
    torch.manual_seed(0)
    views = transforms(x)
    turns = [torch.rot90(x[0], k, dims=(1, 2)) for k in range(4)]
    seen = {next(k for k, t in enumerate(turns) if torch.allclose(v, t, atol=1e-5)) for v in views}
    assert len(seen) > 1
    with pytest.raises(ValueError, match="rotation_steps"):
        RandomTransforms(*HALF, rotation_steps=-1)
