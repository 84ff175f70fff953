# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Statistics that belong to the weights they are stored with, whenever validation runs or a checkpoint is written.

A unified HGAD checkpoint in a fresh model: ``test_hgad.py``.
"""

from pathlib import Path

import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.engine import Engine
from lightning.pytorch import Callback, LightningModule, Trainer

from anomalib_nfplus.models.cflow_ad import CflowAD
from tests.helpers.tiny_models import tiny_model

SIZE = 64

pytestmark = pytest.mark.slow


def _cflow() -> CflowAD:
    # lr high enough that every step moves the statistics visibly
    return tiny_model("CflowAD", SIZE, layers=["blocks.2", "blocks.4"], lr=5e-3)


def _engine(root: Path, **kwargs) -> Engine:
    args = {"max_epochs": 1, "logger": False, "enable_progress_bar": False, "accelerator": "cpu", **kwargs}
    return Engine(default_root_dir=root, **args)


def _mvtec(root: str, category: str = "stripes") -> MVTecAD:
    return MVTecAD(root=root, category=category, train_batch_size=4, eval_batch_size=4, num_workers=0)


def _fresh_statistics(model: CflowAD, datamodule: MVTecAD) -> dict[str, torch.Tensor]:
    """The statistics of the model's current weights, collected anew (the model's own are left untouched)."""
    saved = {k: v.clone() for k, v in model.model.statistics.state_dict().items()}
    model.collect_training_statistics(datamodule.train_dataloader())
    fresh = {k: v.clone() for k, v in model.model.statistics.state_dict().items()}
    model.model.statistics.load_state_dict(saved)
    return fresh


def _assert_same(stored: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor]) -> None:
    assert bool(stored["fitted"])
    for key in ("mean", "std", "minimum", "maximum"):
        torch.testing.assert_close(stored[key], fresh[key], rtol=1e-5, atol=1e-6)


class _SaveAt(Callback):
    """Write a checkpoint after one chosen training batch (mid-epoch, before any validation of that epoch)."""

    def __init__(self, path: Path, epoch: int, batch: int) -> None:
        self.path, self.epoch, self.batch = path, epoch, batch

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args, **kwargs) -> None:
        del pl_module, kwargs
        if trainer.current_epoch == self.epoch and args[-1] == self.batch:
            trainer.save_checkpoint(self.path)


def test_every_validation_of_an_epoch_uses_statistics_of_the_current_weights(synthetic_root: str, tmp_path) -> None:
    torch.manual_seed(0)
    datamodule = _mvtec(synthetic_root)
    model = _cflow()
    # 8 training images in batches of 4: validation after each of the epoch's 2 batches.
    _engine(tmp_path, val_check_interval=0.5).fit(model, datamodule=datamodule)
    _assert_same(model.model.statistics.state_dict(), _fresh_statistics(model, datamodule))


def test_a_mid_epoch_checkpoint_stores_statistics_of_its_weights(synthetic_root: str, tmp_path) -> None:
    torch.manual_seed(0)
    datamodule = _mvtec(synthetic_root)
    path = tmp_path / "mid_epoch.ckpt"
    # Epoch 0 ends with a validation (fitted statistics); the checkpoint comes one step into epoch 1.
    _engine(tmp_path, max_epochs=2, callbacks=[_SaveAt(path, epoch=1, batch=0)]).fit(_cflow(), datamodule=datamodule)
    restored = _cflow()
    restored.load_state_dict(torch.load(path, map_location="cpu", weights_only=False)["state_dict"])
    _assert_same(restored.model.statistics.state_dict(), _fresh_statistics(restored, datamodule))
