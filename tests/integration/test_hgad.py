# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""HGAD's own behaviour: classes read from unified data, both scoring modes, class-aware checkpoints and export.

Fit/test/predict on one category, checkpoints, export parity, the non-finite-loss stop and the CLI are covered for
every catalogue model in ``test_models.py``; here the model is trained once on two classes.
"""

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.deploy import ExportType
from anomalib.engine import Engine

from anomalib_nfplus.data.unified import Unified
from anomalib_nfplus.deploy import EdgeModel
from tests.helpers.compare import assert_close_to_scale
from tests.helpers.tiny_models import tiny_model

SIZE = 64


def _model(**kwargs: Any) -> Any:
    return tiny_model("HGAD", SIZE, **kwargs)


def _engine(root: Path, **kwargs: Any) -> Engine:
    args = {"max_epochs": 2, "logger": False, "enable_progress_bar": False, "accelerator": "cpu", **kwargs}
    return Engine(default_root_dir=root, enable_model_summary=False, **args)


def _mvtec(root: str, category: str) -> MVTecAD:
    return MVTecAD(root=root, category=category, train_batch_size=4, eval_batch_size=4, num_workers=0)


def _unified(root: str) -> Unified:
    return Unified(
        root=root, categories=["stripes", "dots"], image_size=SIZE, train_batch_size=4, eval_batch_size=4, num_workers=0
    )


@pytest.fixture(scope="module")
def trained(synthetic_root: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Engine, Unified, Path]:
    """HGAD fitted once on two classes (``n_classes`` left to the data), and its checkpoint."""
    torch.manual_seed(0)
    datamodule = _unified(synthetic_root)
    model = _model()
    root = tmp_path_factory.mktemp("hgad_runs")
    engine = _engine(root)
    engine.fit(model, datamodule=datamodule)
    path = root / "unified.ckpt"
    engine.trainer.save_checkpoint(path)
    return model, engine, datamodule, path


def test_unified_fit_reads_classes_and_tests_in_both_modes(trained: tuple[Any, Engine, Unified, Path]) -> None:
    model, engine, datamodule, _ = trained
    assert model.hparams["n_classes"] == 2
    assert model.model.n_classes == 2
    flows, centres, logits = engine.trainer.optimizers[0].param_groups
    assert centres["initial_lr"] == pytest.approx(3 * flows["initial_lr"])  # the 3x the official scheduler loses
    assert logits["initial_lr"] == pytest.approx(flows["initial_lr"])
    assert flows["weight_decay"] == pytest.approx(1e-4)
    assert centres["weight_decay"] == 0.0
    assert flows["betas"] == (0.95, 0.99)
    free = engine.test(model, datamodule=datamodule, verbose=False)[0]
    model.model.scoring = "class_conditional"
    try:
        conditional = engine.test(model, datamodule=datamodule, verbose=False)[0]
    finally:
        model.model.scoring = "label_free"
    for metrics in (free, conditional):
        assert 0.0 <= metrics["image_AUROC"] <= 1.0
        assert np.isfinite(metrics["pixel_AUROC"])


def test_checkpoint_restores_classes_and_strict_loading_explains(trained: tuple[Any, Engine, Unified, Path]) -> None:
    model, _, _, path = trained
    loaded = type(model).load_from_checkpoint(path)
    assert loaded.model.n_classes == 2
    torch.testing.assert_close(loaded.model.statistics.maximum, model.model.statistics.maximum)
    three = _model(n_classes=3)
    with pytest.raises(RuntimeError, match="Checkpoint does not match HGAD"):
        three.load_state_dict(model.state_dict())
    other = _model(n_classes=None)
    other.load_state_dict(model.state_dict())  # a lazily built prior takes the checkpoint's class count
    assert other.model.n_classes == 2


def test_unified_checkpoint_scores_single_category_data_in_a_fresh_model(
    trained: tuple[Any, Engine, Unified, Path], synthetic_root: str, tmp_path: Path
) -> None:
    model, engine, _, path = trained
    single = _mvtec(synthetic_root, "dots")
    single.setup()
    expected = torch.cat([p.pred_score for p in engine.predict(model, dataloaders=single.test_dataloader())])

    fresh = _model()  # n_classes=None, as a user would build it
    predictions = _engine(tmp_path).predict(fresh, dataloaders=single.test_dataloader(), ckpt_path=path)
    assert fresh.model.n_classes == 2
    torch.testing.assert_close(torch.cat([p.pred_score for p in predictions]), expected, rtol=1e-5, atol=1e-7)

    metrics = _engine(tmp_path).test(_model(), datamodule=_mvtec(synthetic_root, "dots"), ckpt_path=path)[0]
    assert 0.0 <= metrics["image_AUROC"] <= 1.0


@pytest.mark.export
def test_two_class_model_exports_label_free_scoring_only_and_matches_torch(
    trained: tuple[Any, Engine, Unified, Path], tmp_path: Path
) -> None:
    model, engine, datamodule, _ = trained
    model.model.scoring = "class_conditional"
    try:
        with pytest.raises(NotImplementedError, match="label_free"):
            engine.export(model, ExportType.OPENVINO, export_root=tmp_path / "cc", input_size=(SIZE, SIZE))
    finally:
        model.model.scoring = "label_free"
    xml = engine.export(model, ExportType.OPENVINO, export_root=tmp_path, input_size=(SIZE, SIZE))
    images = next(iter(datamodule.test_dataloader())).image[:2]
    model.eval()
    with torch.no_grad():
        expected = model(images)
    result = EdgeModel(xml, precision="f32").infer(images.numpy())
    assert_close_to_scale(result["pred_score"].reshape(-1), expected.pred_score, 1e-4, "OpenVINO score")
    # atol 1e-4 on the post-processed [0, 1] map: normal pixels come from L - sum_l exp(v_l - max_l), whose float32
    # cancellation (~1e-7 * L raw) the normaliser's 1 / (max - min) amplifies for a barely trained two-class model.
    np.testing.assert_allclose(result["anomaly_map"], expected.anomaly_map.numpy(), rtol=1e-4, atol=1e-4)


def test_multi_class_model_needs_labels(synthetic_root: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs each image's class index"):
        _engine(tmp_path, max_epochs=1, limit_train_batches=1).fit(
            _model(n_classes=2), datamodule=_mvtec(synthetic_root, "stripes")
        )


def test_single_class_datamodule_trains_one_class(synthetic_root: str, tmp_path: Path) -> None:
    model = _model()
    _engine(tmp_path, max_epochs=1).fit(model, datamodule=_mvtec(synthetic_root, "dots"))
    assert model.hparams["n_classes"] == 1


def test_fiber_chunks_take_one_optimizer_step_each(synthetic_root: str, tmp_path: Path) -> None:
    """64 px, blocks.4 at scales 1 and 0.5: 16 + 4 positions, 80 fibers per batch of 4 -> 5 chunks of about 16."""
    model = _model(fiber_batch_size=16)
    engine = _engine(tmp_path, max_epochs=1, limit_train_batches=2)
    engine.fit(model, datamodule=_mvtec(synthetic_root, "dots"))
    assert engine.trainer.global_step == 2 * 5
    with pytest.raises(ValueError, match="fiber_batch_size"):
        _model(fiber_batch_size=0)
