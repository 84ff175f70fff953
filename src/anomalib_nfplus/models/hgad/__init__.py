# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""HGAD: hierarchical Gaussian mixture normalizing flow for unified (multi-class) anomaly detection."""

from .lightning_model import HGAD
from .loss import HGADLoss
from .torch_model import HGADModel

__all__ = ["HGAD", "HGADLoss", "HGADModel"]
