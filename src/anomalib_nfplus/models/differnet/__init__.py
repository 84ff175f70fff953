# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""DifferNet (Rudolph et al., WACV 2021): flow on multi-scale pooled features, TTA score, gradient maps."""

from .lightning_model import DifferNet
from .loss import differnet_loss
from .torch_model import DifferNetModel

__all__ = ["DifferNet", "DifferNetModel", "differnet_loss"]
