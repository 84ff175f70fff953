# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""A checkpoint is all a trained model needs: it reloads where its ``backbone_weights`` file is gone.

The checkpoint holds the backbone's weights, so neither ``load_from_checkpoint`` nor a model built from the saved
arguments for ``ckpt_path=`` / ``--ckpt_path`` may need the file (or the network); a model left without them must
still refuse to train or score rather than run a random backbone.
"""

import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning
import pytest
import torch
from jsonargparse import Namespace

from anomalib_nfplus.backbones import BackboneWeightsError, offline_weights
from anomalib_nfplus.cli_checkpoint import apply_checkpoint_arguments
from anomalib_nfplus.models.cflow_ad import CflowAD
from anomalib_nfplus.models.components import TrainingStatisticsMixin
from anomalib_nfplus.models.differnet import DifferNet
from anomalib_nfplus.models.hgad import HGAD

SIZE = 64
COMMON = {"backbone": "tf_efficientnet_lite0", "pre_trained": False, "image_size": SIZE, "visualizer": False}
MODELS: dict[type, dict[str, Any]] = {
    CflowAD: {"layers": ["blocks.2"], "coupling_blocks": 1, "condition_dim": 8, "reflect_padding": False},
    DifferNet: {"layers": ["blocks.2"], "coupling_blocks": 1, "hidden": 8, "depth": 1, "n_test_transforms": 2},
    HGAD: {"layers": ["blocks.2"], "coupling_blocks": 1, "condition_dim": 8, "n_intra": 2, "n_classes": 1},
}
IMAGES = torch.rand(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def _scores(model: Any) -> dict[str, torch.Tensor]:
    batch = model.eval()(IMAGES)
    return {"pred_score": batch.pred_score.detach(), "anomaly_map": batch.anomaly_map.detach()}


def _trained(model_class: type, tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor], Path]:
    """A model built with a copied weights file, its checkpoint and scores; the weights file is then deleted."""
    weights = tmp_path / "backbone.pth"
    shutil.copy(offline_weights("tf_efficientnet_lite0"), weights)
    torch.manual_seed(0)
    model = model_class(**COMMON, **MODELS[model_class], backbone_weights=str(weights))
    if isinstance(model, TrainingStatisticsMixin):
        model.collect_training_statistics([SimpleNamespace(image=IMAGES, class_index=None)])
    scores = _scores(model)
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    model.on_save_checkpoint(checkpoint)
    path = tmp_path / "model.ckpt"
    torch.save(checkpoint, path)
    weights.unlink()  # the checkpoint moved to a machine without the file
    return path, scores, weights


def _assert_same_scores(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("model_class", list(MODELS), ids=lambda c: c.__name__)
def test_load_from_checkpoint_needs_no_backbone_weights_file(model_class: type, tmp_path: Path) -> None:
    path, expected, _ = _trained(model_class, tmp_path)
    loaded = model_class.load_from_checkpoint(path)
    assert loaded.model.feature_extractor.pending_weights is None
    _assert_same_scores(_scores(loaded), expected)


@pytest.mark.parametrize("model_class", list(MODELS), ids=lambda c: c.__name__)
def test_ckpt_path_route_needs_no_backbone_weights_file(model_class: type, tmp_path: Path) -> None:
    """``anomalib export/test --model X --ckpt_path C``: saved arguments fill the model, then the checkpoint loads."""
    path, expected, weights = _trained(model_class, tmp_path)
    init_args = Namespace(visualizer=False)
    class_path = f"{model_class.__module__}.{model_class.__name__}"
    section = Namespace(model=Namespace(class_path=class_path, init_args=init_args), ckpt_path=str(path))
    apply_checkpoint_arguments(section)
    rebuilt = model_class(**vars(init_args))  # as the CLI builds it, before Lightning restores the checkpoint
    assert rebuilt.model.feature_extractor.pending_weights is not None
    checkpoint = torch.load(path, weights_only=True)
    rebuilt.on_load_checkpoint(checkpoint)
    rebuilt.load_state_dict(checkpoint["state_dict"])
    _assert_same_scores(_scores(rebuilt), expected)
    assert not weights.exists()


@pytest.mark.parametrize("model_class", list(MODELS), ids=lambda c: c.__name__)
def test_a_missing_weights_file_still_refuses_training_and_scoring(model_class: type, tmp_path: Path) -> None:
    """Without a checkpoint the backbone has no weights: no training, no scores, and the error names the file."""
    missing = tmp_path / "gone.pth"
    model = model_class(**COMMON, **MODELS[model_class], backbone_weights=str(missing))
    pattern = rf"backbone_weights file not found: {re.escape(str(missing))}.*To train, make the weights available"
    with pytest.raises(BackboneWeightsError, match=pattern):
        model.on_train_start()
    with pytest.raises(BackboneWeightsError, match=pattern):
        model.model.feature_extractor(IMAGES)
