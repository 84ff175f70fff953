# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Coupling blocks: equivalence with FrEIA 0.2's AllInOneBlock, DifferNet's equations, clamps and errors."""

import math

import pytest
import torch
from FrEIA.modules import AllInOneBlock
from torch import nn

from anomalib_nfplus.flows import AllInOneCoupling, DoubleAffineCoupling, allinone_subnet, mlp_subnet_factory


def _freia_block(ours: AllInOneCoupling, global_affine_init: float = 1.0) -> AllInOneBlock:
    """Freshly initialised FrEIA block with the same configuration as ``ours``."""
    return AllInOneBlock(
        [(ours.dim,)],
        dims_c=[(ours.cond_dim,)] if ours.cond_dim else [],
        subnet_constructor=allinone_subnet,
        affine_clamping=ours.clamp_alpha,
        global_affine_init=global_affine_init,
        global_affine_type="SOFTPLUS",
        permute_soft=ours.permute_soft,
    )


def _freia_twin(ours: AllInOneCoupling) -> AllInOneBlock:
    """FrEIA block with the same configuration and parameters as ``ours``."""
    ref = _freia_block(ours)
    with torch.no_grad():
        ref.subnet.load_state_dict(ours.subnet.state_dict())
        ref.w_perm.copy_(ours.w_perm)
        ref.w_perm_inv.copy_(ours.w_perm.T)
        ref.global_scale.copy_(ours.global_scale.view_as(ref.global_scale))
        ref.global_offset.copy_(ours.global_offset.view_as(ref.global_offset))
    return ref


@pytest.mark.parametrize("permute_soft", [True, False], ids=["soft", "hard"])
@pytest.mark.parametrize("cond_dim", [0, 4])
@pytest.mark.parametrize("dim", [6, 7])
@pytest.mark.parametrize("perturb", [False, True], ids=["init", "perturbed"])
def test_allinone_matches_freia(permute_soft, cond_dim, dim, perturb):
    torch.manual_seed(0)
    ours = AllInOneCoupling(dim, cond_dim, permute_soft=permute_soft, seed=11)
    if perturb:
        with torch.no_grad():
            ours.global_scale.add_(torch.randn(dim))
            ours.global_offset.add_(torch.randn(dim))
    ref = _freia_twin(ours)

    x = 2.0 * torch.randn(16, dim)
    conds = [torch.randn(16, cond_dim)] if cond_dim else []
    cond = conds[0] if cond_dim else None
    (y_ref,), log_det_ref = ref((x,), c=conds)
    y, log_det = ours(x, cond)
    torch.testing.assert_close(y, y_ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(log_det, log_det_ref, atol=1e-6, rtol=1e-6)

    (x_ref,), inv_log_det_ref = ref((y,), c=conds, rev=True)
    x_back, inv_log_det = ours.inverse(y, cond)
    torch.testing.assert_close(x_back, x_ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(inv_log_det, inv_log_det_ref, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("global_affine_init", [0.3, 1.0, 2.5])
def test_allinone_global_affine_init(global_affine_init):
    ours = AllInOneCoupling(5, global_affine_init=global_affine_init, seed=0)
    torch.testing.assert_close(ours.global_scaling(), torch.full((5,), global_affine_init))
    # same pre-activation initial value as a fresh FrEIA block
    fresh_freia = _freia_block(ours, global_affine_init)
    torch.testing.assert_close(ours.global_scale.detach(), fresh_freia.global_scale.detach().flatten())
    ref = _freia_twin(ours)
    x = torch.randn(8, 5)
    (y_ref,), log_det_ref = ref((x,))
    y, log_det = ours(x)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(log_det, log_det_ref)


def test_allinone_structure():
    block = AllInOneCoupling(7, cond_dim=3, permute_soft=False, seed=0)
    assert block.split == (4, 3)  # x1 = ceil(D/2), as FrEIA
    first, last = block.subnet[0], block.subnet[-1]
    assert (first.in_features, first.out_features, last.out_features) == (4 + 3, 14, 2 * 3)
    assert set(dict(block.named_buffers())) == {"w_perm"}  # stored once: the inverse pass uses its transpose
    assert {name for name, _ in block.named_parameters() if not name.startswith("subnet")} == {
        "global_scale",
        "global_offset",
    }
    # hard permutation: a permutation matrix
    w = block.w_perm
    assert torch.equal(w.sum(0), torch.ones(7))
    assert torch.equal(w.sum(1), torch.ones(7))


def test_allinone_soft_mixing_is_a_rotation(float64):
    w = AllInOneCoupling(9, permute_soft=True, seed=2).w_perm
    torch.testing.assert_close(w @ w.T, torch.eye(9), atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(w), torch.tensor(1.0))
    assert (w.abs() < 0.999).all()  # dense, not a permutation


def test_allinone_seed_controls_mixing():
    same = AllInOneCoupling(6, seed=4).w_perm, AllInOneCoupling(6, seed=4).w_perm
    other = AllInOneCoupling(6, seed=5).w_perm
    assert torch.equal(*same)
    assert not torch.allclose(same[0], other)
    from_generator = AllInOneCoupling(6, generator=torch.Generator().manual_seed(4)).w_perm
    assert torch.equal(from_generator, same[0])


def test_allinone_log_scale_clamp():
    block = AllInOneCoupling(6, clamp_alpha=1.9, permute_soft=False)
    with torch.no_grad():
        block.subnet[-1].bias.fill_(1e4)  # saturate the clamp
    _, log_det = block(torch.randn(4, 6))
    # 3 active channels, global log-scale 0 at init: log_det -> 3 * 1.9 from below
    assert torch.all(log_det <= 3 * 1.9)
    assert torch.all(log_det > 3 * 1.9 - 1e-3)


def _double_affine_reference(block: DoubleAffineCoupling, x: torch.Tensor, alpha: float) -> tuple:
    """DifferNet's equations (official DifferNet code) written out directly."""
    half = x.shape[1] // 2
    x1, x2 = x[:, :half], x[:, half:]
    r2 = block.subnet2(x2)
    s2 = alpha * 0.6366197723675814 * torch.atan(r2[:, :half] / alpha)
    y1 = torch.exp(s2) * x1 + r2[:, half:]
    r1 = block.subnet1(y1)
    s1 = alpha * 0.6366197723675814 * torch.atan(r1[:, : x2.shape[1]] / alpha)
    y2 = torch.exp(s1) * x2 + r1[:, x2.shape[1] :]
    return torch.cat([y1, y2], 1), s1.sum(1) + s2.sum(1)


@pytest.mark.parametrize("dim", [6, 7])
def test_double_affine_matches_differnet_equations(dim):
    torch.manual_seed(0)
    block = DoubleAffineCoupling(dim, subnet_factory=mlp_subnet_factory(32, 3), clamp_alpha=3.0)
    assert block.split == (dim // 2, dim - dim // 2)  # DifferNet: x1 = floor(D/2)
    x = torch.randn(10, dim)
    y_ref, log_det_ref = _double_affine_reference(block, x, 3.0)
    y, log_det = block(x)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(log_det, log_det_ref)


def test_double_affine_default_subnet_is_differnet_mlp():
    block = DoubleAffineCoupling(8)
    linears = [m for m in block.subnet1 if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4, 2048), (2048, 2048), (2048, 2048), (2048, 8)]
    assert sum(isinstance(m, nn.ReLU) for m in block.subnet1) == 3


@pytest.mark.parametrize("alpha", [0.5, 3.0])
def test_double_affine_log_scale_within_clamp(alpha):
    dim = 6
    block = DoubleAffineCoupling(dim, subnet_factory=mlp_subnet_factory(8, 1), clamp_alpha=alpha)
    for sign in (1.0, -1.0):
        with torch.no_grad():
            for subnet in (block.subnet1, block.subnet2):
                subnet[-1].weight.zero_()
                subnet[-1].bias.fill_(sign * 1e6)
        _, log_det = block(torch.randn(5, dim))
        # each of the D channels gets one log-scale in (-alpha, alpha); saturated here
        assert torch.all(log_det.abs() < dim * alpha)
        torch.testing.assert_close(log_det, torch.full((5,), sign * dim * alpha), atol=1e-3, rtol=0)


def test_condition_changes_output():
    torch.manual_seed(0)
    for block in (AllInOneCoupling(6, 3), DoubleAffineCoupling(6, 3, subnet_factory=mlp_subnet_factory(8, 1))):
        x = torch.randn(4, 6)
        y_a, _ = block(x, torch.zeros(4, 3))
        y_b, _ = block(x, torch.ones(4, 3))
        assert not torch.allclose(y_a, y_b)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dim": 1}, "dim >= 2"),
        ({"dim": 4, "clamp_alpha": 0.0}, "clamp_alpha"),
        ({"dim": 0}, "positive int"),
        ({"dim": 4, "cond_dim": -1}, "cond_dim"),
    ],
)
@pytest.mark.parametrize("cls", [AllInOneCoupling, DoubleAffineCoupling])
def test_invalid_arguments(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_allinone_invalid_specific_arguments():
    with pytest.raises(ValueError, match="global_affine_init"):
        AllInOneCoupling(4, global_affine_init=0.0)
    with pytest.raises(ValueError, match="either seed"):
        AllInOneCoupling(4, seed=1, generator=torch.Generator())


def test_global_scaling_is_positive_and_matches_softplus():
    block = AllInOneCoupling(4)
    with torch.no_grad():
        block.global_scale.copy_(torch.tensor([-50.0, -1.0, 3.0, 100.0]))
    expected = 0.1 * 2.0 * torch.log1p(torch.exp(0.5 * torch.tensor([-50.0, -1.0, 3.0])))
    torch.testing.assert_close(block.global_scaling()[:3], expected)
    assert math.isclose(block.global_scaling()[3].item(), 10.0, rel_tol=1e-6)  # linear regime of softplus


@pytest.mark.parametrize(
    "factory",
    [
        lambda i, o: nn.Linear(i, o),  # not a Sequential
        lambda i, o: nn.Sequential(nn.ReLU(), nn.Linear(i, o)),  # no first linear layer
        lambda i, o: nn.Sequential(nn.Linear(i, 4), nn.LayerNorm(4), nn.Linear(4, o)),  # other parametrised layer
    ],
    ids=["linear", "activation_first", "layer_norm"],
)
def test_allinone_refuses_subnets_its_fused_path_cannot_split(factory):
    with pytest.raises(TypeError, match=r"starts with nn\.Linear"):
        AllInOneCoupling(6, 3, subnet_factory=factory)


def test_allinone_fused_path_in_bfloat16_subnets_stays_close_and_in_float32():
    torch.manual_seed(0)
    block = AllInOneCoupling(8, 4, subnet_factory=mlp_subnet_factory(16, 2), seed=0)
    x, cond = torch.randn(10, 8), torch.randn(10, 4)
    exact = block(x, cond)
    low = block.forward_with_term(x, block.condition_term(cond), torch.bfloat16)
    for a, b in zip(low, exact, strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=0.05, atol=0.05)
