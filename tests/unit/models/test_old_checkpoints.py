# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Checkpoints with the old argument and submodule names load, strictly and through ``--ckpt_path``."""

import warnings
from pathlib import Path
from typing import Any

import lightning
import pytest
import torch
from jsonargparse import Namespace

from anomalib_nfplus.cli_checkpoint import apply_checkpoint_arguments
from anomalib_nfplus.models.cflow_ad import CflowAD
from anomalib_nfplus.models.differnet import DifferNet
from anomalib_nfplus.models.hgad import HGAD

SIZE = 64
COMMON = {"backbone": "tf_efficientnet_lite0", "pre_trained": False, "image_size": SIZE, "visualizer": False}
MODELS: dict[type, dict[str, Any]] = {
    CflowAD: {"layers": ["blocks.2"], "coupling_blocks": 1, "condition_dim": 8, "reflect_padding": False},
    DifferNet: {
        "layers": ["blocks.2"],
        "pyramid_scales": [1.0, 0.5],
        "coupling_blocks": 1,
        "hidden": 8,
        "depth": 1,
        "n_test_transforms": 2,
    },
    HGAD: {"layers": ["blocks.2"], "coupling_blocks": 1, "condition_dim": 8, "n_intra": 2, "n_classes": 1},
}
#: What the previous release called the renamed parts (written out, not derived from the maps under test).
OLD_ARGUMENTS = {
    CflowAD: {},
    DifferNet: {"pyramid_scales": "scales", "coupling_blocks": "n_blocks"},
    HGAD: {"coupling_blocks": "n_blocks", "condition_dim": "cond_dim"},
}
OLD_PREFIXES = {
    CflowAD: {"model.feature_extractor.": "model.encoder.", "model.flows.": "model.decoders."},
    DifferNet: {"model.feature_extractor.": "model.pyramid."},
    HGAD: {"model.feature_extractor.": "model.extractor."},
}


def _old_name(key: str, prefixes: dict[str, str]) -> str:
    for new, old in prefixes.items():
        if key.startswith(new):
            return old + key[len(new) :]
    return key


def _old_checkpoint(model_class: type, tmp_path: Path) -> tuple[Any, Path]:
    """A fresh model, and its checkpoint as the previous release would have written it (old names throughout)."""
    torch.manual_seed(0)
    model = model_class(**COMMON, **MODELS[model_class])
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    model.on_save_checkpoint(checkpoint)
    old_args = OLD_ARGUMENTS[model_class]
    checkpoint["hyper_parameters"] = {old_args.get(k, k): v for k, v in checkpoint["hyper_parameters"].items()}
    checkpoint["state_dict"] = {_old_name(k, OLD_PREFIXES[model_class]): v for k, v in checkpoint["state_dict"].items()}
    assert not any(k.startswith("model.feature_extractor.") for k in checkpoint["state_dict"])
    path = tmp_path / "old.ckpt"
    torch.save(checkpoint, path)
    return model, path


def _assert_same_state(loaded: Any, model: Any) -> None:
    expected, got = model.state_dict(), loaded.state_dict()
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0, equal_nan=True, msg=key)


@pytest.mark.parametrize("model_class", list(MODELS), ids=lambda c: c.__name__)
def test_load_from_checkpoint_maps_old_names(model_class: type, tmp_path: Path) -> None:
    model, path = _old_checkpoint(model_class, tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = model_class.load_from_checkpoint(path, strict=True)
    messages = [str(w.message) for w in caught if w.category is FutureWarning]
    assert sum("old submodule names" in m and "Re-save it" in m for m in messages) == 1
    for old in OLD_ARGUMENTS[model_class].values():
        assert f"argument {old!r} is deprecated" in " ".join(messages)
    _assert_same_state(loaded, model)
    renamed = set(OLD_ARGUMENTS[model_class])
    assert renamed <= set(loaded.hparams)  # stored under the new names
    assert not set(OLD_ARGUMENTS[model_class].values()) & set(loaded.hparams)
    assert {k: loaded.hparams[k] for k in renamed} == {k: model.hparams[k] for k in renamed}


@pytest.mark.parametrize("model_class", list(MODELS), ids=lambda c: c.__name__)
def test_ckpt_path_fills_the_new_argument_names(model_class: type, tmp_path: Path) -> None:
    """What ``anomalib predict --model X --ckpt_path old.ckpt`` does: arguments from the checkpoint, then weights."""
    model, path = _old_checkpoint(model_class, tmp_path)
    init_args = Namespace(visualizer=False)
    class_path = f"{model_class.__module__}.{model_class.__name__}"
    section = Namespace(model=Namespace(class_path=class_path, init_args=init_args), ckpt_path=str(path))
    filled = apply_checkpoint_arguments(section)
    assert set(OLD_ARGUMENTS[model_class]) <= set(filled)
    rebuilt = model_class(**{k: v for k, v in vars(init_args).items() if k != "n_classes"})
    with pytest.warns(FutureWarning, match="old submodule names"):
        rebuilt.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
    _assert_same_state(rebuilt, model)
