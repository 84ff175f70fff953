# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""HostDefaultsMixin: DDP set-up, and the per-category metrics the models add on multi-class data."""

from types import SimpleNamespace

from anomalib_nfplus.callbacks import PerCategoryMetrics
from tests.unit.models.components.modules import Tiny


def test_ddp_strategy_is_told_not_to_broadcast_buffers():
    module = Tiny()
    for given, expected in (({}, False), ({"broadcast_buffers": True}, True)):  # the user's choice is kept
        strategy = SimpleNamespace(_ddp_kwargs=dict(given))
        module._trainer = SimpleNamespace(strategy=strategy)
        module.configure_model()
        assert strategy._ddp_kwargs["broadcast_buffers"] is expected
    module._trainer = SimpleNamespace(strategy=SimpleNamespace())  # another strategy: nothing to set
    module.configure_model()


def _added(datamodule: object, callbacks: list | None = None) -> list[type]:
    module = Tiny()
    module._trainer = SimpleNamespace(datamodule=datamodule, callbacks=callbacks or [])
    return [type(callback) for callback in module.configure_callbacks()]


def test_multi_class_data_gets_the_per_category_metrics():
    assert PerCategoryMetrics in _added(SimpleNamespace(class_names=["a", "b"]))


def test_single_category_data_opted_out_data_and_explicit_callbacks_get_none():
    assert PerCategoryMetrics not in _added(SimpleNamespace(category="bottle"))  # an anomalib datamodule
    assert PerCategoryMetrics not in _added(None)
    assert PerCategoryMetrics not in _added(SimpleNamespace(class_names=["a", "b"], category_metrics=False))
    # the user's own instance (its class names, its pixel setting) is kept: Lightning would replace it otherwise
    assert PerCategoryMetrics not in _added(SimpleNamespace(class_names=["a"]), [PerCategoryMetrics(pixel=False)])


def test_no_trainer_no_metrics():
    assert PerCategoryMetrics not in [type(callback) for callback in Tiny().configure_callbacks()]
