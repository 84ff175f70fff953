# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Data helpers: the ``MVTec`` alias datamodule and a generator of small MVTec-layout datasets.

``MVTec`` is loaded on first access, so ``anomalib_nfplus.data.synthetic`` (numpy and Pillow only) can be used
without importing torch or anomalib.
"""

import importlib
from typing import Any

__all__ = ["MVTec"]


def __getattr__(name: str) -> Any:
    if name != "MVTec":
        msg = f"module 'anomalib_nfplus.data' has no attribute {name!r}"
        raise AttributeError(msg)
    value = importlib.import_module("anomalib_nfplus.data.mvtec").MVTec
    globals()[name] = value
    return value
