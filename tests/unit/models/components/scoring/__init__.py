# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Tests of ``anomalib_nfplus.models.components.scoring``."""
