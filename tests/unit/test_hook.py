# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The start-up hook (source copy, loaded under another name): targets run right after their own module's import."""

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

HOOK = Path(__file__).resolve().parents[2] / "src" / "_anomalib_nfplus_hook.py"


@pytest.fixture
def hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A fresh copy of the hook, and a site with two trigger modules and a target module that records calls."""
    spec = importlib.util.spec_from_file_location("hook_under_test", HOOK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "trig_a.py").write_text("import trig_b\nDEFINED_AFTER_B = True\n")  # imports the other one midway
    (tmp_path / "trig_b.py").write_text("")
    (tmp_path / "targets.py").write_text(
        "import sys\ncalls = []\n"
        "def on_a():\n    calls.append(('a', getattr(sys.modules['trig_a'], 'DEFINED_AFTER_B', False)))\n"
        "def on_b():\n    calls.append(('b', 'trig_b' in sys.modules))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(module.DISABLE_ENV, raising=False)
    yield module
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, module._AnomalibModelsFinder)]
    for name in ("trig_a", "trig_b", "targets"):
        sys.modules.pop(name, None)


def test_each_target_runs_after_its_module_is_fully_imported(hook: ModuleType) -> None:
    hook.install("targets:on_a", trigger="trig_a")
    hook.install("targets:on_b", trigger="trig_b")
    assert hook.is_installed()
    import targets
    import trig_a  # noqa: F401 - imports trig_b half-way through

    assert targets.calls == [("b", True), ("a", True)]  # a's target saw a's whole module body
    assert not hook.is_installed()  # nothing left to wait for


def test_target_of_an_already_imported_module_runs_at_once(hook: ModuleType) -> None:
    import trig_b  # noqa: F401

    hook.install("targets:on_b", trigger="trig_b")
    import targets

    assert targets.calls == [("b", True)]


def test_default_install_also_waits_for_the_cli(hook: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hook, "TRIGGER", "trig_never_imported")
    monkeypatch.setattr(hook, "CLI_TRIGGER", "trig_b")
    monkeypatch.setattr(hook, "CLI_TARGET", "targets:on_b")
    hook.install(hook.DEFAULT_TARGET, trigger="trig_never_imported")
    assert hook._waiting == {"trig_never_imported", "trig_b"}
    import targets
    import trig_b  # noqa: F401

    assert targets.calls == [("b", True)]
    assert hook.is_installed()  # still waiting for the other module
