# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Training statistics that were never collected for the weights are never used to score or export.

A never-trained model and the ``last_finite_step*.ckpt`` of a non-finite loss hold placeholder statistics (mean 0,
std 1): exports and eager calls refuse them, scoring without training data refuses them, and testing with a
datamodule collects them from its training images first. Fitted models exporting: ``test_models.py``.
"""

import logging
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.engine import Engine
from lightning.pytorch import Callback, LightningModule, Trainer

from anomalib_nfplus.data.synthetic import make_mvtec_like
from anomalib_nfplus.models.components import NonFiniteLossError, UnfittedStatisticsError
from tests.helpers.tiny_models import ONE_LEVEL, model_class, tiny_model

pytestmark = pytest.mark.slow

SIZE = 48
LOGGER = "anomalib_nfplus.models.components.training.statistics_lifecycle"
EXTRA = {"CflowAD": {}, "HGAD": {"n_classes": 1}}  # HGAD holds statistics once its prior is built


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("unfitted_data")
    return make_mvtec_like(root, categories=("stripes",), n_train=4, n_test_good=2, n_test_bad=2, image_size=64)


def _datamodule(root: Path) -> MVTecAD:
    datamodule = MVTecAD(root=root, category="stripes", train_batch_size=4, eval_batch_size=4, num_workers=0)
    datamodule.setup()
    return datamodule


def _engine(root: Path, **kwargs: Any) -> Engine:
    args = {"max_epochs": 1, "logger": False, "enable_progress_bar": False, "accelerator": "cpu", **kwargs}
    return Engine(default_root_dir=root, enable_model_summary=False, **args)


def _model(name: str) -> Any:
    return tiny_model(name, SIZE, **ONE_LEVEL[name], **EXTRA[name])


@pytest.mark.parametrize("name", list(EXTRA))
def test_a_never_trained_model_refuses_to_export_and_to_score(name: str, data_root: Path, tmp_path: Path) -> None:
    model = _model(name)
    exported = f"{name} cannot be exported: its training statistics .* were never collected for its weights"
    for export in (model.to_openvino, model.to_onnx, model.to_torch):
        with pytest.raises(UnfittedStatisticsError, match=exported):
            export(tmp_path)
    assert not [path for path in tmp_path.rglob("*") if path.is_file()]
    images = next(iter(_datamodule(data_root).test_dataloader())).image
    with pytest.raises(UnfittedStatisticsError, match=rf"{name}Model has no training statistics"):
        model.model.eval()(images)
    # Without a datamodule there are no training images to collect them from.
    loader = _datamodule(data_root).test_dataloader()
    with pytest.raises(UnfittedStatisticsError, match=f"{name} cannot score without a datamodule"):
        _engine(tmp_path / "predict").predict(model, dataloaders=loader)


class _NaNImages(Callback):
    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        del trainer, pl_module, batch_idx
        batch.image.fill_(float("nan"))


def test_the_last_finite_checkpoint_is_refused_until_testing_collects_its_statistics(
    data_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    torch.manual_seed(0)
    with pytest.raises(NonFiniteLossError, match=r"saved to (\S+)\. It holds no training statistics") as error:
        _engine(tmp_path / "nan", callbacks=[_NaNImages()]).fit(_model("CflowAD"), datamodule=_datamodule(data_root))
    message = str(error.value)
    assert "engine.validate(model, datamodule=datamodule, ckpt_path=<that file>)" in message
    saved = re.search(r"saved to (\S+)\.", message)
    assert saved is not None
    ckpt = Path(saved.group(1))

    cls: Any = model_class("CflowAD")
    loaded = cls.load_from_checkpoint(ckpt)
    assert not bool(loaded.model.statistics.fitted)
    with pytest.raises(UnfittedStatisticsError, match="CflowAD cannot be exported"):
        loaded.to_openvino(tmp_path / "refused")

    # The same weights after a plain statistics pass over the training images.
    datamodule = _datamodule(data_root)
    reference = cls.load_from_checkpoint(ckpt)
    reference.collect_training_statistics(datamodule.train_dataloader())

    tested = _model("CflowAD")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        _engine(tmp_path / "test").test(tested, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
    collected = [record.getMessage() for record in caplog.records if record.name == LOGGER]
    assert collected == [
        "CflowAD: training statistics were never collected for these weights; collecting them from the "
        "datamodule's training images."
    ]
    for key, value in reference.model.statistics.state_dict().items():
        torch.testing.assert_close(tested.model.statistics.state_dict()[key], value, rtol=1e-6, atol=1e-6)
    images = next(iter(datamodule.test_dataloader())).image
    with torch.no_grad():
        expected, scored = reference.eval()(images), tested.eval()(images)
    torch.testing.assert_close(scored.pred_score, expected.pred_score)
    torch.testing.assert_close(scored.anomaly_map, expected.anomaly_map)
    assert tested.to_torch(tmp_path / "kept").is_file()  # exports once collected
