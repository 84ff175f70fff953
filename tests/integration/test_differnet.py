# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""DifferNet's own behaviour: few-shot training data and validation scored only in the last epoch.

Fit/test/predict, checkpoints, export parity (scores and gradient maps), the non-finite-loss stop and the CLI are
covered for every catalogue model in ``test_models.py``.
"""

from pathlib import Path
from typing import Any

import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.engine import Engine

from anomalib_nfplus.data.few_shot import FewShot, FewShotMVTecAD
from anomalib_nfplus.data.synthetic import make_mvtec_like
from tests.helpers.tiny_models import tiny_model

SIZE = 64


def _engine(root: Path, **kwargs: Any) -> Engine:
    args = {"max_epochs": 1, "logger": False, "enable_progress_bar": False, "accelerator": "cpu", **kwargs}
    return Engine(default_root_dir=root, enable_model_summary=False, **args)


def test_few_shot_sixteen_images(tmp_path: Path) -> None:
    make_mvtec_like(tmp_path, categories=("dots",), n_train=20, n_test_good=2, n_test_bad=2, image_size=SIZE)
    kwargs = {"root": tmp_path, "category": "dots", "train_batch_size": 8, "eval_batch_size": 4, "num_workers": 0}
    datamodule = FewShotMVTecAD(train_images=16, train_images_seed=3, **kwargs)
    engine = _engine(tmp_path / "runs")
    engine.fit(tiny_model("DifferNet", SIZE), datamodule=datamodule)
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
    engine.fit(tiny_model("DifferNet", SIZE), datamodule=datamodule)
    assert len(datamodule.train_data) == 3
    assert engine.trainer.num_training_batches == 1


def test_intermediate_validation_off_scores_validation_only_in_the_last_epoch(
    synthetic_root: str, tmp_path: Path
) -> None:
    datamodule = MVTecAD(root=synthetic_root, category="dots", train_batch_size=16, eval_batch_size=8, num_workers=0)
    model = tiny_model("DifferNet", SIZE, intermediate_validation=False, compute_map=False)
    engine = _engine(tmp_path, max_epochs=3, callbacks=[FewShot(n_images=3, seed=0)])
    scored_in_epochs: list[int] = []
    score = model.model.forward

    def counting(images: torch.Tensor) -> Any:
        if not model.model.training:
            scored_in_epochs.append(engine.trainer.current_epoch)
        return score(images)

    model.model.forward = counting
    engine.fit(model, datamodule=datamodule)
    assert set(scored_in_epochs) == {2}
