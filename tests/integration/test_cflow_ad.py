# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""CflowAD end to end: Engine fit/test/predict, checkpoints, torch.export, OpenVINO parity, unified data, CLI."""

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
from anomalib_nfplus.models.cflow_ad import CflowAD
from anomalib_nfplus.models.components import NonFiniteLossError

SIZE = 64
ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["blocks.2", "blocks.4", "blocks.6"]
# 64 px is too small for reflect padding on Lite0 (its deepest maps are 2x2); the unit tests cover it at 96 px.
TINY = {"coupling_blocks": 2, "condition_dim": 32, "image_size": SIZE, "reflect_padding": False}


def _model(**kwargs) -> CflowAD:
    return CflowAD(
        backbone="tf_efficientnet_lite0",
        pre_trained=False,
        backbone_weights=str(offline_weights("tf_efficientnet_lite0")),
        visualizer=False,
        **{"layers": LAYERS, **TINY, **kwargs},
    )


def _engine(root: Path, **kwargs) -> Engine:
    args = {"max_epochs": 1, "logger": False, "enable_progress_bar": False, "accelerator": "cpu", **kwargs}
    return Engine(default_root_dir=root, **args)


def _datamodule(root: str) -> MVTecAD:
    return MVTecAD(root=root, category="stripes", train_batch_size=4, eval_batch_size=4, num_workers=0)


@pytest.fixture(scope="module")
def trained(synthetic_root: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[CflowAD, Engine, MVTecAD]:
    torch.manual_seed(0)
    datamodule = _datamodule(synthetic_root)
    model = _model()
    engine = _engine(tmp_path_factory.mktemp("cflow_ad_runs"))
    engine.fit(model, datamodule=datamodule)
    return model, engine, datamodule


def test_fit_test_predict(trained) -> None:
    model, engine, datamodule = trained
    assert bool(model.model.statistics.fitted)
    metrics = engine.test(model, datamodule=datamodule, verbose=False)[0]
    assert 0.0 <= metrics["image_AUROC"] <= 1.0
    assert np.isfinite(metrics["pixel_AUROC"])
    predictions = engine.predict(model, datamodule=datamodule)
    first = predictions[0]
    assert first.pred_score.shape == (4,)
    assert first.anomaly_map.shape[-2:] == (SIZE, SIZE)


def test_checkpoint_round_trip_and_strict_loading(trained, tmp_path: Path) -> None:
    model, engine, _ = trained
    path = tmp_path / "cflow_ad.ckpt"
    engine.trainer.save_checkpoint(path)
    loaded = CflowAD.load_from_checkpoint(path).eval()
    images = torch.rand(2, 3, SIZE, SIZE)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(images).pred_score, model.model(images).pred_score)
    state = model.state_dict()
    state.pop("model.statistics.mean")
    state["model.extra"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match=r"1 missing key.*statistics\.mean.*1 unexpected key.*model\.extra"):
        _model().load_state_dict(state)


def test_torch_export_non_strict_traces_the_anomalib_module(trained) -> None:
    model, _, _ = trained
    model.eval()
    program = torch.export.export(model, (torch.rand(1, 3, SIZE, SIZE),), strict=False)
    assert program is not None


@pytest.mark.export
def test_openvino_matches_torch(trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, engine, _ = trained
    monkeypatch.chdir(tmp_path)  # OpenVINOInferencer writes ./openvino_cache
    path = engine.export(model, ExportType.OPENVINO, export_root=tmp_path, input_size=(SIZE, SIZE))
    inferencer = OpenVINOInferencer(path, device="CPU", config={"INFERENCE_PRECISION_HINT": "f32"})
    image = torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    model.eval()
    with torch.no_grad():
        expected = model(image.unsqueeze(0))
    result = inferencer.predict(image.numpy())
    np.testing.assert_allclose(np.ravel(result.pred_score), expected.pred_score.numpy(), rtol=1e-4)
    # atol: the post-processed map lies in [0, 1]; values near 0 have no meaningful relative precision.
    np.testing.assert_allclose(np.ravel(result.anomaly_map), expected.anomaly_map.numpy().ravel(), rtol=1e-4, atol=1e-5)


def test_unified_multi_class_in_the_official_per_level_mode(synthetic_root: str, tmp_path: Path) -> None:
    """Two categories mixed, no class labels used; the faithful one-step-per-256-fibers loop with one level."""
    torch.manual_seed(0)
    datamodule = Unified(
        root=synthetic_root,
        categories=["stripes", "dots"],
        image_size=SIZE,
        train_batch_size=4,
        eval_batch_size=4,
        num_workers=0,
    )
    model = _model(layers=["blocks.4"], fiber_batch_size=256, per_level_steps=True)
    engine = _engine(tmp_path)
    engine.fit(model, datamodule=datamodule)
    assert engine.trainer.global_step == 4  # 16 images, 4 per batch, 4x4 fibers each: one (smaller) chunk per batch
    metrics = engine.test(model, datamodule=datamodule, verbose=False)[0]
    assert 0.0 <= metrics["image_AUROC"] <= 1.0


def test_non_finite_loss_stops_naming_the_step(synthetic_root: str, tmp_path: Path) -> None:
    model = _model(layers=["blocks.2"])
    model.model.decoders.flows[0].blocks[0].global_offset.data.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"global step 0.*optimizer step was not taken"):
        _engine(tmp_path).fit(model, datamodule=_datamodule(synthetic_root))


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "anomalib.cli.cli", *args]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
@pytest.mark.export
def test_cli_config_train_then_export(synthetic_root: str, tmp_path: Path) -> None:
    model_args = {
        "backbone": "tf_efficientnet_lite0",
        "backbone_weights": str(offline_weights("tf_efficientnet_lite0")),
        "layers": "[blocks.2, blocks.4, blocks.6]",
        "reflect_padding": "false",
        "coupling_blocks": "1",
        "image_size": str(SIZE),
        "visualizer": "false",
    }
    train_args = [arg for key, value in model_args.items() for arg in (f"--model.init_args.{key}", value)]
    config = str(ROOT / "configs" / "cflow_ad.yaml")
    _cli(
        *("train", "--config", config, *train_args, "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu"),
        *("--data", str(ROOT / "configs" / "data" / "mvtec.yaml"), "--data.root", synthetic_root),
        *("--data.category", "dots", "--data.num_workers", "0"),
        *(
            "--data.train_batch_size",
            "4",
            "--data.eval_batch_size",
            "4",
            "--default_root_dir",
            str(tmp_path / "results"),
        ),
        cwd=tmp_path,
    )
    checkpoints = sorted((tmp_path / "results").rglob("*.ckpt"))
    assert checkpoints, "training wrote no checkpoint"
    # export builds --model from its arguments before loading the checkpoint: give it an offline encoder.
    export_args = [arg for key, value in model_args.items() for arg in (f"--model.{key}", value)]
    _cli(
        *("export", "--model", "CflowAD", *export_args, "--ckpt_path", str(checkpoints[-1])),
        *("--export_type", "openvino", "--input_size", f"[{SIZE},{SIZE}]", "--export_root", str(tmp_path / "export")),
        cwd=tmp_path,
    )
    assert next((tmp_path / "export").rglob("model.xml"), None) is not None
