# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Random permutations, rotations and the fixed-permutation block."""

import pytest
import torch

from anomalib_nfplus.flows import (
    FixedPermutation,
    make_generator,
    permutation_matrix,
    random_permutation,
    random_rotation,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_random_permutation_is_seeded_permutation():
    perm = random_permutation(10, _gen(0))
    assert perm.dtype == torch.long
    assert torch.equal(perm.sort().values, torch.arange(10))
    assert torch.equal(perm, random_permutation(10, _gen(0)))
    assert not torch.equal(perm, random_permutation(10, _gen(1)))


def test_permutation_matrix_applies_perm():
    perm = random_permutation(6, _gen(3))
    x = torch.randn(4, 6)
    torch.testing.assert_close(x @ permutation_matrix(perm).T, x[:, perm])


@pytest.mark.parametrize("dim", [1, 2, 5, 16, 33])
def test_random_rotation_is_special_orthogonal(dim):
    for seed in range(4):  # about half of the raw QR draws have det -1; all must be fixed to +1
        q = random_rotation(dim, _gen(seed), dtype=torch.float64)
        torch.testing.assert_close(q @ q.T, torch.eye(dim, dtype=torch.float64), atol=1e-12, rtol=0)
        torch.testing.assert_close(torch.linalg.det(q), torch.tensor(1.0, dtype=torch.float64))


def test_random_rotation_seeding_and_dtype():
    a = random_rotation(8, _gen(0))
    assert a.dtype == torch.get_default_dtype()
    assert torch.equal(a, random_rotation(8, _gen(0)))
    assert not torch.allclose(a, random_rotation(8, _gen(1)))


def test_random_rotation_is_not_biased_to_identity():
    # Haar rotations spread the diagonal around 0; a missing sign fix biases it to positive values
    diags = torch.stack([random_rotation(3, _gen(s), dtype=torch.float64).diagonal() for s in range(400)])
    assert diags.mean().abs() < 0.1


def test_fixed_permutation_buffers_and_seeding():
    block = FixedPermutation(7, seed=2)
    assert not list(block.parameters())
    assert set(block.state_dict()) == {"perm"}  # the inverse is computed by the inverse pass, not stored
    x = torch.randn(3, 7)
    assert torch.equal(block.inverse(block(x)[0])[0], x)
    assert torch.equal(block.perm, FixedPermutation(7, seed=2).perm)
    assert not torch.equal(block.perm, FixedPermutation(7, seed=3).perm)
    assert torch.equal(FixedPermutation(7, generator=_gen(2)).perm, block.perm)
    x = torch.randn(3, 7)
    y, log_det = block(x)
    assert torch.equal(y, x[:, block.perm])
    assert torch.equal(log_det, torch.zeros(3))


def test_make_generator():
    assert torch.equal(torch.randn(3, generator=make_generator(7)), torch.randn(3, generator=_gen(7)))
    # Without a seed: different blocks get different draws, reproducible under the global seed.
    torch.manual_seed(3)
    first, second = torch.randn(3, generator=make_generator()), torch.randn(3, generator=make_generator())
    assert not torch.equal(first, second)
    torch.manual_seed(3)
    assert torch.equal(torch.randn(3, generator=make_generator()), first)
    gen = _gen(5)
    assert make_generator(generator=gen) is gen
    with pytest.raises(ValueError, match="either seed"):
        make_generator(1, gen)
