# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The warm-up + cosine schedule reproduces the official values and keeps per-group learning rates."""

import math
from types import SimpleNamespace

import pytest
import torch

from anomalib_nfplus.models.components import (
    OFFICIAL_WARMUP_FRACTION,
    schedule_epochs,
    warmup_cosine,
    warmup_cosine_factor,
    warmup_cosine_scheduler,
)


def official_lr(epoch: float, lr: float = 2e-4, meta_epochs: int = 25, warm: int = 2) -> float:
    """CFLOW-AD's adjust/warm-up maths written out independently (official CFLOW-AD code)."""
    eta_min = lr * 0.1**3

    def cosine(e: float) -> float:
        return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * e / meta_epochs)) / 2

    if epoch < warm:
        return lr / 10 + (cosine(warm) - lr / 10) * epoch / warm
    return cosine(epoch)


@pytest.mark.parametrize("epoch", [0.0, 0.5, 1.99, 2.0, 9.0, 16.0, 24.0])
def test_matches_the_official_schedule(epoch):
    assert 2e-4 * warmup_cosine_factor(epoch, 25, 2) == pytest.approx(official_lr(epoch), rel=1e-9)


def test_reference_values():
    # the official schedule's values: 1.43e-4 at e=9, 5.8e-5 at e=16, 9.9e-7 at e=24
    assert 2e-4 * warmup_cosine_factor(9, 25, 2) == pytest.approx(1.43e-4, rel=0.01)
    assert 2e-4 * warmup_cosine_factor(16, 25, 2) == pytest.approx(5.8e-5, rel=0.02)
    assert 2e-4 * warmup_cosine_factor(24, 25, 2) == pytest.approx(9.9e-7, rel=0.02)


def test_scheduler_steps_per_batch_and_keeps_group_ratios():
    w1, w2 = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([{"params": [w1], "lr": 1.0}, {"params": [w2], "lr": 3.0}])
    sched = warmup_cosine_scheduler(opt, steps_per_epoch=4, total_epochs=2, warmup_epochs=1)
    seen = []
    for _ in range(8):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert seen[0] == pytest.approx([0.1, 0.3])
    assert all(b == pytest.approx(3 * a) for a, b in seen)
    assert seen[2][0] == pytest.approx(warmup_cosine_factor(0.5, 2, 1))
    assert seen[4][0] > seen[7][0]


@pytest.mark.parametrize(("max_epochs", "expected"), [(25, 25), (None, 1), (-1, 1), (0, 1)])
def test_schedule_length_falls_back_to_one_epoch(max_epochs, expected):
    assert schedule_epochs(SimpleNamespace(max_epochs=max_epochs)) == expected


@pytest.mark.parametrize(("warmup_epochs", "expected"), [(None, OFFICIAL_WARMUP_FRACTION * 25), (1.0, 1.0)])
def test_optimizer_config_uses_the_official_warmup_share_by_default(warmup_epochs, expected):
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([weight], lr=1.0)
    trainer = SimpleNamespace(max_epochs=25, estimated_stepping_batches=250)
    config = warmup_cosine(optimizer, trainer, warmup_epochs)
    assert config["optimizer"] is optimizer
    assert config["lr_scheduler"]["interval"] == "step"
    factor = config["lr_scheduler"]["scheduler"].lr_lambdas[0]
    assert factor(0) == pytest.approx(0.1)  # warm-up starts at lr / 10
    # 10 steps per epoch; half-way through the warm-up the factor tells its length
    assert factor(5 * expected) == pytest.approx(warmup_cosine_factor(expected / 2, 25, expected))
