# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Normalizing-flow anomaly detection models of anomalib-nfplus.

Every public model subclasses ``anomalib.models.AnomalibModule`` directly (``list_models`` and ``get_model``
only look at direct subclasses) and has a class name no anomalib model uses. Importing this package defines the
classes, which is all anomalib's CLI and ``get_model`` need to find them. ``anomalib_nfplus._catalog.MODELS`` lists
them for code that must not import torch; a unit test keeps it equal to the imports below.
"""

from anomalib_nfplus._catalog import MODELS
from anomalib_nfplus._exposure import expose

from .cflow_ad import CflowAD
from .differnet import DifferNet
from .hgad import HGAD

MODEL_NAMES: tuple[str, ...] = tuple(MODELS)

__all__ = ["HGAD", "MODEL_NAMES", "CflowAD", "DifferNet"]

# Last: importing a model may have fired the start-up hook while this package was half-built; the hook then left
# the exposure to this call (see ``anomalib_nfplus.plugin.register``).
expose(__name__, MODEL_NAMES)
