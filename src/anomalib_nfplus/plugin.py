# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Registration of the plugin's models and datamodules with anomalib.

Called by the start-up hook right after ``anomalib.models`` is imported (see ``_anomalib_nfplus_hook``), or by
hand when auto-registration is switched off. Importing the model modules is what makes the CLI and
``get_model`` find them; adding them to the ``anomalib.models`` / ``anomalib.data`` namespaces additionally lets
name-based configs (``get_model({"class_path": "HGAD"})``, ``get_datamodule({"class_path": "MVTec"})``) work.
Existing names are never overwritten.
"""

import importlib
import logging
import sys
from collections.abc import Sequence

__all__ = ["expose", "is_initialising", "register"]

logger = logging.getLogger(__name__)


def is_initialising(module_name: str) -> bool:
    """Whether ``module_name`` is being imported right now (its body has not finished)."""
    module = sys.modules.get(module_name)
    return module is not None and bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


def expose(source_module: str, names: Sequence[str], namespace_module: str = "anomalib.models") -> None:
    """Add ``names`` of ``source_module`` to an anomalib namespace (default ``anomalib.models``).

    A models module calls this as its last statement; registration targets of the start-up hook call it only
    when the module is not half-imported (see :func:`register`). Third-party plugins use it the same way.
    """
    source = importlib.import_module(source_module)
    namespace = importlib.import_module(namespace_module)
    for name in names:
        obj = getattr(source, name)
        current = getattr(namespace, name, None)
        if current is None:
            setattr(namespace, name, obj)
        elif current is not obj:
            logger.warning("anomalib already defines %s.%s; keeping anomalib's.", namespace_module, name)


def register() -> None:
    """Import the plugin's models, the ``MVTec`` alias and ``Unified``, and expose them in anomalib's namespaces.

    Also extends an already imported ``anomalib.cli.cli`` (:func:`anomalib_nfplus.cli_extensions.extend_anomalib_cli`:
    checkpoint arguments, short errors, quiet output); the start-up hook does that when the CLI is imported later.

    Idempotent. Example:
        >>> from anomalib_nfplus.plugin import register
        >>> register()
    """
    # A model's own import can pull in ``anomalib.models`` and fire the hook while ``anomalib_nfplus.models`` is
    # half-built; then that package exposes its models itself when it finishes.
    if not is_initialising("anomalib_nfplus.models"):
        importlib.import_module("anomalib_nfplus.models")  # its last statement exposes the models
    expose("anomalib_nfplus.data", ("MVTec", "Unified"), "anomalib.data")
    from anomalib_nfplus.cli_extensions import extend_anomalib_cli

    extend_anomalib_cli()
