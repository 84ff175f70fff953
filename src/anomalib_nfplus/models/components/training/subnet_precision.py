# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The ``subnet_precision`` argument of the models whose positional flows may train in bfloat16."""

import torch

from anomalib_nfplus.flows import SubnetPrecision, subnet_dtype

__all__ = ["check_subnet_precision"]


def check_subnet_precision(subnet_precision: SubnetPrecision) -> None:
    """Refuse an unknown ``subnet_precision`` when the model is built; the device is chosen at fit start.

    Raises:
        ValueError: ``subnet_precision`` is not ``"auto"``, ``"float32"`` or ``"bfloat16"``.
    """
    subnet_dtype(subnet_precision, torch.device("cpu"))  # the device only matters for "auto"
