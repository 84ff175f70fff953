# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""DifferNet end to end: Engine fit/test/predict, checkpoints, few-shot data, OpenVINO export parity, CLI config."""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.deploy import ExportType, OpenVINOInferencer
from anomalib.engine import Engine
from anomalib.post_processing import PostProcessor

from anomalib_nfplus.backbones import offline_weights
from anomalib_nfplus.data.few_shot import FewShot, FewShotMVTecAD
from anomalib_nfplus.data.synthetic import make_mvtec_like
from anomalib_nfplus.models.components import NonFiniteLossError
from anomalib_nfplus.models.differnet import DifferNet

SIZE = 64
ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "layers": ["blocks.2"],
    "n_blocks": 2,
    "hidden": 32,
    "depth": 1,
    "n_test_transforms": 4,
    "n_train_transforms": 2,
    "blur_sigma": 1.0,
    "image_size": SIZE,
}


def _model(**kwargs) -> DifferNet:
    return DifferNet(
        backbone="tf_efficientnet_lite0",
        backbone_weights=str(offline_weights("tf_efficientnet_lite0")),
        visualizer=False,
        **{**TINY, **kwargs},
    )


def _engine(root: Path, **kwargs) -> Engine:
    args = {"max_epochs": 1, "logger": False, "enable_progress_bar": False, "accelerator": "cpu", **kwargs}
    return Engine(default_root_dir=root, enable_model_summary=False, **args)


@pytest.fixture(scope="module")
def trained(synthetic_root: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[DifferNet, Engine, MVTecAD]:
    """One tiny model for all tests; raw (un-normalised) outputs so export parity compares real values."""
    torch.manual_seed(0)
    datamodule = MVTecAD(root=synthetic_root, category="stripes", train_batch_size=4, eval_batch_size=4, num_workers=0)
    model = _model(post_processor=PostProcessor(enable_normalization=False))
    engine = _engine(tmp_path_factory.mktemp("differnet_runs"))
    engine.fit(model, datamodule=datamodule)
    return model, engine, datamodule


def test_fit_test_predict(trained) -> None:
    model, engine, datamodule = trained
    metrics = engine.test(model, datamodule=datamodule, verbose=False)[0]
    assert 0.0 <= metrics["image_AUROC"] <= 1.0
    assert np.isfinite(metrics["pixel_AUROC"])
    first = engine.predict(model, datamodule=datamodule)[0]
    assert first.pred_score.shape == (4,)
    assert first.anomaly_map.shape[-2:] == (SIZE, SIZE)
    assert torch.isfinite(first.anomaly_map).all()


def test_checkpoint_round_trip_and_strict_loading(trained, tmp_path: Path) -> None:
    model, engine, _ = trained
    path = tmp_path / "differnet.ckpt"
    engine.trainer.save_checkpoint(path)
    loaded = DifferNet.load_from_checkpoint(path).eval()
    images = torch.rand(2, 3, SIZE, SIZE)
    model.eval()
    torch.testing.assert_close(loaded.model(images).pred_score, model.model(images).pred_score)
    other = _model(depth=2)  # other subnet layers: other keys
    with pytest.raises(RuntimeError, match="does not match DifferNet"):
        other.load_state_dict(model.state_dict())


def test_non_finite_loss_stops_with_a_clear_error() -> None:
    model = _model()
    batch = SimpleNamespace(image=torch.full((2, 3, SIZE, SIZE), float("nan")))
    with pytest.raises(NonFiniteLossError, match="non-finite loss"):
        model.training_step(batch, 0)


def test_few_shot_sixteen_images(tmp_path: Path) -> None:
    make_mvtec_like(tmp_path, categories=("dots",), n_train=20, n_test_good=2, n_test_bad=2, image_size=SIZE)
    kwargs = {"root": tmp_path, "category": "dots", "train_batch_size": 8, "eval_batch_size": 4, "num_workers": 0}
    datamodule = FewShotMVTecAD(train_images=16, train_images_seed=3, **kwargs)
    engine = _engine(tmp_path / "runs")
    model = _model()
    engine.fit(model, datamodule=datamodule)
    assert len(datamodule.train_data) == 16
    assert engine.trainer.num_training_batches == 2
    again = FewShotMVTecAD(train_images=16, train_images_seed=3, **kwargs)
    again.setup("fit")
    assert list(again.train_data.samples.image_path) == list(datamodule.train_data.samples.image_path)
    with pytest.raises(ValueError, match="only 20"):
        FewShotMVTecAD(train_images=21, **kwargs).setup("fit")


def test_fewer_images_than_the_batch_train_in_one_smaller_batch(synthetic_root: str, tmp_path: Path) -> None:
    datamodule = MVTecAD(root=synthetic_root, category="dots", train_batch_size=16, eval_batch_size=4, num_workers=0)
    engine = _engine(tmp_path, callbacks=[FewShot(n_images=3, seed=0)])
    engine.fit(_model(), datamodule=datamodule)
    assert len(datamodule.train_data) == 3
    assert engine.trainer.num_training_batches == 1


def test_intermediate_validation_off_scores_validation_only_in_the_last_epoch(
    synthetic_root: str, tmp_path: Path
) -> None:
    datamodule = MVTecAD(root=synthetic_root, category="dots", train_batch_size=16, eval_batch_size=8, num_workers=0)
    model = _model(intermediate_validation=False, compute_map=False)
    engine = _engine(tmp_path, max_epochs=3, callbacks=[FewShot(n_images=3, seed=0)])
    scored_in_epochs: list[int] = []
    score = model.model.forward

    def counting(images: torch.Tensor):
        if not model.model.training:
            scored_in_epochs.append(engine.trainer.current_epoch)
        return score(images)

    model.model.forward = counting
    engine.fit(model, datamodule=datamodule)
    assert set(scored_in_epochs) == {2}


@pytest.mark.export
def test_openvino_export_matches_torch(trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The exported graph contains the backward pass: scores and gradient maps match torch."""
    model, engine, _ = trained
    path = engine.export(model, ExportType.OPENVINO, export_root=tmp_path, input_size=(SIZE, SIZE))
    monkeypatch.chdir(tmp_path)
    inferencer = OpenVINOInferencer(path, device="CPU", config={"INFERENCE_PRECISION_HINT": "f32"})
    torch.manual_seed(1)
    images = torch.rand(2, 3, SIZE, SIZE)
    model.eval()
    expected = model(images)
    for i in range(2):
        result = inferencer.predict(images[i].permute(1, 2, 0).numpy())
        assert np.allclose(result.pred_score.reshape(-1), expected.pred_score[i].numpy(), rtol=1e-4)
        scale = float(expected.anomaly_map[i].abs().max())
        got = result.anomaly_map.reshape(SIZE, SIZE)
        assert np.allclose(got, expected.anomaly_map[i].reshape(SIZE, SIZE).numpy(), rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.slow
def test_cli_train_with_config(synthetic_root: str, tmp_path: Path) -> None:
    args = [
        "train",
        "--config",
        str(ROOT / "configs" / "differnet.yaml"),
        "--data",
        str(ROOT / "configs" / "data" / "mvtec.yaml"),
        "--data.root",
        synthetic_root,
        "--data.category",
        "dots",
        "--data.num_workers",
        "0",
        "--data.train_batch_size",
        "4",
        "--data.eval_batch_size",
        "4",
        "--trainer.max_epochs",
        "1",
        "--trainer.accelerator",
        "cpu",
        "--trainer.logger",
        "false",
        "--default_root_dir",
        str(tmp_path),
        "--model.init_args.layers",
        "[blocks.2]",
        *[f"--model.init_args.{k}={v}" for k, v in TINY.items() if k != "layers"],
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cli = [sys.executable, "-c", "from anomalib.cli.cli import main; main()", *args]
    result = subprocess.run(cli, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(tmp_path.rglob("*.ckpt")), "no checkpoint written"
