# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Dependency noise is dropped inside the commands' context only; the plugin's own warnings stay visible."""

import logging
import warnings

import pytest
import torch

from anomalib_nfplus.quiet import NOISY_LOGGERS, third_party_noise_filtered


def _warn_from(module: str, category: type[Warning]) -> None:
    exec(compile("import warnings\nwarnings.warn('x', C)", module, "exec"), {"__name__": module, "C": category})


def _caught(module: str, category: type[Warning], **kwargs: bool) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with third_party_noise_filtered(**kwargs):
            _warn_from(module, category)
    return len(caught)


def test_dependency_deprecations_and_tracer_warnings_are_dropped() -> None:
    assert _caught("timm.models", FutureWarning) == 0
    assert _caught("torch.jit", DeprecationWarning) == 0
    assert _caught("anomalib_nfplus.models.hgad", torch.jit.TracerWarning) == 0


def test_user_warnings_of_dependencies_stay_unless_all_warnings() -> None:
    assert _caught("lightning.pytorch", UserWarning) == 1
    assert _caught("lightning.pytorch", UserWarning, all_warnings=True) == 0


def test_the_plugins_own_warnings_stay() -> None:
    assert _caught("anomalib_nfplus.models.hgad", UserWarning, all_warnings=True) == 1
    assert _caught("anomalib_nfplus.data", FutureWarning) == 1


def test_filters_and_logger_levels_are_restored() -> None:
    before = list(warnings.filters)
    levels = [logging.getLogger(name).level for name in NOISY_LOGGERS]
    with third_party_noise_filtered(all_warnings=True):
        assert logging.getLogger("onnx_ir").getEffectiveLevel() == logging.ERROR
        assert logging.getLogger("lightning.pytorch").getEffectiveLevel() == logging.ERROR
    assert list(warnings.filters) == before
    assert [logging.getLogger(name).level for name in NOISY_LOGGERS] == levels


def test_importing_the_library_changes_no_filter() -> None:
    import importlib

    import anomalib_nfplus

    before = list(warnings.filters)
    importlib.reload(anomalib_nfplus)
    assert list(warnings.filters) == before


def test_torch_false_does_not_look_up_the_tracer(monkeypatch: pytest.MonkeyPatch) -> None:
    import anomalib_nfplus.quiet as quiet

    monkeypatch.setattr(quiet, "_tracer_warning", lambda: pytest.fail("looked up torch"))
    with third_party_noise_filtered(torch=False):
        pass


def test_preloaded_libraries_keep_the_raised_logger_levels(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A library that sets its logger's level when imported (as Lightning does) is imported before levels rise."""
    (tmp_path / "sets_level_on_import.py").write_text(
        "import logging\nlogging.getLogger('lightning.pytorch').setLevel(logging.INFO)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with third_party_noise_filtered(all_warnings=True, preload=("sets_level_on_import",)):
        assert logging.getLogger("lightning.pytorch").getEffectiveLevel() == logging.ERROR
