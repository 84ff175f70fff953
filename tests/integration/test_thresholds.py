# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Thresholds without test labels: a synthetic validation split carved from the training images."""

from pathlib import Path

import pytest
import torch
from anomalib.data import MVTecAD
from anomalib.engine import Engine

from anomalib_nfplus.data.unified import Unified
from anomalib_nfplus.models.cflow_ad import CflowAD
from tests.helpers.tiny_models import tiny_model

SIZE = 64


def _datamodule(root: str, **kwargs) -> MVTecAD:
    return MVTecAD(root=root, category="stripes", train_batch_size=4, eval_batch_size=4, num_workers=0, **kwargs)


def _engine(root: Path) -> Engine:
    return Engine(default_root_dir=root, max_epochs=1, logger=False, enable_progress_bar=False, accelerator="cpu")


def _drop_defects(dataset) -> None:  # an anomalib dataset
    """Keep the normal images and one defective image: labels that would move an F1 threshold fitted on them."""
    samples = dataset.samples
    defective = samples.index[samples["label_index"] == 1]
    dataset.samples = samples.drop(index=defective[1:]).reset_index(drop=True)


def _thresholds(model: CflowAD) -> tuple[float, float]:
    post = model.post_processor
    return float(post._image_threshold), float(post._pixel_threshold)


@pytest.mark.slow
def test_synthetic_validation_split_fits_thresholds_without_test_labels(synthetic_root: str, tmp_path) -> None:
    torch.manual_seed(0)
    model = tiny_model("CflowAD", SIZE, layers=["blocks.2", "blocks.4"])
    honest = _datamodule(synthetic_root, val_split_mode="synthetic", val_split_ratio=0.5, seed=0)
    engine = _engine(tmp_path)
    engine.fit(model, datamodule=honest)

    test_paths = set(honest.test_data.samples["image_path"])
    assert not test_paths & set(honest.val_data.samples["image_path"])
    assert set(honest.val_data.samples["label_index"]) == {0, 1}  # synthetic defects to fit an F1 threshold on
    fitted = _thresholds(model)
    assert all(torch.isfinite(torch.tensor(fitted)))

    _drop_defects(honest.test_data)
    engine.validate(model, datamodule=honest, verbose=False)
    assert _thresholds(model) == fitted

    # Control: with the default split (validation = test set) the same change moves the thresholds.
    default = _datamodule(synthetic_root)
    engine.validate(model, datamodule=default, verbose=False)
    from_test = _thresholds(model)
    _drop_defects(default.val_data)
    engine.validate(model, datamodule=default, verbose=False)
    assert _thresholds(model)[0] != from_test[0]


def test_unified_forwards_the_validation_split_to_its_categories(synthetic_root: str) -> None:
    datamodule = Unified(
        root=synthetic_root, categories=["stripes", "dots"], image_size=SIZE, num_workers=0,
        val_split_mode="synthetic", val_split_ratio=0.5, seed=0,
    )  # fmt: skip
    datamodule.setup()
    val_paths = {item.image_path for item in datamodule.val_data}
    test_paths = {item.image_path for item in datamodule.test_data}
    assert val_paths
    assert not val_paths & test_paths
    assert len(datamodule.train_data) == 8  # half of each category's 8 training images went to validation
