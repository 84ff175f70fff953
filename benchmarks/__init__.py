# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""Benchmark runner (``python benchmarks/run.py --help``); a package only so tests can import it."""
