# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The anomalib CLI extensions install once, and the ``anomalib`` command's ``main`` runs with noise filtered."""

import warnings

import anomalib.cli.cli as anomalib_cli
import pytest

from anomalib_nfplus.cli_extensions import extend_anomalib_cli


def test_main_is_wrapped_once_and_filters_dependency_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_main() -> int:
        warnings.warn("deprecated inside a dependency", FutureWarning, stacklevel=1)
        return 7

    monkeypatch.setattr(anomalib_cli, "main", fake_main)
    extend_anomalib_cli()
    wrapped = anomalib_cli.main
    extend_anomalib_cli()
    assert anomalib_cli.main is wrapped
    assert wrapped is not fake_main
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert wrapped() == 7
    assert not caught
    with warnings.catch_warnings(record=True) as caught:  # outside the command nothing changed
        warnings.simplefilter("always")
        fake_main()
    assert len(caught) == 1


def test_the_start_up_hook_targets_the_extensions() -> None:
    import _anomalib_nfplus_hook as hook

    module, _, function = hook.CLI_TARGET.partition(":")
    assert (module, function) == ("anomalib_nfplus.cli_extensions", "extend_anomalib_cli")
