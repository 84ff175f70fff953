# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""CFLOW-AD (Gudovskiy et al., WACV 2022, https://arxiv.org/abs/2107.12571) with vectorised fiber training."""

from .lightning_model import CflowAD
from .torch_model import CflowADModel

__all__ = ["CflowAD", "CflowADModel"]
