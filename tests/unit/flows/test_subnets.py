# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Subnet constructors."""

import pytest
import torch
from torch import nn

from anomalib_nfplus.flows import allinone_subnet, mlp_subnet_factory


def _linear_shapes(module: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, nn.Linear)]


def test_allinone_subnet():
    net = allinone_subnet(5, 6)
    assert _linear_shapes(net) == [(5, 10), (10, 6)]
    assert isinstance(net[1], nn.ReLU)
    assert net(torch.randn(3, 5)).shape == (3, 6)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_mlp_subnet_factory(depth):
    net = mlp_subnet_factory(hidden=7, depth=depth)(4, 9)
    assert _linear_shapes(net) == [(4, 7)] + [(7, 7)] * (depth - 1) + [(7, 9)]
    assert sum(isinstance(m, nn.ReLU) for m in net) == depth
    assert net(torch.randn(2, 4)).shape == (2, 9)


def test_mlp_subnet_factory_activation_and_independence():
    factory = mlp_subnet_factory(hidden=3, depth=2, activation=nn.Tanh)
    first, second = factory(2, 2), factory(2, 2)
    assert sum(isinstance(m, nn.Tanh) for m in first) == 2
    assert first[0].weight is not second[0].weight


@pytest.mark.parametrize(("hidden", "depth"), [(0, 2), (8, 0)])
def test_mlp_subnet_factory_rejects_bad_sizes(hidden, depth):
    with pytest.raises(ValueError, match="hidden >= 1 and depth >= 1"):
        mlp_subnet_factory(hidden=hidden, depth=depth)
