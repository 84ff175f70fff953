# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Lazy auto-registration of anomalib-nfplus models with anomalib.

anomalib resolves ``--model HGAD`` by walking the subclasses of ``AnomalibModule`` that are already imported, and
it has no plugin entry points. This module is installed at the root of ``site-packages`` and called from
``anomalib_nfplus.pth`` at interpreter start-up. It does **not** import the plugin (that would import torch and
anomalib in every interpreter, ~14 s); it only puts a one-shot finder on ``sys.meta_path`` that waits for
``anomalib.models`` to be imported and then imports the plugin's registration module.

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
DISABLE_ENV = "ANOMALIB_NFPLUS_NO_AUTOLOAD"

_targets: list[str] = []


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


def _run_targets() -> None:
    for target in list(_targets):
        _run(target)


# The classes below follow the importlib Loader / MetaPathFinder protocols without subclassing importlib.abc:
# importing importlib.abc pulls in importlib.resources and tempfile (~25 ms at every interpreter start).
class _LoaderProxy:
    """Runs the real loader of ``anomalib.models`` and then the plugin targets."""

    def __init__(self, loader: object) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> object:
        return self._loader.create_module(spec)

    def exec_module(self, module: object) -> None:
        try:
            self._loader.exec_module(module)
        except BaseException:
            install_finder()  # the import failed: wait for the next attempt instead of giving up
            raise
        # The import system binds ``anomalib.models`` on its parent only after this returns; plugin code that
        # runs now may already say ``anomalib.models.X``.
        parent, _, child = TRIGGER.rpartition(".")
        if parent in sys.modules:
            setattr(sys.modules[parent], child, module)
        _run_targets()

    def __getattr__(self, name: str) -> object:  # delegate everything else to the real loader
        return getattr(self._loader, name)


class _AnomalibModelsFinder:
    """One-shot finder that reacts only to the import of ``anomalib.models``."""

    def find_spec(
        self,
        fullname: str,
        path: object = None,
        target: object = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != TRIGGER:
            return None
        _remove_finder()  # one-shot, and no recursion into ourselves below
        spec = _find_with_other_finders(fullname, path, target)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _LoaderProxy(spec.loader)
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
    """Whether the finder is waiting for ``anomalib.models``."""
    return any(isinstance(f, _AnomalibModelsFinder) for f in sys.meta_path)


def install(target: str = DEFAULT_TARGET) -> None:
    """Register ``target`` (``"module:function"``) to run right after ``anomalib.models`` is imported.

    Repeated calls are harmless. If ``anomalib.models`` is already imported, the target runs at once.
    """
    if os.environ.get(DISABLE_ENV, "").strip().lower() not in {"", "0", "false", "no", "off"}:
        return
    if target in _targets:
        return
    _targets.append(target)
    if TRIGGER in sys.modules:
        _run(target)
        return
    install_finder()


def install_finder() -> None:
    """Put the one-shot finder at the front of ``sys.meta_path`` unless it is there already."""
    if not is_installed():
        sys.meta_path.insert(0, _AnomalibModelsFinder())
