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

__all__ = ["register"]

logger = logging.getLogger(__name__)


def _inject(namespace_module: str, source_module: str, names: tuple[str, ...]) -> None:
    namespace = importlib.import_module(namespace_module)
    source = importlib.import_module(source_module)
    for name in names:
        obj = getattr(source, name)
        current = getattr(namespace, name, None)
        if current is None:
            setattr(namespace, name, obj)
        elif current is not obj:
            logger.warning("anomalib already defines %s.%s; keeping anomalib's.", namespace_module, name)


def register() -> None:
    """Import the plugin's models and the ``MVTec`` alias and expose them in anomalib's namespaces.

    Idempotent. Example:
        >>> from anomalib_nfplus.plugin import register
        >>> register()
    """
    models = importlib.import_module("anomalib_nfplus.models")
    _inject("anomalib.models", "anomalib_nfplus.models", models.MODEL_NAMES)
    _inject("anomalib.data", "anomalib_nfplus.data", ("MVTec",))
