# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Data helpers: the ``MVTec`` alias datamodule and a generator of small MVTec-layout datasets.

The synthetic generator (``anomalib_nfplus.data.synthetic``) needs only numpy and Pillow; it is not imported
here so that it stays cheap to use without torch.
"""

from .mvtec import MVTec

__all__ = ["MVTec"]
