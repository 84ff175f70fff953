# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""CflowAD's own behaviour: the official one-step-per-256-fibers, one-level-at-a-time training on unified data.

Fit/test/predict, checkpoints, export parity, the non-finite-loss stop and the CLI are covered for every catalogue
model in ``test_models.py``.
"""

from pathlib import Path

import torch
from anomalib.engine import Engine

from anomalib_nfplus.data.unified import Unified
from tests.helpers.tiny_models import tiny_model

SIZE = 64


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
    model = tiny_model("CflowAD", SIZE, layers=["blocks.4"], fiber_batch_size=256, per_level_steps=True)
    engine = Engine(default_root_dir=tmp_path, max_epochs=1, logger=False, enable_progress_bar=False, accelerator="cpu")
    engine.fit(model, datamodule=datamodule)
    assert engine.trainer.global_step == 4  # 16 images, 4 per batch, 4x4 fibers each: one (smaller) chunk per batch
    metrics = engine.test(model, datamodule=datamodule, verbose=False)[0]
    assert 0.0 <= metrics["image_AUROC"] <= 1.0
