# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""One contract, checked on every invertible block and container (zuko-style).

Besides the blocks' own ``forward``, the paths the models run are checked: :class:`AllInOneCoupling`'s fused
path from a precomputed condition term broadcast over a batch dimension, and :class:`PositionalFlows` (the
per-level flows of CflowAD and HGAD), with the condition broadcast over the images or gathered per fiber. Their
inverse is the flow's own ``inverse``, so the round trip also checks that both paths compute the same map.
"""

import io
from collections.abc import Callable

import pytest
import torch

from anomalib_nfplus.flows import (
    AllInOneCoupling,
    DoubleAffineCoupling,
    FixedPermutation,
    InvertibleBlock,
    PositionalFlows,
    SequentialFlow,
    allinone_flow,
    differnet_flow,
    mlp_subnet_factory,
)

SMALL_MLP = mlp_subnet_factory(hidden=16, depth=2)


class FusedCoupling(InvertibleBlock):
    """``AllInOneCoupling`` through its fused path: the condition term computed once, broadcast over a batch."""

    def __init__(self, block: AllInOneCoupling) -> None:
        super().__init__(block.dim, block.cond_dim)
        self.block = block

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_inputs(x, cond)
        term = self.block.condition_term(cond)  # (N, hidden), or the bias (hidden,) without a condition
        y, log_det = self.block.forward_with_term(x.unsqueeze(0), term)  # x as one "image" of N positions
        return y.squeeze(0), log_det.squeeze(0)

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.block.inverse(y, cond)


class OneLevelPositionalFlows(InvertibleBlock):
    """Level 0 of :class:`PositionalFlows` on ``N`` positions, each row of ``cond`` being one position's encoding.

    ``gather=False`` feeds the fibers as ``(1, N, C)`` (the condition broadcast over images, as for whole feature
    maps); ``gather=True`` as ``(N, C)`` fibers at position indices (as CFLOW-AD's per-level fiber chunks).
    """

    def __init__(self, dim: int, cond_dim: int, gather: bool) -> None:
        super().__init__(dim, cond_dim)
        self.flows = PositionalFlows([dim], n_blocks=3, cond_dim=cond_dim, seed=1)
        self.gather = gather

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_inputs(x, cond)
        if self.gather:
            positions = torch.arange(x.shape[0]).flip(0)
            z, log_det = self.flows.transform(0, x, cond.flip(0), positions)
            return z, log_det
        z, log_det = self.flows.transform(0, x.unsqueeze(0), cond)
        return z.squeeze(0), log_det.squeeze(0)

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.flows.flows[0].inverse(y, cond)


# name -> (factory(dim, cond_dim), the condition widths to test; 0 = unconditional).
BUILDERS: dict[str, tuple[Callable[[int, int], InvertibleBlock], tuple[int, ...]]] = {
    "allinone_soft": (lambda d, c: AllInOneCoupling(d, c, permute_soft=True, seed=3), (0, 3)),
    "allinone_hard": (lambda d, c: AllInOneCoupling(d, c, permute_soft=False, seed=3), (0, 3)),
    "allinone_fused": (lambda d, c: FusedCoupling(AllInOneCoupling(d, c, seed=3)), (0, 3)),
    "allinone_fused_mlp": (
        lambda d, c: FusedCoupling(AllInOneCoupling(d, c, subnet_factory=SMALL_MLP, permute_soft=False, seed=4)),
        (0, 3),
    ),
    "double_affine": (lambda d, c: DoubleAffineCoupling(d, c, subnet_factory=SMALL_MLP), (0, 3)),
    "permutation": (lambda d, _c: FixedPermutation(d, seed=3), (0,)),
    "allinone_flow": (lambda d, c: allinone_flow(d, n_blocks=3, cond_dim=c, seed=1), (0, 3)),
    "positional_flows": (lambda d, c: OneLevelPositionalFlows(d, c, gather=False), (3,)),
    "positional_flows_gather": (lambda d, c: OneLevelPositionalFlows(d, c, gather=True), (3,)),
    "differnet_flow": (lambda d, c: differnet_flow(d, n_blocks=2, hidden=16, depth=2, seed=1, cond_dim=c), (0, 3)),
    "mixed_nested_flow": (
        lambda d, c: SequentialFlow(
            [
                FixedPermutation(d, seed=5),
                AllInOneCoupling(d, c, seed=6),
                SequentialFlow([DoubleAffineCoupling(d, c, subnet_factory=SMALL_MLP)]),
            ]
        ),
        (0, 3),
    ),
}
CASES = [
    pytest.param(name, dim, cond_dim, id=f"{name}-D{dim}-C{cond_dim}")
    for name, (_, cond_dims) in BUILDERS.items()
    for dim in (5, 6)
    for cond_dim in cond_dims
]
N = 7


def _build(name: str, dim: int, cond_dim: int) -> InvertibleBlock:
    """Build a block and move its parameters away from their init, so that no term is trivially 0 or 1."""
    torch.manual_seed(0)
    block = BUILDERS[name][0](dim, cond_dim)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in block.parameters():
            param.add_(0.3 * torch.randn(param.shape, generator=generator, dtype=param.dtype))
    return block


def _inputs(dim: int, cond_dim: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(N, dim, generator=generator)
    cond = torch.randn(N, cond_dim, generator=generator) if cond_dim else None
    return x, cond


@pytest.mark.parametrize(("name", "dim", "cond_dim"), CASES)
def test_shapes_and_attributes(name, dim, cond_dim, float64):
    block = _build(name, dim, cond_dim)
    x, cond = _inputs(dim, cond_dim)
    y, log_det = block(x, cond)
    assert (block.dim, block.cond_dim) == (dim, cond_dim)
    assert y.shape == x.shape
    assert y.dtype == x.dtype
    assert log_det.shape == (N,)
    assert log_det.dtype == x.dtype
    assert torch.isfinite(y).all()
    assert torch.isfinite(log_det).all()
    assert f"dim={dim}" in repr(block)


@pytest.mark.parametrize(("name", "dim", "cond_dim"), CASES)
def test_inverse_round_trip(name, dim, cond_dim, float64):
    block = _build(name, dim, cond_dim)
    x, cond = _inputs(dim, cond_dim)
    y, log_det = block(x, cond)
    x_back, inv_log_det = block.inverse(y, cond)
    torch.testing.assert_close(x_back, x, atol=1e-6, rtol=0)
    torch.testing.assert_close(log_det + inv_log_det, torch.zeros(N), atol=1e-9, rtol=0)
    # and the other way round: inverse first
    y_back, _ = block(block.inverse(x, cond)[0], cond)
    torch.testing.assert_close(y_back, x, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("name", "dim", "cond_dim"), CASES)
def test_log_det_matches_autograd_jacobian(name, dim, cond_dim, float64):
    block = _build(name, dim, cond_dim)
    x, cond = _inputs(dim, cond_dim)
    _, log_det = block(x, cond)
    _, inv_log_det = block.inverse(x, cond)
    for i in range(N):
        c_i = None if cond is None else cond[i : i + 1]
        for fn, expected in ((block, log_det), (block.inverse, inv_log_det)):
            jac = torch.autograd.functional.jacobian(lambda row, fn=fn, c_i=c_i: fn(row, c_i)[0], x[i : i + 1])
            sign, log_abs_det = torch.linalg.slogdet(jac.reshape(dim, dim))
            assert sign != 0
            torch.testing.assert_close(expected[i], log_abs_det, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize(("name", "dim", "cond_dim"), CASES)
def test_gradients_reach_every_parameter(name, dim, cond_dim):
    block = _build(name, dim, cond_dim)
    x, cond = _inputs(dim, cond_dim)
    x.requires_grad_(True)
    y, log_det = block(x, cond)
    (y.pow(2).sum() - log_det.sum()).backward()
    assert x.grad is not None
    assert x.grad.abs().sum() > 0
    for param_name, param in block.named_parameters():
        assert param.grad is not None, param_name
        assert param.grad.abs().sum() > 0, param_name
    # fixed random mixing is never trained
    trainable = {param_name.rsplit(".", 1)[-1] for param_name, _ in block.named_parameters()}
    assert not trainable & {"w_perm", "w_perm_inv", "perm", "inv_perm"}


@pytest.mark.parametrize(("name", "dim", "cond_dim"), CASES)
def test_state_dict_round_trip(name, dim, cond_dim):
    block = _build(name, dim, cond_dim)
    buffer = io.BytesIO()
    torch.save(block.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(123)  # a different subnet init, and different perturbation below
    fresh = BUILDERS[name][0](dim, cond_dim)
    x, cond = _inputs(dim, cond_dim)
    if any(True for _ in fresh.parameters()):
        assert not torch.equal(fresh(x, cond)[0], block(x, cond)[0])
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    for out, expected in zip(fresh(x, cond), block(x, cond), strict=True):
        torch.testing.assert_close(out, expected, rtol=0, atol=0)


@pytest.mark.parametrize(("name", "dim", "cond_dim"), CASES)
def test_train_eval_parity(name, dim, cond_dim):
    block = _build(name, dim, cond_dim)
    x, cond = _inputs(dim, cond_dim)
    train_out = block.train()(x, cond)
    eval_out = block.eval()(x, cond)
    for a, b in zip(train_out, eval_out, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize(("name", "dim", "cond_dim"), CASES)
def test_input_validation(name, dim, cond_dim):
    block = _build(name, dim, cond_dim)
    x, cond = _inputs(dim, cond_dim)
    with pytest.raises(ValueError, match=rf"\(N, {dim}\)"):
        block(torch.randn(N, dim + 1), cond)
    with pytest.raises(ValueError, match=rf"\(N, {dim}\)"):
        block.inverse(x.unsqueeze(0), cond)
    if cond_dim:
        with pytest.raises(ValueError, match="got None"):
            block(x)
        with pytest.raises(ValueError, match=rf"\(N, {cond_dim}\)"):
            block(x, torch.randn(N, cond_dim + 1))
        with pytest.raises(ValueError, match="rows"):
            block(x, torch.randn(N + 1, cond_dim))
    else:
        with pytest.raises(ValueError, match="unconditional"):
            block(x, torch.randn(N, 2))
