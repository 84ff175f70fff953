# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""anomalib-nfplus: normalizing-flow anomaly detection models for anomalib.

Importing this package is cheap: it does not import torch or anomalib. Public names (models, ``MVTec``) are
loaded on first access, so ``from anomalib_nfplus import MVTec`` works and config files record
``anomalib_nfplus.<Name>``. anomalib finds the models by itself once the package is installed (a start-up hook
registers them when ``anomalib.models`` is imported); set ``ANOMALIB_NFPLUS_NO_AUTOLOAD=1`` to switch that off
and call :func:`anomalib_nfplus.plugin.register` yourself.
"""

import importlib
from typing import Any

from anomalib_nfplus._catalog import MODELS

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY: dict[str, str] = {"MVTec": "anomalib_nfplus.data", "Unified": "anomalib_nfplus.data", **MODELS}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module 'anomalib_nfplus' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
