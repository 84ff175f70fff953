# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""HGAD Lightning module: class labels, per-class statistics, schedule defaults, saved blur (no Trainer needed)."""

from pathlib import Path
from types import SimpleNamespace

import lightning
import pytest
import torch
from anomalib.models import AnomalibModule

from anomalib_nfplus.models.components import flow_pre_processor
from anomalib_nfplus.models.hgad import HGAD, lightning_model
from anomalib_nfplus.models.hgad.anomaly_map import map_index

SIZE = 64


@pytest.fixture(scope="module")
def model() -> HGAD:
    torch.manual_seed(0)
    return HGAD(
        backbone="tf_efficientnet_lite0",
        layers=["blocks.4"],
        pre_trained=False,
        image_size=SIZE,
        n_classes=2,
        coupling_blocks=2,
        condition_dim=16,
        n_intra=2,
        evaluator=False,
        visualizer=False,
    )


def _batch(labels: list[int] | None) -> SimpleNamespace:
    n = 2 if labels is None else len(labels)
    index = None if labels is None else torch.tensor(labels)
    return SimpleNamespace(image=torch.rand(n, 3, SIZE, SIZE), class_index=index)


def test_defaults_follow_the_paper(model: HGAD) -> None:
    assert model.model.feature_extractor.scales == (1.0, 0.5, 0.25)  # one layer: image pyramid
    assert model.model.anomaly_map.blur.sigma == pytest.approx(1.0)  # 4 px at 256 px -> 1 px at 64 px
    assert model.loss.lambda_mi == 100.0
    assert model.loss.label_smoothing == 0.02
    several = HGAD(
        backbone="tf_efficientnet_lite0", layers=["blocks.2", "blocks.4"], pre_trained=False, coupling_blocks=1
    )
    assert several.model.feature_extractor.scales == (1.0,)  # several layers: layers are the levels


def test_class_labels_checked(model: HGAD) -> None:
    assert model.class_labels(_batch([1, 0])).tolist() == [1, 0]
    with pytest.raises(ValueError, match="HGAD has 2 classes and needs each image's class index"):
        model.class_labels(_batch(None))
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\)"):
        model.class_labels(_batch([0, 5]))


def test_subnet_precision_default_reaches_the_flows(monkeypatch) -> None:
    """The constructor's default ("auto") is what fit start applies, not another one."""
    model = HGAD(
        backbone="tf_efficientnet_lite0", layers=["blocks.4"], pre_trained=False, n_classes=1, coupling_blocks=1
    )
    seen = []
    monkeypatch.setattr(
        lightning_model, "use_subnet_precision", lambda module, precision, device: seen.append(precision)
    )
    monkeypatch.setattr(AnomalibModule, "on_fit_start", lambda self: None)
    model.on_fit_start()
    assert seen == ["auto"]


def test_statistics_are_per_class_and_a_class_without_images_is_named(model: HGAD) -> None:
    model.collect_training_statistics([_batch([0, 1]), _batch([1, 1])])
    stats = model.model.statistics
    assert bool(stats.fitted)
    first = map_index(0, 2, n_classes=2)
    assert stats.maximum[first] != stats.maximum[first + 1]  # class 0 and class 1 likelihood maps differ
    with pytest.raises(ValueError, match=r"no training images for class\(es\) \['1'\]"):
        model.collect_training_statistics([_batch([0, 0])])


def test_bad_arguments(model: HGAD) -> None:
    with pytest.raises(ValueError, match="top_k"):
        HGAD(backbone="tf_efficientnet_lite0", pre_trained=False, top_k=2.0)
    with pytest.raises(ValueError, match="scoring"):
        HGAD(backbone="tf_efficientnet_lite0", pre_trained=False, coupling_blocks=1, scoring="best")


def _reached(loss: torch.Tensor, parameters: list[torch.nn.Parameter]) -> set[int]:
    grads = torch.autograd.grad(loss, parameters, allow_unused=True, retain_graph=True)
    return {id(p) for p, grad in zip(parameters, grads, strict=True) if grad is not None}


@pytest.mark.parametrize("intra", [False, True])
def test_every_step_reaches_or_names_every_parameter(model: HGAD, monkeypatch, intra: bool) -> None:
    """DDP needs a gradient for every parameter at every step: a chunk's loss reaches it or names it idle."""
    steps = []
    monkeypatch.setattr(model, "fiber_batch_size", 8)  # 2 x (16 + 4 + 1) fibers: 5 chunks, levels 1, 2 sit out
    monkeypatch.setattr(model, "manual_step", lambda loss, idle=(): steps.append((loss, list(idle))) or loss.detach())
    monkeypatch.setattr(model, "intra_stage", lambda batch_idx: intra)
    monkeypatch.setattr(model, "lr_schedulers", lambda: SimpleNamespace(step=lambda: None))
    monkeypatch.setattr(model, "log", lambda *args, **kwargs: None)
    monkeypatch.setattr(model, "log_dict", lambda *args, **kwargs: None)
    model.train()
    try:
        model.training_step(_batch([0, 1]), 0)
    finally:
        model.eval()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(steps) == 5
    assert any(idle for _, idle in steps)
    for loss, idle in steps:
        reached, named = _reached(loss, trainable), {id(p) for p in idle}
        assert not reached & named
        assert reached | named == {id(p) for p in trainable}
        priors = model.model.priors
        assert (id(priors[0].intra_offsets) in named) is not intra  # the intra-class stage decides


# --- the derived blur belongs to the checkpoint -----------------------------------------------------------------


def _blur_checkpoint(tmp_path: Path) -> tuple[HGAD, Path]:
    """HGAD with ``blur_sigma=None`` and the default ``image_size`` (1024 px) but a 64 px pre-processor, saved."""
    torch.manual_seed(0)
    model = HGAD(
        backbone="tf_efficientnet_lite0",
        layers=["blocks.2"],
        pre_trained=False,
        n_classes=1,
        coupling_blocks=1,
        condition_dim=8,
        n_intra=2,
        pre_processor=flow_pre_processor("tf_efficientnet_lite0", SIZE),
        visualizer=False,
    )
    model.collect_training_statistics([_batch([0, 0, 0])])
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "hgad.ckpt")
    return model.eval(), tmp_path / "hgad.ckpt"


def test_a_derived_blur_is_saved_and_reloaded(tmp_path: Path) -> None:
    model, path = _blur_checkpoint(tmp_path)
    assert model.model.blur_sigma == pytest.approx(1.0)  # 4 px at 256 px -> 1 px at 64 px, not 16 px at 1024 px
    images = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    loaded = HGAD.load_from_checkpoint(path).eval()
    assert loaded.model.blur_sigma == pytest.approx(1.0)
    with torch.no_grad():
        expected, got = model(images), loaded(images)
    torch.testing.assert_close(got.pred_score, expected.pred_score, rtol=0, atol=0)
    torch.testing.assert_close(got.anomaly_map, expected.anomaly_map, rtol=0, atol=0)
    assert torch.load(path, weights_only=True)["hyper_parameters"]["blur_sigma"] == pytest.approx(1.0)
    assert model.hparams["blur_sigma"] is None  # the model's own arguments stay as given
    other = HGAD.load_from_checkpoint(path, pre_processor=flow_pre_processor("tf_efficientnet_lite0", 2 * SIZE))
    assert other.model.blur_sigma == pytest.approx(1.0)  # another pre-processor keeps the trained blur


def test_ckpt_path_into_a_model_that_derived_another_blur(tmp_path: Path) -> None:
    """``Engine.test(HGAD(), ckpt_path=...)``: the checkpoint's blur replaces the one derived at construction."""
    _, path = _blur_checkpoint(tmp_path)
    checkpoint = torch.load(path, weights_only=True)
    args = {"backbone": "tf_efficientnet_lite0", "layers": ["blocks.2"], "pre_trained": False, "n_classes": 1}
    fresh = HGAD(**args, coupling_blocks=1, condition_dim=8, n_intra=2, visualizer=False)
    assert fresh.model.blur_sigma == pytest.approx(16.0)  # derived from its own 1024 px pre-processor
    fresh.on_load_checkpoint(checkpoint)
    assert fresh.model.blur_sigma == pytest.approx(1.0)
    explicit = HGAD(**args, coupling_blocks=1, condition_dim=8, n_intra=2, visualizer=False, blur_sigma=2.0)
    explicit.on_load_checkpoint(checkpoint)
    assert explicit.model.blur_sigma == pytest.approx(2.0)  # a value the user gave is kept
    checkpoint["hyper_parameters"]["blur_sigma"] = None  # saved by an older version
    older = HGAD(**args, coupling_blocks=1, condition_dim=8, n_intra=2, visualizer=False)
    older.on_load_checkpoint(checkpoint)
    assert older.model.blur_sigma == pytest.approx(1.0)  # derived again from the restored 64 px pre-processor
