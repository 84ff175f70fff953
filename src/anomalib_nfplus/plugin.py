# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Registration of the plugin's models and datamodules with anomalib.

Called by the start-up hook right after ``anomalib.models`` is imported (see ``_anomalib_nfplus_hook``), or by
hand when auto-registration is switched off. Importing the model modules is what makes the CLI and
``get_model`` find them; adding them to the ``anomalib.models`` / ``anomalib.data`` namespaces additionally lets
name-based configs (``get_model({"class_path": "HGAD"})``, ``get_datamodule({"class_path": "MVTec"})``) work.
Existing names are never overwritten (:func:`expose`).

The dependency runs one way: this module imports the models package (inside :func:`register`), the models package
never imports this module.
"""

import importlib

from anomalib_nfplus._exposure import expose, is_initialising

__all__ = ["expose", "is_initialising", "register"]


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
