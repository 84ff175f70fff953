# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""``anomalib ... --ckpt_path``: the plugin models' arguments come from the checkpoint; mismatches are refused."""

from pathlib import Path

import pytest
import torch
from jsonargparse import Namespace

from anomalib_nfplus.cli_checkpoint import apply_checkpoint_arguments, extend_cli

SAVED = {
    "backbone": "tf_efficientnet_lite0",
    "layers": ("blocks.2", "blocks.4"),
    "pre_trained": False,
    "coupling_blocks": 2,
    "image_size": 64,
}


def _checkpoint(tmp_path: Path, hyper_parameters: dict) -> Path:
    path = tmp_path / "model.ckpt"
    torch.save({"hyper_parameters": hyper_parameters, "state_dict": {"w": torch.zeros(3)}}, path)
    return path


def _section(ckpt: Path | None, class_path: str = "anomalib_nfplus.CflowAD", **given) -> Namespace:
    """What jsonargparse parses for ``--model CflowAD``: every init argument, at its default unless given."""
    defaults = {
        "backbone": "wide_resnet50_2",
        "layers": ("layer2", "layer3", "layer4"),
        "pre_trained": True,
        "coupling_blocks": 8,
        "image_size": None,
        "lr": 2e-4,
    }
    init_args = Namespace(**{**defaults, **given})
    return Namespace(model=Namespace(class_path=class_path, init_args=init_args), ckpt_path=ckpt and str(ckpt))


def test_arguments_left_at_their_defaults_come_from_the_checkpoint(tmp_path: Path) -> None:
    section = _section(_checkpoint(tmp_path, SAVED))
    filled = apply_checkpoint_arguments(section)
    assert sorted(filled) == sorted(["backbone", "layers", "pre_trained", "coupling_blocks", "image_size"])
    init_args = section.model.init_args
    assert init_args.backbone == "tf_efficientnet_lite0"
    assert list(init_args.layers) == ["blocks.2", "blocks.4"]
    assert init_args.image_size == 64
    assert init_args.lr == 2e-4  # not in the checkpoint: left alone


def test_given_arguments_equal_to_the_checkpoint_are_accepted(tmp_path: Path) -> None:
    section = _section(_checkpoint(tmp_path, SAVED), image_size=64, layers=["blocks.2", "blocks.4"])
    apply_checkpoint_arguments(section)
    assert section.model.init_args.image_size == 64


def test_a_mismatch_is_refused_naming_both_values(tmp_path: Path) -> None:
    section = _section(_checkpoint(tmp_path, SAVED), image_size=256, coupling_blocks=4)
    with pytest.raises(ValueError, match=r"coupling_blocks=2 \(given: 4\); image_size=64 \(given: 256\)"):
        apply_checkpoint_arguments(section)


def test_a_checkpoint_of_another_model_is_refused(tmp_path: Path) -> None:
    section = _section(_checkpoint(tmp_path, {**SAVED, "n_intra": 10}))
    with pytest.raises(ValueError, match=r"was not saved by CflowAD.*'n_intra'.*Pass the --model"):
        apply_checkpoint_arguments(section)


def test_argument_names_of_an_older_release_are_read_under_the_current_names(tmp_path: Path) -> None:
    saved = {"n_blocks": 2, "cond_dim": 16}
    section = _section(_checkpoint(tmp_path, saved), class_path="anomalib_nfplus.HGAD", coupling_blocks=12)
    filled = apply_checkpoint_arguments(section)
    assert sorted(filled) == ["condition_dim", "coupling_blocks"]
    assert (section.model.init_args.coupling_blocks, section.model.init_args.condition_dim) == (2, 16)
    assert "n_blocks" not in section.model.init_args
    conflicting = _section(_checkpoint(tmp_path, saved), class_path="anomalib_nfplus.HGAD", coupling_blocks=4)
    with pytest.raises(ValueError, match=r"coupling_blocks=2 \(given: 4\)"):
        apply_checkpoint_arguments(conflicting)


def test_anomalibs_own_models_and_runs_without_checkpoint_are_untouched(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path, {"backbone": "resnet18"})
    padim = _section(ckpt, class_path="anomalib.models.Padim")
    assert apply_checkpoint_arguments(padim) == []
    assert padim.model.init_args.backbone == "wide_resnet50_2"
    assert apply_checkpoint_arguments(_section(None)) == []


def test_missing_or_unreadable_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        apply_checkpoint_arguments(_section(tmp_path / "missing.ckpt"))
    bad = tmp_path / "bad.ckpt"
    bad.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="Cannot read the saved model arguments"):
        apply_checkpoint_arguments(_section(bad))


def test_extend_cli_wraps_anomalibs_cli_once() -> None:
    from anomalib.cli.cli import AnomalibCLI

    extend_cli()
    wrapped = AnomalibCLI.before_instantiate_classes
    extend_cli()
    assert AnomalibCLI.before_instantiate_classes is wrapped
    assert wrapped.__wrapped__.__name__ == "before_instantiate_classes"
