# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""``anomalib ... --ckpt_path``: the plugin models' arguments come from the checkpoint; mismatches are refused.

Arguments the user gave (even at their default value) count as given; only scoring-only arguments may differ.
"""

import inspect
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from jsonargparse import Namespace

from anomalib_nfplus import _catalog, cli_checkpoint
from anomalib_nfplus.cli_checkpoint import SCORING_ARGUMENTS, apply_checkpoint_arguments, extend_cli
from tests.helpers.tiny_models import model_class, tiny_kwargs

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
    wrapped = AnomalibCLI.before_instantiate_classes, AnomalibCLI.instantiate_classes
    extend_cli()
    assert (AnomalibCLI.before_instantiate_classes, AnomalibCLI.instantiate_classes) == wrapped
    assert [method.__wrapped__.__name__ for method in wrapped] == ["before_instantiate_classes", "instantiate_classes"]


# --- given (typed, even at the default) versus left out ------------------------------------------------------------

HGAD_DEFAULTS = {"backbone": "tf_efficientnet_b6", "coupling_blocks": 12, "scoring": "label_free", "top_k": None}
HGAD_SAVED = {"backbone": "tf_efficientnet_lite0", "coupling_blocks": 2, "scoring": "class_conditional", "top_k": 0.1}


def _hgad(ckpt: Path, **given: Any) -> Namespace:
    """``--model HGAD`` as jsonargparse parses it: every argument, the given ones at their given value."""
    init_args = Namespace(**{**HGAD_DEFAULTS, **given})
    return Namespace(model=Namespace(class_path="anomalib_nfplus.HGAD", init_args=init_args), ckpt_path=str(ckpt))


def test_a_scoring_argument_typed_at_its_default_wins_over_the_checkpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    section = _hgad(_checkpoint(tmp_path, HGAD_SAVED), scoring="label_free")  # the default, typed
    with caplog.at_level(logging.INFO, logger="anomalib_nfplus.cli_checkpoint"):
        filled = apply_checkpoint_arguments(section, given={"scoring"})
    assert section.model.init_args.scoring == "label_free"
    assert sorted(filled) == ["backbone", "coupling_blocks", "top_k"]
    assert "scoring='label_free' (saved: 'class_conditional')" in caplog.text


def test_a_scoring_argument_left_out_takes_the_saved_value(tmp_path: Path) -> None:
    section = _hgad(_checkpoint(tmp_path, HGAD_SAVED))
    filled = apply_checkpoint_arguments(section, given=set())
    assert (section.model.init_args.scoring, section.model.init_args.top_k) == ("class_conditional", 0.1)
    assert sorted(filled) == ["backbone", "coupling_blocks", "scoring", "top_k"]


def test_scoring_arguments_differing_either_way_are_accepted(tmp_path: Path) -> None:
    saved = {**HGAD_SAVED, "scoring": "label_free", "use_entropy": True}
    section = _hgad(_checkpoint(tmp_path, saved), scoring="class_conditional", top_k=None, use_entropy=False)
    apply_checkpoint_arguments(section, given={"scoring", "top_k", "use_entropy"})
    init_args = section.model.init_args
    assert (init_args.scoring, init_args.top_k, init_args.use_entropy) == ("class_conditional", None, False)


def test_an_architecture_argument_given_differently_is_refused_naming_both(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path, HGAD_SAVED)
    with pytest.raises(ValueError, match=r"coupling_blocks=2 \(given: 4\)"):
        apply_checkpoint_arguments(_hgad(ckpt, coupling_blocks=4), given={"coupling_blocks", "scoring"})
    # typed at the model's default (12) is given too: refused, not replaced by the checkpoint's 2
    with pytest.raises(ValueError, match=r"coupling_blocks=2 \(given: 12\)"):
        apply_checkpoint_arguments(_hgad(ckpt), given={"coupling_blocks"})


def test_arguments_left_out_take_the_saved_value_and_are_never_refused(tmp_path: Path) -> None:
    section = _hgad(_checkpoint(tmp_path, HGAD_SAVED), coupling_blocks=4)  # a parsed value the user did not give
    filled = apply_checkpoint_arguments(section, given={"top_k"})
    assert section.model.init_args.coupling_blocks == 2
    assert section.model.init_args.top_k is None  # given: kept
    assert "coupling_blocks" in filled


def test_given_names_of_an_older_release_count_as_given(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"coupling_blocks=2 \(given: 12\)"):
        apply_checkpoint_arguments(_hgad(_checkpoint(tmp_path, HGAD_SAVED)), given={"n_blocks"})


def test_scoring_arguments_are_declared_for_every_model_and_exist() -> None:
    assert set(SCORING_ARGUMENTS) == set(_catalog.MODELS)
    for name, arguments in SCORING_ARGUMENTS.items():
        parameters = inspect.signature(model_class(name).__init__).parameters
        assert set(arguments) <= set(parameters), name


# --- through anomalib's CLI: what the user typed or wrote in a config file -----------------------------------------


@pytest.fixture(scope="module")
def hgad_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint's arguments (no weights: the CLI is not run) of a tiny HGAD scored class-conditionally."""
    saved = {key: value for key, value in tiny_kwargs("HGAD", 64).items() if key != "visualizer"}
    saved |= {"scoring": "class_conditional", "top_k": 0.1}
    return _checkpoint(tmp_path_factory.mktemp("hgad_ckpt"), saved)


#: A datamodule for ``--data`` (never set up: these commands are not run).
DATA = ["--data", "MVTecAD", "--data.root", "unused"]


def _cli(args: list[str]) -> Any:
    from anomalib.cli import AnomalibCLI

    extend_cli()
    return AnomalibCLI(["export", *args, "--export_type", "openvino"], run=False)


def _cli_model(args: list[str]) -> Any:
    return _cli([*args, *DATA]).config_init["export"]["model"]


def test_cli_uses_a_typed_default_scoring_and_the_saved_rest(hgad_ckpt: Path) -> None:
    model = _cli_model(["--model", "HGAD", "--ckpt_path", str(hgad_ckpt), "--model.scoring", "label_free"])
    assert model.model.scoring == "label_free"  # typed (the default): kept
    assert model.model.top_k == 0.1  # left out: the checkpoint's
    assert model.hparams["coupling_blocks"] == 2
    left_out = _cli_model(["--model", "HGAD", "--ckpt_path", str(hgad_ckpt)])
    assert left_out.model.scoring == "class_conditional"


def test_cli_counts_config_file_values_as_given(hgad_ckpt: Path, tmp_path: Path) -> None:
    config = tmp_path / "model.yaml"
    config.write_text("model:\n  class_path: anomalib_nfplus.HGAD\n  init_args:\n    top_k: null\n")
    model = _cli_model(["--config", str(config), "--ckpt_path", str(hgad_ckpt)])
    assert (model.model.top_k, model.model.scoring) == (None, "class_conditional")


def test_cli_refuses_a_typed_default_architecture_argument(hgad_ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _cli_model(["--model", "HGAD", "--ckpt_path", str(hgad_ckpt), "--model.coupling_blocks", "12"])
    assert "coupling_blocks=2 (given: 12)" in capsys.readouterr().err


# --- another scoring than the checkpoint's: the post-processor is refitted on validation data ----------------------


class RecordingEngine:
    """Records its calls; ``test``/``predict`` validate first when ``_should_run_validation`` says so, as anomalib's
    ``Engine`` does (after setting up its output folder and trainer)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, Any]] = []  # (method, model, ckpt_path)

    @staticmethod
    def _should_run_validation(model: Any, ckpt_path: Any) -> bool:
        return False  # not a zero-/few-shot model

    def validate(self, model: Any = None, datamodule: Any = None, ckpt_path: Any = None, verbose: bool = True) -> None:
        assert datamodule is not None
        self.calls.append(("validate", model, ckpt_path))

    def _evaluate(self, name: str, model: Any, datamodule: Any, ckpt_path: Any) -> str:
        if self._should_run_validation(model, ckpt_path):
            self.validate(model, datamodule=datamodule)
        self.calls.append((name, model, ckpt_path))
        return name

    def test(self, model: Any = None, datamodule: Any = None, ckpt_path: Any = None, verbose: bool = True) -> str:
        return self._evaluate("test", model, datamodule, ckpt_path)

    def predict(self, model: Any = None, datamodule: Any = None, ckpt_path: Any = None) -> str:
        if not ckpt_path:
            logging.getLogger("anomalib.engine.engine").warning("ckpt_path is not provided. Weights will not load.")
        return self._evaluate("predict", model, datamodule, ckpt_path)

    def export(self, model: Any, export_type: str, datamodule: Any = None, ckpt_path: Any = None) -> str:
        self.calls.append(("export", model, ckpt_path))
        return "export"


CHANGED = {"scoring": ("label_free", "class_conditional")}


@pytest.fixture
def datamodule(tmp_path: Path) -> Any:
    from anomalib.data import MVTecAD

    return MVTecAD(root=tmp_path)


@pytest.mark.parametrize("subcommand", ["test", "predict", "export"])
def test_another_scoring_validates_with_the_checkpoint_then_runs_the_model_in_memory(
    subcommand: str, datamodule: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Validation loads the checkpoint (weights and stale thresholds) and refits; the run then goes without
    ``ckpt_path``, which would load the stale thresholds back over the refitted ones."""
    engine, model = RecordingEngine(), object()
    cli_checkpoint._refit_thresholds(engine, subcommand, datamodule, CHANGED)
    kwargs = {"export_type": "openvino"} if subcommand == "export" else {}
    with caplog.at_level(logging.INFO):
        result = getattr(engine, subcommand)(model=model, datamodule=datamodule, ckpt_path="model.ckpt", **kwargs)
    assert result == subcommand
    assert engine.calls == [("validate", model, "model.ckpt"), (subcommand, model, None)]
    assert "refitted on the validation set for scoring='label_free'" in caplog.text
    assert "ckpt_path is not provided" not in caplog.text  # the validation loaded the weights
    assert engine._should_run_validation is RecordingEngine._should_run_validation  # restored
    assert engine.test(model=model, datamodule=datamodule) == "test"  # without a checkpoint: as it was
    assert engine.calls[-1] == ("test", model, None)


def test_an_engine_that_does_not_ask_to_validate_is_an_error(datamodule: Any) -> None:
    engine = RecordingEngine()
    engine.test = lambda **kwargs: "test"  # type: ignore[method-assign]  # never asks _should_run_validation
    cli_checkpoint._refit_thresholds(engine, "test", datamodule, CHANGED)
    with pytest.raises(RuntimeError, match="thresholds were not refitted"):
        engine.test(model=object(), datamodule=datamodule, ckpt_path="model.ckpt")


@pytest.mark.parametrize("data", [None, "images/folder"], ids=["no data", "a folder"])
def test_another_scoring_without_validation_data_is_refused(data: Any) -> None:
    both = r"fitted with scoring='class_conditional', not the given scoring='label_free'"
    with pytest.raises(ValueError, match=both + r".*Add --data <datamodule>.*leave --model.scoring out"):
        cli_checkpoint._refit_thresholds(RecordingEngine(), "predict", data, CHANGED)


def test_cli_refits_only_for_a_scoring_other_than_the_checkpoints(
    hgad_ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The checkpoint's scoring is class_conditional and its top_k 0.1."""
    ckpt = ["--model", "HGAD", "--ckpt_path", str(hgad_ckpt)]
    for same in ([], ["--model.scoring", "class_conditional"], ["--model.top_k", "0.1"]):
        cli = _cli([*ckpt, *same])  # without --data: nothing to refit, nothing refused
        assert not hasattr(cli.engine.export, "__wrapped__"), same
    assert hasattr(_cli([*ckpt, "--model.top_k", "0.2", *DATA]).engine.export, "__wrapped__")
    with pytest.raises(SystemExit):
        _cli([*ckpt, "--model.scoring", "label_free"])
    error = capsys.readouterr().err
    assert "fitted with scoring='class_conditional', not the given scoring='label_free'" in error
    assert "Add --data <datamodule>" in error
