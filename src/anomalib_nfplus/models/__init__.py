# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Normalizing-flow anomaly detection models of anomalib-nfplus.

Every public model subclasses ``anomalib.models.AnomalibModule`` directly (``list_models`` and ``get_model``
only look at direct subclasses) and has a class name no anomalib model uses. Importing this package defines the
classes, which is all anomalib's CLI and ``get_model`` need to find them. Models are listed once, in
``anomalib_nfplus._catalog.MODELS``.
"""

import importlib

from anomalib_nfplus._catalog import MODELS
from anomalib_nfplus.plugin import expose

MODEL_NAMES: tuple[str, ...] = tuple(MODELS)

globals().update({name: getattr(importlib.import_module(module), name) for name, module in MODELS.items()})

__all__ = ["MODEL_NAMES", *MODELS]

# Last: importing a model may have fired the start-up hook while this package was half-built; the hook then
# deferred to this call (see ``expose``).
expose(__name__, MODEL_NAMES)
