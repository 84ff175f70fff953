# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""CflowAD (AnomalibModule): arguments, hyperparameters, pre-processor, schedule."""

from types import SimpleNamespace

import pytest
import torch
from anomalib.models import AnomalibModule

from anomalib_nfplus.flows import subnet_dtype
from anomalib_nfplus.models.cflow_ad import CflowAD
from anomalib_nfplus.models.components import OFFICIAL_WARMUP_FRACTION, warmup_cosine_factor

TINY = {"backbone": "resnet18", "layers": ("layer1", "layer2"), "pre_trained": False, "coupling_blocks": 1}


def test_direct_subclass_with_plain_hyperparameters():
    model = CflowAD(**TINY, condition_dim=16, image_size=(96, 64))
    assert AnomalibModule in CflowAD.__bases__
    assert not model.automatic_optimization
    assert model.hparams["fiber_batch_size"] == 2048
    assert model.hparams["subnet_precision"] == "auto"
    assert all(isinstance(v, int | float | str | bool | tuple | list | type(None)) for v in model.hparams.values())
    assert model.input_size == (96, 64)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fiber_batch_size": 0}, "fiber_batch_size must be None"),
        ({"per_level_steps": True, "fiber_batch_size": None}, "per_level_steps=True needs a fiber_batch_size"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"warmup_epochs": -1.0}, "warmup_epochs must be None"),
        ({"scoring": "mean"}, "scoring must be one of"),
        ({"subnet_precision": "fp16"}, "subnet_precision must be"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CflowAD(**TINY, **kwargs)


@pytest.mark.parametrize(("warmup_epochs", "expected"), [(None, OFFICIAL_WARMUP_FRACTION * 25), (1.0, 1.0)])
def test_default_warm_up_is_the_official_share(monkeypatch, warmup_epochs, expected):
    model = CflowAD(**TINY, warmup_epochs=warmup_epochs)
    monkeypatch.setattr(CflowAD, "trainer", SimpleNamespace(max_epochs=25, estimated_stepping_batches=250))
    factor = model.configure_optimizers()["lr_scheduler"]["scheduler"].lr_lambdas[0]
    # 10 steps per epoch; half-way through the warm-up the factor tells its length
    assert factor(5 * expected) == pytest.approx(warmup_cosine_factor(expected / 2, 25, expected))
    assert factor(5 * expected) != pytest.approx(warmup_cosine_factor(expected / 2, 25, 2 * expected))


def test_subnet_precision_resolves_per_device():
    cpu = torch.device("cpu")
    assert subnet_dtype("float32", cpu) is None
    assert subnet_dtype("bfloat16", cpu) is torch.bfloat16
    assert subnet_dtype("auto", torch.device("meta")) is None
    native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert subnet_dtype("auto", cpu) is (torch.bfloat16 if native else None)


@pytest.mark.parametrize(("fiber_batch_size", "per_level"), [(100, True), (8, False)])
def test_every_step_reaches_or_names_every_decoder_parameter(monkeypatch, fiber_batch_size, per_level):
    """DDP needs a gradient for every parameter at every step: a chunk's loss reaches it or names it idle.

    Per-level steps train one decoder each; with 8-fiber chunks (2 x (8x8 + 4x4) fibers: 20 chunks) there are
    more chunks than the 4x4 level has positions, so it sits out some.
    """
    model = CflowAD(**TINY, condition_dim=8, fiber_batch_size=fiber_batch_size, per_level_steps=per_level)
    steps = []
    monkeypatch.setattr(model, "manual_step", lambda loss, idle=(): steps.append((loss, list(idle))) or loss.detach())
    monkeypatch.setattr(model, "lr_schedulers", lambda: SimpleNamespace(step=lambda: None))
    monkeypatch.setattr(model, "log", lambda *args, **kwargs: None)
    model.train()
    model.training_step(SimpleNamespace(image=torch.rand(2, 3, 32, 32)), 0)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert any(idle for _, idle in steps)
    for loss, idle in steps:
        grads = torch.autograd.grad(loss, trainable, allow_unused=True, retain_graph=True)
        reached = {id(p) for p, grad in zip(trainable, grads, strict=True) if grad is not None}
        named = {id(p) for p in idle}
        assert not reached & named
        assert reached | named == {id(p) for p in trainable}
