# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Lazy auto-registration of anomalib-nfplus models with anomalib.

anomalib resolves ``--model HGAD`` by walking the subclasses of ``AnomalibModule`` that are already imported, and
it has no plugin entry points. This module is installed at the root of ``site-packages`` and called from
``anomalib_nfplus.pth`` at interpreter start-up. It does **not** import the plugin (that would import torch and
anomalib, many seconds, in every interpreter); it only puts a finder on ``sys.meta_path`` that waits for
``anomalib.models`` to be imported and then imports the plugin's registration module, and for ``anomalib.cli.cli``
to be imported to let anomalib's CLI build the plugin's models from a checkpoint's saved arguments. The finder
leaves ``sys.meta_path`` once every module it waits for was imported.

Only the standard library is used here. Set ``ANOMALIB_NFPLUS_NO_AUTOLOAD=1`` (read at interpreter start-up) to
switch auto-registration off; the full class path (``--model anomalib_nfplus.HGAD``) keeps working without it.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import sys
import warnings

TRIGGER = "anomalib.models"
DEFAULT_TARGET = "anomalib_nfplus.plugin:register"
#: ``install()`` without arguments also runs CLI_TARGET once anomalib's CLI module is imported.
CLI_TRIGGER = "anomalib.cli.cli"
CLI_TARGET = "anomalib_nfplus.cli_extensions:extend_anomalib_cli"
DISABLE_ENV = "ANOMALIB_NFPLUS_NO_AUTOLOAD"

_targets: dict[str, list[str]] = {}  # module name -> "module:function" targets to run right after its import
_waiting: set[str] = set()  # module names the finder still waits for


def _run(target: str) -> None:
    """Call one ``module:function`` target; a broken plugin must never break anomalib itself."""
    module_name, _, func_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        if func_name:
            getattr(module, func_name)()
    except Exception as exc:  # reported, never raised into anomalib's import
        msg = (
            f"anomalib-nfplus auto-registration of {target!r} failed ({type(exc).__name__}: {exc}). "
            f"Use the full class path (e.g. --model anomalib_nfplus.HGAD) or set {DISABLE_ENV}=1."
        )
        warnings.warn(msg, RuntimeWarning, stacklevel=2)


def _run_targets(trigger: str) -> None:
    for target in list(_targets.get(trigger, ())):
        _run(target)


# The classes below follow the importlib Loader / MetaPathFinder protocols without subclassing importlib.abc:
# importing importlib.abc pulls in importlib.resources and tempfile (~25 ms at every interpreter start).
class _LoaderProxy:
    """Runs the real loader of a waited-for module and then the plugin targets waiting for it."""

    def __init__(self, loader: object, trigger: str) -> None:
        self._loader = loader
        self._trigger = trigger

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> object:
        return self._loader.create_module(spec)

    def exec_module(self, module: object) -> None:
        try:
            self._loader.exec_module(module)
        except BaseException:
            _wait_for(self._trigger)  # the import failed: wait for the next attempt instead of giving up
            raise
        # The import system binds ``anomalib.models`` on its parent only after this returns; plugin code that
        # runs now may already say ``anomalib.models.X``.
        parent, _, child = self._trigger.rpartition(".")
        if parent in sys.modules:
            setattr(sys.modules[parent], child, module)
        _run_targets(self._trigger)

    def __getattr__(self, name: str) -> object:  # delegate everything else to the real loader
        return getattr(self._loader, name)


class _AnomalibModelsFinder:
    """Finder that reacts only to the first import of each module it waits for (``anomalib.models``, ...)."""

    def find_spec(
        self,
        fullname: str,
        path: object = None,
        target: object = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _waiting:
            return None
        _waiting.discard(fullname)  # once per module, and no recursion into ourselves below
        if not _waiting:
            _remove_finder()
        spec = _find_with_other_finders(fullname, path, target)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _LoaderProxy(spec.loader, fullname)
        return spec


def _find_with_other_finders(fullname: str, path: object, target: object) -> importlib.machinery.ModuleSpec | None:
    """Ask the remaining meta-path finders, in order, as the import system would (editable installs included)."""
    for finder in list(sys.meta_path):
        find_spec = getattr(finder, "find_spec", None)
        spec = find_spec(fullname, path, target) if find_spec is not None else None
        if spec is not None:
            return spec
    return None


def _remove_finder() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _AnomalibModelsFinder)]


def is_installed() -> bool:
    """Whether the finder is waiting for a module (``anomalib.models`` or ``anomalib.cli.cli``)."""
    return any(isinstance(f, _AnomalibModelsFinder) for f in sys.meta_path)


def install(target: str = DEFAULT_TARGET, trigger: str = TRIGGER) -> None:
    """Register ``target`` (``"module:function"``) to run right after ``trigger`` (``anomalib.models``) is imported.

    Repeated calls are harmless. If ``trigger`` is already imported, the target runs at once. The default target
    (the plugin's registration) brings :data:`CLI_TARGET` along, run after :data:`CLI_TRIGGER` is imported.
    """
    if os.environ.get(DISABLE_ENV, "").strip().lower() not in {"", "0", "false", "no", "off"}:
        return
    if (target, trigger) == (DEFAULT_TARGET, TRIGGER):
        _add(CLI_TARGET, CLI_TRIGGER)
    _add(target, trigger)


def _add(target: str, trigger: str) -> None:
    targets = _targets.setdefault(trigger, [])
    if target in targets:
        return
    targets.append(target)
    if trigger in sys.modules:
        _run(target)
        return
    _wait_for(trigger)


def _wait_for(trigger: str) -> None:
    _waiting.add(trigger)
    install_finder()


def install_finder() -> None:
    """Put the finder at the front of ``sys.meta_path`` unless it is there already."""
    if not is_installed():
        sys.meta_path.insert(0, _AnomalibModelsFinder())
