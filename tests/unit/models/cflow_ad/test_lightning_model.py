# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""CflowAD (AnomalibModule): arguments, hyperparameters, pre-processor, schedule."""

from types import SimpleNamespace

import pytest
import torch
from anomalib.models import AnomalibModule

from anomalib_nfplus.models.cflow_ad import CflowAD
from anomalib_nfplus.models.cflow_ad.lightning_model import WARMUP_FRACTION
from anomalib_nfplus.models.components.positional_flows import subnet_dtype

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


@pytest.mark.parametrize(("warmup_epochs", "expected"), [(None, WARMUP_FRACTION * 25), (1.0, 1.0)])
def test_default_warm_up_is_the_official_share(monkeypatch, warmup_epochs, expected):
    model = CflowAD(**TINY, warmup_epochs=warmup_epochs)
    seen = {}
    monkeypatch.setattr(model, "warmup_cosine", lambda optimizer, warmup: seen.setdefault("warmup", warmup))
    monkeypatch.setattr(CflowAD, "trainer", SimpleNamespace(max_epochs=25))
    model.configure_optimizers()
    assert seen["warmup"] == pytest.approx(expected)


def test_subnet_precision_resolves_per_device():
    cpu = torch.device("cpu")
    assert subnet_dtype("float32", cpu) is None
    assert subnet_dtype("bfloat16", cpu) is torch.bfloat16
    assert subnet_dtype("auto", torch.device("meta")) is None
    native = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert subnet_dtype("auto", cpu) is (torch.bfloat16 if native else None)
