# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Normalizing-flow anomaly detection models of anomalib-nfplus.

Every public model subclasses ``anomalib.models.AnomalibModule`` directly (``list_models`` and ``get_model``
only look at direct subclasses) and has a class name no anomalib model uses. Importing this package defines the
classes, which is all anomalib's CLI and ``get_model`` need to find them. Add each new model to ``MODEL_NAMES``.
"""

MODEL_NAMES: tuple[str, ...] = ()

__all__ = ["MODEL_NAMES"]
