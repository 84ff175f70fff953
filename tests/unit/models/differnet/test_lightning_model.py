# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""DifferNet Lightning module: loss, optimiser, validation skipping, argument checks."""

from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.trainer.states import TrainerFn

from anomalib_nfplus.models.differnet import DifferNet, DifferNetLoss

from .conftest import TINY


def _model(**kwargs) -> DifferNet:
    args = {"layers": ["blocks.2"], "pre_trained": False, "image_size": 64, "n_test_transforms": 2, **TINY}
    return DifferNet(visualizer=False, **{**args, **kwargs})


def test_loss_is_mean_nll_per_dimension() -> None:
    z, log_det = torch.randn(5, 6), torch.randn(5)
    expected = sum(0.5 * float(z[i].pow(2).sum()) - float(log_det[i]) for i in range(5)) / 5 / 6
    assert float(DifferNetLoss()(z, log_det)) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="shape"):
        DifferNetLoss()(z, log_det[:3])


def test_optimiser_is_the_papers_adam_on_the_flow_only() -> None:
    model = _model()
    optimizer = model.configure_optimizers()
    group = optimizer.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (2e-4, (0.8, 0.8), 1e-4, 1e-5)
    assert sum(p.numel() for p in group["params"]) == sum(p.numel() for p in model.model.flow.parameters())


def test_training_step_uses_n_views_per_image() -> None:
    model = _model(n_train_transforms=3)
    seen = []
    model.model.register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0].shape[0]))
    out = model.training_step(SimpleNamespace(image=torch.rand(2, 3, 64, 64) * 2 - 1), 0)
    assert seen == [6]
    assert out["loss"].requires_grad


def test_validation_can_skip_all_but_the_last_epoch() -> None:
    model = _model(intermediate_validation=False)
    batch = SimpleNamespace(image=torch.rand(1, 3, 64, 64))
    fitting, validating = SimpleNamespace(fn=TrainerFn.FITTING), SimpleNamespace(fn=TrainerFn.VALIDATING)
    # While the validation loop inside fit runs, trainer.training is False and the function is still "fit".
    model._trainer = SimpleNamespace(state=fitting, training=False, max_epochs=3, current_epoch=0)
    assert model.validation_step(batch) is batch
    model._trainer = SimpleNamespace(state=fitting, training=False, max_epochs=3, current_epoch=2)
    assert model._skips_validation() is False
    model._trainer = SimpleNamespace(state=validating, training=False, max_epochs=3, current_epoch=0)  # validate()
    assert model._skips_validation() is False


def test_invalid_arguments_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="n_train_transforms"):
        _model(n_train_transforms=0)
    with pytest.raises(ValueError, match="test-time transforms"):
        _model(n_test_transforms=0)
