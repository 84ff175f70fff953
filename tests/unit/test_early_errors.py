# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Mistakes fail at set-up, before training, in a few lines that name the fix."""

from pathlib import Path

import pytest
import torch

from anomalib_nfplus.data.mvtec import MVTec, MVTecDataError
from anomalib_nfplus.data.synthetic import make_mvtec_like
from anomalib_nfplus.data.unified import Unified
from tests.helpers.tiny_models import tiny_model

# --- CflowAD: image size and reflect padding ------------------------------------------------------------------


def test_cflow_image_size_too_small_for_reflect_padding_fails_at_construction():
    with pytest.raises(ValueError, match=r"needs at least 65x65 px.*image_size >= 65, or reflect_padding=False"):
        tiny_model("CflowAD", 64, reflect_padding=True)


def test_cflow_minimum_size_is_the_real_encoders_limit():
    model = tiny_model("CflowAD", (65, 200), reflect_padding=True).model  # non-square: each side on its own
    assert model.min_size == 65
    assert [f.shape[-1] for f in model.encode(torch.rand(1, 3, 65, 65))] == [9, 5, 3]
    with pytest.raises(ValueError, match="needs at least 65x65 px"):
        model.encode(torch.rand(1, 3, 64, 64))


def test_cflow_without_reflect_padding_keeps_the_stride_minimum():
    model = tiny_model("CflowAD", 64)  # the tiny configuration turns reflect padding off
    assert model.model.min_size == 32


# --- MVTec alias: missing roots, download rule, empty categories ------------------------------------------------


@pytest.fixture
def no_download(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record download attempts instead of downloading 5 GB."""
    import anomalib.data.datamodules.image.mvtecad as upstream

    calls: list[Path] = []
    monkeypatch.setattr(upstream, "download_and_extract", lambda root, info: calls.append(Path(root)))
    return calls


def test_mvtec_missing_user_root_fails_without_downloading(tmp_path, no_download):
    with pytest.raises(MVTecDataError, match=r"(?s)looked for .*nope.stripes.*does not exist.*--data.root"):
        MVTec(root=tmp_path / "nope", category="stripes").prepare_data()
    assert no_download == []


def test_mvtec_missing_category_lists_the_ones_found(tmp_path, no_download):
    make_mvtec_like(tmp_path, categories=("stripes",), n_train=1, n_test_good=1, n_test_bad=1, image_size=32)
    with pytest.raises(MVTecDataError, match=r"holds the categories \['stripes'\]"):
        MVTec(root=tmp_path, category="stripe").prepare_data()
    with pytest.raises(MVTecDataError, match="looked for"):
        MVTec(root=tmp_path, category="stripe").setup()
    assert no_download == []


def test_mvtec_default_root_downloads_official_categories_only(tmp_path, monkeypatch, no_download):
    monkeypatch.chdir(tmp_path)  # no ./datasets/MVTecAD here
    with pytest.raises(MVTecDataError, match=r"no category 'botle'.*'bottle'"):
        MVTec(category="botle").prepare_data()
    MVTec(category="bottle").prepare_data()
    assert [path.resolve() for path in no_download] == [(tmp_path / "datasets" / "MVTecAD").resolve()]


def test_mvtec_category_without_training_images_fails_at_setup(tmp_path):
    make_mvtec_like(tmp_path, categories=("stripes",), n_train=2, n_test_good=1, n_test_bad=1, image_size=32)
    good = tmp_path / "stripes" / "train" / "good"
    for image in good.iterdir():
        image.unlink()
    datamodule = MVTec(root=tmp_path, category="stripes", num_workers=0)
    datamodule.prepare_data()
    with pytest.raises(MVTecDataError, match=rf"no training images: {good}"):
        datamodule.setup()


def test_unified_names_the_empty_training_folder(tmp_path):
    make_mvtec_like(tmp_path, categories=("stripes",), n_train=2, n_test_good=1, n_test_bad=1, image_size=32)
    good = tmp_path / "stripes" / "train" / "good"
    for image in good.iterdir():
        image.unlink()
    with pytest.raises(ValueError, match=rf"'stripes'.*no training images in {good}"):
        Unified(root=tmp_path, categories=["stripes"], num_workers=0).setup()


# --- CLI: the plugin's message, not jsonargparse's union dump ---------------------------------------------------


def _cli_error(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, list[str]]:
    from anomalib.cli import AnomalibCLI

    from anomalib_nfplus import cli_errors

    cli_errors.install()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        AnomalibCLI(args, run=False)
    lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line or not line.strip()]
    return exit_info.value.code, lines


def test_cli_mistyped_backbone_is_one_short_error(synthetic_root, capsys):
    data = ["--data", "anomalib_nfplus.MVTec", "--data.root", synthetic_root, "--data.category", "stripes"]
    code, lines = _cli_error(["train", "--model", "CflowAD", "--model.backbone", "tf_efficientnet_lit0", *data], capsys)
    assert code == 2
    assert len(lines) == 1
    assert lines[0].startswith("anomalib train: error: --model CflowAD: Unknown timm backbone 'tf_efficientnet_lit0'")
    assert "'tf_efficientnet_lite0'" in lines[0]


def test_cli_bad_datamodule_arguments_are_one_short_error(capsys):
    model = ["--model", "CflowAD", "--model.backbone", "tf_efficientnet_lite0", "--model.layers", "[blocks.2]"]
    code, lines = _cli_error(["fit", *model, "--data", "anomalib_nfplus.Unified"], capsys)
    assert code == 2
    assert len(lines) == 1
    assert "error: --data Unified: Unified needs the categories" in lines[0]


def test_cli_install_is_idempotent():
    from anomalib.cli.cli import AnomalibCLI

    from anomalib_nfplus import cli_errors

    cli_errors.install()
    wrapped = (AnomalibCLI.instantiate_classes, AnomalibCLI._run_subcommand)
    cli_errors.install()
    assert (AnomalibCLI.instantiate_classes, AnomalibCLI._run_subcommand) == wrapped


def test_only_the_plugins_recorded_error_is_shortened():
    from anomalib_nfplus.cli_errors import PluginClassError, short_message

    cause = ValueError("Unknown timm backbone 'x'.")
    recorded = [PluginClassError("--model", Unified, cause)]
    union = ValueError("Does not validate against any of the Union subtypes\n  - Unknown timm backbone\n  'x'.")
    assert short_message(union, recorded) == "--model Unified: Unknown timm backbone 'x'."
    assert short_message(cause, recorded) == "--model Unified: Unknown timm backbone 'x'."
    assert short_message(ValueError("something else"), recorded) is None
    assert short_message(union, []) is None


def test_plugin_data_errors_at_run_time_are_short(capsys):
    from anomalib_nfplus.cli_errors import _short_run_errors

    def fail(self: object) -> None:
        msg = "MVTec data not found: looked for /x/y."
        raise MVTecDataError(msg)

    class FakeCLI:
        subcommand = "train"
        run = _short_run_errors(fail)

    with pytest.raises(SystemExit) as exit_info:
        FakeCLI().run()
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == "anomalib train: error: MVTec data not found: looked for /x/y.\n"

    def bug(self: object) -> None:
        msg = "not ours"
        raise KeyError(msg)

    FakeCLI.run = _short_run_errors(bug)
    with pytest.raises(KeyError):
        FakeCLI().run()
