# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Data helpers: ``MVTec`` alias, ``Unified`` multi-class datamodule, few-shot subsampling, synthetic datasets.

Public names are loaded on first access, so ``anomalib_nfplus.data.synthetic`` (numpy and Pillow only) can be used
without importing torch or anomalib.
"""

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "MVTec": "anomalib_nfplus.data.mvtec",
    "Unified": "anomalib_nfplus.data.unified",
    "UnifiedImageBatch": "anomalib_nfplus.data.unified",
    "UnifiedImageItem": "anomalib_nfplus.data.unified",
    "FewShot": "anomalib_nfplus.data.few_shot",
    "FewShotMVTecAD": "anomalib_nfplus.data.few_shot",
    "subsample_training_set": "anomalib_nfplus.data.few_shot",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        msg = f"module 'anomalib_nfplus.data' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
