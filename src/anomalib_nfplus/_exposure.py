# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Adding the plugin's classes to anomalib's namespaces (``anomalib.models.HGAD``), standard library only.

A leaf module: :mod:`anomalib_nfplus.models` calls :func:`expose` when its body finishes and
:mod:`anomalib_nfplus.plugin` calls it from ``register``, so neither of those imports the other for it.
"""

import importlib
import logging
import sys
from collections.abc import Sequence

__all__ = ["expose", "is_initialising"]

logger = logging.getLogger("anomalib_nfplus.plugin")


def is_initialising(module_name: str) -> bool:
    """Whether ``module_name`` is being imported right now (its body has not finished)."""
    module = sys.modules.get(module_name)
    return module is not None and bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


def expose(source_module: str, names: Sequence[str], namespace_module: str = "anomalib.models") -> None:
    """Add ``names`` of ``source_module`` to an anomalib namespace (default ``anomalib.models``).

    Existing names are never overwritten. A models package calls this as its last statement; the start-up hook's
    ``register`` calls it for a package that is not half-imported. Third-party plugins use it the same way.
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
