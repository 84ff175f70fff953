# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""HGAD end to end: unified (2-class) fit/test with both scoring modes, checkpoints, export parity, bad input, CLI."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.deploy import ExportType, OpenVINOInferencer
from anomalib.engine import Engine

from anomalib_nfplus.backbones import offline_weights
from anomalib_nfplus.data.unified import Unified
from anomalib_nfplus.models.components import NonFiniteLossError
from anomalib_nfplus.models.hgad import HGAD

SIZE = 64
ROOT = Path(__file__).resolve().parents[2]
TINY = {"n_blocks": 2, "cond_dim": 32, "n_intra": 3, "image_size": SIZE, "pyramid_scales": (1.0, 0.5)}


def _model(**kwargs) -> HGAD:
    args = {**TINY, **kwargs}
    return HGAD(
        backbone="tf_efficientnet_lite0",
        layers=["blocks.4"],
        pre_trained=False,
        backbone_weights=str(offline_weights("tf_efficientnet_lite0")),
        visualizer=False,
        **args,
    )


def _engine(root: Path, **kwargs) -> Engine:
    args = {"max_epochs": 2, "logger": False, "enable_progress_bar": False, "accelerator": "cpu", **kwargs}
    return Engine(default_root_dir=root, **args)


def _unified(root: str) -> Unified:
    return Unified(
        root=root, categories=["stripes", "dots"], image_size=SIZE, train_batch_size=4, eval_batch_size=4, num_workers=0
    )


@pytest.fixture(scope="module")
def trained(synthetic_root: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[HGAD, Engine, Unified]:
    torch.manual_seed(0)
    datamodule = _unified(synthetic_root)
    model = _model()
    engine = _engine(tmp_path_factory.mktemp("hgad_runs"))
    engine.fit(model, datamodule=datamodule)
    return model, engine, datamodule


def test_unified_fit_reads_classes_and_tests_in_both_modes(trained) -> None:
    model, engine, datamodule = trained
    assert model.hparams["n_classes"] == 2
    assert model.model.n_classes == 2
    assert bool(model.model.statistics.fitted)
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


def test_checkpoint_restores_classes_and_strict_loading_explains(trained, tmp_path: Path) -> None:
    model, engine, _ = trained
    path = tmp_path / "hgad.ckpt"
    engine.trainer.save_checkpoint(path)
    loaded = HGAD.load_from_checkpoint(path)
    assert loaded.model.n_classes == 2
    torch.testing.assert_close(loaded.model.statistics.maximum, model.model.statistics.maximum)
    three = _model(n_classes=3)
    with pytest.raises(RuntimeError, match="Checkpoint does not match HGAD"):
        three.load_state_dict(model.state_dict())
    other = _model(n_classes=None)
    other.load_state_dict(model.state_dict())  # a lazily built prior takes the checkpoint's class count
    assert other.model.n_classes == 2


@pytest.mark.export
def test_openvino_export_matches_torch(trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, engine, datamodule = trained
    model.model.scoring = "class_conditional"
    try:
        with pytest.raises(NotImplementedError, match="label_free"):
            engine.export(model, ExportType.OPENVINO, export_root=tmp_path / "cc", input_size=(SIZE, SIZE))
    finally:
        model.model.scoring = "label_free"
    engine.export(model, ExportType.OPENVINO, export_root=tmp_path, input_size=(SIZE, SIZE))
    monkeypatch.chdir(tmp_path)
    xml = next(tmp_path.rglob("model.xml"))
    inferencer = OpenVINOInferencer(xml, device="CPU", config={"INFERENCE_PRECISION_HINT": "f32"})
    batch = next(iter(datamodule.test_dataloader()))
    model.eval()
    for image in batch.image[:2]:
        with torch.no_grad():
            expected = model(image.unsqueeze(0))
        result = inferencer.predict(image)
        np.testing.assert_allclose(result.pred_score, expected.pred_score.numpy(), rtol=1e-4)
        # atol 1e-4 on the post-processed [0, 1] map: normal pixels come from L - sum_l exp(v_l - max_l), whose
        # float32 cancellation (~1e-7 * L raw) the normaliser's 1 / (max - min) amplifies for a barely trained model.
        np.testing.assert_allclose(
            np.asarray(result.anomaly_map).reshape(-1), expected.anomaly_map.numpy().reshape(-1), rtol=1e-4, atol=1e-4
        )


def test_multi_class_model_needs_labels(synthetic_root: str, tmp_path: Path) -> None:
    datamodule = MVTecAD(root=synthetic_root, category="stripes", train_batch_size=4, eval_batch_size=4, num_workers=0)
    with pytest.raises(ValueError, match="needs each image's class index"):
        _engine(tmp_path, max_epochs=1, limit_train_batches=1).fit(_model(n_classes=2), datamodule=datamodule)


def test_single_class_datamodule_trains_one_class(synthetic_root: str, tmp_path: Path) -> None:
    datamodule = MVTecAD(root=synthetic_root, category="dots", train_batch_size=4, eval_batch_size=4, num_workers=0)
    model = _model()
    engine = _engine(tmp_path, max_epochs=1)
    engine.fit(model, datamodule=datamodule)
    assert model.hparams["n_classes"] == 1
    metrics = engine.test(model, datamodule=datamodule, verbose=False)[0]
    assert 0.0 <= metrics["image_AUROC"] <= 1.0


def test_fiber_chunks_take_one_optimizer_step_each(synthetic_root: str, tmp_path: Path) -> None:
    """64 px, blocks.4 at scales 1 and 0.5: 16 + 4 positions, 80 fibers per batch of 4 -> 5 chunks of about 16."""
    datamodule = MVTecAD(root=synthetic_root, category="dots", train_batch_size=4, eval_batch_size=4, num_workers=0)
    model = _model(fiber_batch_size=16)
    engine = _engine(tmp_path, max_epochs=1, limit_train_batches=2)
    engine.fit(model, datamodule=datamodule)
    assert engine.trainer.global_step == 2 * 5
    with pytest.raises(ValueError, match="fiber_batch_size"):
        _model(fiber_batch_size=0)


def test_non_finite_loss_stops_with_clear_error(synthetic_root: str, tmp_path: Path, monkeypatch) -> None:
    model = _model()
    original = model.loss.forward

    def broken(*args, **kwargs):
        loss, terms = original(*args, **kwargs)
        return loss * float("nan"), terms

    monkeypatch.setattr(model.loss, "forward", broken)
    with pytest.raises(NonFiniteLossError, match="non-finite loss"):
        _engine(tmp_path, max_epochs=1, limit_train_batches=1).fit(model, datamodule=_unified(synthetic_root))


@pytest.mark.slow
def test_cli_train_with_config(synthetic_root: str, tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "anomalib.cli.cli", "train", "--config", str(ROOT / "configs" / "hgad.yaml"),
        "--model.backbone", "tf_efficientnet_lite0", "--model.image_size", str(SIZE), "--model.n_blocks", "2",
        "--model.cond_dim", "32", "--model.n_intra", "3", "--model.pre_trained", "false",
        "--model.backbone_weights", str(offline_weights("tf_efficientnet_lite0")),
        "--data", str(ROOT / "configs" / "data" / "mvtec.yaml"),
        "--data.root", synthetic_root, "--data.category", "stripes", "--data.num_workers", "0",
        "--data.train_batch_size", "4", "--data.eval_batch_size", "4",
        "--trainer.max_epochs", "1", "--default_root_dir", str(tmp_path),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(tmp_path.rglob("*.ckpt"))
