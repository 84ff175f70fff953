# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The benchmark harness, run from the repository root as ``python -m benchmarks.<script> --help``.

Scripts: ``run`` (models side by side on one dataset, presets), ``unified`` (one model for all categories versus
one per category), ``edge`` (accuracy and latency per OpenVINO precision), ``int8_scopes`` (where INT8 can win),
``export_time`` (OpenVINO export per preset), ``ddp_throughput`` (training in several processes). Shared:
``harness`` (options, one timed fit), ``report`` (CSV, markdown, commit and host), ``baselines`` (models built
side by side), ``data_setup`` (datamodules and seeded subsets), ``isolation`` (a fresh process per model).
See ``benchmarks/README.md``.
"""
