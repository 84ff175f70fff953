# Copyright (C) 2026 anomalib-nfplus contributors
# SPDX-License-Identifier: Apache-2.0
"""The one list of the plugin's public models: class name -> defining module.

Standard library only, so the package ``__init__`` (lazy attributes), the models package (imports) and the tests
(CLI parametrisation) all read it without importing torch. A new model adds
one line here.
"""

MODELS: dict[str, str] = {
    "DifferNet": "anomalib_nfplus.models.differnet",
    "HGAD": "anomalib_nfplus.models.hgad",
    "CflowAD": "anomalib_nfplus.models.cflow_ad",
}
