# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Registration target of the probe (light module, like ``anomalib_nfplus.plugin``)."""

import importlib

from anomalib_nfplus.plugin import is_initialising


def register() -> None:
    """Import the probe model, which exposes itself in ``anomalib.models``."""
    if not is_initialising("nfplus_probe"):
        importlib.import_module("nfplus_probe")  # its last statement exposes the model
