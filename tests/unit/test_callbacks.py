# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""PerCategoryMetrics: per-category AUROC tables, and when the plugin's models add the callback."""

import math
from types import SimpleNamespace

import pytest
import torch
from anomalib.data import ImageBatch
from anomalib.post_processing import PostProcessor

from anomalib_nfplus.callbacks import (
    PerCategoryMetrics,
    category_aurocs,
    category_metrics_callbacks,
    runs_before_post_processing,
)
from anomalib_nfplus.data.unified import UnifiedImageBatch


def _trainer(datamodule: object, callbacks: list | None = None) -> SimpleNamespace:
    return SimpleNamespace(datamodule=datamodule, callbacks=callbacks or [])


def test_added_for_data_with_class_names_only():
    assert [type(c) for c in category_metrics_callbacks(_trainer(SimpleNamespace(class_names=["a"])))] == [
        PerCategoryMetrics
    ]
    assert category_metrics_callbacks(_trainer(SimpleNamespace(category="bottle"))) == []
    assert category_metrics_callbacks(_trainer(None)) == []
    assert category_metrics_callbacks(None) == []


def test_opt_out_and_an_existing_callback_are_respected():
    opted_out = SimpleNamespace(class_names=["a", "b"], category_metrics=False)
    assert category_metrics_callbacks(_trainer(opted_out)) == []
    mine = PerCategoryMetrics(class_names=["x", "y"])
    assert category_metrics_callbacks(_trainer(SimpleNamespace(class_names=["a", "b"]), [mine])) == []


def test_category_aurocs_per_class_and_mean():
    scores = {0: [torch.tensor([0.1, 0.9, 0.2, 0.8])], 1: [torch.tensor([0.5, 0.4])]}
    labels = {0: [torch.tensor([0, 1, 0, 1])], 1: [torch.tensor([0, 1])]}
    maps = {0: [torch.tensor([0.1, 0.2, 0.9])]}
    masks = {0: [torch.tensor([False, True, True])]}
    results = category_aurocs(scores, labels, maps, masks, ["a", "b"])
    assert results["image_AUROC/a"] == pytest.approx(1.0)
    assert results["image_AUROC/b"] == pytest.approx(0.0)
    assert results["image_AUROC/mean"] == pytest.approx(0.5)
    assert results["pixel_AUROC/a"] == pytest.approx(1.0)
    assert results["pixel_AUROC/mean"] == pytest.approx(1.0)
    assert "pixel_AUROC/b" not in results


def test_category_aurocs_rank_raw_scores_of_any_range():
    # torchmetrics' sigmoid is exactly 1.0 from about 16.6 in float32: these scores would all tie (0.5)
    image = {0: [torch.tensor([40.0, 20.0, 19.0, 35.0, 18.0])], 1: [torch.tensor([510.0, 39_392.0, 2_000.0])]}
    image_labels = {0: [torch.tensor([1, 0, 0, 1, 1])], 1: [torch.tensor([0, 1, 0])]}
    maps = {0: [torch.tensor([-537.0, -12.0, 88.7, 88.7, 1e4])]}  # negative, tied and huge pixel values
    masks = {0: [torch.tensor([False, False, True, False, True])]}
    results = category_aurocs(image, image_labels, maps, masks, ["a", "b"])
    assert results["image_AUROC/a"] == pytest.approx(2 / 3)
    assert results["image_AUROC/b"] == pytest.approx(1.0)
    # anomalous pixels 88.7 (ties one normal) and 1e4, against normal -537, -12, 88.7: (3 + 2.5) / 6
    assert results["pixel_AUROC/a"] == pytest.approx(5.5 / 6)


def test_single_label_category_is_nan_and_left_out_of_the_mean():
    scores = {0: [torch.tensor([0.1, 0.9])], 1: [torch.tensor([0.5, 0.4])]}
    labels = {0: [torch.tensor([0, 1])], 1: [torch.tensor([1, 1])]}
    results = category_aurocs(scores, labels, {}, {}, ["a", "b"])
    assert math.isnan(results["image_AUROC/b"])
    assert results["image_AUROC/mean"] == pytest.approx(1.0)


def _run(callback: PerCategoryMetrics, callbacks: list, batches: list[tuple[list, list, list]]) -> dict:
    """Feed ``(classes, labels, raw scores)`` batches; a later post-processor then clamps every score to 1."""
    logged: dict = {}
    module = SimpleNamespace(log=lambda key, value, **_: logged.__setitem__(key, value))
    trainer = SimpleNamespace(datamodule=SimpleNamespace(class_names=["a", "b"]), barebones=False, callbacks=callbacks)
    callback.on_test_epoch_start(trainer, module)
    for index, (classes, labels, scores) in enumerate(batches):
        batch = UnifiedImageBatch(
            image=torch.rand(2, 3, 4, 4), gt_label=torch.tensor(labels), class_index=torch.tensor(classes)
        )
        batch.update(pred_score=torch.tensor(scores))
        callback.on_test_batch_end(trainer, module, batch, batch, index)
        batch.update(pred_score=torch.ones(2))  # anomalib's normalisation, clamped to [0, 1]: all tied
    callback.on_test_epoch_end(trainer, module)
    return logged


BATCHES = [([0, 0], [0, 1], [2.0, 3.0]), ([1, 1], [1, 0], [5.0, 4.0])]


def test_callback_before_the_post_processor_reads_the_models_own_scores():
    callback = PerCategoryMetrics()
    logged = _run(callback, [callback, PostProcessor()], BATCHES)
    assert logged == {"image_AUROC/a": 1.0, "image_AUROC/b": 1.0, "image_AUROC/mean": 1.0}
    assert callback.results == logged


def test_callback_after_the_post_processor_reads_clamped_scores_and_warns(caplog: pytest.LogCaptureFixture):
    callback = PerCategoryMetrics()
    with caplog.at_level("WARNING", logger="anomalib_nfplus.callbacks"):
        logged = _run(callback, [PostProcessor(), callback], BATCHES)
    assert logged == {"image_AUROC/a": 0.5, "image_AUROC/b": 0.5, "image_AUROC/mean": 0.5}  # ties count one half
    assert "runs after anomalib's PostProcessor" in caplog.text


def test_one_class_name_scores_single_category_batches():
    logged: dict = {}
    module = SimpleNamespace(log=lambda key, value, **_: logged.__setitem__(key, value))
    trainer = SimpleNamespace(datamodule=SimpleNamespace(category="bottle"), barebones=False, callbacks=[])
    callback = PerCategoryMetrics(class_names=["bottle"], pixel=False)
    callback.on_test_epoch_start(trainer, module)
    batch = ImageBatch(image=torch.rand(3, 3, 4, 4), gt_label=torch.tensor([0, 1, 1]))
    batch.update(pred_score=torch.tensor([0.2, 0.1, 0.9]))
    callback.on_test_batch_end(trainer, module, batch, batch, 0)
    callback.on_test_epoch_end(trainer, module)
    assert logged == {"image_AUROC/bottle": 0.5, "image_AUROC/mean": 0.5}


def test_plugin_models_list_the_callback_before_the_post_processor():
    from anomalib_nfplus.models import CflowAD

    module = CflowAD(backbone="tf_efficientnet_lite0", layers=["blocks.4"], pre_trained=False)
    module._trainer = SimpleNamespace(datamodule=SimpleNamespace(class_names=["a", "b"]), callbacks=[])
    callbacks = module.configure_callbacks()
    assert isinstance(callbacks[0], PerCategoryMetrics)
    assert runs_before_post_processing(callbacks[0], callbacks)
    assert any(isinstance(callback, PostProcessor) for callback in callbacks)


def test_callback_skips_ordinary_batches():
    logged = {}
    module = SimpleNamespace(log=lambda key, value, **_: logged.__setitem__(key, value))
    trainer = SimpleNamespace(datamodule=None, barebones=False)
    callback = PerCategoryMetrics()
    callback.on_test_epoch_start(trainer, module)
    batch = ImageBatch(image=torch.rand(2, 3, 4, 4), gt_label=torch.tensor([0, 1]), pred_score=torch.rand(2))
    callback.on_test_batch_end(trainer, module, batch, batch, 0)
    callback.on_test_epoch_end(trainer, module)
    assert logged == {}
