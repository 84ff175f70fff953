# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""SequentialFlow composition and the published-flow builders."""

import pytest
import torch
from torch import nn

from anomalib_nfplus.flows import (
    AllInOneCoupling,
    DoubleAffineCoupling,
    FixedPermutation,
    SequentialFlow,
    allinone_flow,
    differnet_flow,
    mlp_subnet_factory,
)


def test_log_dets_add_up_and_inverse_runs_backwards():
    torch.manual_seed(0)
    blocks = [AllInOneCoupling(6, 2, seed=k) for k in range(3)]
    flow = SequentialFlow(blocks)
    x, c = torch.randn(5, 6), torch.randn(5, 2)
    h, total = x, torch.zeros(5)
    for block in blocks:
        h, log_det = block(h, c)
        total = total + log_det
    z, flow_log_det = flow(x, c)
    torch.testing.assert_close(z, h)
    torch.testing.assert_close(flow_log_det, total)
    h = z
    for block in reversed(blocks):
        h, _ = block.inverse(h, c)
    torch.testing.assert_close(flow.inverse(z, c)[0], h)
    assert len(flow) == 3


def test_condition_is_routed_to_conditional_blocks_only():
    flow = SequentialFlow([FixedPermutation(4, seed=0), AllInOneCoupling(4, 3, seed=1)])
    assert flow.cond_dim == 3
    z, _ = flow(torch.randn(2, 4), torch.randn(2, 3))
    assert z.shape == (2, 4)
    assert SequentialFlow([FixedPermutation(4)]).cond_dim == 0


@pytest.mark.parametrize(
    ("blocks", "error", "match"),
    [
        ([], TypeError, "non-empty"),
        ([nn.Linear(2, 2)], TypeError, "Linear"),
        ([FixedPermutation(4), FixedPermutation(5)], ValueError, "dims"),
        ([AllInOneCoupling(4, 2), AllInOneCoupling(4, 3)], ValueError, "cond_dims"),
    ],
)
def test_invalid_blocks(blocks, error, match):
    with pytest.raises(error, match=match):
        SequentialFlow(blocks)


def test_allinone_flow_structure_and_seeds():
    flow = allinone_flow(8, n_blocks=4, cond_dim=5, clamp_alpha=1.5, permute_soft=True, seed=0)
    assert len(flow) == 4
    assert all(isinstance(b, AllInOneCoupling) and b.cond_dim == 5 and b.clamp_alpha == 1.5 for b in flow.blocks)
    rotations = [b.w_perm for b in flow.blocks]
    assert all(not torch.allclose(rotations[i], rotations[j]) for i in range(4) for j in range(i + 1, 4))
    # same seed -> same fixed buffers; another seed -> other buffers
    same = allinone_flow(8, n_blocks=4, cond_dim=5, seed=0)
    other = allinone_flow(8, n_blocks=4, cond_dim=5, seed=1)
    for k in range(4):
        assert torch.equal(same.blocks[k].w_perm, rotations[k])
        assert not torch.allclose(other.blocks[k].w_perm, rotations[k])
    # a neighbouring flow seed does not reuse this flow's blocks shifted by one
    assert not torch.allclose(other.blocks[0].w_perm, rotations[1])


def test_allinone_flow_hard_permutation_and_subnet_factory():
    flow = allinone_flow(6, n_blocks=2, permute_soft=False, subnet_factory=mlp_subnet_factory(5, 1))
    block = flow.blocks[0]
    assert torch.equal(block.w_perm.abs().sum(0), torch.ones(6))
    assert block.subnet[0].out_features == 5


def test_differnet_flow_structure():
    flow = differnet_flow(10, n_blocks=3, hidden=12, depth=2, clamp_alpha=2.0, seed=0)
    kinds = [type(b) for b in flow.blocks]
    assert kinds == [FixedPermutation, DoubleAffineCoupling] * 3
    perms = [b.perm for b in flow.blocks[::2]]
    assert not torch.equal(perms[0], perms[1])
    assert torch.equal(differnet_flow(10, n_blocks=3, hidden=12, depth=2, seed=0).blocks[0].perm, perms[0])
    coupling = flow.blocks[1]
    assert coupling.clamp_alpha == 2.0
    linears = [m for m in coupling.subnet1 if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 12), (12, 12), (12, 10)]


@pytest.mark.parametrize("builder", [allinone_flow, differnet_flow])
def test_builders_reject_zero_blocks(builder):
    with pytest.raises(ValueError, match="n_blocks"):
        builder(4, n_blocks=0)
