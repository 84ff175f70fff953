# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Subnet constructors for coupling blocks.

A coupling block does not build its own network: it calls a :data:`SubnetFactory` ``f(dim_in, dim_out)`` and
uses the returned module to predict its scale and shift coefficients. This keeps the blocks small and lets each
model pick the network its paper used.
"""

from collections.abc import Callable

from torch import nn

__all__ = ["SubnetFactory", "allinone_subnet", "mlp_subnet_factory"]

SubnetFactory = Callable[[int, int], nn.Module]
"""Callable ``(dim_in, dim_out) -> nn.Module`` mapping ``(N, dim_in)`` to ``(N, dim_out)``."""


def allinone_subnet(dim_in: int, dim_out: int) -> nn.Module:
    """Subnet of CFLOW-AD and HGAD: ``Linear(i, 2i) - ReLU - Linear(2i, o)``.

    Args:
        dim_in (int): Input width ``i`` (passive half plus condition).
        dim_out (int): Output width ``o`` (scale and shift coefficients).

    Returns:
        nn.Module: The two-layer MLP.
    """
    return nn.Sequential(nn.Linear(dim_in, 2 * dim_in), nn.ReLU(), nn.Linear(2 * dim_in, dim_out))


def mlp_subnet_factory(
    hidden: int,
    depth: int,
    activation: Callable[[], nn.Module] = nn.ReLU,
) -> SubnetFactory:
    """Build a factory of MLPs with ``depth`` hidden layers of width ``hidden``.

    The network is ``Linear(i, h) - act - (Linear(h, h) - act) * (depth - 1) - Linear(h, o)``. DifferNet uses
    ``hidden=2048, depth=3``.

    Args:
        hidden (int): Hidden width ``h``.
        depth (int): Number of hidden layers (at least 1).
        activation (Callable[[], nn.Module], optional): Activation module class or zero-argument factory.
            Defaults to ``nn.ReLU``.

    Returns:
        SubnetFactory: Callable ``(dim_in, dim_out) -> nn.Sequential``.

    Raises:
        ValueError: If ``hidden`` or ``depth`` is smaller than 1.
    """
    if hidden < 1 or depth < 1:
        msg = f"mlp_subnet_factory needs hidden >= 1 and depth >= 1, got hidden={hidden}, depth={depth}."
        raise ValueError(msg)

    def factory(dim_in: int, dim_out: int) -> nn.Module:
        layers: list[nn.Module] = [nn.Linear(dim_in, hidden), activation()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), activation()]
        layers.append(nn.Linear(hidden, dim_out))
        return nn.Sequential(*layers)

    return factory
